"""The information-plane recorder: :func:`~infoflow.information_flow` over training, and its files.

:class:`InformationPlane` measures a model at the epochs of a schedule
(:mod:`infoflow.schedule`) while it trains, keeps the history as flat rows
(:data:`~infoflow.results.HISTORY_FIELDS`), writes it as CSV and JSON, reads it back
(:meth:`InformationPlane.load_history`) and draws it
(:func:`~infoflow.plot_information_plane`).

This module imports torch (through :mod:`infoflow.flow`); ``import infoflow`` does not.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._intake import monte_carlo_budget, positive_int, thread_count
from ._output import check_new_files, write_csv, write_header_csv, write_json
from ._random import make_rng
from .flow import information_flow, inputs_and_labels, model_beta
from .layer_terms import check_layer_budget
from .plots import plot_information_plane
from .results import CONVERGENCE_FIELDS, HISTORY_FIELDS, InformationFlow, LayerInformation
from .sampling import check_sample_rows
from .schedule import explicit_epochs, log_spaced_epochs, non_negative_int

__all__ = ["InformationPlane"]


def _input_entropy(x) -> float:
    """H(X) in nats for X uniform over the rows of ``x``: ln m when the rows are distinct,
    less when some repeat (inputs drawn with replacement).  It bounds I(X;T), since T
    depends on an input only through its value."""
    rows = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return _entropy_of_counts(np.unique(rows.reshape(len(rows), -1), axis=0, return_counts=True)[1])


def _label_entropy(labels: np.ndarray) -> float:
    """H(Y) in nats of the empirical label distribution."""
    return _entropy_of_counts(np.unique(labels, return_counts=True)[1])


def _entropy_of_counts(counts: np.ndarray) -> float:
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


class InformationPlane:
    """Records :func:`~infoflow.information_flow` at chosen epochs of a training loop.

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained; measured in place at each recorded epoch (see
        :func:`~infoflow.information_flow` for the requirements).
    x, y : arrays, or a torch Dataset or DataLoader and None
        The inputs and integer labels over which X and Y are uniform (use the whole
        dataset, not only the training split), as for :func:`~infoflow.information_flow`; a
        ``Dataset`` or ``DataLoader`` is iterated once, here.
    beta : float, optional
        Must equal the model's noise std if given (default: read from the model).
    epochs : sequence of int, optional
        Explicit epochs to record (sorted and deduplicated).  Exclusive with
        ``max_epoch``.
    max_epoch : int, optional
        Record ``n_points`` log-spaced epochs from 0 to ``max_epoch``
        (:func:`~infoflow.schedule.log_spaced_epochs`).  Epoch 0 means the initial weights and epoch e the
        weights after e epochs of training.
    n_points : int
        Number of epochs of the default schedule (default 20).
    repeats, mc_samples, mc_queries, max_centers, num_threads, convergence : optional
        Passed to :func:`~infoflow.information_flow` (R default 8; the R-convergence sequences
        are recorded by default).
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
        One generator for all records: the same seed and the same sequence of records
        give the same history.
    progress : bool
        Passed to :func:`~infoflow.information_flow`.

    Attributes
    ----------
    schedule : list of int
        The epochs that :meth:`due` answers True for (until recorded).
    history : list of dict
        One row per recorded (epoch, layer): the keys of ``HISTORY_FIELDS``
        (``epoch, layer, width, ixt, ixt_stderr, iyt, iyt_stderr, unit``, then the
        R-convergence columns ``CONVERGENCE_FIELDS``).
    n_inputs : int
        m, the rows of ``x``.
    input_entropy : float
        H(X) in nats, the upper bound of I(X;T): ln m when the rows of ``x`` are
        distinct, less when some repeat.
    label_entropy : float
        H(Y) in nats, the upper bound of I(Y;T).

    Examples
    --------
    A small network on 32 random inputs, recorded at 3 of its 11 epochs (training would
    follow each ``maybe_record``):

    >>> import torch
    >>> from infoflow.nn import NoisyMLP
    >>> x = torch.rand(32, 4)
    >>> y = (x[:, 0] > 0.5).long()
    >>> plane = InformationPlane(NoisyMLP([4, 3, 2], beta=0.1), x, y, max_epoch=10, n_points=3, repeats=2, rng=0)
    >>> plane.schedule
    [0, 1, 10]
    >>> for epoch in range(11):
    ...     _ = plane.maybe_record(epoch)
    >>> plane.recorded_epochs, len(plane.history)  # 3 epochs x 1 noisy layer
    ([0, 1, 10], 3)

    In a training loop of 1000 epochs, saved and drawn at the end:

    >>> plane = InformationPlane(net, x, y, max_epoch=1000, rng=0)  # doctest: +SKIP
    >>> for epoch in range(1001):  # doctest: +SKIP
    ...     plane.maybe_record(epoch)
    ...     if epoch < 1000:
    ...         train_one_epoch(net)
    >>> plane.save("out/run1")  # doctest: +SKIP
    >>> plane.plot("out/run1.png")  # doctest: +SKIP
    """

    def __init__(self, model, x, y=None, *, beta=None, epochs=None, max_epoch=None, n_points=20,
                 repeats=8, mc_samples=None, mc_queries=None, max_centers=None, rng=None, progress=False,
                 num_threads=None, convergence=True):
        import torch.nn as nn

        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        self.beta = model_beta(model, beta)  # fail now rather than at the first record
        x, labels = inputs_and_labels(x, y)
        self.n_inputs = int(x.shape[0])
        if (epochs is None) == (max_epoch is None):
            raise ValueError("epochs, max_epoch: give exactly one (an explicit list, or the last epoch "
                             "of a log-spaced schedule)")
        self.schedule = explicit_epochs(epochs) if epochs is not None else log_spaced_epochs(max_epoch, n_points)
        self.model, self.x, self.y = model, x, labels
        self.label_entropy = _label_entropy(labels)
        self.input_entropy = _input_entropy(x)
        k, queries = monte_carlo_budget(mc_samples, mc_queries)
        n_rep = positive_int(repeats, "repeats", allow_none=False)
        check_sample_rows(self.n_inputs, n_rep)
        check_layer_budget(self.n_inputs, n_rep, k, queries)
        self.options = dict(repeats=n_rep,
                            mc_samples=k, mc_queries=queries,
                            max_centers=positive_int(max_centers, "max_centers"),
                            num_threads=thread_count(num_threads),
                            convergence=bool(convergence), progress=bool(progress))
        self._rng = make_rng(rng)
        self._history: list[dict] = []
        self._recorded: set[int] = set()

    @property
    def history(self) -> list[dict]:
        """The recorded rows (a copy), in recording order."""
        return [dict(row) for row in self._history]

    @property
    def recorded_epochs(self) -> list[int]:
        """The epochs recorded so far, sorted."""
        return sorted(self._recorded)

    def due(self, epoch: int) -> bool:
        """Whether ``epoch`` is in the schedule and not yet recorded."""
        epoch = non_negative_int(epoch, "epoch")
        return epoch in self.schedule and epoch not in self._recorded

    def record(self, epoch: int) -> InformationFlow:
        """Measure the model now and append its rows with this ``epoch``.

        Any epoch can be recorded, in the schedule or not; recording one twice raises
        ValueError.  The rows are appended only once every layer is estimated, so an
        interruption (Ctrl-C) leaves the history consistent.
        """
        epoch = non_negative_int(epoch, "epoch")
        if epoch in self._recorded:
            raise ValueError(f"epoch: {epoch} is already recorded")
        flow = information_flow(self.model, self.x, self.y, self.beta, rng=self._rng, **self.options)
        self._history.extend(_history_row(epoch, row) for row in flow)
        self._recorded.add(epoch)
        return flow

    def maybe_record(self, epoch: int) -> InformationFlow | None:
        """:meth:`record` if :meth:`due`, else None."""
        return self.record(epoch) if self.due(epoch) else None

    def to_dict(self) -> dict:
        """JSON-ready dict: settings, ``ln_m``, ``input_entropy``, ``label_entropy`` and ``history``."""
        return {
            "beta": self.beta,
            "n_inputs": self.n_inputs,
            "ln_m": math.log(self.n_inputs),
            "input_entropy": self.input_entropy,
            "label_entropy": self.label_entropy,
            "unit": "nats",
            "schedule": list(self.schedule),
            "repeats": self.options["repeats"],
            "convergence": self.options["convergence"],
            "mc_samples": self.options["mc_samples"],
            "mc_queries": self.options["mc_queries"],
            "max_centers": self.options["max_centers"],
            "history": self.history,
        }

    def save(self, out: str | os.PathLike, *, overwrite: bool = False) -> tuple[Path, Path]:
        """Write the history as CSV and JSON.

        Parameters
        ----------
        out : str or path
            A folder, existing or named with a trailing slash (created; the files are
            ``information_plane.csv`` and ``information_plane.json`` in it), or a path
            prefix (``out + ".csv"`` and ``out + ".json"``; its folder is created).
        overwrite : bool
            Replace existing files (default False: FileExistsError naming them, before
            anything is written).

        Returns
        -------
        (Path, Path)
            The CSV and JSON paths.  Each file is written atomically (complete or not
            at all).
        """
        prefix = _output_prefix(out, "information_plane")
        csv_path, json_path = check_new_files(prefix.parent, [prefix.name + ".csv", prefix.name + ".json"],
                                              overwrite=overwrite)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        _write_history_csv(csv_path, self._history)
        write_json(json_path, self.to_dict())
        return csv_path, json_path

    @staticmethod
    def load_history(path: str | os.PathLike) -> list[dict]:
        """Rows written by :meth:`save` (or any CSV/JSON with the ``HISTORY_FIELDS``).

        Parameters
        ----------
        path : str or path
            A ``.csv`` file, or a ``.json`` file holding a list of rows or a dict with a
            ``"history"`` list.

        Returns
        -------
        list of dict
            Rows with ``epoch`` and ``width`` as int, the values as float (NaN for empty
            cells) and ``layer``/``unit`` as str, equal to the saved history.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            with path.open(newline="") as handle:
                raw = list(csv.DictReader(handle))
        elif suffix == ".json":
            data = json.loads(path.read_text())
            raw = data.get("history") if isinstance(data, dict) else data
            if not isinstance(raw, list):
                raise ValueError(f"path: {path} holds no list of rows (nor a dict with 'history')")
        else:
            raise ValueError(f"path: expected a .csv or .json file, got {path.name!r}")
        return [_typed_row(row, path, i) for i, row in enumerate(raw)]

    def plot(self, path: str | os.PathLike, *, title: str | None = None) -> Path:
        """Draw the history with :func:`~infoflow.plot_information_plane`, with H(X) and H(Y) marked;
        the default title states beta, m and R.  A folder (existing, or named with a
        trailing slash) means ``information_plane.png`` in it, as for :meth:`save`."""
        prefix = _output_prefix(path, "information_plane")
        path = prefix.with_name(prefix.name + ".png") if prefix != Path(os.fspath(path)) else prefix
        path.parent.mkdir(parents=True, exist_ok=True)
        if title is None:
            title = (f"beta = {self.beta:g}, m = {self.n_inputs} inputs, R = {self.options['repeats']} "
                     "samples per input")
        return plot_information_plane(self._history, path, title=title,
                                      ixt_max=self.input_entropy, iyt_max=self.label_entropy)


def _history_row(epoch: int, layer: LayerInformation) -> dict:
    """One row of :attr:`InformationPlane.history`: the ``HISTORY_FIELDS``, in order."""
    row = {"epoch": epoch, **layer.to_dict()}
    row["layer"] = row.pop("name")
    return {key: row[key] for key in HISTORY_FIELDS}


def _output_prefix(out: str | os.PathLike, stem: str) -> Path:
    """Where ``save(out)`` writes: ``out/stem`` if ``out`` is a folder (it exists as one, or
    ends with a path separator, which :class:`~pathlib.Path` would drop), else ``out``."""
    text = os.fspath(out)
    separators = tuple(sep for sep in (os.sep, os.altsep) if sep)
    return Path(text) / stem if text.endswith(separators) or Path(text).is_dir() else Path(text)


def _write_history_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    # The header is written even for an empty history, so the file always states its columns.
    if rows:
        return write_csv(path, [{key: row[key] for key in HISTORY_FIELDS} for row in rows])
    return write_header_csv(path, HISTORY_FIELDS)


def _typed_row(row: Mapping[str, Any], path: Path, index: int) -> dict:
    # The R-convergence columns are optional, so that histories written before they
    # existed still load (as None, R unknown = 0).
    missing = [key for key in HISTORY_FIELDS if key not in row and key not in CONVERGENCE_FIELDS]
    if missing:
        raise ValueError(f"path: row {index} of {path} lacks the column(s) {missing}")

    def number(value) -> float:
        return math.nan if value is None or value == "" else float(value)

    def optional(value, kind):
        return None if value is None or value == "" else kind(float(value))

    converged = row.get("converged")
    typed = {"epoch": int(row["epoch"]), "layer": str(row["layer"]), "width": int(row["width"]),
             "unit": str(row["unit"]), "repeats": optional(row.get("repeats"), int) or 0,
             "converged": None if converged in (None, "", "None") else str(converged).lower() in ("true", "1")}
    for key in ("ixt", "ixt_stderr", "iyt", "iyt_stderr"):
        typed[key] = number(row[key])
    for key in ("r_half", "r_quarter"):
        typed[key] = optional(row.get(key), int)
    for key in CONVERGENCE_FIELDS:
        if key not in typed:
            typed[key] = optional(row.get(key), float)
    return {key: typed[key] for key in HISTORY_FIELDS}
