"""The figures of the ``binning`` and ``ib-tradeoff`` experiments, with matplotlib.

Each function draws one experiment's rows (as its ``run`` computes them) into a PNG, in
the look of :mod:`infoflow.plots`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .._output import new_figure, save_figure
from ..plots import MARKERS, epoch_axis

__all__ = ["plot_binning", "plot_ib_tradeoff"]


def plot_binning(path, vs_size, over_epochs, *, fine_bin, paper_bins, ln_m, title, limits) -> Path:
    """The ``binning`` figure: (a) binned I(X;T) against the bin size at the trained net
    (``vs_size`` rows; ``limits``: each layer's limit as the bins shrink), with the paper's
    ``paper_bins`` bins and ``fine_bin`` marked; (b)-(d) I(X;T) over the epochs per
    estimator (``over_epochs`` rows), the binned ones and the noisy twin's SP estimate."""
    from matplotlib import colormaps

    colors = colormaps["tab10"]
    fig, axes = new_figure(ncols=2, nrows=2, width=6.4, height=4.6)
    layers = list(dict.fromkeys(r["layer"] for r in vs_size + over_epochs))
    style = {name: (colors(i % 10), MARKERS[i % len(MARKERS)]) for i, name in enumerate(layers)}

    ax = axes[0, 0]
    epoch = vs_size[0]["epoch"] if vs_size else 0
    for name in layers:
        rows = sorted((r for r in vs_size if r["layer"] == name), key=lambda r: r["bin_size"])
        if rows:
            color, marker = style[name]
            ax.plot([r["bin_size"] for r in rows], [r["ixt"] for r in rows], color=color, marker=marker,
                    markersize=4, label=f"{name} (d={rows[0]['width']})")
    ax.axhline(ln_m, color="0.3", linestyle="--", linewidth=1, label=f"ln 4096 = {ln_m:.3f}")
    ax.axvline(2.0 / paper_bins, color="tab:red", linestyle=":", linewidth=1, label=f"{paper_bins} bins (paper)")
    ax.axvline(fine_bin, color="tab:purple", linestyle=":", linewidth=1, label=f"bin size {fine_bin:g}")
    notes = [f"{name}: {info['distinct_rows']} distinct {info['dtype']}\nrows, limit {info['limit_nats']:.3f} nats"
             for name, info in limits.items() if info["limit_nats"] < ln_m - 1e-9]
    if notes:
        # A layer whose curve cannot reach ln 4096: say why, on the panel, in the empty
        # region under the curves at medium bin sizes.
        ax.text(0.57, 0.04, "limit as bins -> 0 is below ln 4096:\n" + "\n".join(notes)
                + "\n(saturated tanh units round\nto equal floats)", transform=ax.transAxes, ha="center",
                va="bottom", fontsize=8, bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7"})
    ax.set_xscale("log")
    ax.set_xlabel("bin size (activation units; tanh range (-1, 1))")
    ax.set_ylabel("I(X; Bin T) [nats]")
    ax.set_title(f"(a) deterministic net after {epoch} epochs: binned I(X;T) vs bin size", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")

    estimators = list(dict.fromkeys(r["estimator"] for r in over_epochs))
    panels = [(axes[0, 1], "(b) deterministic net"), (axes[1, 0], "(c) deterministic net"),
              (axes[1, 1], "(d) noisy net (SP estimator)")]
    max_epoch = max((r["epoch"] for r in over_epochs), default=1)
    for (ax, prefix), estimator in zip(panels, estimators):
        for name in layers:
            rows = sorted((r for r in over_epochs if r["layer"] == name and r["estimator"] == estimator),
                          key=lambda r: r["epoch"])
            if not rows:
                continue
            color, marker = style[name]
            e = np.array([r["epoch"] for r in rows], dtype=float)
            v = np.array([r["ixt"] for r in rows], dtype=float)
            ax.plot(e, v, color=color, marker=marker, markersize=4, label=f"{name} (d={rows[0]['width']})")
            err = np.array([r["ixt_stderr"] for r in rows], dtype=float)
            if np.isfinite(err).all():
                ax.fill_between(e, v - err, v + err, color=color, alpha=0.25, linewidth=0)
        ax.axhline(ln_m, color="0.3", linestyle="--", linewidth=1, label="ln 4096")
        epoch_axis(ax, max_epoch)
        ax.set_ylim(0, ln_m * 1.06)
        ax.set_ylabel("I(X;T) [nats]" if "noisy" in prefix else "I(X; Bin T) [nats]")
        ax.set_title(f"{prefix}: {estimator}", fontsize=10)
    for ax, _ in panels[len(estimators):]:
        ax.set_axis_off()
    # One legend for the three over-epochs panels (the same layers everywhere), below the
    # figure where it hides no curve.
    handles, labels = panels[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize=9,
                   title="(b)-(d): one line per layer; bands = ±1 std. error of the SP estimate",
                   title_fontsize=9)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_ib_tradeoff(runs: list[dict], table: list[dict], config: dict, path: Path) -> Path:
    """The ``ib-tradeoff`` figure: (a) I(X;T), I(Y;T) and the minibatch penalty against
    lambda, (b) accuracy against lambda, (c) the information plane of the penalised
    layer, (d) the minibatch penalty over training; from the ``runs`` (one per lambda and
    seed), the ``table`` (one row per lambda) and the ``config`` of a run."""
    from matplotlib import cm
    from matplotlib.colors import Normalize

    fig, axes = new_figure(2, 2, width=6.4, height=4.6)
    lambdas = [row["lambda"] for row in table]
    position = {lam: i for i, lam in enumerate(lambdas)}
    ticks = [f"{lam:g}" for lam in lambdas]
    colour = cm.viridis(Normalize(0, max(1, len(lambdas) - 1))(np.arange(len(lambdas))))
    n_seeds = max((row["n_seeds"] for row in table), default=0)
    jitter = np.linspace(-0.12, 0.12, n_seeds) if n_seeds > 1 else np.zeros(1)
    seeds = sorted({r["seed"] for r in runs})
    layer = config["penalised_layer_name"]
    width = config["widths"][config["penalised_layer"]]
    spread = "mean ± sd over seeds" if n_seeds > 1 else "one seed"

    def by_lambda(ax, get, label, colour_line, marker, *, lw=1.6, ms=6, faint=True):
        """Each run faintly (with its Monte Carlo stderr, where ``get`` gives one), and the
        mean over the seeds with their standard deviation as bars."""
        values: dict[float, list[float]] = {lam: [] for lam in lambdas}
        for r in runs:
            value, stderr = get(r)
            values[r["lambda"]].append(value)
            if faint:
                ax.errorbar(position[r["lambda"]] + jitter[seeds.index(r["seed"]) % len(jitter)], value, yerr=stderr,
                            fmt=marker, ms=3.5, alpha=0.45, color=colour_line, mfc="none", elinewidth=0.8, zorder=2)
        present = [lam for lam in lambdas if values[lam]]
        sd = [np.std(values[lam], ddof=1) if len(values[lam]) > 1 else 0.0 for lam in present]
        ax.errorbar([position[lam] for lam in present], [np.mean(values[lam]) for lam in present], yerr=sd,
                    fmt=f"-{marker}", color=colour_line, lw=lw, ms=ms, capsize=3, zorder=3, label=label)

    # (a) the penalised layer's I(X;T) and I(Y;T) against lambda, and I(X;T) of the other layers
    ax = axes[0, 0]
    ax.axhline(config["ln_m"], color="0.4", ls="--", lw=1, label=f"ln m = {config['ln_m']:.2f} (X uniform on m images)")
    ax.axhline(config["label_entropy"], color="0.4", ls=":", lw=1.2, label=f"H(Y) = {config['label_entropy']:.2f}")
    by_lambda(ax, lambda r: (r["ixt"], r["ixt_stderr"]), f"I(X;T), {layer} ({width} units, penalised)", "C0", "o")
    by_lambda(ax, lambda r: (r["iyt"], r["iyt_stderr"]), f"I(Y;T), {layer}", "C3", "s")
    by_lambda(ax, lambda r: (r["ixt_batch"], None), "its minibatch penalty, last epoch", "C2", "^")
    for index, other in enumerate(runs[0]["layers"] if runs else []):
        if other["name"] != layer:
            by_lambda(ax, lambda r, i=index: (r["layers"][i]["ixt"], None),
                      f"I(X;T), {other['name']} ({other['width']} units)", "0.55", "d", lw=1.0, ms=4, faint=False)
    ax.set_xticks(range(len(lambdas)), ticks)
    ax.set_xlabel("lambda  (loss = CE + lambda * I_batch(X;T))")
    ax.set_ylabel("nats")
    ax.set_ylim(bottom=-0.2, top=config["ln_m"] + 3.2)  # room above ln m for the legend
    ax.set_title(f"(a) information after training ({spread})", fontsize=10)
    ax.legend(fontsize=7.5, loc="upper right", framealpha=0.9, ncol=2)
    ax.grid(alpha=0.3)

    # (b) accuracy against lambda
    ax = axes[0, 1]
    ax.axhline(config["chance"], color="0.4", ls=":", lw=1.2, label=f"chance ({config['chance']:.2f})")
    by_lambda(ax, lambda r: (r["test_accuracy"], None), f"test accuracy ({config['n_test']} images)", "C1", "o")
    by_lambda(ax, lambda r: (r["train_accuracy"], None), f"training accuracy ({config['n_train']} images)", "C4", "s")
    ax.set_xticks(range(len(lambdas)), ticks)
    ax.set_xlabel("lambda")
    ax.set_ylabel("accuracy of the noisy network")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"(b) accuracy ({spread})", fontsize=10)
    ax.legend(fontsize=8, loc="lower left", framealpha=0.9)
    ax.grid(alpha=0.3)

    # (c) the information plane of the bottleneck, one point per run
    ax = axes[1, 0]
    top = config["label_entropy"]
    ax.plot([0, top, config["ln_m"]], [0, top, top], color="0.4", ls="--", lw=1,
            label="I(Y;T) <= min(I(X;T), H(Y))")
    for lam in lambdas:
        group = [r for r in runs if r["lambda"] == lam]
        ax.errorbar([r["ixt"] for r in group], [r["iyt"] for r in group], xerr=[r["ixt_stderr"] for r in group],
                    yerr=[r["iyt_stderr"] for r in group], fmt="o", ms=6, color=colour[position[lam]],
                    mec="k", mew=0.5, label=f"lambda = {lam:g}")
    ax.set_xlabel(f"I(X;T)  [nats], {layer}")
    ax.set_ylabel(f"I(Y;T)  [nats], {layer}")
    ax.set_xlim(-0.2, config["ln_m"] + 0.3)
    ax.set_ylim(-0.1, top + 0.3)
    ax.set_title("(c) information plane of the bottleneck (one point per run)", fontsize=10)
    ax.legend(fontsize=7.5, loc="lower right", framealpha=0.9, ncol=2)
    ax.grid(alpha=0.3)

    # (d) the minibatch penalty over training (first seed)
    ax = axes[1, 1]
    ax.axhline(math.log(config["batch_size"]), color="0.4", ls="--", lw=1,
               label=f"ln B = {math.log(config['batch_size']):.2f} (B distinct inputs)")
    for r in runs:
        if r["seed"] != seeds[0] or not r["history"]:
            continue
        epochs = [h["epoch"] for h in r["history"]]
        ax.plot(epochs, [h["ixt_batch"] for h in r["history"]], color=colour[position[r["lambda"]]], lw=1.4,
                label=f"lambda = {r['lambda']:g}")
    if config.get("warmup"):
        ax.axvspan(0, config["warmup"], color="0.85", alpha=0.5, lw=0, zorder=0)
        ax.text(config["warmup"] / 2, 0.15, "warm-up", ha="center", fontsize=8, color="0.35")
    ax.set_xlabel("epoch")
    ax.set_ylabel("minibatch estimate h(T) - h_Z  [nats]")
    ax.set_ylim(-0.2, math.log(config["batch_size"]) + 1.6)  # room above ln B for the legend
    ax.set_title(f"(d) the penalty during training (seed {seeds[0] if seeds else ''}, epoch means)", fontsize=10)
    ax.legend(fontsize=7.5, loc="upper right", framealpha=0.9, ncol=3)
    ax.grid(alpha=0.3)

    widths = "-".join(str(w) for w in config["widths"])
    warmup = f" (lambda ramped up over {config['warmup']})" if config.get("warmup") else ""
    fig.suptitle(f"Information bottleneck trade-off: digits, noisy tanh {widths}, beta = {config['beta']:g}, "
                 f"penalty on {layer}, {config['epochs']} epochs{warmup}, {n_seeds} seed{'s' if n_seeds != 1 else ''}",
                 fontsize=11)
    return save_figure(fig, path)

