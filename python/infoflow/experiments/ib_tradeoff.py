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
  :func:`~infoflow.experiments.training.torch_threads`) and the penalty's kernel on one thread
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

import numpy as np

from .._output import stoppable
from ..estimate import RConvergenceWarning
from .figures import plot_ib_tradeoff
from .output import prepare_output, save_result
from .penalty import DEFAULT_PENALTY_QUERIES, PenalisedTrainer
from .training import run_seeds, seed_streams, split_dataset, torch_threads

__all__ = ["run", "add_arguments", "LAMBDAS", "HIDDEN", "FILES"]

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
DEFAULT_REPEATS = 16

# The penalty's own random stream: a child of each run's SeedSequence whose last spawn-key
# element lies far beyond those of the named streams of training.seed_streams (0, 1, 2, ...).
_PENALTY_KEY = 0x1B


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
        (:func:`~infoflow.experiments.training.run_seeds`); within a run every lambda starts
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
        upper bound (see :func:`~infoflow.experiments.penalty.batch_information`).
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
        :func:`~infoflow.experiments.training.torch_threads`).  The minibatch penalty always
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
    out, paths = prepare_output(out_dir, FILES, overwrite=overwrite)

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
    result = {"config": config, "table": table, "runs": runs, "interrupted": stopped[0]}
    save_result(out, "ib_tradeoff", result, {"ib_tradeoff": table, "ib_tradeoff_runs": run_rows},
                (lambda path: plot_ib_tradeoff(runs, table, config, path)) if runs else None, paths)
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
