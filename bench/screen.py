"""The GEMM-form screen at work: Monte Carlo queries, small beta, large d.

Usage (from the repository root; a script, not a pytest benchmark)::

    python bench/screen.py                     # ~2 min; writes bench/results/screen.json
    python bench/screen.py --quick --out-dir /tmp/screen    # smoke run, seconds

The data are what ``mixture_entropy`` feeds the kernel: centres s_j = tanh(N(0, I_d))
(a saturating hidden layer) and one query q_j = s_j + beta z_j around each of them,
float32, m = n.  At small beta every centre but a query's own is negligible; the CPU
kernel proves that with the expanded form ||q||^2 + ||c||^2 - 2 q.c and a rigorous
bound on its rounding error, then skips the block (``INFOFLOW_GEMM_SCREEN``, see
``csrc/cpu/lse_kernel.hpp``).  For each (d, beta) this reports:

* infoflow with the screen off and on (``auto``, the default), their ratio, and the
  fraction of register-tile x block pairs the screen skipped;
* chunked torch (``cdist`` then ``logsumexp``, the idiomatic code), timed in the same
  run, with its worst error against a float64 reference on the first rows: ``cdist``
  uses the same expanded form for its values, which is what the screen must not do;
* infoflow's worst error on the same rows, the float32 contract being ~1e-5.

Errors are |a - e| / max(1, |e|) in the log-sum-exp (the tests' measure).  Times are
the best of up to five calls.
"""

from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(os.path.dirname(HERE), "tests"))  # for `reference`, the tests' float64 oracle

import peers  # noqa: E402
from reference import lse_reference, relative_errors  # noqa: E402
from scaling import best_time, script_main  # noqa: E402

FULL = dict(cases=[(10, 20000), (100, 20000), (784, 5000)], betas=[1e-3, 1e-2, 0.1, 1.0], check_rows=200)
QUICK = dict(cases=[(10, 2000), (100, 2000)], betas=[1e-3, 1.0], check_rows=50)


def monte_carlo_problem(n, d, beta, seed=0):
    """float32 centres tanh(N(0, I)) and one query drawn around each."""
    rng = np.random.default_rng([seed, n, d])
    c = np.tanh(rng.normal(size=(n, d))).astype(np.float32)
    q = (c + beta * rng.normal(size=(n, d))).astype(np.float32)
    return q, c


def run(cfg, log=print):
    """Time every case; returns the content of ``screen.json``."""
    import infoflow
    from infoflow import _backend, _core

    rows = []
    for d, n in cfg["cases"]:
        for beta in cfg["betas"]:
            q, c = monte_carlo_problem(n, d, beta)
            check = slice(0, cfg["check_rows"])
            reference = lse_reference(q[check], c, beta)
            row = {"d": d, "n": n, "beta": beta}
            for screen in ("off", "auto"):
                def call(screen=screen, q=q, c=c, beta=beta):
                    return _core.log_density(q[None], c[None], beta, 0, _backend.simd_level(), screen, None, True,
                                             "off")  # the screen belongs to the brute path

                out, stats = call()
                row[f"infoflow_{screen}_s"] = best_time(call)
                row[f"infoflow_{screen}_error"] = float(relative_errors(out[0, check], reference).max())
                if screen == "auto":
                    row["skipped_fraction"] = stats["skipped"] / max(1, stats["tile_blocks"])
            peers.torch_lse(q[:8], c[:8], beta)  # torch's first call sets up its thread pool: not timed
            row["torch_s"] = best_time(peers.torch_lse, q, c, beta, max_repeats=3)
            row["torch_error"] = float(relative_errors(peers.torch_lse(q[check], c, beta), reference).max())
            row["screen_speedup"] = row["infoflow_off_s"] / row["infoflow_auto_s"]
            log(f"d={d} n={n} beta={beta:g}: off {row['infoflow_off_s']:.4f} s, auto {row['infoflow_auto_s']:.4f} s "
                f"({row['screen_speedup']:.2f}x, {row['skipped_fraction']:.0%} skipped), "
                f"torch {row['torch_s']:.3f} s (error {row['torch_error']:.1e})")
            rows.append(row)
    info = infoflow.build_info()
    return {"config": cfg, "simd": info.get("simd_runtime"), "max_threads": info.get("max_threads"), "rows": rows}


def fmt_time(seconds):
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def markdown(res):
    """A Markdown table of a ``screen.json`` result."""
    out = ["| d | n | β | screen off | screen on (default) | speed-up | tiles skipped | infoflow error "
           "| torch (chunked) | torch / infoflow | torch error |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        out.append(f"| {r['d']} | {r['n']} | {r['beta']:g} | {fmt_time(r['infoflow_off_s'])} "
                   f"| {fmt_time(r['infoflow_auto_s'])} | {r['screen_speedup']:.2f}× | {r['skipped_fraction']:.0%} "
                   f"| {r['infoflow_auto_error']:.0e} | {fmt_time(r['torch_s'])} "
                   f"| {r['torch_s'] / r['infoflow_auto_s']:.0f}× | {r['torch_error']:.0e} |")
    return "\n".join(out)


def main(argv=None):
    """Command-line entry point."""
    script_main(argv, name="screen", doc=__doc__, full=FULL, quick=QUICK, run_fn=run, markdown_fn=markdown)


if __name__ == "__main__":
    main()
