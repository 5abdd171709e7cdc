"""Scaling facts of infoflow.gaussian_lse: n, d, threads, dtype, memory, machine limit.

Usage (from the repository root; a script, not a pytest benchmark)::

    python bench/scaling.py                      # ~3-4 min; writes bench/results/scaling.{json,png}
    python bench/scaling.py --quick --out-dir /tmp/scaling   # smoke run, seconds

Measures, with m = n queries and centres uniform in [-1, 1]^d and beta = 0.1 sqrt(d)
(the data of the other benchmarks):

* time against n (d = 10, float32) and the fitted log-log slope, expected ~2 since
  the work is m n d; fitted over all points and over the large-n points
  (n >= n_max / 10), where fixed per-call costs no longer matter;
* time against d at n = 20000, float32 and float64, and their ratio;
* threads: ``num_threads`` = 1 .. all usable cores at n = 20000, d = 10 and 100:
  speedup t1 / tp and parallel efficiency t1 / (p tp);
* peak memory beyond the inputs, each case in a fresh subprocess running
  ``bench/peak_memory.py`` (malloc_trim, reset of VmHWM through
  /proc/self/clear_refs, VmHWM after the call);
* the ratio to the machine's limit (the project's target for m = n = 20000,
  float32: 0.1 s at d = 10, bound by exp; 0.5 s at d = 100, bound by a ~170 GFLOP/s
  GEMM on two cores), with this machine's float32 GEMM rate measured alongside.

Every time is the best of a few repeats (at least one, up to five, about a second
in total per point): interference from other processes only ever adds time, so the
minimum is the closest reading of what the code costs.  Prints Markdown tables;
``render.py --scaling`` puts the same tables into the README.
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
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

#: The machine's limit for m = n = 20000 float32, seconds, by d: 0.1 s at d = 10 (the m n
#: exponentials), 0.5 s at d = 100 (2 m n d flops of a float32 GEMM at ~170 GFLOP/s).
LIMIT_N = 20000
LIMIT_S = {10: 0.1, 100: 0.5}
ASSUMED_GEMM_GFLOPS = 170.0

FULL = dict(
    n_sweep=[1000, 2000, 5000, 10000, 20000, 50000, 100000],
    d_sweep=[1, 2, 5, 10, 20, 50, 100, 200, 400, 784],
    n_fixed=20000,
    thread_dims=[10, 100],
    memory=[(100000, 10, "float32"), (100000, 100, "float32"), (100000, 10, "float64"),
            (20000, 784, "float32")],
)
QUICK = dict(
    n_sweep=[500, 1000, 2000, 4000],
    d_sweep=[1, 10, 100],
    n_fixed=2000,
    thread_dims=[10, 100],
    memory=[(10000, 10, "float32")],
)


def problem(n, d, dtype, seed=0):
    """Queries, centres (uniform in [-1, 1]^d) and beta = 0.1 sqrt(d)."""
    rng = np.random.default_rng([seed, n, d])
    q = rng.uniform(-1.0, 1.0, (n, d)).astype(dtype)
    c = rng.uniform(-1.0, 1.0, (n, d)).astype(dtype)
    return q, c, 0.1 * math.sqrt(d)


def best_time(fn, *args, budget_s=1.0, max_repeats=5, **kwargs):
    """Best of up to ``max_repeats`` calls, as many as fit in about ``budget_s``.

    Returns
    -------
    float
        Seconds of the fastest call.
    """
    times = []
    while True:
        start = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
        if len(times) >= max_repeats or sum(times) + min(times) > budget_s:
            return min(times)


def time_lse(n, d, dtype="float32", threads=None):
    """Best time of ``infoflow.gaussian_lse`` on an m = n problem."""
    import infoflow

    q, c, beta = problem(n, d, dtype)
    infoflow.gaussian_lse(q[:8], c[:8], beta, num_threads=threads)  # warm-up
    return best_time(infoflow.gaussian_lse, q, c, beta, num_threads=threads)


def fit_slope(ns, ts):
    """Least-squares slope and intercept of log t against log n."""
    slope, intercept = np.polyfit(np.log(ns), np.log(ts), 1)
    return float(slope), float(intercept)


def gemm_gflops(n, d=100):
    """This machine's float32 GEMM rate on the distance product of an m = n problem.

    The ``q @ c.T`` of the expanded distance form, chunked over 2000 rows so no
    m x n matrix exists; 2 m n d flops.  This is what the d = 100 limit (LIMIT_S)
    assumes (~170 GFLOP/s on two cores).
    """
    q, c, _ = problem(n, d, "float32")
    ct = np.ascontiguousarray(c.T)
    out = np.empty((min(2000, n), n), dtype=np.float32)

    def product():
        for s in range(0, n, out.shape[0]):
            block = q[s : s + out.shape[0]]
            np.matmul(block, ct, out=out[: block.shape[0]])

    product()
    return 2.0 * n * n * d / best_time(product) / 1e9


def peak_memory(m, d, dtype):
    """Run ``peak_memory.py --json`` in a fresh interpreter and return its result."""
    cmd = [sys.executable, os.path.join(HERE, "peak_memory.py"), "--m", str(m), "--n", str(m),
           "--d", str(d), "--dtype", dtype, "--json"]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(cfg, log=print):
    """Measure everything in ``cfg`` (:data:`FULL` or :data:`QUICK`).

    Returns
    -------
    dict
        The content of ``scaling.json``.
    """
    import infoflow

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = infoflow.build_info()
    res = {"config": cfg, "cores": cores, "simd": info.get("simd_runtime"),
           "max_threads": info.get("max_threads"), "platform": platform.platform()}

    log("time against n (d = 10, float32) ...")
    ns = cfg["n_sweep"]
    ts = [time_lse(n, 10) for n in ns]
    big = [i for i, n in enumerate(ns) if n >= max(ns) / 10]
    res["n_sweep"] = {"d": 10, "dtype": "float32", "n": ns, "seconds": ts,
                      "slope_all": fit_slope(ns, ts)[0],
                      "slope_large": fit_slope([ns[i] for i in big], [ts[i] for i in big])[0],
                      "large_from": ns[big[0]]}

    log(f"time against d (n = {cfg['n_fixed']}, float32 and float64) ...")
    n0 = cfg["n_fixed"]
    ds = cfg["d_sweep"]
    res["d_sweep"] = {"n": n0, "d": ds,
                      "float32": [time_lse(n0, d, "float32") for d in ds],
                      "float64": [time_lse(n0, d, "float64") for d in ds]}

    log("threads ...")
    counts = list(range(1, cores + 1))
    res["threads"] = {"n": n0, "counts": counts, "by_d": {
        str(d): [time_lse(n0, d, "float32", threads=p) for p in counts]
        for d in cfg["thread_dims"]}}

    log("float32 GEMM rate ...")
    res["gemm_gflops"] = gemm_gflops(n0)

    log("peak memory (one subprocess per case) ...")
    res["memory"] = [peak_memory(m, d, dt) for m, d, dt in cfg["memory"]]

    # Ratio to the limit, at the limit's own size when it was measured (full run),
    # else scaled by (20000 / n)^2 and marked so.
    limits = {}
    for d, limit in LIMIT_S.items():
        if d in ds:
            t = res["d_sweep"]["float32"][ds.index(d)] * (LIMIT_N / n0) ** 2
            limits[str(d)] = {"seconds": t, "limit_s": limit, "ratio": t / limit,
                              "scaled_from_n": None if n0 == LIMIT_N else n0}
    res["limit"] = limits
    return res


def markdown(res):
    """Markdown tables of a ``scaling.json`` result.

    Parameters
    ----------
    res : dict

    Returns
    -------
    str
    """
    out = []
    ns = res["n_sweep"]
    out += [f"Time against n (m = n, d = {ns['d']}, {ns['dtype']}; best of up to 5), "
            f"{res['cores']} cores, {res['simd']} kernel:", "",
            "| n | seconds | ns per (query, centre) pair |", "|---:|---:|---:|"]
    for n, t in zip(ns["n"], ns["seconds"]):
        out.append(f"| {n} | {t:.3g} | {t / n / n * 1e9:.3g} |")
    out += ["", f"Log-log slope: **{ns['slope_large']:.2f}** for n >= {ns['large_from']} "
            f"({ns['slope_all']:.2f} over all n; 2 = the m n work, lower = fixed per-call "
            "costs at small n).", ""]

    ds = res["d_sweep"]
    out += [f"Time against d (m = n = {ds['n']}):", "",
            "| d | float32 (s) | float64 (s) | float64 / float32 | float32 ns per pair and dim |",
            "|---:|---:|---:|---:|---:|"]
    for d, t32, t64 in zip(ds["d"], ds["float32"], ds["float64"]):
        out.append(f"| {d} | {t32:.3g} | {t64:.3g} | {t64 / t32:.2f} | "
                   f"{t32 / ds['n'] ** 2 / d * 1e9:.3g} |")
    out.append("")

    th = res["threads"]
    cols = th["counts"]
    out += [f"Threads (m = n = {th['n']}, float32): time, speedup t1/tp and efficiency "
            "t1/(p tp):", "",
            "| d | " + " | ".join(f"{p} thread{'s' * (p > 1)} (s)" for p in cols)
            + " | speedup | efficiency |",
            "|---:|" + "---:|" * (len(cols) + 2)]
    for d, ts in th["by_d"].items():
        speedup = ts[0] / ts[-1]
        out.append(f"| {d} | " + " | ".join(f"{t:.3g}" for t in ts)
                   + f" | {speedup:.2f} | {speedup / cols[-1]:.2f} |")
    out.append("")

    out += ["Peak memory beyond the inputs (fresh process per case):", "",
            "| m = n | d | dtype | inputs (MB) | n d values (MB) | peak beyond inputs (MB) | s |",
            "|---:|---:|---|---:|---:|---:|---:|"]
    for r in res["memory"]:
        out.append(f"| {r['n']} | {r['d']} | {r['dtype']} | {r['inputs_mb']:.1f} | "
                   f"{r['packed_centres_mb']:.1f} | {r['peak_beyond_inputs_mb']:.1f} | "
                   f"{r['seconds']:.2f} |")
    out.append("")

    if res["limit"]:
        out += [f"Against the machine's limit (m = n = {LIMIT_N}, float32: {LIMIT_S[10]:g} s at d = 10, "
                f"bound by the m n exponentials; {LIMIT_S[100]:g} s at d = 100, a float32 GEMM at "
                f"~{ASSUMED_GEMM_GFLOPS:.0f} GFLOP/s; float32 GEMM measured here: "
                f"{res['gemm_gflops']:.0f} GFLOP/s):", "",
                "| d | infoflow (s) | limit (s) | infoflow / limit |", "|---:|---:|---:|---:|"]
        for d, r in res["limit"].items():
            mark = "" if r["scaled_from_n"] is None else f" (from n = {r['scaled_from_n']}, x (20000/n)^2)"
            out.append(f"| {d} | {r['seconds']:.3g}{mark} | {r['limit_s']:g} | {r['ratio']:.2f} |")
        out.append("")
    return "\n".join(out)


def plot(res, path):
    """Three panels: time vs n (slope annotated), time vs d, thread speedup.

    Uses ``matplotlib.figure.Figure`` directly (no pyplot), so it runs headless.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.6), layout="constrained")
    ax_n, ax_d, ax_t = fig.subplots(1, 3)

    ns = res["n_sweep"]
    n, t = np.array(ns["n"], float), np.array(ns["seconds"])
    ax_n.loglog(n, t, "o-", color="C0", label=f"infoflow, d = {ns['d']}, {ns['dtype']}")
    big = n >= ns["large_from"]
    slope, icpt = fit_slope(n[big], t[big])
    xs = np.geomspace(n[big].min(), n.max(), 20)
    ax_n.loglog(xs, np.exp(icpt) * xs**slope, "--", color="C3",
                label=f"fit n >= {ns['large_from']}: slope {slope:.2f}")
    ax_n.loglog([LIMIT_N], [LIMIT_S[10]], "*", ms=14, color="k", label="machine limit, d = 10")
    # The limit is a rate (work m n d at the machine's peak), so it moves as n^2.
    xl = np.geomspace(n.min(), max(n.max(), LIMIT_N), 20)
    ax_n.loglog(xl, LIMIT_S[10] * (xl / LIMIT_N) ** 2, ":", color="k", alpha=0.6,
                label="limit x (n / 20000)^2")
    ax_n.set(xlabel="n = m (queries = centres)", ylabel="seconds per call",
             title="time against n")
    ax_n.annotate(f"slope {slope:.2f}", (xs[len(xs) // 2], np.exp(icpt) * xs[len(xs) // 2] ** slope),
                  textcoords="offset points", xytext=(-70, 10), color="C3", fontsize=11)

    ds = res["d_sweep"]
    d = np.array(ds["d"], float)
    ax_d.loglog(d, ds["float32"], "o-", label="float32")
    ax_d.loglog(d, ds["float64"], "s-", label="float64")
    scale = (LIMIT_N / ds["n"]) ** 2
    lim_d = [k for k in LIMIT_S if k in ds["d"]]
    if lim_d:
        ax_d.loglog(lim_d, [LIMIT_S[k] / scale for k in lim_d], "*", ms=14, color="k",
                    label="machine limit (float32)" + ("" if scale == 1 else " scaled to n"))
    ax_d.set(xlabel="d", ylabel="seconds per call", title=f"time against d, m = n = {ds['n']}")

    th = res["threads"]
    counts = th["counts"]
    width = 0.8 / max(1, len(th["by_d"]))
    for i, (dd, ts) in enumerate(th["by_d"].items()):
        speed = [ts[0] / x for x in ts]
        pos = np.arange(len(counts)) + (i - (len(th["by_d"]) - 1) / 2) * width
        bars = ax_t.bar(pos, speed, width, label=f"d = {dd}")
        ax_t.bar_label(bars, fmt="%.2f")
    ax_t.plot(np.arange(len(counts)), counts, "k--", label="ideal")
    ax_t.set_xticks(np.arange(len(counts)), [str(p) for p in counts])
    ax_t.set(xlabel="threads", ylabel="speedup t1 / tp",
             title=f"thread speedup, m = n = {th['n']}, float32")
    for ax in (ax_n, ax_d, ax_t):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=9)
    fig.savefig(path, dpi=110)


def script_main(argv, *, name, doc, full, quick, run_fn, markdown_fn, plot_fn=None):
    """The command line shared by the benchmark scripts: run, save ``NAME.json`` (with the
    exact command, and ``NAME.png`` when ``plot_fn`` is given), print the Markdown."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"),
                        help=f"where {name}.json goes (default bench/results)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    start = time.perf_counter()
    res = run_fn(quick if args.quick else full, log=lambda s: print(s, file=sys.stderr))
    res["wall_s"] = time.perf_counter() - start
    argv_text = shlex.join(sys.argv[1:] if argv is None else argv)
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items())
                   if k.startswith("INFOFLOW_") or k == "OMP_NUM_THREADS")
    res["command"] = f"{env + ' ' if env else ''}python bench/{name}.py {argv_text}".strip()
    json_path = os.path.join(args.out_dir, f"{name}.json")
    with open(json_path, "w") as f:
        json.dump(res, f, indent=2)
    if plot_fn is not None:
        plot_fn(res, os.path.join(args.out_dir, f"{name}.png"))
    print(markdown_fn(res))
    print(f"wrote {json_path} in {res['wall_s']:.0f} s", file=sys.stderr)


def main(argv=None):
    """Command-line entry point."""
    script_main(argv, name="scaling", doc=__doc__, full=FULL, quick=QUICK, run_fn=run,
                markdown_fn=markdown, plot_fn=plot)


if __name__ == "__main__":
    main()
