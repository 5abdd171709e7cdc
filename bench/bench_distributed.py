"""infoflow.distributed on local Dask clusters: the kernel's overhead and a seed sweep on 1 and 2 workers.

Usage (from the repository root, with infoflow[distributed] importable; a script, not a
pytest benchmark)::

    python bench/bench_distributed.py                       # both parts; writes bench/results/distributed.json
    python bench/bench_distributed.py --part kernel         # ~1 min
    python bench/bench_distributed.py --part sweep          # ~10-12 min on 2 quiet cores
    python bench/bench_distributed.py --part sweep --seeds 4 --sweep-args "--epochs 1000 --points 6"
    python bench/bench_distributed.py --quick --out-dir /tmp/bd   # smoke run, a few minutes

Kernel: ``log_density`` at m = n = 20000, d = 10, float32, centres and queries uniform in
[-1, 1]^d and beta = 0.1 sqrt(d) (the data of the other benchmarks), against the local
call on all cores.  On a LocalCluster of 2 worker processes x 1 thread: the queries in 2
row blocks with the data already on the workers (persisted), the same sent from the
client with each call, and the centres in 2 blocks as well (4 kernel calls and the
log-sum-exp tree); on 1 worker x all cores, one block (the cost of one task).  Then
``mixture_entropy`` of the 20000 centres (65536 queries) locally and on the 2 workers.
Every time is the best of up to 10 repeats (8 s): on a shared machine the minimum is
the closest reading of the cost.

Sweep: ``infoflow reproduce szt --seeds N`` with the given options (default 4 seeds of
``--epochs 500 --points 4``), as a command, on three local clusters and without Dask:

- 1 worker x 1 thread: the baseline, one run at a time;
- 2 workers x 1 thread: a second worker of the same size (the scale-out of issue 12:
  target at most 0.6x the baseline's time), two runs at a time;
- 1 worker x 2 threads: the same two cores in one worker, which runs two runs at once
  (one per thread, each with a 1-thread kernel);
- the local command (runs one after another, the kernel on all cores).

A layout that ``--workers K`` starts on this machine (K workers with cores // K threads
each: on 2 cores, ``--workers 2`` and ``--workers 1``) is run with ``--workers K``, the
others with ``--scheduler`` of ``infoflow.distributed.local_cluster`` of that layout started
here (the cluster ``--workers K`` starts, with the same Dask settings).  Wall clock of
each command, once (for a ``--scheduler`` case including the start and close of its
cluster, which ``--workers K`` does within the command); the JSON has each case's time,
its ratio to the baseline and the ratios between the cases (``sweep.ratios``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# The environment of the commands: as this script found it.  Starting a LocalCluster sets
# OMP_NUM_THREADS=1 (and the like) in this process's environment and leaves it there,
# which a later command would inherit (the local case then ran its kernel on one thread).
COMMAND_ENV = dict(os.environ)


def best_of(function, repeats: int = 10, budget: float = 8.0) -> float:
    """The fastest of up to ``repeats`` calls (at least 2), stopping after ``budget`` seconds."""
    times = []
    started = time.perf_counter()
    while len(times) < repeats and (len(times) < 2 or time.perf_counter() - started < budget):
        t = time.perf_counter()
        function()
        times.append(time.perf_counter() - t)
    return min(times)


def kernel_part(n: int, d: int) -> dict:
    import dask.array as da

    import infoflow
    from infoflow import distributed as idist

    rng = np.random.default_rng(0)
    q = rng.uniform(-1, 1, size=(n, d)).astype(np.float32)
    c = rng.uniform(-1, 1, size=(n, d)).astype(np.float32)
    beta = 0.1 * math.sqrt(d)
    cores = os.cpu_count() or 1
    infoflow.log_density(q, c, beta)  # warm-up (thread pool, pages)
    local = best_of(lambda: infoflow.log_density(q, c, beta))
    expected = infoflow.log_density(q, c, beta)
    local_entropy = best_of(lambda: infoflow.mixture_entropy(c, beta, rng=0), repeats=3)
    rows = [{"case": f"local call, {cores} threads", "workers": 0, "seconds": local}]

    def run_on(workers: int, threads: int, cases):
        with idist.local_cluster(workers, threads_per_worker=threads) as client:
            for label, build in cases:
                array = build(client)
                got = array.compute()  # warm-up: imports on the workers
                error = float(np.max(np.abs(got.astype(np.float64) - expected)))
                seconds = best_of(array.compute)
                rows.append({"case": label, "workers": workers, "threads_per_worker": threads, "seconds": seconds,
                             "max_abs_difference": error})
            if workers == 2:
                idist.mixture_entropy(c, beta, rng=0, client=client)
                seconds = best_of(lambda: idist.mixture_entropy(c, beta, rng=0, client=client), repeats=3)
                a = infoflow.mixture_entropy(c, beta, rng=0)
                b = idist.mixture_entropy(c, beta, rng=0, client=client)
                rows.append({"case": "mixture_entropy (65536 queries), 2 workers x 1 thread", "workers": 2,
                             "threads_per_worker": 1, "seconds": seconds, "local_seconds": local_entropy,
                             "max_abs_difference": abs(a.value - b.value)})

    half = n // 2

    def persisted(q_rows, c_rows):
        def build(client):
            qd = client.persist(da.from_array(q, chunks=(q_rows, d)))
            cd = client.persist(da.from_array(c, chunks=(c_rows, d)))
            return idist.log_density(qd, cd, beta)
        return build

    def from_client(client):
        return idist.log_density(da.from_array(q, chunks=(half, d)), c, beta)

    run_on(2, max(1, cores // 2), [
        ("2 workers: 2 query blocks, data on the workers", persisted(half, n)),
        ("2 workers: 2 query blocks, data sent from the client", from_client),
        ("2 workers: 2 query x 2 centre blocks + LSE tree, data on the workers", persisted(half, half)),
    ])
    run_on(1, cores, [("1 worker: 1 block, data on the worker", persisted(n, n))])
    for row in rows:  # the entropy row against the local entropy, the others against the local call
        row["ratio_to_local"] = row["seconds"] / row.get("local_seconds", local)
    return {"n": n, "d": d, "beta": beta, "dtype": "float32", "cores": cores, "local_seconds": local,
            "local_entropy_seconds": local_entropy, "rows": rows}


#: The sweep's cases: name -> (workers, threads per worker), None for the local command.
SWEEP_LAYOUTS = {"1 worker x 1 thread": (1, 1), "2 workers x 1 thread": (2, 1), "1 worker x 2 threads": (1, 2),
                 "local (no Dask)": None}
SWEEP_CASES = tuple(SWEEP_LAYOUTS)
BASELINE = "1 worker x 1 thread"
#: sweep.ratios in the JSON: name -> (case, relative to case).
RATIOS = {"2 workers x 1 thread / 1 worker x 1 thread (scale-out; target <= 0.6)": ("2 workers x 1 thread", BASELINE),
          "1 worker x 2 threads / 1 worker x 1 thread": ("1 worker x 2 threads", BASELINE),
          "2 workers x 1 thread / 1 worker x 2 threads (same cores)": ("2 workers x 1 thread", "1 worker x 2 threads"),
          "local (no Dask) / 1 worker x 2 threads (same cores)": ("local (no Dask)", "1 worker x 2 threads")}


def _sweep_command(case: str, seeds: int, sweep_args: str, out: str, stack) -> tuple[list[str], str]:
    """The command of a case and how it reaches its cluster (``--workers K``, ``--scheduler``, or none)."""
    command = [sys.executable, "-m", "infoflow", "reproduce", "szt", "--seeds", str(seeds), "--out", out,
               *shlex.split(sweep_args)]
    layout = SWEEP_LAYOUTS[case]
    if layout is None:
        return command, ""
    workers, threads = layout
    if max(1, (os.cpu_count() or 1) // workers) == threads:  # what --workers K starts here
        return command + ["--workers", str(workers)], f"--workers {workers}"
    from infoflow import distributed as idist

    # The cluster --workers K would start (infoflow.distributed.local_cluster), with this layout.
    client = stack.enter_context(idist.local_cluster(workers, threads_per_worker=threads))
    return command + ["--scheduler", client.scheduler.address], \
        f"--scheduler (local_cluster({workers}, threads_per_worker={threads}))"


def sweep_part(seeds: int, sweep_args: str, cases) -> dict:
    import contextlib

    rows = []
    with tempfile.TemporaryDirectory(prefix="infoflow-bench-sweep-") as tmp:
        for index, case in enumerate(cases):
            out = os.path.join(tmp, f"case{index}")
            # The time from before a --scheduler case's cluster starts until after it is
            # closed, as --workers K starts and closes its own within the command.
            started = time.perf_counter()
            with contextlib.ExitStack() as stack:
                command, how = _sweep_command(case, seeds, sweep_args, out, stack)
                print("$", " ".join(shlex.quote(a) for a in command[1:]), flush=True)
                done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                      env=COMMAND_ENV)
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"{case}: exit {done.returncode}\n{done.stderr[-2000:]}")
            with open(os.path.join(out, "szt_seeds.json")) as handle:
                aggregate = json.load(handle)["aggregate"]
            runs = []
            for i in range(seeds):
                with open(os.path.join(out, f"seed_{i}", "szt_config.json")) as handle:
                    runs.append(json.load(handle))
            last = max(row["epoch"] for row in aggregate)
            layout = SWEEP_LAYOUTS[case]
            rows.append({"case": case, "how": how, "workers": layout and layout[0],
                         "threads_per_worker": layout and layout[1], "seconds": seconds,
                         "run_seconds": [r["seconds"] for r in runs],
                         "estimator_threads": [r["estimator_threads"] for r in runs],
                         "last_ixt_mean": [row["ixt_mean"] for row in aggregate if row["epoch"] == last]})
            print(f"  {seconds:.1f} s", flush=True)
    return {"seeds": seeds, "sweep_args": sweep_args, "rows": rows,
            "command": f"infoflow reproduce szt --seeds {seeds} {sweep_args} --workers K"}


def _finish_sweep(sweep: dict) -> dict:
    """Ratios to the baseline (1 worker x 1 thread) and between cases, and whether every
    case gave the same values."""
    seconds = {row["case"]: row["seconds"] for row in sweep["rows"]}
    for row in sweep["rows"]:
        row["ratio_to_1x1"] = seconds[row["case"]] / seconds[BASELINE] if BASELINE in seconds else None
    sweep["ratios"] = {name: seconds[case] / seconds[other] for name, (case, other) in RATIOS.items()
                       if case in seconds and other in seconds}
    scale_out = seconds["2 workers x 1 thread"] / seconds[BASELINE] \
        if "2 workers x 1 thread" in seconds and BASELINE in seconds else None
    sweep["scale_out_target_met"] = None if scale_out is None else scale_out <= 0.6
    sweep["same_values"] = len({tuple(r["last_ixt_mean"]) for r in sweep["rows"]}) == 1
    return sweep


def markdown(result: dict) -> str:
    lines = []
    kernel = result.get("kernel")
    if kernel:
        lines += [f"log_density, m = n = {kernel['n']}, d = {kernel['d']}, float32, {kernel['cores']} cores "
                  f"(local call {kernel['local_seconds'] * 1e3:.1f} ms):", "",
                  "| case | seconds | x local | max abs difference |", "|---|---:|---:|---:|"]
        for row in kernel["rows"]:
            diff = row.get("max_abs_difference")
            lines.append(f"| {row['case']} | {row['seconds']:.3f} | {row['ratio_to_local']:.1f} | "
                         f"{'' if diff is None else f'{diff:.1e}'} |")
        entropy = [r for r in kernel["rows"] if "local_seconds" in r]
        for row in entropy:
            lines += ["", f"mixture_entropy of the {kernel['n']} centres: local {row['local_seconds']:.2f} s, "
                          f"2 workers {row['seconds']:.2f} s (|difference| {row['max_abs_difference']:.1e} nats)."]
    sweep = result.get("sweep")
    if sweep:
        lines += ["", f"`{sweep['command']}` ({sweep['seeds']} seeds), wall clock:", "",
                  "| case | command | seconds | x 1 worker x 1 thread | seconds per run |", "|---|---|---:|---:|---|"]
        for row in sweep["rows"]:
            per_run = ", ".join(f"{s:.0f}" for s in row["run_seconds"])
            ratio = row.get("ratio_to_1x1")
            how = f"`{row['how']}`" if row.get("how") else "(none)"
            lines.append(f"| {row['case']} | {how} | {row['seconds']:.0f} | "
                         f"{'' if ratio is None else f'{ratio:.2f}'} | {per_run} |")
        lines += [""] + [f"- {name}: {value:.2f}" for name, value in sweep["ratios"].items()]
        lines += ["", f"Same aggregate values in every case: {sweep['same_values']}."]
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("kernel", "sweep", "both"), default="both")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--sweep-args", default="--epochs 500 --points 4",
                        help="options of infoflow reproduce szt for every run (default: %(default)s)")
    parser.add_argument("--cases", nargs="+", choices=SWEEP_CASES, default=list(SWEEP_CASES),
                        help="sweep cases to run (default: all); rows of other cases already in the JSON are kept")
    parser.add_argument("--quick", action="store_true", help="smoke run: small n, 2 seeds of a tiny schedule")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    import infoflow

    info = infoflow.build_info()
    result = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "cores": os.cpu_count(), "cpu": _cpu_model(), "simd_runtime": info["simd_runtime"],
                          "infoflow": info["version"]}}
    if args.quick:
        args.seeds, args.sweep_args = 2, "--epochs 20 --points 3 --repeats 2 --mc-samples 2"
    if args.part in ("kernel", "both"):
        result["kernel"] = kernel_part(2000 if args.quick else 20000, 10)
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "distributed.json")
    previous = {}
    if os.path.exists(path):
        with open(path) as handle:
            previous = json.load(handle)  # keep the figures this run does not remeasure
    if args.part in ("sweep", "both"):
        sweep = sweep_part(args.seeds, args.sweep_args, args.cases)
        old = previous.get("sweep")
        if old and (old["seeds"], old["sweep_args"]) == (args.seeds, args.sweep_args):
            fresh = {row["case"] for row in sweep["rows"]}
            kept = [row for row in old["rows"] if row["case"] in SWEEP_CASES and row["case"] not in fresh]
            sweep["rows"] = sorted(kept + sweep["rows"], key=lambda row: SWEEP_CASES.index(row["case"]))
        result["sweep"] = _finish_sweep(sweep)
    merged = {**previous, **result}
    with open(path, "w") as handle:
        json.dump(merged, handle, indent=2)
    print(markdown(merged))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
