"""Markdown summary of a pytest-benchmark JSON file from ``bench/``.

Usage::

    python -m pytest bench/ --benchmark-only --benchmark-json=bench-results.json
    python bench/report.py bench-results.json

Prints one row per dimension d: each method's median time in seconds and its
ratio to infoflow (peer time / infoflow time, so > 1 means infoflow is faster),
then each method's worst relative error against the float64 reference.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict

# Column order; methods not in this list are appended in the order they appear.
METHODS = ["infoflow", "numpy", "torch", "pykeops", "sklearn"]
BASELINE = "infoflow"


def load(path):
    """Read the benchmark JSON into ``{d: {method: record}}``.

    Parameters
    ----------
    path : str
        File written by ``--benchmark-json``.

    Returns
    -------
    results : dict
        ``results[d][method]`` has ``seconds`` (median, multiplied by
        ``time_scale`` for a timed subset), ``scale``, ``err`` and ``info``.
    machine : dict
        The file's ``machine_info``.
    """
    with open(path) as f:
        data = json.load(f)
    results = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        scale = float(info.get("time_scale", 1))
        results[info["d"]][info["method"]] = {
            "seconds": bench["stats"]["median"] * scale,
            "scale": scale,
            "err": info.get("max_rel_err"),
            "info": info,
        }
    return dict(results), data.get("machine_info", {})


def cpu_description(machine):
    """CPU model and core count: recorded in the JSON, else this machine's ``/proc/cpuinfo``.

    Parameters
    ----------
    machine : dict
        ``machine_info`` from the JSON (``cpu_model`` and ``cores`` are added
        by ``bench/conftest.py``).

    Returns
    -------
    str
    """
    model, cores = machine.get("cpu_model"), machine.get("cores")
    if model is None:
        # An older file without the conftest hook: fall back to this machine,
        # and say so, since it may not be the one that ran the benchmarks.
        try:
            with open("/proc/cpuinfo") as f:
                names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
            model = (names[0] if names else "unknown CPU") + " (read at report time)"
        except OSError:
            model = "unknown CPU"
        cores = cores or os.cpu_count()
    return f"{model}, {cores} cores"


def markdown(results, machine):
    """Format the results as Markdown tables.

    Parameters
    ----------
    results : dict
        From :func:`load`.
    machine : dict
        From :func:`load`.

    Returns
    -------
    str
    """
    found = {meth for per_d in results.values() for meth in per_d}
    methods = [m for m in METHODS if m in found] + sorted(found - set(METHODS))
    peers = [m for m in methods if m != BASELINE]
    any_info = next(iter(next(iter(results.values())).values()))["info"]

    lines = [
        f"m = {any_info['m']}, n = {any_info['n']}, dtype = {any_info['dtype']}, "
        f"beta = 0.1 sqrt(d); {cpu_description(machine)}.",
        "Median seconds per call; `x` = peer time / infoflow time.",
        "",
    ]
    header = ["d"] + ([f"{BASELINE} (s)"] if BASELINE in methods else [])
    for m in peers:
        header += [f"{m} (s)", "x"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]

    notes = []
    for d in sorted(results):
        per_d = results[d]
        base = per_d.get(BASELINE, {}).get("seconds")
        row = [str(d)]
        if BASELINE in methods:
            row.append(_fmt(base))
        for m in peers:
            rec = per_d.get(m)
            if rec is None:
                row += ["—", "—"]
                continue
            mark = ""
            if rec["scale"] != 1:
                mark = "*"
                notes.append(
                    f"\\* {m} at d={d}: timed on {rec['info'].get('timed_queries')} queries, "
                    f"time multiplied by {rec['scale']:g}."
                )
            ratio = rec["seconds"] / base if base else None
            row += [_fmt(rec["seconds"]) + mark, "—" if ratio is None else f"{ratio:.3g}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += [""] + notes + ([""] if notes else [])

    # Accuracy: the worst |got - ref| / max(1, |ref|) on the checked query rows.
    lines += [
        "Worst relative error vs a float64 reference (200 random query rows):",
        "",
        "| d | " + " | ".join(methods) + " |",
        "|" + "---:|" * (len(methods) + 1),
    ]
    for d in sorted(results):
        errs = [results[d].get(m, {}).get("err") for m in methods]
        lines.append(
            f"| {d} | " + " | ".join("—" if e is None else f"{e:.1e}" for e in errs) + " |"
        )
    return "\n".join(lines)


def _fmt(seconds):
    """Seconds with three significant digits, or a dash when missing."""
    return "—" if seconds is None else f"{seconds:.3g}"


def main(argv=None):
    """Command-line entry point: print the Markdown report for one JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_file", help="output of pytest --benchmark-json")
    args = parser.parse_args(argv)
    results, machine = load(args.json_file)
    if not results:
        raise SystemExit(f"{args.json_file}: no benchmarks found")
    print(markdown(results, machine))


if __name__ == "__main__":
    main()
