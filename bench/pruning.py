"""The paper's scale: the exact pruned kernel on a trained SZT network, R up to 1000.

Usage (from the repository root; a script, not a pytest benchmark)::

    python bench/pruning.py                     # ~10 min; writes bench/results/pruning.{json,png}
    python bench/pruning.py --quick --out-dir /tmp/pruning   # smoke run, ~1 min

The data are the paper's: the noisy 12-10-7-5-4-3-2 tanh network (beta = 0.005) trained
for 749 epochs by the ``szt`` experiment's training loop (``bench/trained_szt.py``), all
4096 inputs, R noisy forward passes per input.  Two measurements:

* ``information_flow`` end to end (sampling included: I(X;T) and I(Y;T) of the five
  noisy layers) at R = 8, 32, 128, 1000, with the kernel's pruning (the default) and
  with ``INFOFLOW_PRUNE=off`` (the brute path) where that fits the time budget.  Both
  runs use one seed, so they see the same samples and the same Monte Carlo queries:
  their estimates must agree to the float32 rounding of the kernel, which is asserted
  (at most 1e-4 nats and at most a tenth of the Monte Carlo standard error).
* the time of h(T) of each noisy layer's samples (``mixture_entropy``, 65536 queries;
  layer 1 is deterministic, its R samples are copies) against the number of centres
  n = 4096 R, and the fitted log-log slope: a brute sum over the queries grows as n,
  and the (m R)^2 of K-per-centre estimates is gone.

Times are the best of ``repeats`` calls (interference only ever adds time).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from scaling import fit_slope, script_main  # noqa: E402

FULL = dict(repeats=[8, 32, 128, 1000], brute_max_repeats=128, flow_repeats=2,
            n_repeats=[8, 32, 128, 512, 1000], entropy_repeats=2, epochs=749)
QUICK = dict(repeats=[4, 16], brute_max_repeats=16, flow_repeats=1,
             n_repeats=[4, 16, 64], entropy_repeats=1, epochs=50)

# Agreement of the pruned and brute estimates on the same samples and queries (nats):
# the pruning changes each log-density by less than 2^-26 relative to its sum, the
# float32 kernel's own rounding is ~1e-7; 1e-4 leaves room for both, summed over 65536 terms.
AGREEMENT_NATS = 1e-4


def _best(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def _flow(model, x, y, repeats, prune, seed=0):
    import infoflow

    previous = os.environ.get("INFOFLOW_PRUNE")
    os.environ["INFOFLOW_PRUNE"] = prune
    try:
        return infoflow.information_flow(model, x, y, repeats=repeats, rng=seed)
    finally:
        if previous is None:
            del os.environ["INFOFLOW_PRUNE"]
        else:
            os.environ["INFOFLOW_PRUNE"] = previous


def run(cfg, log=print):
    """Time everything; returns the content of ``pruning.json``."""
    from trained_szt import BETA, layer_samples, trained_szt

    import infoflow

    model, x, y = trained_szt(cfg["epochs"])
    flows = []
    for r in cfg["repeats"]:
        row = {"repeats": r, "n_centres": int(x.shape[0]) * r}
        row["pruned_s"], pruned = _best(lambda r=r: _flow(model, x, y, r, "auto"), cfg["flow_repeats"])
        row["layers"] = [layer.to_dict() for layer in pruned]
        line = f"R={r}: pruned {row['pruned_s']:.1f} s"
        if r <= cfg["brute_max_repeats"]:
            row["brute_s"], brute = _best(lambda r=r: _flow(model, x, y, r, "off"), 1)
            row["speedup"] = row["brute_s"] / row["pruned_s"]
            gaps = []
            for a, b in zip(pruned, brute):
                for key in ("ixt", "iyt"):
                    gap = abs(getattr(a, key) - getattr(b, key))
                    allowed = min(AGREEMENT_NATS, 0.1 * getattr(a, f"{key}_stderr"))
                    assert gap <= allowed, f"R={r} {a.name} {key}: pruned and brute differ by {gap:.2e} nats"
                    gaps.append(gap)
            row["max_difference_nats"] = max(gaps)
            line += f", brute {row['brute_s']:.1f} s ({row['speedup']:.0f}x), max |difference| {max(gaps):.1e} nats"
        log(line)
        flows.append(row)

    entropy = []
    samples = layer_samples(model, x, max(cfg["n_repeats"]), rng=1)
    for name, s in samples.items():
        if np.max(np.abs(s[:, 1] - s[:, 0])) <= 1e-3 * BETA:
            continue  # a deterministic layer: its R samples are copies (information_flow keeps one)
        points = []
        for r in cfg["n_repeats"]:
            centers = np.ascontiguousarray(s[:, :r].reshape(-1, s.shape[2]))
            seconds, est = _best(lambda c=centers: infoflow.mixture_entropy(c, BETA, rng=2), cfg["entropy_repeats"])
            points.append({"n": len(centers), "seconds": seconds, "value": est.value, "stderr": est.stderr})
        slope, _ = fit_slope([p["n"] for p in points], [p["seconds"] for p in points])
        entropy.append({"layer": name, "width": int(s.shape[2]), "points": points, "slope": slope})
        log(f"{name} (d={s.shape[2]}): h(T) " + ", ".join(f"n={p['n']} {p['seconds']:.2f} s" for p in points)
            + f"; log-log slope {slope:.2f}")
    info = infoflow.build_info()
    return {"config": cfg, "beta": BETA, "simd": info.get("simd_runtime"), "max_threads": info.get("max_threads"),
            "information_flow": flows, "entropy_vs_n": entropy}


def _fmt(seconds):
    return "—" if seconds is None else (f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s")


def markdown(res):
    """Markdown tables of a ``pruning.json`` result."""
    out = ["| R | centres per layer | pruned (default) | brute force | speed-up | max difference (nats) |",
           "|---|---|---|---|---|---|"]
    for r in res["information_flow"]:
        speedup = f"{r['speedup']:.0f}×" if "speedup" in r else "—"
        diff = f"{r['max_difference_nats']:.0e}" if "max_difference_nats" in r else "—"
        out.append(f"| {r['repeats']} | {r['n_centres']:,} | {_fmt(r['pruned_s'])} | {_fmt(r.get('brute_s'))} "
                   f"| {speedup} | {diff} |")
    out += ["", "| layer | d | " + " | ".join(f"n = {p['n']:,}" for p in res["entropy_vs_n"][0]["points"])
            + " | log-log slope |",
            "|---|---|" + "---|" * len(res["entropy_vs_n"][0]["points"]) + "---|"]
    for e in res["entropy_vs_n"]:
        out.append(f"| {e['layer']} | {e['width']} | " + " | ".join(_fmt(p["seconds"]) for p in e["points"])
                   + f" | {e['slope']:.2f} |")
    return "\n".join(out)


def plot(res, path):
    """Time of h(T) against n, log-log, one line per layer, with a slope-1 guide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    for e in res["entropy_vs_n"]:
        ns = [p["n"] for p in e["points"]]
        ax.loglog(ns, [p["seconds"] for p in e["points"]], "o-", label=f"{e['layer']} (d={e['width']}), "
                  f"slope {e['slope']:.2f}")
    ns = [p["n"] for p in res["entropy_vs_n"][0]["points"]]
    first = min(p["seconds"] for e in res["entropy_vs_n"] for p in e["points"][:1])
    ax.loglog(ns, [first * n / ns[0] for n in ns], "k:", label="slope 1")
    ax.loglog(ns, [first * (n / ns[0]) ** 2 for n in ns], "k--", alpha=0.4,
              label="slope 2 (K draws per centre: all pairs)")
    ax.set_xlabel("centres n = 4096 R")
    ax.set_ylabel("seconds for h(T), 65536 queries")
    ax.set_title(f"h(T) of trained SZT layers, beta = {res['beta']:g}, {res['max_threads']} threads")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    """Command-line entry point."""
    script_main(argv, name="pruning", doc=__doc__, full=FULL, quick=QUICK, run_fn=run,
                markdown_fn=markdown, plot_fn=plot)


if __name__ == "__main__":
    main()
