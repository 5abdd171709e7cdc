r"""The main experiment of Goldfeld et al. (ICML 2019): information flow in the SZT network.

A 12-10-7-5-4-3-2 network with tanh activations and Gaussian noise of std
:math:`\beta = 0.005` after every hidden layer is trained on the 12-bit dataset of
Shwartz-Ziv & Tishby (Adam, lr 4e-4, batch 256, 80/20 train/test split), and at
log-spaced epochs :math:`I(X;T_\ell)` and :math:`I(Y;T_\ell)` of every hidden layer are
estimated on all 4096 inputs with the sample-propagation estimators
(:class:`infoflow.InformationPlane`).

The paper reports, for tanh with this beta, that I(X;T) of the deeper layers first
rises and then falls ("compression") over thousands of epochs, driven by the clustering
of the hidden representations as the tanh units saturate.

Outputs (in ``out_dir``):

- ``szt_information.csv`` / ``.json``: the history (epoch, layer, width, ixt, ixt_stderr,
  iyt, iyt_stderr, unit), values in nats;
- ``szt_training.csv``: epoch, train/test cross-entropy loss (nats) and accuracy at the
  recorded epochs;
- ``szt_config.json``: the settings, the schedule, the runtime, whether it was interrupted;
- ``szt_information_plane.png``: :func:`infoflow.plot_information_plane`.

It trains with :mod:`infoflow.experiments.training`, as the ``binning`` experiment does,
so that both train the same way.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from .._output import remove_files, stoppable, write_csv, write_header_csv, write_json
from ..estimate import RConvergenceWarning
from .output import report_written
from .training import Trainer, check_options, run_training, seed_streams, split_dataset

__all__ = ["run", "seed_plan", "aggregate", "add_arguments", "run_one", "WIDTHS", "PROTOCOLS", "official_schedule",
           "official_inputs"]

#: The paper's architecture for the 12-bit task: input, 5 noisy hidden layers, 2 logits.
WIDTHS = (12, 10, 7, 5, 4, 3, 2)

# Defaults: the paper's 10,000 epochs, estimated at 20 log-spaced epochs with R = 16 and
# the R-convergence sequence (R = 4, 8, 16); the pruned kernel made R = 16 cost what R = 8
# did before.
DEFAULT_EPOCHS = 10000
DEFAULT_REPEATS = 16
DEFAULT_POINTS = 20

#: The protocols of ``infoflow reproduce szt --protocol``: ours (all 4096 distinct inputs)
#: and that of the paper's code (kgreenewald/smoothMI).
PROTOCOLS = ("ours", "official")
#: The official protocol's R (replicas per input) and last epoch.
OFFICIAL_REPEATS = 1000
OFFICIAL_LAST_EPOCH = 9999
#: The official protocol's Monte Carlo queries per entropy.  At R = 1000 the early,
#: untrained layers are one dense cloud (about half of the 4.1 million samples of the last
#: layer lie within 10 beta of any query), so the exact sum costs n per query: 4096
#: queries keep an early-epoch estimate to about half a minute on 2 cores, for a stderr of
#: about 0.015 nats per entropy there (far less where the layer is separated).
OFFICIAL_MC_QUERIES = 4096

#: The files one run writes into its folder.
FILES = ("szt_information.csv", "szt_information.json", "szt_training.csv", "szt_config.json",
         "szt_information_plane.png")
_TRAINING_FIELDS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy")


def official_schedule(last_epoch: int = OFFICIAL_LAST_EPOCH) -> list[int]:
    """The paper's code's estimate epochs: ``unique(round(logspace(0, log10(9999), 100)))``
    (84 epochs from 1 to 9999), those up to ``last_epoch``."""
    epochs = np.unique(np.round(np.logspace(0, np.log10(OFFICIAL_LAST_EPOCH), 100)).astype(int))
    return [int(e) for e in epochs if e <= last_epoch]


def official_inputs(m: int, seed_sequence: np.random.SeedSequence) -> np.ndarray:
    """The official protocol's inputs: m indices drawn uniformly *with replacement* from
    the m patterns (``uniform_sample`` of the paper's code), so about 63 % are distinct
    (2590 of 4096 on average) and X is uniform over the draws, repeats included."""
    return np.random.default_rng(seed_sequence).integers(0, m, size=m)


def _summary(history, training, config) -> str:
    """A few lines: training outcome and, per layer, I(X;T) at the start, peak and end."""
    from ..results import row_convergence

    lines = [f"szt ({config['protocol']} protocol, seed {config['seed_label']}): {config['epochs_completed']} of "
             f"{config['epochs']} epochs{' (interrupted)' if config['interrupted'] else ''} "
             f"in {config['seconds']:.0f} s"]
    if training:
        last = training[-1]
        lines.append(f"  epoch {last['epoch']}: train accuracy {last['train_accuracy']:.3f}, "
                     f"test accuracy {last['test_accuracy']:.3f}, test loss {last['test_loss']:.4f} nats")
    if history:
        lines.append(f"  I(X;T) [nats] (H(X) = {config['input_entropy']:.3f}): first -> peak (epoch) -> last;"
                     "  I(Y;T) last")
        layers = list(dict.fromkeys(row["layer"] for row in history))
        for name in layers:
            rows = sorted((r for r in history if r["layer"] == name), key=lambda r: r["epoch"])
            peak = max(rows, key=lambda r: r["ixt"])
            lines.append(f"  {name:<8} {rows[0]['ixt']:6.3f} -> {peak['ixt']:6.3f} ({peak['epoch']:>5}) -> "
                         f"{rows[-1]['ixt']:6.3f}   I(Y;T) {rows[-1]['iyt']:.3f}")
        for key, symbol in (("ixt", "I(X;T)"), ("iyt", "I(Y;T)")):
            sequences = [s for s in (row_convergence(row, key) for row in history) if s is not None]
            moved = [s for s in sequences if not s.converged()]
            if moved:
                falling = sum(s.shift < 0 for s in moved)
                lines.append(f"  R-convergence of {symbol}: {len(moved)} of {len(sequences)} estimates moved by more "
                             f"than 3 standard errors between R/2 and R = {config['repeats']} ({falling} down, "
                             f"{len(moved) - falling} up; columns {key}_r_half, {key}_r_quarter): more samples "
                             "per input would change them")
    return "\n".join(lines)


def _protocol_settings(protocol, epochs, repeats, n_points, mc_samples, mc_queries) -> tuple:
    """(epochs, repeats, n_points, mc_queries) with the protocol's defaults filled in;
    n_points is None for the official protocol, whose epochs are fixed."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "official":
        if epochs is not None and epochs > OFFICIAL_LAST_EPOCH:
            raise ValueError(f"epochs: the official protocol's schedule ends at epoch {OFFICIAL_LAST_EPOCH}, "
                             f"got {epochs}")
        if n_points is not None:
            raise ValueError("n_points: the official protocol estimates at its own 84 epochs "
                             "(unique(round(logspace(0, log10(9999), 100)))); leave n_points out")
        queries = OFFICIAL_MC_QUERIES if mc_queries is None and mc_samples is None else mc_queries
        return (OFFICIAL_LAST_EPOCH if epochs is None else epochs,
                OFFICIAL_REPEATS if repeats is None else repeats, None, queries)
    return (DEFAULT_EPOCHS if epochs is None else epochs, DEFAULT_REPEATS if repeats is None else repeats,
            DEFAULT_POINTS if n_points is None else n_points, mc_queries)


def run(out_dir, *, protocol="ours", seeds=1, epochs=None, beta=0.005, activation="tanh", repeats=None,
        n_points=None, lr=4e-4, batch_size=256, max_centers=None, mc_samples=None, mc_queries=None, seed=0,
        convergence=True, progress=True, num_threads=None, overwrite=False) -> dict:
    """Train the noisy SZT network and record its information plane, for one or more seeds.

    Parameters
    ----------
    out_dir : str or path
        Output folder (created).  With ``seeds > 1`` each run writes into
        ``seed_<i>/`` and the aggregate over the seeds goes to ``out_dir`` itself.
    protocol : {"ours", "official"}
        ``"ours"`` (default): X uniform over all 4096 distinct patterns, R = 16,
        20 log-spaced estimate epochs from 0 to 10,000.  ``"official"``: the protocol of
        the paper's code (kgreenewald/smoothMI): 4096 inputs drawn uniformly with
        replacement from the patterns (about 2590 distinct, H(X) about 7.74 nats), R =
        1000, and the 84 estimate epochs ``unique(round(logspace(0, log10(9999), 100)))``.
        Training is the same in both.
    seeds : int
        Number of independent runs (default 1).  Run 0 is the run of ``seed`` itself;
        run i >= 1 an independent stream derived from ``seed``
        (:func:`~infoflow.experiments.training.run_seeds`).  Their mean and spread per
        layer and epoch are written as ``szt_seeds.csv``/``.json`` and drawn in
        ``szt_seeds.png``.
    epochs : int, optional
        Training epochs (default 10,000, the paper's; 9999 for the official protocol).
    beta : float
        Noise std of every hidden layer, in activation units (default 0.005).
    activation : {"tanh", "relu"}
        Hidden activation (default tanh).
    repeats : int, optional
        R, samples per input for the conditional entropies (default 16; 1000 for the
        official protocol).  Small R biases I(X;T) of the layers after the first upward
        (the conditional entropies are plug-in estimates from R points); every estimate
        also carries its values at R/2 and R/4 (``convergence``) to show how far.
    n_points : int, optional
        Number of log-spaced epochs (0 and ``epochs`` included) with estimates (default
        20; not for the official protocol).
    lr, batch_size : float, int
        Adam learning rate (4e-4) and minibatch size (256).
    max_centers, mc_samples, mc_queries : int, optional
        Estimator options (see :func:`infoflow.information_flow`); default: all
        centres (a subset biases h(T) down) and 65536 Monte Carlo queries per entropy
        (4096 for the official protocol, see :data:`OFFICIAL_MC_QUERIES`).
    seed : int
        Seeds everything: ``torch.manual_seed`` (initial weights, training noise), and
        independent streams derived from it for the split, the minibatch order, the
        evaluation noise, the estimates and the official protocol's inputs.
    convergence : bool
        Record the R-convergence sequences (default True; 1.7 to 3 times the
        estimation time).
    progress : bool
        Show a progress bar over the epochs.
    num_threads : int, optional
        CPU threads for torch and the estimators.  Default: torch single-threaded (faster
        for this small network, and robust on a busy machine; see
        :func:`~infoflow.experiments.training.torch_threads`) and the estimators on all
        threads.  Torch's setting is restored afterwards.
    overwrite : bool
        Replace the files of an earlier run in ``out_dir`` (default False:
        FileExistsError naming them, before any training).

    Returns
    -------
    dict
        ``history`` (information rows), ``training`` (loss/accuracy rows), ``config``,
        ``files`` (written paths) and ``interrupted`` (True after Ctrl-C); with
        ``seeds > 1`` those of every run under ``runs`` and ``history``/``files``
        of the aggregate.
    """

    from .seeds import run_plan

    plan = seed_plan(protocol=protocol, epochs=epochs, beta=beta, activation=activation, repeats=repeats,
                     n_points=n_points, lr=lr, batch_size=batch_size, max_centers=max_centers, mc_samples=mc_samples,
                     mc_queries=mc_queries, convergence=convergence, progress=progress, num_threads=num_threads)
    return run_plan(plan, out_dir, seed=seed, seeds=seeds, overwrite=overwrite)


def seed_plan(*, protocol="ours", epochs=None, beta=0.005, activation="tanh", repeats=None, n_points=None, lr=4e-4,
              batch_size=256, max_centers=None, mc_samples=None, mc_queries=None, convergence=True, progress=True,
              num_threads=None):
    """The validated options of :func:`run` (all but ``out_dir``, ``seeds``, ``seed`` and
    ``overwrite``) as a :class:`~infoflow.experiments.seeds.SeedPlan`, for
    :func:`~infoflow.experiments.seeds.run_plan` or :func:`infoflow.distributed.sweep`."""
    from .._intake import thread_count
    from .seeds import SeedPlan

    epochs, repeats, n_points, mc_queries = _protocol_settings(protocol, epochs, repeats, n_points, mc_samples,
                                                               mc_queries)
    check_options(epochs, beta, activation, repeats, n_points or 1, lr, batch_size)
    thread_count(num_threads)
    options = dict(protocol=protocol, epochs=int(epochs), beta=beta, activation=activation, repeats=repeats,
                   n_points=n_points, lr=lr, batch_size=batch_size, max_centers=max_centers,
                   mc_samples=mc_samples, mc_queries=mc_queries, convergence=bool(convergence), progress=progress,
                   num_threads=num_threads)
    return SeedPlan("szt", "szt", FILES, options, num_threads)


def aggregate(out: Path, results, *, seed: int, runs=None) -> dict:
    """Write ``szt_seeds.csv``/``.json``/``.png``: the mean and spread of the runs' ``results``."""
    from .seeds import write_seed_aggregate

    return write_seed_aggregate(out, "szt", results, title=_title(results[0]["config"], len(results)), runs=runs)


def _title(config: dict, n_seeds: int) -> str:
    """The figure title: network, protocol, beta, inputs, R, epochs, seeds."""
    seeds = f"{n_seeds} runs" if n_seeds > 1 else f"seed {config['seed_label']}"
    if config["protocol"] == "official":
        distinct = "each run its own" if n_seeds > 1 else f"{config['n_distinct_inputs']} distinct,"
        inputs = f"m = {config['n_inputs']} inputs drawn with replacement ({distinct} H(X) = " \
                 f"{config['input_entropy']:.2f} nats{' in run 0' if n_seeds > 1 else ''})"
    else:
        inputs = f"m = {config['n_inputs']} distinct inputs"
    return (f"SZT 12-10-7-5-4-3-2 {config['activation']}, {config['protocol']} protocol: beta = {config['beta']:g}, "
            f"{inputs}, R = {config['repeats']}, {config['epochs_completed']} epochs, {seeds}")


def run_one(out: Path, *, protocol, epochs, beta, activation, repeats, n_points, lr, batch_size, max_centers,
            mc_samples, mc_queries, convergence, progress, num_threads, kernel_threads, root, torch_seed,
            seed_label) -> dict:
    """One run into the folder ``out``, from the SeedSequence ``root`` and ``torch_seed``
    (its result dict, as :func:`run` returns for one seed); the other keywords are the
    options of a :func:`seed_plan`.  Called by :class:`~infoflow.experiments.seeds.SeedPlan`."""
    import torch

    from ..datasets import szt
    from ..nn import NoisyMLP
    from ..recorder import InformationPlane

    started = time.perf_counter()
    x, y = szt()
    streams = seed_streams(root)
    split = split_dataset(x, y, streams["split"])
    # X for the estimates: all patterns once (ours), or drawn with replacement (official).
    inputs = official_inputs(len(x), streams["inputs"]) if protocol == "official" else np.arange(len(x))
    torch.manual_seed(torch_seed)
    model = NoisyMLP(WIDTHS, activation=activation, beta=beta)
    trainer = Trainer(model, split, lr=lr, batch_size=batch_size, streams=streams)
    if protocol == "official":
        schedule = {"epochs": official_schedule(epochs)}
    else:
        schedule = {"max_epoch": epochs, "n_points": n_points}
    plane = InformationPlane(model, x[inputs], y[inputs], repeats=repeats, mc_samples=mc_samples,
                             mc_queries=mc_queries, max_centers=max_centers,
                             rng=np.random.default_rng(streams["estimates"]), num_threads=kernel_threads,
                             convergence=convergence, **schedule)
    training: list[dict] = []

    def at_epoch(epoch: int) -> str | None:
        if not plane.due(epoch):
            return None
        metrics = trainer.evaluate()
        with warnings.catch_warnings():
            # Unconverged R-sequences are counted in the summary and flagged in the data
            # (column "converged"), rather than printed once per layer and epoch.
            warnings.simplefilter("ignore", RConvergenceWarning)
            flow = plane.record(epoch)
        # Appended after the record: an interrupted record leaves both tables consistent.
        training.append({"epoch": epoch, **metrics})
        return (f"| epoch {epoch}: test acc {metrics['test_accuracy']:.3f}, "
                f"I(X;T_last) {flow[-1].ixt:.2f} nats")

    with stoppable("szt") as stopped:
        run_training(trainer, max(plane.schedule, default=0), at_epoch, progress=progress, desc="szt training")

    config = {
        "experiment": "szt", "protocol": protocol, "widths": list(WIDTHS), "activation": activation,
        "beta": beta, "epochs": max(plane.schedule, default=0), "epochs_completed": trainer.epochs_done,
        "interrupted": stopped[0], "repeats": repeats, "convergence": convergence, "n_points": len(plane.schedule),
        "schedule": plane.schedule, "recorded_epochs": plane.recorded_epochs, "lr": lr, "batch_size": batch_size,
        "max_centers": max_centers, "mc_samples": mc_samples, "mc_queries": mc_queries, "seed_label": seed_label,
        "seed_entropy": str(root.entropy), "seed_spawn_key": list(root.spawn_key), "torch_seed": torch_seed,
        "num_threads": num_threads, "torch_threads": torch.get_num_threads(), "estimator_threads": kernel_threads,
        "n_inputs": int(len(inputs)), "n_distinct_inputs": int(len(np.unique(inputs))),
        "input_entropy": plane.input_entropy, "n_train": int(split.x_train.shape[0]),
        "n_test": int(split.x_test.shape[0]), "ln_m": math.log(len(inputs)),
        "label_entropy": plane.label_entropy, "unit": "nats",
        "seconds": time.perf_counter() - started,
        "torch": torch.__version__, "python": platform.python_version(),
    }
    # run_each checked these before training; an earlier run's files go first, so that
    # an interrupted save leaves none of them beside this run's.
    remove_files(out / name for name in FILES)
    files = list(plane.save(out / "szt_information", overwrite=True))
    files.append(write_csv(out / "szt_training.csv", training) if training
                 else write_header_csv(out / "szt_training.csv", _TRAINING_FIELDS))
    files.append(write_json(out / "szt_config.json", config))
    history = plane.history
    if history:
        files.append(plane.plot(out / "szt_information_plane.png", title=_title(config, 1)))
    print(_summary(history, training, config))
    report_written(files, out)
    return {"history": history, "training": training, "config": config, "files": files,
            "interrupted": stopped[0]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of ``infoflow reproduce szt``."""
    parser.add_argument("--protocol", choices=PROTOCOLS, default="ours",
                        help="ours (default): all 4096 distinct inputs, R = 16, 20 estimate epochs; official: the "
                             "paper's code, 4096 inputs drawn with replacement, R = 1000, 84 estimate epochs")
    parser.add_argument("--seeds", type=int, default=1,
                        help="independent runs from --seed, with mean and spread across them (default 1)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"training epochs (default {DEFAULT_EPOCHS}, the paper's; {OFFICIAL_LAST_EPOCH} "
                             "for the official protocol)")
    parser.add_argument("--beta", type=float, default=0.005, help="noise std of the hidden layers (default 0.005)")
    parser.add_argument("--activation", choices=("tanh", "relu"), default="tanh", help="hidden activation")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"R, samples per input for h(T|X) (default {DEFAULT_REPEATS}; "
                             f"{OFFICIAL_REPEATS} for the official protocol)")
    parser.add_argument("--points", dest="n_points", type=int, default=None,
                        help=f"log-spaced epochs with estimates (default {DEFAULT_POINTS}; not with the official "
                             "protocol)")
    parser.add_argument("--lr", type=float, default=4e-4, help="Adam learning rate (default 4e-4)")
    parser.add_argument("--batch-size", type=int, default=256, help="minibatch size (default 256)")
    parser.add_argument("--max-centers", type=int, default=None,
                        help="subset size for h(T) (default: all samples; a subset biases h(T) down)")
    parser.add_argument("--mc-samples", type=int, default=None, help="Monte Carlo draws per centre")
    parser.add_argument("--mc-queries", type=int, default=None,
                        help=f"Monte Carlo queries per entropy (default 65536; {OFFICIAL_MC_QUERIES} for the official "
                             "protocol)")
    parser.add_argument("--no-convergence", dest="convergence", action="store_false",
                        help="skip the estimates at R/2 and R/4 (faster; no R-convergence check)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--threads", dest="num_threads", type=int, default=None, help="CPU threads")
