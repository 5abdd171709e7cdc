r"""Binning a deterministic network: the estimator of Shwartz-Ziv & Tishby and its artefact.

The SZT network (12-10-7-5-4-3-2, tanh) is trained *without* noise, exactly as in the
``szt`` experiment (same seed: same split, initial weights and minibatches).  For a
deterministic, injective network I(X;T) is H(X) = ln 4096 = 8.318 nats whatever the
weights; the binning estimate :math:`I(X;\mathrm{Bin}\,T_\ell) = H(\mathrm{Bin}\,T_\ell)`
measures the coarseness of the bins against the geometry of the activations, not
information (Goldfeld et al., ICML 2019, section 2).  The experiment shows:

(a) at the trained network, :math:`I(X;\mathrm{Bin}\,T_\ell)` against the bin size, which
    rises to ln 4096 as the bins shrink.  The bin sizes are dyadic, ``2**-k`` on
    the limits (-1, 1), so each partition refines the next coarser one and the
    curve is non-increasing in the bin size exactly;
(b) over training, the binned estimate with the paper's 30 bins and with fine bins
    (bin size 1e-4), next to (c) the sample-propagation estimate
    :math:`I(X;T_\ell)` of the noisy twin (beta = 0.005, same seed), or of an ``szt`` run
    whose ``szt_information.csv`` is passed as ``noisy_csv``.

Outputs (in ``out_dir``): ``binning_vs_bin_size.csv``, ``binning_over_epochs.csv``,
``binning.json`` (settings and all rows) and ``binning.png``.  All values in nats.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from .._intake import positive_int, positive_real
from .._output import remove_files, stoppable, write_csv, write_json
from .figures import plot_binning
from .output import report_written
from .szt import DEFAULT_EPOCHS, DEFAULT_POINTS, WIDTHS
from .training import Trainer, check_options, run_training, seed_streams, split_dataset

__all__ = ["run", "seed_plan", "aggregate", "add_arguments", "run_one", "dyadic_bin_sizes"]

#: The paper's number of bins on (-1, 1) for tanh.
PAPER_BINS = 30
#: The fine bin size of the over-epochs panel.
DEFAULT_FINE_BIN = 1e-4
#: Smallest bin size of panel (a) is 2**-DEFAULT_MAX_HALVINGS = 6e-8, the spacing of float32
#: numbers just below 1: saturated tanh units of a trained net differ from +-1 by less than
#: 1e-6, so only bins this small separate all the float32 activations that differ.
DEFAULT_MAX_HALVINGS = 24
#: R for the noisy twin's estimates (kept small: this experiment is about binning).
DEFAULT_TWIN_REPEATS = 8
#: The files one run writes into its folder.
FILES = ("binning_vs_bin_size.csv", "binning_over_epochs.csv", "binning.json", "binning.png")


def dyadic_bin_sizes(max_halvings: int = DEFAULT_MAX_HALVINGS) -> list[float]:
    """Bin sizes 1, 1/2, 1/4, ..., 2**-max_halvings, largest first.

    On limits of width 2 each is a whole number of bins (2, 4, 8, ...), and each
    partition refines the previous one, so H(Bin T) can only grow along the list.
    """
    return [2.0 ** -k for k in range(max_halvings + 1)]


def _layer_activations(model, x) -> dict[str, np.ndarray]:
    """{name: (m, d) activations} of every hidden layer of a noiseless net, in forward order."""
    from ..nn import noise_disabled
    from ..sampling import sample_layers

    with noise_disabled(model):
        samples = sample_layers(model, x, repeats=1, rng=0)  # no noise: the rng is unused
    return {name: s[:, 0, :] for name, s in samples.items()}


def _limits(activations: np.ndarray, activation: str) -> tuple[float, float]:
    # tanh lives in (-1, 1), the paper's range.  ReLU is unbounded, so its bins span
    # [0, largest activation of the layer] at that moment (adaptive, as Saxe et al. 2018).
    if activation == "tanh":
        return (-1.0, 1.0)
    high = float(activations.max())
    return (0.0, high if high > 0 else 1.0)


def _zero_bin_limits(acts) -> dict[str, dict]:
    """Per layer, the limit of I(X; Bin T) as the bins shrink to 0: H of the distinct rows.

    It is ln m when the layer is injective on the inputs.  In float32 a saturated tanh
    unit rounds to the same value for many inputs (values within ~6e-8 of +-1 coincide),
    so a trained network can be non-injective in its arithmetic, whatever binning does.
    """
    limits = {}
    for name, a in acts.items():
        _, counts = np.unique(a, axis=0, return_counts=True)
        p = counts / a.shape[0]
        limits[name] = {"distinct_rows": int(len(counts)), "limit_nats": float(-(p * np.log(p)).sum()),
                        "dtype": str(a.dtype)}
    return limits


def _vs_bin_size(acts, y, bin_sizes, activation, epoch) -> list[dict]:
    from ..binning import binning_mi

    rows = []
    for name, a in acts.items():
        low, high = _limits(a, activation)
        for size in bin_sizes:
            width = size * (high - low) / 2.0  # bin sizes are stated for a range of width 2
            result = binning_mi(a, y, bin_size=width, limits=(low, high))
            rows.append({"epoch": epoch, "layer": name, "width": a.shape[1], "bin_size": width,
                         "n_bins": int(round((high - low) / width)), "ixt": result.ixt, "iyt": result.iyt})
    return rows


def _binned_over_epochs(acts, y, epoch, fine_bin, activation) -> list[dict]:
    from ..binning import binning_mi

    rows = []
    for name, a in acts.items():
        low, high = _limits(a, activation)
        for estimator, options in ((f"binned, {PAPER_BINS} bins", {"n_bins": PAPER_BINS}),
                                   (f"binned, bin size {fine_bin:g}", {"bin_size": fine_bin})):
            result = binning_mi(a, y, limits=(low, high), **options)
            size = options.get("bin_size", (high - low) / PAPER_BINS)
            rows.append({"epoch": epoch, "layer": name, "width": a.shape[1], "estimator": estimator,
                         "bin_size": size, "ixt": result.ixt, "ixt_stderr": math.nan,
                         "iyt": result.iyt, "iyt_stderr": math.nan})
    return rows


def _noisy_rows(history, label: str) -> list[dict]:
    return [{"epoch": r["epoch"], "layer": r["layer"], "width": r["width"], "estimator": label,
             "bin_size": math.nan, "ixt": r["ixt"], "ixt_stderr": r["ixt_stderr"], "iyt": r["iyt"],
             "iyt_stderr": r["iyt_stderr"]} for r in history]


class _TwinTrainer:
    """Trains the noiseless net and (optionally) its noisy twin one epoch at a time together,
    so that a single loop, progress bar and Ctrl-C cover both."""

    def __init__(self, deterministic: Trainer, noisy: Trainer | None):
        self.deterministic, self.noisy = deterministic, noisy

    @property
    def epochs_done(self) -> int:
        return self.deterministic.epochs_done

    def train_epoch(self) -> float:
        if self.noisy is not None:
            self.noisy.train_epoch()
        return self.deterministic.train_epoch()


def run(out_dir, *, epochs=DEFAULT_EPOCHS, activation="tanh", lr=4e-4, batch_size=256,
        n_points=DEFAULT_POINTS, fine_bin=DEFAULT_FINE_BIN, max_halvings=DEFAULT_MAX_HALVINGS,
        beta=0.005, repeats=DEFAULT_TWIN_REPEATS, max_centers=None, mc_samples=None, noisy_csv=None,
        seed=0, seeds=1, progress=True, num_threads=None, overwrite=False) -> dict:
    """Train the noiseless SZT network and compare binned estimates with the noisy SP estimate.

    Parameters
    ----------
    out_dir : str or path
        Output folder (created).
    epochs : int
        Training epochs (default 10,000, as the ``szt`` default; about 3 minutes in all
        on 2 idle CPU cores, most of it training the two nets and estimating the twin).
    activation : {"tanh", "relu"}
        Hidden activation.  tanh bins span (-1, 1); ReLU bins span [0, the layer's largest
        activation] at each measurement (the bin sizes are then relative to a width of 2).
    lr, batch_size : float, int
        Adam learning rate (4e-4) and minibatch size (256).
    n_points : int
        Log-spaced epochs (0 and ``epochs`` included) for the over-epochs panels.
    fine_bin : float
        The fine bin size of panel (c), in activation units (default 1e-4).
    max_halvings : int
        Panel (a) uses the bin sizes 1, 1/2, ..., 2**-max_halvings (default 24: 6e-8,
        float32's resolution near 1).
    beta, repeats, max_centers, mc_samples : optional
        The noisy twin (noise std, default 0.005) and its estimator (R default 8; see
        :func:`infoflow.information_flow`).
    noisy_csv : str or path, optional
        An ``szt_information.csv`` (or ``.json``) from the ``szt`` experiment to show in
        panel (d) instead of training a twin; it should use the same seed and settings.
    seed : int
        As in the ``szt`` experiment: the same seed gives the same split, initial weights
        and minibatch order, so the deterministic net and the noisy twin differ only in
        the noise.
    seeds : int
        Independent runs from ``seed`` (default 1), as in the ``szt`` experiment: each in
        ``seed_<i>/``, and the mean and spread of every estimator's I(X;T) per layer and
        epoch in ``binning_seeds.csv``/``.json``/``.png``.  Not with ``noisy_csv``.
    progress : bool
        Progress bar over the epochs.
    num_threads : int, optional
        CPU threads for torch and the estimators.  Default: torch single-threaded and the
        estimators on all threads (see :func:`infoflow.experiments.training.torch_threads`);
        torch's setting is restored afterwards.
    overwrite : bool
        Replace the files of an earlier run in ``out_dir`` (default False:
        FileExistsError naming them, before any training).

    Returns
    -------
    dict
        ``vs_bin_size`` and ``over_epochs`` rows, ``config``, ``files``, ``interrupted``.
    """
    from .seeds import run_plan

    if noisy_csv is not None and positive_int(seeds, "seeds", allow_none=False) > 1:
        raise ValueError("seeds: a noisy_csv is one run's history; train the twins (no noisy_csv) for many seeds")
    plan = seed_plan(epochs=epochs, activation=activation, lr=lr, batch_size=batch_size, n_points=n_points,
                     fine_bin=fine_bin, max_halvings=max_halvings, beta=beta, repeats=repeats,
                     max_centers=max_centers, mc_samples=mc_samples, noisy_csv=noisy_csv, progress=progress,
                     num_threads=num_threads)
    return run_plan(plan, out_dir, seed=seed, seeds=seeds, overwrite=overwrite)


def seed_plan(*, epochs=DEFAULT_EPOCHS, activation="tanh", lr=4e-4, batch_size=256, n_points=DEFAULT_POINTS,
              fine_bin=DEFAULT_FINE_BIN, max_halvings=DEFAULT_MAX_HALVINGS, beta=0.005, repeats=DEFAULT_TWIN_REPEATS,
              max_centers=None, mc_samples=None, noisy_csv=None, progress=True, num_threads=None):
    """The validated options of :func:`run` (all but ``out_dir``, ``seeds``, ``seed`` and
    ``overwrite``) as a :class:`~infoflow.experiments.seeds.SeedPlan`."""
    from .._intake import thread_count
    from .seeds import SeedPlan

    check_options(epochs, beta, activation, repeats, n_points, lr, batch_size)
    positive_real(fine_bin, "fine_bin")
    positive_int(max_halvings, "max_halvings", allow_none=False)
    thread_count(num_threads)
    options = dict(epochs=int(epochs), activation=activation, lr=lr, batch_size=batch_size, n_points=n_points,
                   fine_bin=fine_bin, max_halvings=max_halvings, beta=beta, repeats=repeats,
                   max_centers=max_centers, mc_samples=mc_samples, noisy_csv=noisy_csv, progress=progress,
                   num_threads=num_threads)
    return SeedPlan("binning", "binning", FILES, options, num_threads)


def aggregate(out: Path, results, *, seed: int, runs=None) -> dict:
    """Write ``binning_seeds.csv``/``.json``/``.png``: the mean and spread of every
    estimator's I(X;T) across the runs' ``results``."""
    from .seeds import write_seed_aggregate

    activation = results[0]["config"]["activation"]
    return write_seed_aggregate(
        out, "binning", [{**r, "history": r["over_epochs"]} for r in results], by=("estimator", "layer"),
        title=f"Binning the deterministic SZT net ({activation}) vs the noisy twin: {len(results)} runs from "
              f"seed {seed}", ixt_max=math.log(4096), runs=runs)


def run_one(out: Path, *, epochs, activation, lr, batch_size, n_points, fine_bin, max_halvings, beta, repeats,
            max_centers, mc_samples, noisy_csv, root, torch_seed, seed_label, progress, num_threads,
            kernel_threads) -> dict:
    """Train the noiseless net (and its noisy twin) of one seed and write the run's files into ``out``.

    ``root`` (a SeedSequence) and ``torch_seed`` are the run's seeds, ``seed_label`` names
    them in the output, ``kernel_threads`` are the estimators' threads, and the rest are
    the options of :func:`seed_plan`; :class:`~infoflow.experiments.seeds.SeedPlan` calls
    it once per seed.  Returns what :func:`run` returns for a single seed.
    """
    import torch

    from ..datasets import szt
    from ..nn import NoisyMLP, named_noise_modules
    from ..recorder import InformationPlane
    from ..schedule import log_spaced_epochs

    started = time.perf_counter()

    x, y = szt()
    ln_m = math.log(x.shape[0])
    streams = seed_streams(root)
    split = split_dataset(x, y, streams["split"])

    # Both nets start from the same weights: the noise layers hold no parameters, so the
    # same seed gives the same initialisation with and without noise.
    torch.manual_seed(torch_seed)
    deterministic = NoisyMLP(WIDTHS, activation=activation, beta=beta)
    for _, module in named_noise_modules(deterministic):
        module.enabled = False
    twin = twin_plane = None
    # Read a given history first, so that a wrong path fails before any training.
    noisy_history = None if noisy_csv is None else InformationPlane.load_history(noisy_csv)
    if noisy_csv is None:
        torch.manual_seed(torch_seed)
        twin = NoisyMLP(WIDTHS, activation=activation, beta=beta)
    trainers = _TwinTrainer(
        Trainer(deterministic, split, lr=lr, batch_size=batch_size, streams=seed_streams(root)),
        None if twin is None else Trainer(twin, split, lr=lr, batch_size=batch_size, streams=seed_streams(root)))
    if twin is not None:
        # Panel (d) shows the values only: no R-convergence sequence (the szt experiment
        # records it for the same network).
        twin_plane = InformationPlane(twin, x, y, max_epoch=epochs, n_points=n_points, repeats=repeats,
                                      mc_samples=mc_samples, max_centers=max_centers,
                                      rng=np.random.default_rng(streams["estimates"]), num_threads=kernel_threads,
                                      convergence=False)
    schedule = log_spaced_epochs(epochs, n_points)
    binned: list[dict] = []

    def at_epoch(epoch: int) -> str | None:
        if epoch not in schedule:
            return None
        rows = _binned_over_epochs(_layer_activations(deterministic, x), y, epoch, fine_bin, activation)
        if twin_plane is not None:
            twin_plane.record(epoch)
        binned.extend(rows)  # after the twin's record: an interruption leaves both consistent
        return f"| epoch {epoch}: binned I(X;T_last) {rows[-2]['ixt']:.2f} nats (30 bins)"

    with stoppable("binning") as stopped:
        run_training(trainers, epochs, at_epoch, progress=progress, desc="binning training")

    done = trainers.epochs_done
    final_acts = _layer_activations(deterministic, x)
    vs_size = _vs_bin_size(final_acts, y, dyadic_bin_sizes(max_halvings), activation, done)
    limits = _zero_bin_limits(final_acts)
    if twin_plane is not None:
        noisy = _noisy_rows(twin_plane.history, f"I(X;T), beta = {beta:g}, R = {repeats}")
    else:
        noisy = _noisy_rows(noisy_history, f"I(X;T) from {Path(noisy_csv).name}")
    over_epochs = binned + noisy

    config = {
        "experiment": "binning", "widths": list(WIDTHS), "activation": activation, "epochs": epochs,
        "epochs_completed": done, "interrupted": stopped[0], "lr": lr, "batch_size": batch_size,
        "n_points": n_points, "schedule": schedule, "paper_bins": PAPER_BINS, "fine_bin": fine_bin,
        "bin_sizes": dyadic_bin_sizes(max_halvings), "beta": beta, "repeats": repeats,
        "max_centers": max_centers, "mc_samples": mc_samples,
        "noisy_csv": None if noisy_csv is None else str(noisy_csv), "seed_label": seed_label,
        "seed_entropy": str(root.entropy), "seed_spawn_key": list(root.spawn_key), "torch_seed": torch_seed,
        "num_threads": num_threads,
        "torch_threads": torch.get_num_threads(), "estimator_threads": kernel_threads,
        "ln_m": ln_m, "unit": "nats", "seconds": time.perf_counter() - started,
    }
    remove_files(out / name for name in FILES)  # checked by run_each; see szt.run_one
    files = [write_csv(out / "binning_vs_bin_size.csv", vs_size),
             write_csv(out / "binning_over_epochs.csv", over_epochs),
             write_json(out / "binning.json", {"config": config, "zero_bin_limits": limits,
                                               "vs_bin_size": vs_size, "over_epochs": over_epochs})]
    title = (f"Binning the deterministic SZT net ({activation}) vs the noisy net's I(X;T); "
             f"{done} epochs, seed {seed_label}")
    files.append(plot_binning(out / "binning.png", vs_size, over_epochs, fine_bin=fine_bin, paper_bins=PAPER_BINS,
                              ln_m=ln_m, title=title, limits=limits))
    print(_summary(vs_size, over_epochs, config, limits))
    report_written(files, out)
    return {"vs_bin_size": vs_size, "over_epochs": over_epochs, "zero_bin_limits": limits, "config": config,
            "files": files, "interrupted": stopped[0]}


def _summary(vs_size, over_epochs, config, limits) -> str:
    lines = [f"binning: {config['epochs_completed']} of {config['epochs']} epochs"
             f"{' (interrupted)' if config['interrupted'] else ''} in {config['seconds']:.0f} s; "
             f"ln 4096 = {config['ln_m']:.3f} nats"]
    sizes = sorted({r["bin_size"] for r in vs_size})
    if sizes:
        lines.append(f"  trained net, I(X;Bin T) [nats] at bin size {sizes[-1]:g} -> {sizes[0]:.2g}"
                     " (limit as bins -> 0: entropy of the distinct activation rows):")
        for name in dict.fromkeys(r["layer"] for r in vs_size):
            rows = sorted((r for r in vs_size if r["layer"] == name), key=lambda r: -r["bin_size"])
            info = limits[name]
            lines.append(f"  {name:<8} {rows[0]['ixt']:6.3f} -> {rows[-1]['ixt']:6.3f}   "
                         f"(limit {info['limit_nats']:.3f}, {info['distinct_rows']} distinct rows)")
    for estimator in dict.fromkeys(r["estimator"] for r in over_epochs):
        rows = [r for r in over_epochs if r["estimator"] == estimator]
        last = max(r["epoch"] for r in rows)
        values = ", ".join(f"{r['ixt']:.2f}" for r in rows if r["epoch"] == last)
        lines.append(f"  {estimator}, epoch {last}: I(X;T) per layer = {values}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of ``infoflow reproduce binning``."""
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"training epochs (default {DEFAULT_EPOCHS}, the paper's)")
    parser.add_argument("--activation", choices=("tanh", "relu"), default="tanh", help="hidden activation")
    parser.add_argument("--lr", type=float, default=4e-4, help="Adam learning rate (default 4e-4)")
    parser.add_argument("--batch-size", type=int, default=256, help="minibatch size (default 256)")
    parser.add_argument("--points", dest="n_points", type=int, default=DEFAULT_POINTS,
                        help=f"log-spaced epochs with estimates (default {DEFAULT_POINTS})")
    parser.add_argument("--fine-bin", type=float, default=DEFAULT_FINE_BIN,
                        help=f"fine bin size for the over-epochs panel (default {DEFAULT_FINE_BIN:g})")
    parser.add_argument("--max-halvings", type=int, default=DEFAULT_MAX_HALVINGS,
                        help=f"smallest bin size of the bin-size sweep is 2**-N (default {DEFAULT_MAX_HALVINGS})")
    parser.add_argument("--beta", type=float, default=0.005, help="noise std of the noisy twin (default 0.005)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_TWIN_REPEATS,
                        help=f"R for the noisy twin's estimates (default {DEFAULT_TWIN_REPEATS})")
    parser.add_argument("--max-centers", type=int, default=None, help="subset size for h(T) (default: all)")
    parser.add_argument("--mc-samples", type=int, default=None, help="Monte Carlo draws per centre")
    parser.add_argument("--noisy-csv", default=None,
                        help="szt_information.csv of an szt run to compare with, instead of training a twin")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="independent runs from --seed, with mean and spread across them (default 1)")
    parser.add_argument("--threads", dest="num_threads", type=int, default=None, help="CPU threads")
