r"""The information bottleneck trade-off: training with a penalty on the SP estimate of I(X;T).

A noisy tanh network is trained on scikit-learn's bundled 8x8 digits (1797 images, 10
classes, 80/20 train/test split) with the loss

.. math:: \mathcal L = \mathrm{CE} + \lambda\, \hat I(X;T_\ell)

for a few values of :math:`\lambda`, each run from the same seed (same split, initial
weights, minibatch order and noise draws), and then :math:`I(X;T_\ell)` and
:math:`I(Y;T_\ell)` of every layer are estimated with :func:`infoflow.information_flow`
on all 1797 images (X uniform over them, so :math:`I(X;T) \le \ln 1797 = 7.49` nats;
:math:`H(Y) = 2.30` nats).  The figure shows how :math:`\lambda` trades the information the
bottleneck keeps about the input against accuracy.

Choices, and why:

* **Network** ``64-32-8-10`` (:class:`~infoflow.nn.NoisyMLP`, tanh, noise
  :math:`\beta = 0.1` after both hidden layers, noiseless logits).  The penalised layer
  is the 8-unit **bottleneck**, the last noisy layer (``noise2``): the classifier sees the
  input only through it.
* **beta = 0.1**, not the 12-bit experiment's 0.005.  The penalty's gradient comes from the
  overlap of the minibatch's Gaussian components: where the images of the batch lie many
  beta apart the mixture's entropy is :math:`h_Z + \ln B` whatever the weights, and its
  gradient vanishes.  At beta = 0.1 in an 8-unit tanh layer the components overlap enough
  for the penalty to act, while the network without it still separates the classes (test
  accuracy 0.96, noise on).
* **The penalty** on a minibatch of B = 256 inputs is the nonlinear-IB estimate of
  Kolchinsky, Tracey & Wolpert (2019),

  .. math:: \hat I(X;T_\ell) = \hat h\big(\hat P_{S_\ell} * \mathcal N(0, \beta^2 I)\big) - h_Z,
            \qquad h_Z = \tfrac d2 \ln(2\pi e \beta^2):

  the differentiable SP entropy (:func:`infoflow.mixture_entropy` on the batch's values of
  :math:`S_\ell`, the input of the noise layer, taken from the training forward pass
  itself; 2048 reparameterised Monte Carlo queries, 8 per centre, about 10 ms per step on
  one thread) minus the noise entropy.  For the first noisy layer S is a function of X and
  this is the SP estimate of I(X;T) over the batch's inputs.  For a deeper layer, as the
  bottleneck here, S carries the noise of the layers before it and one sample of S per
  input is used: since :math:`h(T \mid X) \ge h(T \mid X, S) = h_Z`, the penalty then
  estimates an **upper bound** on :math:`I(X;T_\ell)`, which also charges the network for
  upstream noise reaching the bottleneck.  A batch's estimate is at most about
  :math:`\ln B = 5.55` nats.
* **Warm-up**: the penalty's weight ramps linearly from :math:`\lambda/20` to
  :math:`\lambda` over the first 20 epochs.  At initialisation the batch's images overlap
  (the penalty reads about 2 of its possible 5.55 nats), so its gradient is strong while
  the cross-entropy has not yet shaped T; with :math:`\lambda` in full from the first step
  (seed 0, ``warmup=0``) every run with :math:`\lambda \ge 0.1` first collapsed to
  :math:`\hat I \approx 0`, and those at 0.1 and 0.15 escaped only after about 35 and 70
  of the 100 epochs, so that the final point depended on when that happened more than on
  :math:`\lambda` (at 0.15 it kept more of X than at 0.1).
* **lambda** in 0, 0.03, 0.1, 0.2, 0.3, 0.4, 0.5, 1: from no penalty through compression
  at little cost in accuracy to the collapse of the representation.  For
  :math:`\lambda \ge 1` the trivial T is optimal whatever the network, as
  :math:`\mathrm{CE} \ge H(Y) - I(Y;T) \ge H(Y) - I(X;T)` (population quantities) and the
  penalty bounds I(X;T) from above.
* **Training**: Adam (lr 3e-3), batch 256, 100 epochs; torch single-threaded (see
  :func:`~infoflow.experiments.szt.torch_threads`) and the penalty's kernel on one thread
  (a 256 x 2048 problem: on a busy machine a second thread only waits at barriers, and
  made a step 4 times slower).
* **Estimates after training**: :func:`infoflow.information_flow` with R = 16 forward passes
  per input and 65536 Monte Carlo queries per entropy, with the R-convergence sequence (R =
  4, 8, 16).  The first layer is deterministic given X, so its estimate is exact in R; the
  bottleneck's values are upper estimates where they still move with R (by 0.02 to 0.06
  nats per halving at small lambda: small against the effect of lambda).  Accuracy is that
  of the noisy network (noise on), as trained.
* **Seeds**: 3 independent runs of the whole sweep (``seeds``), from ``seed``; every lambda
  of one run shares that run's seed, so within a run lambda is the only difference.

Outputs (in ``out_dir``):

- ``ib_tradeoff.csv``: one row per lambda: the means over the seeds of accuracy, the
  penalised layer's I(X;T) and I(Y;T) (nats), the last epoch's minibatch penalty and the
  training time, with the standard deviation across seeds (``*_sd``) and, for I(X;T) and
  I(Y;T), the Monte Carlo standard error of the mean (``*_stderr``);
- ``ib_tradeoff_runs.csv``: one row per (lambda, seed) with the same quantities and their
  Monte Carlo standard errors;
- ``ib_tradeoff.json``: the configuration, both tables, and per run the estimates of every
  layer (with their R-convergence sequences) and the per-epoch training history;
- ``ib_tradeoff.png``: (a) I(X;T), I(Y;T) and the minibatch penalty against lambda, (b)
  accuracy against lambda, (c) the information plane of the bottleneck, (d) the
  minibatch penalty over training.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from .._output import (check_new_files, new_figure, output_dir, remove_files, save_figure, stoppable, write_csv,
                       write_json)
from ..estimate import RConvergenceWarning
from .szt import Trainer, run_seeds, seed_streams, split_dataset, torch_threads

__all__ = ["run", "add_arguments", "batch_information", "PenalisedTrainer", "LAMBDAS", "HIDDEN", "FILES"]

#: The default values of lambda (nats of cross-entropy per nat of I(X;T)).
LAMBDAS = (0.0, 0.03, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0)
#: Hidden widths of the default network 64-32-8-10: the last is the bottleneck.
HIDDEN = (32, 8)
#: The files a run writes into its folder.
FILES = ("ib_tradeoff.csv", "ib_tradeoff_runs.csv", "ib_tradeoff.json", "ib_tradeoff.png")

DEFAULT_EPOCHS = 100
DEFAULT_WARMUP = 20
DEFAULT_SEEDS = 3
DEFAULT_BETA = 0.1
DEFAULT_LR = 3e-3
DEFAULT_BATCH = 256
DEFAULT_PENALTY_QUERIES = 2048
DEFAULT_REPEATS = 16

# The penalty's own random stream: a child of each run's SeedSequence whose last spawn-key
# element lies far beyond those of szt's named streams (0, 1, 2, ...).
_PENALTY_KEY = 0x1B


# ---------------------------------------------------------------------------------------
# The penalty and the training loop
# ---------------------------------------------------------------------------------------

def batch_information(s, beta: float, *, mc_queries: int = DEFAULT_PENALTY_QUERIES, rng=None, num_threads=1):
    r"""The minibatch estimate :math:`\hat I(X;T) = \hat h(\hat P_S * \mathcal N(0, \beta^2 I)) - h_Z`.

    Parameters
    ----------
    s : torch.Tensor, shape (B, d)
        One sample of the layer's noiseless value S for each of the B inputs of the batch
        (float32 or float64).  If it requires a gradient, so does the result.
    beta : float
        The layer's noise standard deviation.
    mc_queries : int
        Monte Carlo queries of the entropy estimate (reparameterised: q = s_J + beta z).
    rng : None, int or numpy.random.Generator
        Source of the Monte Carlo draws.
    num_threads : int, optional
        Kernel threads (default 1: the problem is small).

    Returns
    -------
    value : torch.Tensor
        0-d float64, in nats, carrying the autograd graph when ``s`` requires a gradient
        (and grad mode is on).
        For X uniform over the batch it is the SP estimate of I(X;T) when S is a function of
        X (the first noisy layer), and otherwise of :math:`h(T) - h_Z`, an upper bound on
        I(X;T) (:math:`h(T \mid X) \ge h_Z`).  At most about :math:`\ln B`.
    stderr : float
        Its Monte Carlo standard error (nats).
    """
    import torch

    from ..entropy import mixture_entropy, noise_entropy

    estimate = mixture_entropy(s, beta, mc_queries=mc_queries, rng=rng, num_threads=num_threads)
    # A tensor either way: with the graph when s requires a gradient, else a plain float64 value.
    value = torch.as_tensor(estimate.value, dtype=torch.float64)
    return value - noise_entropy(s.shape[-1], beta), float(estimate.stderr)


class PenalisedTrainer(Trainer):
    r"""The 12-bit experiment's :class:`~infoflow.experiments.szt.Trainer` with the loss
    :math:`\mathrm{CE} + \lambda \hat I(X;T_\ell)`.

    Parameters
    ----------
    model, split, lr, batch_size, streams
        As for :class:`~infoflow.experiments.szt.Trainer` (the minibatch order and the
        evaluation noise come from ``streams``; the training noise from torch's global
        generator).
    lam : float
        :math:`\lambda \ge 0`.  With 0 the weights follow plain cross-entropy training
        exactly; the minibatch estimate is still computed, on detached values, for the
        record.
    layer : infoflow.nn.GaussianNoise
        The penalised layer's noise module: its input in the training forward pass is the
        batch's S.
    mc_queries : int
        Monte Carlo queries of each minibatch estimate.
    penalty_rng : numpy.random.Generator
        Source of their draws (never torch's generator, so that the noise of the network
        is the same for every lambda).
    num_threads : int, optional
        Threads of the penalty's kernel (default 1).

    Attributes
    ----------
    history : list of dict
        Per epoch: ``epoch``, ``loss`` (the penalised loss), ``cross_entropy`` and
        ``ixt_batch`` (the minibatch estimate), each the mean over the epoch's batches, in
        nats.
    """

    def __init__(self, model, split, *, lr: float, batch_size: int, streams, lam: float, layer, mc_queries: int,
                 penalty_rng: np.random.Generator, num_threads: int | None = 1, warmup: int = 0):
        super().__init__(model, split, lr=lr, batch_size=batch_size, streams=streams)
        self.lam = float(lam)
        self.warmup = int(warmup)
        self.layer = layer
        self.mc_queries = int(mc_queries)
        self.penalty_rng = penalty_rng
        self.num_threads = num_threads
        self.history: list[dict] = []

    def train_epoch(self) -> float:
        """One pass over the training rows; the mean penalised loss of the batches (nats)."""
        import torch

        x, y = self.split.x_train, self.split.y_train
        order = torch.randperm(x.shape[0], generator=self.shuffle)
        x, y = x[order], y[order]
        self.model.train()
        lam = self.current_lambda()
        captured = [None]
        # S of the batch, from the very forward pass that gives the logits: one pass, and the
        # penalty sees the same noise draws as the cross-entropy.
        handle = self.layer.register_forward_pre_hook(lambda module, args: captured.__setitem__(0, args[0]))
        sums = np.zeros(3)
        batches = 0
        try:
            for start in range(0, x.shape[0], self.batch_size):
                logits = self.model(x[start:start + self.batch_size])
                cross_entropy = self.loss(logits, y[start:start + self.batch_size])
                s = captured[0] if lam > 0 else captured[0].detach()
                ixt, _ = batch_information(s, self.layer.beta, mc_queries=self.mc_queries, rng=self.penalty_rng,
                                           num_threads=self.num_threads)
                loss = cross_entropy + lam * ixt if lam > 0 else cross_entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                sums += (loss.item(), cross_entropy.item(), ixt.item())
                batches += 1
        finally:
            handle.remove()
        self.epochs_done += 1
        loss, cross_entropy, ixt = sums / batches
        self.history.append({"epoch": self.epochs_done, "lambda": lam, "loss": loss, "cross_entropy": cross_entropy,
                             "ixt_batch": ixt})
        return float(loss)

    def current_lambda(self) -> float:
        """The weight of the penalty in the next epoch: lambda * min(1, e / warmup) in epoch
        e = 1, 2, ..., lambda itself without a warm-up."""
        if self.warmup <= 0:
            return self.lam
        return self.lam * min(1.0, (self.epochs_done + 1) / self.warmup)


# ---------------------------------------------------------------------------------------
# One run (a seed): every lambda
# ---------------------------------------------------------------------------------------

def _layer_rows(flow) -> list[dict]:
    return [layer.to_dict() for layer in flow]


def _train_one(lam: float, *, data, split, root, torch_seed, widths, beta, epochs, lr, batch_size, penalised,
               warmup, mc_queries, repeats, estimate_queries, convergence, kernel_threads, bar) -> dict:
    """Train one network with this lambda and estimate every layer; a dict of results."""
    import torch

    from ..flow import information_flow
    from ..nn import NoisyMLP

    torch.manual_seed(torch_seed)  # the same initial weights and noise draws for every lambda
    model = NoisyMLP(widths, activation="tanh", beta=beta)
    names = [name for name, _ in model.named_noise_layers()]
    layer_name = names[penalised - 1]
    streams = seed_streams(root)
    penalty_rng = np.random.default_rng(np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, _PENALTY_KEY)))
    trainer = PenalisedTrainer(model, split, lr=lr, batch_size=batch_size, streams=streams, lam=lam,
                               layer=getattr(model, layer_name), mc_queries=mc_queries, penalty_rng=penalty_rng,
                               warmup=warmup)
    started = time.perf_counter()
    for _ in range(epochs):
        trainer.train_epoch()
        bar.update(1)
        bar.set_postfix_str(f"lambda={lam:g} I_batch={trainer.history[-1]['ixt_batch']:.2f}", refresh=False)
    train_seconds = time.perf_counter() - started
    metrics = trainer.evaluate()
    started = time.perf_counter()
    x, y = data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RConvergenceWarning)
        flow = information_flow(model, x, y, repeats=repeats, mc_queries=estimate_queries,
                                rng=np.random.default_rng(streams["estimates"]), num_threads=kernel_threads,
                                convergence=convergence)
    unconverged = sum(issubclass(w.category, RConvergenceWarning) for w in caught)
    for w in caught:  # anything else is the caller's to see
        if not issubclass(w.category, RConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    estimate_seconds = time.perf_counter() - started
    target = flow[layer_name]
    return {
        "lambda": lam, **metrics,
        "ixt": target.ixt, "ixt_stderr": target.ixt_stderr, "iyt": target.iyt, "iyt_stderr": target.iyt_stderr,
        "ixt_batch": trainer.history[-1]["ixt_batch"] if trainer.history else math.nan,
        "cross_entropy_batch": trainer.history[-1]["cross_entropy"] if trainer.history else math.nan,
        "converged": target.converged if convergence else None,
        "train_seconds": train_seconds, "estimate_seconds": estimate_seconds,
        "layer": layer_name, "layers": _layer_rows(flow), "history": trainer.history,
        "unconverged_layers": unconverged,
    }


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------

_RUN_COLUMNS = ("lambda", "seed", "test_accuracy", "train_accuracy", "test_loss", "train_loss", "ixt", "ixt_stderr",
                "iyt", "iyt_stderr", "ixt_batch", "cross_entropy_batch", "converged", "train_seconds",
                "estimate_seconds")
_MEANS = ("test_accuracy", "train_accuracy", "ixt", "iyt", "ixt_batch", "train_seconds")


def _aggregate(runs: list[dict], lambdas) -> list[dict]:
    """One row per lambda: the mean over the seeds of each quantity, the sample standard
    deviation across seeds (NaN for one seed) and, for I(X;T) and I(Y;T), the Monte Carlo
    standard error of the mean."""
    rows = []
    for lam in lambdas:
        group = [r for r in runs if r["lambda"] == lam]
        if not group:
            continue
        row = {"lambda": lam, "n_seeds": len(group)}
        for key in _MEANS:
            values = np.array([r[key] for r in group], dtype=float)
            row[key] = float(values.mean())
            row[f"{key}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            if key in ("ixt", "iyt"):
                row[f"{key}_stderr"] = float(np.sqrt(np.sum(np.square([r[f"{key}_stderr"] for r in group])))
                                             / len(group))
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------
# Figure
# ---------------------------------------------------------------------------------------

def _plot(runs: list[dict], table: list[dict], config: dict, path: Path) -> Path:
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


# ---------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------

def _check(lambdas, hidden, penalised, epochs) -> tuple[tuple[float, ...], tuple[int, ...], int]:
    from .._intake import positive_int

    if isinstance(lambdas, (int, float)):
        lambdas = (lambdas,)
    values = tuple(float(v) for v in lambdas)
    if not values:
        raise ValueError("lambdas: expected at least one value")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"lambdas: expected finite values >= 0, got {list(values)}")
    if len(set(values)) != len(values):
        raise ValueError(f"lambdas: expected distinct values, got {list(values)}")
    hidden = tuple(int(positive_int(w, "hidden", allow_none=False)) for w in hidden)
    if not hidden:
        raise ValueError("hidden: expected at least one hidden layer")
    layer = len(hidden) if penalised is None else positive_int(penalised, "penalised_layer", allow_none=False)
    if layer > len(hidden):
        raise ValueError(f"penalised_layer: the network has {len(hidden)} noisy layers, got {layer}")
    if isinstance(epochs, (bool, np.bool_)) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs: expected an integer >= 0, got {epochs!r}")
    return tuple(sorted(values)), hidden, int(layer)


def run(out_dir, *, lambdas=LAMBDAS, seeds=DEFAULT_SEEDS, epochs=DEFAULT_EPOCHS, beta=DEFAULT_BETA, hidden=HIDDEN,
        penalised_layer=None, warmup=DEFAULT_WARMUP, lr=DEFAULT_LR, batch_size=DEFAULT_BATCH,
        mc_queries=DEFAULT_PENALTY_QUERIES, repeats=DEFAULT_REPEATS, estimate_queries=None, convergence=True, seed=0,
        progress=True, num_threads=None, overwrite=False) -> dict:
    r"""Train the noisy digits network with loss CE + lambda * I_batch(X;T) for each lambda,
    and estimate the information of every layer after training.

    Parameters
    ----------
    out_dir : str or path
        Output folder (created): ``ib_tradeoff.csv``, ``ib_tradeoff_runs.csv``,
        ``ib_tradeoff.json``, ``ib_tradeoff.png`` (see the module docstring).
    lambdas : sequence of float
        The values of lambda >= 0 (distinct; run and reported in increasing order).
    seeds : int
        Independent runs of the whole sweep (default 3).  Run 0 is ``seed`` itself, run
        i >= 1 an independent stream derived from it
        (:func:`~infoflow.experiments.szt.run_seeds`); within a run every lambda starts
        from the same split, weights, minibatch order and noise.
    epochs : int
        Training epochs per network (default 100).
    beta : float
        Noise standard deviation of every hidden layer (default 0.1).
    hidden : sequence of int
        Hidden widths (default (32, 8)): the network is 64-hidden-10.
    penalised_layer : int, optional
        Which noisy layer carries the penalty, 1-based (default: the last, the bottleneck).
        With 1 the minibatch penalty is the SP estimate of I(X;T) itself; deeper, of an
        upper bound (see :func:`batch_information`).
    warmup : int
        Epochs over which the penalty's weight ramps linearly from lambda / warmup to
        lambda (default 20; 0: lambda from the first step), see the module docstring.
    lr, batch_size : float, int
        Adam learning rate (3e-3) and minibatch size B (256).
    mc_queries : int
        Monte Carlo queries of each minibatch estimate (default 2048).
    repeats : int
        R, forward passes per input for the estimates after training (default 16).
    estimate_queries : int, optional
        Monte Carlo queries per entropy of those estimates (default 65536).
    convergence : bool
        Also estimate at R/2 and R/4 (default True).
    seed : int
        Seed of everything (default 0).
    progress : bool
        Show a progress bar over the training epochs of all runs.
    num_threads : int, optional
        CPU threads for torch and the estimates after training.  Default: torch
        single-threaded and the estimates on all threads (see
        :func:`~infoflow.experiments.szt.torch_threads`).  The minibatch penalty always
        runs on one thread.
    overwrite : bool
        Replace the files of an earlier run in ``out_dir`` (default False:
        FileExistsError naming them, before any training).

    Returns
    -------
    dict
        What ``ib_tradeoff.json`` holds: ``config``, ``table`` (one row per lambda),
        ``runs`` (one per lambda and seed, with ``layers`` and ``history``),
        ``interrupted`` (True after Ctrl-C: the runs finished before it are kept) and
        ``files``.
    """
    from .._intake import positive_int, positive_real, thread_count

    lambdas, hidden, layer = _check(lambdas, hidden, penalised_layer, epochs)
    if isinstance(warmup, (bool, np.bool_)) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
        raise ValueError(f"warmup: expected an integer >= 0, got {warmup!r}")
    count = positive_int(seeds, "seeds", allow_none=False)
    positive_real(beta, "beta")
    positive_real(lr, "lr")
    positive_int(batch_size, "batch_size", allow_none=False)
    positive_int(mc_queries, "mc_queries", allow_none=False)
    positive_int(repeats, "repeats", allow_none=False)
    positive_int(estimate_queries, "estimate_queries")
    thread_count(num_threads)
    seed_runs = run_seeds(seed, count)
    paths = check_new_files(out_dir, FILES, overwrite=overwrite)
    out = output_dir(out_dir)

    import torch
    from tqdm.auto import tqdm

    from ..datasets import digits

    started = time.perf_counter()
    x, y = digits()
    widths = (x.shape[1], *hidden, int(y.max()) + 1)
    counts = np.bincount(y)
    label_entropy = float(-(counts / counts.sum() * np.log(counts / counts.sum())).sum())
    runs: list[dict] = []
    with torch_threads(num_threads) as kernel_threads, stoppable("ib-tradeoff") as stopped:
        torch_threads_used = torch.get_num_threads()
        with tqdm(total=count * len(lambdas) * epochs, desc="ib-tradeoff", unit="epoch", disable=not progress,
                  dynamic_ncols=True) as bar:
            for index, (root, torch_seed) in enumerate(seed_runs):
                split = split_dataset(x, y, seed_streams(root)["split"])
                for lam in lambdas:
                    result = _train_one(lam, data=(x, y), split=split, root=root, torch_seed=torch_seed,
                                        widths=widths, beta=beta, epochs=epochs, lr=lr, batch_size=batch_size,
                                        penalised=layer, warmup=warmup, mc_queries=mc_queries, repeats=repeats,
                                        estimate_queries=estimate_queries, convergence=convergence,
                                        kernel_threads=kernel_threads, bar=bar)
                    runs.append({"seed": index, "torch_seed": torch_seed, **result})

    n_train = int(round(0.8 * len(x)))
    config = {
        "experiment": "ib-tradeoff", "dataset": "digits (scikit-learn, 8x8, scaled to [0, 1])",
        "widths": list(widths), "activation": "tanh", "beta": beta, "penalised_layer": layer,
        "penalised_layer_name": f"noise{layer}",
        "penalty": ("h(mixture of the minibatch's S) - h_Z, one sample of S per input (an upper bound on I(X;T) "
                    "for a layer after the first)"),
        "lambdas": list(lambdas), "warmup": warmup, "seeds": count, "seed": seed, "epochs": epochs, "lr": lr,
        "batch_size": batch_size, "mc_queries": mc_queries, "repeats": repeats, "estimate_queries": estimate_queries,
        "convergence": convergence, "n_inputs": int(len(x)), "n_train": n_train, "n_test": int(len(x)) - n_train,
        "ln_m": math.log(len(x)), "label_entropy": label_entropy, "chance": float(counts.max() / counts.sum()),
        "unit": "nats", "interrupted": stopped[0], "seconds": time.perf_counter() - started,
        "num_threads": num_threads, "torch_threads": torch_threads_used, "torch": torch.__version__,
        "python": platform.python_version(),
    }
    table = _aggregate(runs, lambdas)
    run_rows = [{key: r[key] for key in _RUN_COLUMNS} for r in runs]
    remove_files(paths)  # an interrupted save then leaves no file of an earlier run beside these
    files = [write_csv(out / "ib_tradeoff.csv", table), write_csv(out / "ib_tradeoff_runs.csv", run_rows)]
    if runs:
        files.append(_plot(runs, table, config, out / "ib_tradeoff.png"))
    result = {"config": config, "table": table, "runs": runs, "interrupted": stopped[0]}
    files.append(out / "ib_tradeoff.json")
    result["files"] = [str(f) for f in files]
    write_json(out / "ib_tradeoff.json", result)
    print(_summary(table, runs, config))
    return result


def _summary(table: list[dict], runs: list[dict], config: dict) -> str:
    lines = [f"ib-tradeoff: {len(runs)} networks ({config['seeds']} seed(s) x {len(config['lambdas'])} lambdas)"
             f"{' (interrupted)' if config['interrupted'] else ''} in {config['seconds']:.0f} s; "
             f"{config['penalised_layer_name']}, nats, mean over seeds:"]
    lines.append(f"  {'lambda':>7} {'test acc':>9} {'I(X;T)':>8} {'I(Y;T)':>8} {'I_batch':>8}")
    for row in table:
        lines.append(f"  {row['lambda']:>7g} {row['test_accuracy']:>9.3f} {row['ixt']:>8.3f} {row['iyt']:>8.3f} "
                     f"{row['ixt_batch']:>8.3f}")
    moved = sum(r["converged"] is False for r in runs)
    if moved:
        lines.append(f"  {moved} of {len(runs)} estimates of {config['penalised_layer_name']} still moved by more "
                     f"than 3 standard errors from R/2 to R = {config['repeats']}: upper estimates")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of ``infoflow reproduce ib-tradeoff``; dests are keywords of :func:`run`."""
    parser.add_argument("--lambdas", type=float, nargs="+", default=list(LAMBDAS),
                        help="values of lambda, loss = CE + lambda * I_batch(X;T) "
                             f"(default {' '.join(f'{v:g}' for v in LAMBDAS)})")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                        help=f"independent runs of the sweep from --seed (default {DEFAULT_SEEDS})")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"training epochs per network (default {DEFAULT_EPOCHS})")
    parser.add_argument("--beta", type=float, default=DEFAULT_BETA,
                        help=f"noise std of the hidden layers (default {DEFAULT_BETA})")
    parser.add_argument("--hidden", type=int, nargs="+", default=list(HIDDEN),
                        help=f"hidden widths; the network is 64-HIDDEN-10 (default {' '.join(map(str, HIDDEN))})")
    parser.add_argument("--penalised-layer", dest="penalised_layer", type=int, default=None,
                        help="1-based noisy layer carrying the penalty (default: the last, the bottleneck)")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help=f"epochs over which the penalty's weight ramps up to lambda (default {DEFAULT_WARMUP}; "
                             "0: none)")
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help=f"Adam learning rate (default {DEFAULT_LR})")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                        help=f"minibatch size, also the penalty's sample (default {DEFAULT_BATCH})")
    parser.add_argument("--mc-queries", type=int, default=DEFAULT_PENALTY_QUERIES,
                        help=f"Monte Carlo queries of the minibatch penalty (default {DEFAULT_PENALTY_QUERIES})")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help=f"R, forward passes per input for the estimates after training (default "
                             f"{DEFAULT_REPEATS})")
    parser.add_argument("--estimate-queries", type=int, default=None,
                        help="Monte Carlo queries per entropy of those estimates (default 65536)")
    parser.add_argument("--no-convergence", dest="convergence", action="store_false",
                        help="skip the estimates at R/2 and R/4")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--threads", dest="num_threads", type=int, default=None, help="CPU threads")
