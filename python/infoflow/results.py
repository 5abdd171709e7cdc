r"""Result types of the information-flow estimates: one layer's row, one model's layers, the flat columns.

:class:`LayerInformation` holds :math:`I(X;T_\ell)` and :math:`I(Y;T_\ell)` of one noisy
layer with their standard errors and R-convergence sequences; :class:`InformationFlow`
holds a model's layers (what :func:`~infoflow.information_flow` returns) and writes
them as CSV or JSON.  :data:`CONVERGENCE_FIELDS` and :data:`HISTORY_FIELDS` name the
columns of a flat row, as :class:`~infoflow.InformationPlane` records them.

This module needs only numpy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._output import write_csv, write_json
from .estimate import RConvergence

__all__ = [
    "LayerInformation",
    "InformationFlow",
    "convergence_columns",
    "row_convergence",
    "HISTORY_FIELDS",
    "CONVERGENCE_FIELDS",
]

#: The R-convergence columns of a row (see :class:`LayerInformation`): R, the two previous
#: levels of R and the estimates there, and whether the last halving of R moved neither
#: estimate by more than 3 standard errors.
CONVERGENCE_FIELDS = ("repeats", "r_half", "r_quarter", "ixt_r_half", "ixt_r_half_stderr", "ixt_r_quarter",
                      "ixt_r_quarter_stderr", "iyt_r_half", "iyt_r_half_stderr", "iyt_r_quarter",
                      "iyt_r_quarter_stderr", "converged")

#: The columns of :attr:`~infoflow.InformationPlane.history`, in order.
HISTORY_FIELDS = ("epoch", "layer", "width", "ixt", "ixt_stderr", "iyt", "iyt_stderr", "unit") + CONVERGENCE_FIELDS


@dataclass(frozen=True)
class LayerInformation:
    """The two mutual informations of one noisy layer.

    Attributes
    ----------
    name : str
        The noise module's name in ``model.named_modules()`` (``"noise1"``, ...).
    width : int
        :math:`d_\\ell`, the number of units of the layer.
    ixt, ixt_stderr : float
        :math:`I(X;T_\\ell)` and its Monte Carlo standard error, in ``unit``.
    iyt, iyt_stderr : float
        :math:`I(Y;T_\\ell)` and its Monte Carlo standard error, in ``unit``.
    unit : str
        ``"nats"`` (default), ``"bits"``, ...
    repeats : int
        R, the samples per input the estimates use: 1 for a layer that is deterministic
        given X (its estimates do not depend on R).
    ixt_convergence, iyt_convergence : RConvergence or None
        The estimates at R/4, R/2 and R from nested subsets of the samples (see
        :class:`~infoflow.RConvergence`); None when not computed.
    """

    name: str
    width: int
    ixt: float
    ixt_stderr: float
    iyt: float
    iyt_stderr: float
    unit: str = "nats"
    repeats: int = 1
    ixt_convergence: RConvergence | None = None
    iyt_convergence: RConvergence | None = None

    @property
    def converged(self) -> bool:
        """Whether neither estimate moved by more than 3 standard errors at the last
        halving of R (True when there is nothing to compare)."""
        return _all_converged(self.ixt_convergence, self.iyt_convergence)

    def to_dict(self) -> dict:
        """The fields as one flat row: the scalar fields, then the
        :data:`CONVERGENCE_FIELDS` (None where a level does not exist)."""
        row = {key: value for key, value in asdict(self).items() if not key.endswith("_convergence")}
        row.update(convergence_columns(self.repeats, self.ixt_convergence, self.iyt_convergence))
        return row


def convergence_columns(repeats: int, ixt: RConvergence | None, iyt: RConvergence | None) -> dict:
    """The :data:`CONVERGENCE_FIELDS` of one row: the previous two levels of R
    (``r_half``, ``r_quarter``) and both estimates there, None where absent (an empty
    CSV cell, a JSON null)."""
    row = {"repeats": int(repeats)}
    levels = ixt.repeats if ixt is not None else iyt.repeats if iyt is not None else (repeats,)
    for back, suffix in ((2, "half"), (3, "quarter")):
        row[f"r_{suffix}"] = int(levels[-back]) if len(levels) >= back else None
    for key, sequence in (("ixt", ixt), ("iyt", iyt)):
        for back, suffix in ((2, "half"), (3, "quarter")):
            present = sequence is not None and len(sequence.values) >= back
            row[f"{key}_r_{suffix}"] = float(sequence.values[-back]) if present else None
            row[f"{key}_r_{suffix}_stderr"] = float(sequence.stderrs[-back]) if present else None
    # None: nothing was checked (no sequence recorded), which is not the same as converged.
    row["converged"] = None if ixt is None and iyt is None else _all_converged(ixt, iyt)
    return row


def row_convergence(row: Mapping[str, Any], key: str) -> RConvergence | None:
    """The R-convergence sequence of ``key`` (``"ixt"`` or ``"iyt"``) rebuilt from a flat
    row (:data:`HISTORY_FIELDS`), or None when the row has no smaller level."""
    if row.get("r_half") is None:
        return None
    levels = [(row.get("r_quarter"), "_r_quarter"), (row["r_half"], "_r_half"), (row["repeats"], "")]
    levels = [(r, suffix) for r, suffix in levels if r is not None]
    return RConvergence(tuple(int(r) for r, _ in levels), tuple(float(row[f"{key}{s}"]) for _, s in levels),
                        tuple(float(row[f"{key}{s}_stderr"]) for _, s in levels), str(row.get("unit", "nats")))


def _all_converged(*sequences: RConvergence | None) -> bool:
    return all(sequence is None or sequence.converged() for sequence in sequences)


class InformationFlow(Sequence):
    """per-layer results of :func:`~infoflow.information_flow`, in forward order.

    A sequence of :class:`LayerInformation` (iterate, ``len``, index by position), also
    indexable by layer name (``flow["noise3"]``).

    Attributes
    ----------
    layers : tuple of LayerInformation
        One row per noisy layer.
    beta : float
        The noise standard deviation the estimates are for (activation units).
    repeats : int
        R, forward passes per input used for the conditional distributions.
    n_inputs : int
        m, the number of inputs X is uniform over (I(X;T) <= ln m).
    unit : str
        Unit of every value.
    """

    def __init__(self, layers: Iterable[LayerInformation], *, beta: float, repeats: int,
                 n_inputs: int, unit: str = "nats"):
        self.layers = tuple(layers)
        self.beta = float(beta)
        self.repeats = int(repeats)
        self.n_inputs = int(n_inputs)
        self.unit = unit

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, key):
        if isinstance(key, str):
            for layer in self.layers:
                if layer.name == key:
                    return layer
            raise KeyError(f"no layer named {key!r}; layers: {[layer.name for layer in self.layers]}")
        return self.layers[key]

    def __iter__(self) -> Iterator[LayerInformation]:
        return iter(self.layers)

    def __repr__(self) -> str:
        return (f"InformationFlow({len(self.layers)} layers, beta={self.beta:g}, "
                f"repeats={self.repeats}, n_inputs={self.n_inputs}, unit={self.unit!r})")

    def __str__(self) -> str:
        header = (f"Information flow over m = {self.n_inputs} inputs, R = {self.repeats} repeats, "
                  f"beta = {self.beta:g} (values in {self.unit}, ± 1 Monte Carlo standard error)")
        lines = [header, f"{'layer':<12}{'width':>6}   {'I(X;T)':>18}   {'I(Y;T)':>18}   I(X;T) at smaller R"]
        for row in self.layers:
            ixt = f"{row.ixt:.4f} ± {row.ixt_stderr:.4f}"
            iyt = f"{row.iyt:.4f} ± {row.iyt_stderr:.4f}"
            sequence = row.ixt_convergence
            trend = ""
            if sequence is not None and len(sequence.values) > 1:
                trend = ", ".join(f"{v:.4f} (R={r})" for r, v in zip(sequence.repeats[:-1], sequence.values[:-1]))
                trend += "" if row.converged else "  (still moving with R)"
            elif row.repeats == 1 and self.repeats > 1:
                trend = "(deterministic given X: exact in R)"
            lines.append(f"{row.name:<12}{row.width:>6}   {ixt:>18}   {iyt:>18}   {trend}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready dict: the metadata and ``"layers"``, a list of row dicts, each with
        its full R-convergence sequences (``"ixt_convergence"``, ``"iyt_convergence"``)."""
        def layer_dict(layer: LayerInformation) -> dict:
            row = layer.to_dict()
            for key in ("ixt_convergence", "iyt_convergence"):
                sequence = getattr(layer, key)
                row[key] = None if sequence is None else sequence.to_dict()
            return row

        return {
            "beta": self.beta,
            "repeats": self.repeats,
            "n_inputs": self.n_inputs,
            "unit": self.unit,
            "layers": [layer_dict(layer) for layer in self.layers],
        }

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write one row per layer (the :class:`LayerInformation` fields) to ``path``."""
        return write_csv(path, [layer.to_dict() for layer in self.layers])

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` to ``path`` as JSON."""
        return write_json(path, self.to_dict())
