"""Forward + backward of the Gaussian log-sum-exp: infoflow's compiled backward against
dense torch autograd (cdist + logsumexp) and pykeops autograd, time and peak memory.

Usage: python bench/autograd.py [--sizes 1000 10000 20000] [--dims 10 100] [--repeats 3]
                                [--alternating CALLS]
                                [--out bench/results/autograd.json]

Each (tool, m = n, d) case runs in a fresh subprocess (so that one case's heap cannot hide
another's).  The loss is sum_i out_i with out = log sum_j exp(-|q_i - c_j|^2 / 2 beta^2),
float32, uniform data in [-1, 1]^d, beta = 0.1 sqrt(d) (the headline table's setting);
gradients are taken with respect to both q and c.  Reported: the forward alone and the
forward + backward (median of ``--repeats`` after one warm-up), and the peak resident
memory beyond the inputs over one forward + backward (VmHWM, reset before the call).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOLS = ("infoflow", "torch", "pykeops")


def _calls(tool: str, n: int, d: int, num_threads: int | None = None):
    """One tool's forward alone (no graph) and forward + backward on the benchmark's data;
    ``num_threads`` for infoflow (default: all cores)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    q0 = torch.from_numpy(rng.uniform(-1, 1, (n, d)).astype(np.float32))
    c0 = torch.from_numpy(rng.uniform(-1, 1, (n, d)).astype(np.float32))
    beta = 0.1 * d**0.5
    if tool == "infoflow":
        import infoflow

        def forward(q, c):
            return infoflow.gaussian_lse(q, c, beta, num_threads=num_threads)
    elif tool == "torch":
        def forward(q, c):
            return torch.logsumexp(-torch.cdist(q, c).square() / (2 * beta * beta), dim=1)
    else:
        from pykeops.torch import LazyTensor

        def forward(q, c):
            d2 = ((LazyTensor(q[:, None, :]) - LazyTensor(c[None, :, :])) ** 2).sum(-1)
            return (-d2 / (2 * beta * beta)).logsumexp(dim=1)[:, 0]

    def forward_only():
        with torch.no_grad():
            forward(q0, c0)

    def forward_backward():
        q, c = q0.clone().requires_grad_(), c0.clone().requires_grad_()
        forward(q, c).sum().backward()
        return q.grad, c.grad

    return forward_only, forward_backward, beta


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _case(tool: str, n: int, d: int, repeats: int) -> dict:
    """Run in the subprocess: time and measure one tool on one size."""
    import torch

    sys.path.insert(0, str(HERE))
    from peak_memory import _status_mb, reset_peak

    forward_only, forward_backward, beta = _calls(tool, n, d)

    def timed(fn):
        fn()  # warm-up (pykeops compiles its formula here)
        return statistics.median(_seconds(fn) for _ in range(repeats))

    result = {"tool": tool, "m": n, "n": n, "d": d, "beta": beta, "threads": torch.get_num_threads()}
    result["forward_s"] = timed(forward_only)
    result["forward_backward_s"] = timed(forward_backward)
    reset_peak()
    before = _status_mb("VmRSS")
    grads = forward_backward()
    result["peak_beyond_inputs_mb"] = _status_mb("VmHWM") - before
    result["gradient_mb"] = sum(g.numel() * g.element_size() for g in grads) / 2**20
    return result


def alternating(n: int, d: int, threads: int, calls: int) -> dict:
    """infoflow's forward and forward + backward called alternately ``calls`` times each:
    the fastest of each (the reading least disturbed by other work on the machine, which
    a ratio of medians is not when the host's load changes within a run) and their ratio."""
    forward_only, forward_backward, _ = _calls("infoflow", n, d, threads)
    forward_only()  # warm-up
    forward_backward()
    times = [(_seconds(forward_only), _seconds(forward_backward)) for _ in range(calls)]
    fastest_forward, fastest_both = min(t for t, _ in times), min(t for _, t in times)
    return {"m": n, "n": n, "d": d, "threads": threads, "calls": calls, "forward_s": fastest_forward,
            "forward_backward_s": fastest_both, "ratio": fastest_both / fastest_forward}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 20000])
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "autograd.json"))
    parser.add_argument("--alternating", type=int, metavar="CALLS",
                        help="instead of the table: infoflow's forward and forward + backward called alternately "
                             "CALLS times each at every size and dimension, on 2 threads and on 1; prints the "
                             "fastest of each and their ratio (nothing is written)")
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)  # tool n d: run one case here
    args = parser.parse_args()
    if args.alternating:
        for d in args.dims:
            for n in args.sizes:
                for threads in (2, 1):
                    r = alternating(n, d, threads, args.alternating)
                    print(f"m=n={n:6d} d={d:4d} threads={threads}  fastest of {r['calls']}: forward "
                          f"{r['forward_s']:.3f} s  forward+backward {r['forward_backward_s']:.3f} s  "
                          f"ratio {r['ratio']:.2f}", flush=True)
        return
    if args.case:
        tool, n, d = args.case
        print(json.dumps(_case(tool, int(n), int(d), args.repeats)))
        return
    results = []
    for d in args.dims:
        for n in args.sizes:
            for tool in args.tools:
                run = subprocess.run([sys.executable, __file__, "--case", tool, str(n), str(d),
                                      "--repeats", str(args.repeats)], capture_output=True, text=True,
                                     env=dict(os.environ))
                records = [line for line in run.stdout.splitlines() if line.startswith("{")]
                if run.returncode != 0 or not records:  # (pykeops prints its own lines too)
                    print(f"{tool} n={n} d={d}: failed: {run.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                    continue
                results.append(json.loads(records[-1]))
                r = results[-1]
                print(f"{tool:9s} m=n={n:6d} d={d:4d}  forward {r['forward_s']:.4f} s  forward+backward "
                      f"{r['forward_backward_s']:.4f} s  peak beyond inputs {r['peak_beyond_inputs_mb']:.1f} MB",
                      flush=True)
                # After every case, so that an interrupted run keeps what it measured.
                Path(args.out).write_text(json.dumps({"machine": os.uname().nodename, "cpus": os.cpu_count(),
                                                      "results": results}, indent=2) + "\n")
    print(render(results))


def render(results: list[dict]) -> str:
    """The README table: per (d, m = n), infoflow's times and memory and the peers' ratios."""
    by = {(r["tool"], r["d"], r["n"]): r for r in results}
    lines = ["| d | m = n | infoflow fwd (s) | infoflow fwd+bwd (s) | (fwd+bwd)/fwd | peak extra (MB) "
             "| torch fwd+bwd (s) | x | torch peak (MB) | pykeops fwd+bwd (s) | x |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d, n in sorted({(r["d"], r["n"]) for r in results}):
        own = by.get(("infoflow", d, n))
        if own is None:
            continue
        cells = [str(d), str(n), f"{own['forward_s']:.3g}", f"{own['forward_backward_s']:.3g}",
                 f"{own['forward_backward_s'] / own['forward_s']:.2f}", f"{own['peak_beyond_inputs_mb']:.1f}"]
        for tool in ("torch", "pykeops"):
            peer = by.get((tool, d, n))
            if peer is None:
                cells += ["–", "–"] + (["–"] if tool == "torch" else [])
                continue
            ratio = peer["forward_backward_s"] / own["forward_backward_s"]
            cells += [f"{peer['forward_backward_s']:.3g}", f"{ratio:.1f}"]
            if tool == "torch":
                cells.append(f"{peer['peak_beyond_inputs_mb']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
