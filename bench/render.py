"""Render the benchmark results as Markdown tables and plots, optionally into the README.

Usage (from the repository root, after the runs listed in ``conftest.py``)::

    python bench/render.py --headline bench/results/headline.json \\
        --grid bench/results/grid.json --end-to-end bench/results/end_to_end.json \\
        --scaling bench/results/scaling.json --screen bench/results/screen.json \\
        [--update-readme README.md]

Any subset of the five inputs may be given.  Prints the Markdown; with ``--grid``
also writes ``grid.png`` (time against n per method, one panel per d, float32) next
to the grid JSON, or to ``--grid-png``.  ``--update-readme FILE`` replaces the text
between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` in FILE (nothing else)
with the tables, links to the images and the exact commands that produced them
(read from the JSON files).  Image links are relative to the repository root,
where README.md lives, whatever FILE is (so a copy in /tmp previews the real thing).

Conventions: times are seconds per call (the median over the timed rounds);
``x`` = peer time / infoflow time, so > 1 means infoflow is faster.  A time
marked ``*`` was measured on a subset of the queries and scaled (``budget.py``);
"skipped (est. T)" means the budget rule did not run the peer, T being its pilot
estimate, and a ratio in parentheses uses that estimate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from collections import defaultdict

import budget
import report

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

#: Column order and display names of the grid's methods.
GRID_METHODS = {
    "infoflow": "infoflow",
    "numpy": "NumPy",
    "torch": "torch",
    "pykeops": "KeOps",
    "sklearn": "sklearn exact",
    "sklearn_rtol1e-3": "sklearn rtol=1e-3",
}
BASELINE = "infoflow"
COLOURS = {"infoflow": "C3", "numpy": "C0", "torch": "C1", "pykeops": "C2", "sklearn": "C4",
           "sklearn_rtol1e-3": "C5"}


def fmt_time(seconds):
    """Seconds with a unit and three significant digits (``312 µs``, ``12.3 ms``, ``4.56 s``)."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


# ---------------------------------------------------------------------------------------
# Grid
# ---------------------------------------------------------------------------------------

def load_grid(path):
    """Read a grid JSON into cells.

    Parameters
    ----------
    path : str
        ``--benchmark-json`` output of ``-m grid``.

    Returns
    -------
    cells : dict
        ``cells[(n, d, dtype)][method]`` -> dict with ``status`` ("full", "scaled",
        "skipped" or "unavailable"), ``seconds`` (full-problem seconds, scaled
        where needed; the pilot estimate for a budget skip), ``err``, ``tol``,
        ``timed_queries``, ``reason``.
    data : dict
        The whole JSON (``machine_info``, ``command``, ...).
    """
    with open(path) as f:
        data = json.load(f)
    cells = defaultdict(dict)
    for bench in data["benchmarks"]:
        e = bench["extra_info"]
        if e.get("suite") != "grid":
            continue
        scale = float(e.get("time_scale", 1))
        cells[(e["n"], e["d"], e["dtype"])][e["method"]] = {
            "status": "scaled" if scale != 1 else "full",
            "seconds": budget.scaled_seconds(bench["stats"]["median"], e.get("fixed_s", 0.0), scale),
            "err": e.get("max_rel_err"),
            "tol": e.get("tolerance"),
            "timed_queries": e.get("timed_queries"),
            "rounds": bench["stats"]["rounds"],
            "full_s": e.get("full_s"),
            "skip_s": e.get("skip_s"),
        }
    for s in data.get("skipped", []):
        if s.get("suite") != "grid":
            continue
        est = s.get("estimate_s")
        cells[(s["n"], s["d"], s["dtype"])][s["method"]] = {
            "status": "skipped" if est is not None else "unavailable",
            "seconds": est, "reason": s["reason"], "skip_s": s.get("budget_s"),
        }
    return dict(cells), data


def _methods(cells):
    found = {m for per in cells.values() for m in per}
    return [m for m in GRID_METHODS if m in found] + sorted(found - set(GRID_METHODS))


def grid_markdown(cells, data):
    """Markdown: a time/ratio table over (n, d, dtype), an accuracy table, notes.

    Parameters
    ----------
    cells, data
        From :func:`load_grid`.

    Returns
    -------
    str
    """
    methods = _methods(cells)
    peers = [m for m in methods if m != BASELINE]
    budgets = {(r.get("full_s"), r.get("skip_s")) for per in cells.values() for r in per.values()
               if r.get("full_s") is not None}
    full_s, skip_s = next(iter(budgets)) if budgets else (None, None)
    lines = [
        f"m = n, uniform data in [-1, 1]^d, beta = 0.1 sqrt(d); "
        f"{report.cpu_description(data.get('machine_info', {}))}.  Median seconds per call; "
        "`x` = peer time / infoflow time (> 1: infoflow is faster).",
        "",
    ]
    header = ["n", "d", "dtype"] + ([GRID_METHODS[BASELINE]] if BASELINE in methods else [])
    for m in peers:
        header += [GRID_METHODS.get(m, m), "x"]
    lines += ["| " + " | ".join(header) + " |", "|---:|---:|---|" + "---:|" * (len(header) - 3)]

    failed = []

    def check_mark(method, rec, where):
        """" ✗" (and a note) when a recorded error exceeds its tolerance."""
        if rec.get("err") is None or rec.get("tol") is None or rec["err"] <= rec["tol"]:
            return ""
        failed.append(f"{method} at {where}: error {rec['err']:.2e} > {rec['tol']:g}")
        return " ✗"

    for key in sorted(cells, key=lambda k: (k[2], k[1], k[0])):  # dtype, d, then n
        n, d, dtype = key
        where = f"n={n}, d={d}, {dtype}"
        per = cells[key]
        ours = per.get(BASELINE, {})
        base = ours.get("seconds") if ours.get("status") in ("full", "scaled") else None
        row = [f"{n:g}", str(d), dtype]
        if BASELINE in methods:
            row.append(fmt_time(base) + (check_mark(BASELINE, ours, where) if ours else ""))
        for m in peers:
            rec = per.get(m)
            if rec is None:
                row += ["—", "—"]
                continue
            if rec["status"] == "unavailable":
                row += ["n/a", "—"]
                continue
            ratio = rec["seconds"] / base if base and rec["seconds"] else None
            if rec["status"] == "skipped":
                row += [f"skipped (est. {fmt_time(rec['seconds'])})",
                        "—" if ratio is None else f"({ratio:.3g})"]
                continue
            mark = ("*" if rec["status"] == "scaled" else "") + check_mark(m, rec, where)
            row += [fmt_time(rec["seconds"]) + mark, "—" if ratio is None else f"{ratio:.3g}"]
        lines.append("| " + " | ".join(row) + " |")

    notes = [""]
    if full_s is not None:
        notes.append(
            f"\\* timed once on the first k queries and scaled to m as a + (t_k - a) m / k, "
            f"a = the measured per-call set-up (the peer's estimated time was between "
            f"{full_s:g} s and {skip_s:g} s).  \"skipped (est. T)\": estimated above "
            f"{skip_s:g} s from a short pilot, not run; the ratio in parentheses uses that "
            "estimate.  infoflow always runs on the full problem.")
    unavailable = sorted({f"{m}: {r['reason']}" for per in cells.values() for m, r in per.items()
                          if r["status"] == "unavailable"})
    if unavailable:
        notes.append("n/a: " + "; ".join(unavailable) + ".")
    if failed:
        notes.append("✗ correctness check FAILED: " + "; ".join(failed) + ".")
    lines += notes + [""]

    # Accuracy: worst |got - ref| / max(1, |ref|) over n, per (d, dtype) and method.
    lines += ["Worst error |got - ref| / max(1, |ref|) over n, against a float64 reference "
              "on random query rows (tolerance in parentheses):", "",
              "| d | dtype | " + " | ".join(GRID_METHODS.get(m, m) for m in methods) + " |",
              "|---:|---|" + "---:|" * len(methods)]
    by_d = defaultdict(lambda: defaultdict(list))
    for (_n, d, dtype), per in cells.items():
        for m, r in per.items():
            if r.get("err") is not None:
                by_d[(d, dtype)][m].append((r["err"], r["tol"]))
    for d, dtype in sorted(by_d, key=lambda k: (k[1], k[0])):
        row = [str(d), dtype]
        for m in methods:
            vals = by_d[(d, dtype)].get(m)
            row.append("—" if not vals else f"{max(v[0] for v in vals):.1e} ({vals[0][1]:g})")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def grid_plot(cells, path, dtype="float32"):
    """Log-log time against n per method, one panel per d, for one dtype.

    Filled markers: timed in full; open: timed on a subset and scaled; crosses:
    pilot estimates of skipped cells.  The dotted line in the d = 10 and d = 100
    panels is the machine's limit (0.1 s at d = 10 and 0.5 s at d = 100 for m = n = 20000
    float32, see bench/scaling.py), moved as n^2.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    ds = sorted({d for (_, d, dt) in cells if dt == dtype})
    if not ds:
        return False
    methods = _methods(cells)
    ncols = min(3, len(ds) + 1)
    nrows = math.ceil((len(ds) + 1) / ncols)
    fig = Figure(figsize=(5.2 * ncols, 4.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    limits = {10: 0.1, 100: 0.5}  # the machine's limit for m = n = 20000, float32 (bench/scaling.py)
    for ax, d in zip(axes, ds):
        ns_all = sorted({n for (n, dd, dt) in cells if dd == d and dt == dtype})
        for m in methods:
            pts = [(n, cells[(n, d, dtype)].get(m)) for n in ns_all]
            run = [(n, r) for n, r in pts if r and r["status"] in ("full", "scaled")]
            est = [(n, r) for n, r in pts if r and r["status"] == "skipped"]
            colour = COLOURS.get(m, "k")
            if run:
                ax.plot([n for n, _ in run], [r["seconds"] for _, r in run], "-", color=colour,
                        lw=2.2 if m == BASELINE else 1.4)
                for n, r in run:
                    ax.plot(n, r["seconds"], "o", color=colour, ms=6,
                            mfc=colour if r["status"] == "full" else "white")
            for n, r in est:
                ax.plot(n, r["seconds"], "x", color=colour, ms=8, mew=2)
        if d in limits and dtype == "float32":
            xs = [min(ns_all), max(ns_all)]
            ax.plot(xs, [limits[d] * (x / 20000) ** 2 for x in xs], ":", color="k", alpha=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set(title=f"d = {d}, {dtype}", xlabel="n = m", ylabel="seconds per call")
        ax.grid(True, which="both", alpha=0.3)
    legend_ax = axes[len(ds)]
    for ax in axes[len(ds) + 1:]:
        ax.set_visible(False)
    legend_ax.axis("off")
    handles = [Line2D([], [], color=COLOURS.get(m, "k"), marker="o", lw=2,
                      label=GRID_METHODS.get(m, m)) for m in methods]
    handles += [
        Line2D([], [], color="grey", marker="o", ls="", label="timed in full"),
        Line2D([], [], color="grey", marker="o", mfc="white", ls="", label="timed on a subset, scaled"),
        Line2D([], [], color="grey", marker="x", mew=2, ls="", label="skipped: pilot estimate"),
        Line2D([], [], color="k", ls=":", label="machine limit (0.1 s / 0.5 s at n = 20000) x (n/20000)^2"),
    ]
    legend_ax.legend(handles=handles, loc="center", fontsize=11, frameon=False)
    fig.savefig(path, dpi=100)
    return True


# ---------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------

def load_end_to_end(path):
    """``{method: extra_info + median}`` from the end-to-end JSON, and the JSON."""
    with open(path) as f:
        data = json.load(f)
    out = {}
    for bench in data["benchmarks"]:
        e = bench["extra_info"]
        if e.get("suite") == "end_to_end":
            out[e["method"]] = dict(e, median=bench["stats"]["median"])
    return out, data


def end_to_end_markdown(res):
    """Markdown: per-layer I(X;T) from both methods, then the times and ratios."""
    ours = res.get("infoflow") or res.get("infoflow_1thread")
    kde = res.get("sklearn_kde")
    any_rec = ours or kde
    lines = [
        f"One epoch of the 12-bit experiment's I(X;T_l): NoisyMLP {any_rec['widths']}, tanh, "
        f"beta = {any_rec['beta']}, {any_rec['inputs']} inputs x R = {any_rec['repeats']} samples, "
        f"K = {any_rec['mc_samples']} Monte Carlo draws per centre.", ""]
    if kde and "comparison" in kde:
        lines += ["| layer | d | infoflow I(X;T) (nats) | KDE rtol=1e-3 I(X;T) (nats) | difference | tolerance |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, c in kde["comparison"].items():
            se_a, se_b = c["infoflow_stderr"], c["kde_stderr"]
            lines.append(f"| {name} | {kde['layer_dims'][name]} | {c['infoflow']:.4f} ± {se_a:.4f} | "
                         f"{c['kde']:.4f} ± {se_b:.4f} | {c['diff']:+.4f} | {c['tol']:.4f} |")
        lines.append("")
    lines += ["| step | seconds | x |", "|---|---:|---:|"]
    lines.append(f"| sample_layers (shared) | {any_rec['sample_layers_s']:.3g} | |")
    base = res.get("infoflow", {}).get("median")
    for method, label in (("infoflow", "infoflow.mi_xt, 5 layers, all threads"),
                          ("infoflow_1thread", "infoflow.mi_xt, 5 layers, 1 thread"),
                          ("sklearn_kde", "sklearn KDE (official code's way), 5 layers")):
        rec = res.get(method)
        if rec is None:
            continue
        seconds = rec.get("scaled_seconds", rec["median"])
        mark = "*" if rec.get("cond_fraction", 1) < 1 else ""
        ratio = f"{seconds / base:.3g}" if base else "—"
        lines.append(f"| {label} | {seconds:.3g}{mark} | {ratio} |")
    if kde and kde.get("cond_fraction", 1) < 1:
        lines.append(f"\n\\* the per-input KDE loop ran on {kde['cond_fraction']:.1%} of the inputs "
                     "(evenly spaced) and its time was scaled; the marginal KDEs ran in full.")
    lines.append("\n`x` = time / infoflow's (all threads).  scikit-learn's KDE is single-threaded.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------------------

def link(path):
    """A Markdown image path relative to the repository root (where README.md lives)."""
    return os.path.relpath(os.path.abspath(path), REPO).replace(os.sep, "/")


def update_readme(readme, block):
    """Replace the text between the bench markers of ``readme`` with ``block``.

    Raises
    ------
    SystemExit
        If the markers are missing, repeated or out of order.
    """
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"{readme}: expected exactly one {BEGIN} ... {END} pair, in that order")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    with open(readme, "w", encoding="utf-8") as f:
        f.write(head + BEGIN + "\n" + block.strip("\n") + "\n" + END + tail)


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headline", help="JSON of the headline suite (m = n = 20000)")
    parser.add_argument("--grid", help="JSON of the grid suite (-m grid)")
    parser.add_argument("--grid-png", help="grid plot path (default: grid.png next to --grid)")
    parser.add_argument("--end-to-end", help="JSON of the end-to-end suite (-m end_to_end)")
    parser.add_argument("--scaling", help="scaling.json written by bench/scaling.py")
    parser.add_argument("--screen", help="screen.json written by bench/screen.py")
    parser.add_argument("--update-readme", metavar="FILE",
                        help="replace the text between the bench markers in FILE")
    args = parser.parse_args(argv)
    if not any((args.headline, args.grid, args.end_to_end, args.scaling, args.screen)):
        parser.error("give at least one of --headline, --grid, --end-to-end, --scaling, --screen")

    sections, commands = [], []
    if args.headline:
        results, machine = report.load(args.headline)
        # No heading: the README's sentence just before the markers introduces it.
        sections.append(report.markdown(results, machine))
        commands.append(_command_of(args.headline))
    if args.grid:
        cells, data = load_grid(args.grid)
        png = args.grid_png or os.path.join(os.path.dirname(os.path.abspath(args.grid)), "grid.png")
        text = "### Grid: every peer over n, d and dtype\n\n" + grid_markdown(cells, data)
        if grid_plot(cells, png):
            text += f"\n\n![time against n per method, float32]({link(png)})"
            print(f"wrote {png}", file=sys.stderr)
        sections.append(text)
        commands.append(data.get("command"))
    if args.end_to_end:
        res, data = load_end_to_end(args.end_to_end)
        sections.append("### End to end: one epoch of the 12-bit experiment\n\n"
                        + end_to_end_markdown(res))
        commands.append(data.get("command"))
    if args.scaling:
        import scaling

        with open(args.scaling) as f:
            res = json.load(f)
        png = os.path.join(os.path.dirname(os.path.abspath(args.scaling)), "scaling.png")
        text = "### Scaling\n\n" + scaling.markdown(res)
        if os.path.exists(png):
            text += f"\n![time against n and d, thread speedup]({link(png)})"
        sections.append(text)
        commands.append(res.get("command"))
    if args.screen:
        import screen

        with open(args.screen) as f:
            res = json.load(f)
        sections.append("### Small β: the GEMM-form screen\n\n"
                        "Monte Carlo queries around tanh-layer centres, float32, m = n "
                        "(`bench/screen.py` says how they are made). Errors are against float64.\n\n"
                        + screen.markdown(res))
        commands.append(res.get("command"))
    argv_text = shlex.join(sys.argv[1:] if argv is None else argv)
    commands.append(f"python bench/render.py {argv_text}")

    cmd_block = ["### How these were produced", "",
                 "From the repository root, with infoflow importable (`pip install .`):", "",
                 "```bash", "mkdir -p bench/results"]
    cmd_block += [c for c in commands if c] + ["```"]
    markdown = "\n\n".join(sections + ["\n".join(cmd_block)])
    print(markdown)
    if args.update_readme:
        update_readme(args.update_readme, markdown)
        print(f"updated {args.update_readme}", file=sys.stderr)


def _command_of(path):
    """The ``command`` a JSON records, or a plain description for older files."""
    with open(path) as f:
        return json.load(f).get("command") or f"# {path}: produced before commands were recorded"


if __name__ == "__main__":
    main()
