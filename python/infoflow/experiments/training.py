"""The shared training of the experiments' networks: seeds, data split, minibatch Adam, the epoch loop.

The ``szt``, ``binning`` and ``ib-tradeoff`` experiments train the same way: one seed
gives independent random streams (:func:`seed_streams`) for the split
(:func:`split_dataset`), the minibatch order and the evaluation noise of a
:class:`Trainer`; :func:`run_training` runs the epochs and calls back at each, and
:func:`torch_threads` sets torch's threads for a run.  :func:`run_seeds` derives the
roots of several independent runs from one seed.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["seed_streams", "run_seeds", "Split", "split_dataset", "Trainer", "run_training", "torch_threads",
           "check_options", "TRAIN_FRACTION"]

#: The share of the rows :func:`split_dataset` trains on by default.
TRAIN_FRACTION = 0.8

# Independent random streams derived from the one seed (numpy SeedSequence children;
# new names go at the end, so that the earlier streams stay what they were).
_STREAMS = ("split", "shuffle", "eval-noise", "estimates", "inputs")
# The spawn-key branch of the runs i >= 1 of --seeds (the named streams use one-element keys).
_RUNS_KEY = 0x5EED


def seed_streams(seed: int | np.random.SeedSequence) -> dict[str, np.random.SeedSequence]:
    """Named, independent SeedSequences derived from ``seed`` (one per use)."""
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    # The children spawn() would give, built without advancing ``root``'s spawn counter, so
    # that every call with the same root gives the same streams.
    return {name: np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, i))
            for i, name in enumerate(_STREAMS)}


def run_seeds(seed: int, count: int) -> list[tuple[np.random.SeedSequence, int]]:
    """The (root SeedSequence, torch seed) of each of ``count`` runs from one ``seed``.

    Run 0 is the single run of ``seed`` itself (``SeedSequence(seed)`` and
    ``torch.manual_seed(seed)``), so ``--seeds 4`` includes the default run; run i >= 1
    is ``SeedSequence(seed, spawn_key=(_RUNS_KEY, i))``, an independent stream in its own
    branch of ``seed``'s tree (no other seed's streams can coincide with it), with a torch
    seed drawn from it.
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an integer, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed}")
    runs = [(np.random.SeedSequence(seed), int(seed))]
    for i in range(1, count):
        root = np.random.SeedSequence(seed, spawn_key=(_RUNS_KEY, i))
        runs.append((root, _torch_seed(root)))
    return runs


def _torch_seed(sequence: np.random.SeedSequence) -> int:
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))


@dataclass
class Split:
    """The dataset as torch tensors, split into training and test rows."""

    x_train: torch.Tensor  # noqa: F821
    y_train: torch.Tensor  # noqa: F821
    x_test: torch.Tensor  # noqa: F821
    y_test: torch.Tensor  # noqa: F821
    train_index: np.ndarray


def split_dataset(x: np.ndarray, y: np.ndarray, seed_sequence, fraction: float = TRAIN_FRACTION) -> Split:
    """A seeded random split: round(fraction * m) training rows, the rest for testing."""
    import torch

    m = x.shape[0]
    order = np.random.default_rng(seed_sequence).permutation(m)
    n_train = int(round(fraction * m))
    train, test = np.sort(order[:n_train]), np.sort(order[n_train:])
    as_tensor = torch.from_numpy
    return Split(as_tensor(x[train]), as_tensor(y[train]), as_tensor(x[test]), as_tensor(y[test]), train)


def _adam(parameters, lr: float):
    """Adam, fused where torch supports it: one kernel for all parameters makes a step of
    this tiny network about 30 % faster on a CPU (same algorithm, same hyper-parameters)."""
    import torch

    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # an older torch or an unsupported device
        return torch.optim.Adam(parameters, lr=lr)


class Trainer:
    """Minibatch Adam on the cross-entropy of the logits, with its own shuffling stream.

    Parameters
    ----------
    model : torch.nn.Module
        The network (its noise, if any, stays on while training, as in the paper).
    split : Split
        Training and test data.
    lr : float
        Adam learning rate.
    batch_size : int
        Minibatch size; the last batch of an epoch may be smaller.
    streams : dict of SeedSequence
        From :func:`seed_streams`.  The minibatch order comes from a dedicated
        ``torch.Generator`` (``"shuffle"``), and the evaluation noise from another
        (``"eval-noise"``), so that a noisy and a noiseless twin see the same minibatches
        and evaluating never changes the training.  The training noise itself uses
        torch's global generator (seeded by the caller).
    """

    def __init__(self, model, split: Split, *, lr: float, batch_size: int, streams):
        import torch

        self.model, self.split, self.batch_size = model, split, int(batch_size)
        self.optimizer = _adam(model.parameters(), lr)
        self.loss = torch.nn.CrossEntropyLoss()
        self.shuffle = torch.Generator().manual_seed(_torch_seed(streams["shuffle"]))
        self.eval_noise = torch.Generator().manual_seed(_torch_seed(streams["eval-noise"]))
        self.epochs_done = 0

    def train_epoch(self) -> float:
        """One pass over the training rows in a fresh random order; the mean batch loss (nats)."""
        import torch

        x, y = self.split.x_train, self.split.y_train
        order = torch.randperm(x.shape[0], generator=self.shuffle)
        x, y = x[order], y[order]  # one gather per epoch instead of one per batch
        self.model.train()
        total, batches = 0.0, 0
        for start in range(0, x.shape[0], self.batch_size):
            loss = self.loss(self.model(x[start:start + self.batch_size]), y[start:start + self.batch_size])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total, batches = total + loss.item(), batches + 1
        self.epochs_done += 1
        return total / batches

    def evaluate(self) -> dict[str, float]:
        """Cross-entropy (nats) and accuracy on the full training and test sets.

        The network is evaluated as it is, noise included (the noise is part of the model),
        with the evaluation noise stream so that the training stream is not advanced.
        """
        import torch

        from ..nn import named_noise_modules

        modules = [module for _, module in named_noise_modules(self.model)]
        saved = [module.generator for module in modules]
        self.model.eval()
        try:
            for module in modules:
                module.generator = self.eval_noise
            result = {}
            with torch.no_grad():
                for part, x, y in (("train", self.split.x_train, self.split.y_train),
                                   ("test", self.split.x_test, self.split.y_test)):
                    logits = self.model(x)
                    result[f"{part}_loss"] = float(self.loss(logits, y))
                    result[f"{part}_accuracy"] = float((logits.argmax(1) == y).double().mean())
        finally:
            for module, generator in zip(modules, saved):
                module.generator = generator
        return result


def run_training(trainer: Trainer, epochs: int, at_epoch: Callable[[int], str | None], *, progress: bool,
                 desc: str) -> None:
    """Train for ``epochs`` epochs, calling ``at_epoch(e)`` after e epochs (e = 0..epochs).

    ``at_epoch(0)`` sees the initial weights; a string it returns is shown in the progress
    bar (which counts the epochs).  Ctrl-C propagates (the caller wraps this in
    :func:`~infoflow._output.stoppable`); ``trainer.epochs_done`` then says how
    far training got.
    """
    from tqdm import tqdm

    status = ""
    with tqdm(total=epochs, desc=desc, unit="epoch", disable=not progress, dynamic_ncols=True) as bar:
        for epoch in range(epochs + 1):
            status = at_epoch(epoch) or status
            if epoch == epochs:
                break
            loss = trainer.train_epoch()
            bar.update(1)
            if epoch % 50 == 0:
                bar.set_postfix_str(f"loss={loss:.4f} {status}", refresh=False)


@contextmanager
def torch_threads(num_threads: int | None):
    """Set torch's CPU threads for the block; yields the thread count for the estimators.

    With ``num_threads`` None, torch runs single-threaded.  The network is far too small
    for intra-op parallelism to help (a step is ~0.4 ms of overhead), and on a busy
    machine two OpenMP threads stall each other at every barrier: with a neighbouring
    process on 2 cores, training took 476 ms/epoch with 2 threads and 8 ms with 1.  The
    estimators then get the previous thread count explicitly, because torch and
    infoflow's kernel share one OpenMP runtime (both load ``libgomp.so.1``), so
    ``torch.set_num_threads`` also changes the kernel's default.  Given ``num_threads``,
    both use it.  The previous setting is restored on exit.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1 if num_threads is None else int(num_threads))
    try:
        yield previous if num_threads is None else int(num_threads)
    finally:
        torch.set_num_threads(previous)


def check_options(epochs, beta, activation, repeats, n_points, lr, batch_size) -> None:
    """Validate the options that ``szt`` and ``binning`` share: TypeError or ValueError
    naming the first bad one (``activation`` must be ``"tanh"`` or ``"relu"``)."""
    from .._intake import positive_int, positive_real

    if isinstance(epochs, (bool, np.bool_)) or not isinstance(epochs, (int, np.integer)):
        raise TypeError(f"epochs: expected an integer, got {type(epochs).__name__}")
    if epochs < 0:
        raise ValueError(f"epochs: must be >= 0, got {epochs}")
    positive_real(beta, "beta")
    positive_real(lr, "lr")
    positive_int(repeats, "repeats", allow_none=False)
    positive_int(n_points, "n_points", allow_none=False)
    positive_int(batch_size, "batch_size", allow_none=False)
    if activation not in ("tanh", "relu"):
        raise ValueError(f"activation: expected 'tanh' or 'relu', got {activation!r}")

