r"""Information flow through a noisy network: :math:`I(X;T_\ell)` and :math:`I(Y;T_\ell)` per layer.

:func:`information_flow` measures one trained (or untrained) model: it samples every
:class:`~infoflow.nn.GaussianNoise` layer with :func:`~infoflow.sampling.sample_layers`
and estimates both mutual informations with the sample-propagation estimators
:func:`~infoflow.mutual_information.mi_xt` and :func:`~infoflow.mutual_information.mi_yt`.
:class:`InformationPlane` calls it at chosen epochs of a training loop and keeps the
history, which :func:`plot_information_plane` draws.

X is uniform over the m given inputs and Y their labels, so every value lies between 0
and :math:`\ln m` (for I(X;T)) or :math:`H(Y)` (for I(Y;T)), up to estimation error.
Results are in nats unless ``base=`` says otherwise.

This module imports torch (through :mod:`infoflow.sampling`); ``import infoflow`` does not.

References
----------
Z. Goldfeld, E. van den Berg, K. Greenewald, I. Melnyk, N. Nguyen, B. Kingsbury and
Y. Polyanskiy, "Estimating Information Flow in Deep Neural Networks", ICML 2019.
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._intake import (
    class_labels,
    log_of_base,
    make_rng,
    monte_carlo_budget,
    positive_int,
    thread_count,
    torch_missing_error,
    unit_name,
)

try:
    import torch  # noqa: F401  (the models measured here are torch models)
except ModuleNotFoundError as _exc:
    raise torch_missing_error("infoflow.flow (information_flow, InformationPlane)", _exc) from None

from ._output import check_new_files, new_figure, save_figure, write_csv, write_header_csv, write_json
from .estimate import RConvergence
from .mutual_information import check_layer_budget, layer_information, warn_if_unconverged
from .nn import named_noise_modules
from .sampling import _check_inputs, _is_dataset, _sample_layers, check_sample_rows, dataset_arrays

__all__ = [
    "LayerInformation",
    "InformationFlow",
    "information_flow",
    "InformationPlane",
    "log_spaced_epochs",
    "plot_information_plane",
    "layer_style",
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

#: The columns of :attr:`InformationPlane.history`, in order.
HISTORY_FIELDS = ("epoch", "layer", "width", "ixt", "ixt_stderr", "iyt", "iyt_stderr", "unit") + CONVERGENCE_FIELDS

#: The most epochs a log-spaced schedule may have (``n_points``), 2**16: each is a full
#: :func:`information_flow`, and a schedule is built as a list.
MAX_POINTS = 1 << 16

# Relative tolerance when comparing an explicit beta with the modules' beta: a beta that
# went through float32 or a text file should still count as the same noise level.
_BETA_RTOL = 1e-6


# ---------------------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------------------

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
        :class:`~infoflow.estimate.RConvergence`); None when not computed.
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
    """Per-layer results of :func:`information_flow`, in forward order.

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


# ---------------------------------------------------------------------------------------
# information_flow
# ---------------------------------------------------------------------------------------

def _noise_beta(model, beta) -> float:
    """The noise std the estimates are for: the modules' common beta, checked against ``beta``."""
    modules = named_noise_modules(model)
    if not modules:
        raise ValueError(
            "model: contains no infoflow.nn.GaussianNoise layers, so I(X;T) is not defined "
            "(infinite or H(X) for a deterministic net); add GaussianNoise(beta) after each "
            "layer to measure, or use infoflow.binning for deterministic nets"
        )
    disabled = [name or "<model>" for name, module in modules if not module.enabled]
    if disabled:
        # A disabled module adds no noise, so the channel X -> T is not the one estimated.
        raise ValueError(
            f"model: GaussianNoise layer(s) {disabled} are disabled (enabled=False), so the "
            "network is not the noisy channel being estimated; enable them first"
        )
    betas = {module.beta for _, module in modules}
    if len(betas) > 1:
        per_layer = {name or "<model>": module.beta for name, module in modules}
        raise ValueError(
            f"model: the GaussianNoise layers have different beta {per_layer}; information_flow "
            "needs one noise level for all layers"
        )
    model_beta = betas.pop()
    if beta is None:
        return model_beta
    if isinstance(beta, (bool, np.bool_)) or not isinstance(beta, numbers.Real):
        raise TypeError(f"beta: expected None or a real number, got {type(beta).__name__}")
    if not math.isclose(float(beta), model_beta, rel_tol=_BETA_RTOL):
        raise ValueError(
            f"beta: {float(beta)!r} differs from the noise of the model's GaussianNoise layers "
            f"({model_beta!r}); the estimates are only meaningful for the noise the network "
            "actually adds. Pass beta=None, or set the layers' .beta to study another noise level"
        )
    return model_beta


def _inputs_and_labels(x, y) -> tuple[Any, np.ndarray]:
    """The inputs, validated as :func:`~infoflow.sampling.sample_layers` does (errors name
    ``x``), and the integer labels (errors name ``y``).  A torch ``Dataset`` or
    ``DataLoader`` ``x`` is iterated once for both (see
    :func:`~infoflow.sampling.dataset_arrays`)."""
    from_batches = None
    if _is_dataset(x):
        kind = type(x).__name__
        x, from_batches = dataset_arrays(x, "x")
        if from_batches is not None and y is not None:
            # A shuffling loader would give its inputs in another order than a separate y.
            raise ValueError(f"y: x is a {kind} whose batches carry labels; pass y=None to use them")
    x = _check_inputs(x, "x")
    m = int(x.shape[0])
    if from_batches is not None:
        return x, class_labels(from_batches, m, name="y (the labels in x's batches)", rows="x", expr="y")
    if y is None:
        raise TypeError("y: expected the labels, an integer array with one entry per row of x (y may be omitted "
                        "only when x is a torch Dataset or DataLoader whose batches carry the labels)")
    return x, class_labels(y, m, name="y", rows="x")


def _eval_mode(model):
    """Put ``model`` in eval mode; return a function restoring every submodule's mode."""
    previous = [(module, module.training) for module in model.modules()]
    model.eval()

    def restore() -> None:
        for module, training in previous:
            module.training = training

    return restore


# Repeats that agree to within this fraction of beta count as one point: the first noisy
# layer is deterministic given X, but a batched matrix product need not give bit-identical
# rows for repeated inputs (differences of a few float32 ulps).  Merging centres that are
# delta apart changes the entropy by O((delta / beta)^2), about 1e-6 nats here.
_DETERMINISTIC_RTOL = 1e-3


def _collapse_deterministic(samples: np.ndarray, beta: float) -> np.ndarray:
    """``samples[:, :1]`` when every input's R samples agree to 1e-3 beta, else ``samples``.

    A layer with no noise upstream (the first noisy layer) is a deterministic function of
    X: its R repeats are copies.  Keeping one makes h(T | X = x) = h_Z exact instead of a
    Monte Carlo estimate, and makes h(T) R times cheaper for the same mixture.
    """
    if samples.shape[1] > 1:
        tolerance = _DETERMINISTIC_RTOL * beta
        # Two repeats tell a noisy layer at once; only a deterministic one needs all.
        if np.max(np.abs(samples[:, 1] - samples[:, 0])) > tolerance:
            return samples
        if np.max(np.abs(samples - samples[:, :1])) <= tolerance:
            return samples[:, :1]
    return samples


def information_flow(model, x, y=None, beta=None, *, repeats=8, mc_samples=None, mc_queries=None, max_centers=None,
                     batch_size=65536, base=None, rng=None, num_threads=None, convergence=True,
                     progress=False) -> InformationFlow:
    r""":math:`I(X;T_\ell)` and :math:`I(Y;T_\ell)` for every noisy layer of a model.

    X is uniform over the m rows of ``x`` and Y is their label.  Every
    :class:`~infoflow.nn.GaussianNoise` module of ``model`` defines a layer
    :math:`T_\ell = S_\ell + Z_\ell`; its samples come from
    :func:`~infoflow.sampling.sample_layers` (R forward passes per input, all noise on),
    and the two mutual informations from the sample-propagation estimators of
    :func:`~infoflow.mutual_information.mi_xt` and :func:`~infoflow.mutual_information.mi_yt`,
    which share one estimate of h(T) per layer
    (:func:`~infoflow.mutual_information.layer_information`).

    Parameters
    ----------
    model : torch.nn.Module
        A model with at least one enabled ``GaussianNoise`` module, all with the same
        ``beta`` (e.g. a :class:`~infoflow.nn.NoisyMLP`).  It is run in ``eval()`` mode
        (each submodule's mode is restored afterwards), so that dropout or batch norm
        behave as at test time; ``GaussianNoise`` adds its noise in both modes.
    x : numpy.ndarray or torch.Tensor, shape (m, ...), or torch Dataset or DataLoader
        The inputs, floating point (see ``sample_layers``).  Use the whole dataset: X is
        uniform over these rows, so I(X;T) <= ln m.  A ``Dataset`` or ``DataLoader`` is
        iterated once (:func:`~infoflow.sampling.dataset_arrays`): its batches' first
        entries are the inputs and their second entries, when present, the labels.
    y : numpy.ndarray or torch.Tensor of integers, shape (m,), optional
        The class index of each input (for one-hot rows pass ``y.argmax(1)``).  Required
        unless ``x`` is a Dataset or DataLoader whose batches carry the labels (then it
        must be None).
    beta : float, optional
        Noise standard deviation, in activation units.  None (default) reads it from the
        model's ``GaussianNoise`` modules.  An explicit value must equal theirs (relative
        tolerance 1e-6): the estimators assume that the noise in :math:`T = S + Z` is the
        noise the network adds and propagates, so estimating with another beta would
        mix two channels.  To study another noise level, set the modules' ``beta``.
    repeats : int, keyword-only
        R >= 1, samples of :math:`S_\ell` per input for the conditional entropies
        :math:`h(T_\ell | X = x_i)` (default 8), with m R <= 2**31.  More repeats reduce the (downward)
        plug-in bias of the conditional entropies, which biases I(X;T) upward in layers
        after the first.  At small beta the kernel's pruning makes the cost grow about
        linearly with m R (the paper's R = 1000 on 4096 inputs takes seconds per layer).
    mc_samples : int, optional
        K, Monte Carlo draws per mixture centre for every entropy (default: the query
        budget ``mc_queries`` instead, see ``mi_xt``).
    mc_queries : int, optional
        Monte Carlo queries for h(T), and in total for the conditional terms (default
        65536).  A budget (``mc_samples`` or ``mc_queries``) that asks for more than 2**31
        queries for any term is a ValueError, raised before sampling.
    max_centers : int, optional
        Estimate h(T) (and each class's entropy for I(Y;T)) from a random subset of at
        most this many of the m R samples (default: all).  Faster, but a subset of a
        well-separated mixture has a lower entropy, a bias that ``stderr`` does not include.
    batch_size : int, keyword-only
        The most rows per forward pass while sampling (default 65536: at large R, fewer
        and larger passes sample faster; lower it for a large model on a small GPU).
    base : float, optional
        Logarithm base of the results: None (default) for nats, 2 for bits.
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
        The one source of randomness (Scientific Python SPEC 7,
        https://scientific-python.org/specs/spec-0007/): it seeds the network's noise during sampling
        and then drives every estimator call, in layer order.  The same seed reproduces
        the result exactly.
    num_threads : int, optional
        CPU threads for the estimation kernels (default: all).
    convergence : bool
        Also estimate every layer from the first R/2 and R/4 samples of each input
        (default True; no new forward passes, but 1.7 to 3 times the estimation time)
        and report the sequences (``LayerInformation.ixt_convergence``, the ``*_r_half``
        and ``*_r_quarter`` columns of the CSV).  A layer whose estimate moved by more
        than 3 standard errors at the last halving of R gets an
        :class:`~infoflow.estimate.RConvergenceWarning` naming it.  The values at R are
        the same either way.
    progress : bool
        Show a tqdm progress bar over the layers.

    Returns
    -------
    InformationFlow
        One :class:`LayerInformation` per noisy layer, in forward order, with values and
        Monte Carlo standard errors in nats (or ``base`` units) and, with
        ``convergence``, their R-convergence sequences.

    Raises
    ------
    TypeError
        ``model`` is not a ``torch.nn.Module``; ``x`` or ``y`` of a wrong type or dtype;
        ``beta`` not a real number.
    ValueError
        The model has no ``GaussianNoise`` layer, a disabled one, or layers with
        different beta; an explicit ``beta`` differs from the model's; ``y`` does not
        have one label per row of ``x``; or any error of ``sample_layers``, ``mi_xt``
        and ``mi_yt`` (each names its argument).

    Notes
    -----
    A layer whose R samples agree for every input to within 1e-3 beta (no noise
    upstream, e.g. the first noisy layer, equal up to floating-point rounding) is
    deterministic given X; it is estimated from one sample per input, so that
    :math:`h(T|X=x) = h_Z = \frac d2 \ln(2\pi e\beta^2)` exactly (its R-convergence
    sequence has the single level R = 1).  The standard errors are Monte Carlo errors
    only; the plug-in error of finite samples (in m R for h(T), in R for the
    conditionals) is not included: the R-convergence sequence shows how much of the
    latter is left.

    Examples
    --------
    >>> from infoflow.datasets import szt
    >>> from infoflow.nn import NoisyMLP
    >>> x, y = szt()
    >>> flow = information_flow(NoisyMLP([12, 10, 7, 5, 4, 3, 2]), x, y, rng=0)  # doctest: +SKIP
    >>> print(flow)  # doctest: +SKIP
    Information flow over m = 4096 inputs, R = 8 repeats, beta = 0.005 (values in nats, ...)
    layer        width               I(X;T)               I(Y;T)   I(X;T) at smaller R
    noise1          10      8.3178 ± 0.0000      0.6926 ± 0.0000   (deterministic given X: exact in R)
    noise2           7      8.3137 ± 0.0054      0.6897 ± 0.0049   8.3189 (R=2), 8.3210 (R=4)
    noise3           5      7.8800 ± 0.0051      0.5135 ± 0.0049   7.9623 (R=2), 7.9128 (R=4)  (still moving with R)
    ...
    """
    import torch.nn as nn

    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    beta = _noise_beta(model, beta)
    x, labels = _inputs_and_labels(x, y)
    m = int(x.shape[0])
    n_rep = positive_int(repeats, "repeats", allow_none=False)
    # Validate the estimator options now, before the sampling pass spends any time.
    check_sample_rows(m, n_rep)
    k, queries = monte_carlo_budget(mc_samples, mc_queries)
    check_layer_budget(m, n_rep, k, queries)
    positive_int(max_centers, "max_centers")
    thread_count(num_threads)
    log_of_base(base)
    generator = make_rng(rng)

    restore = _eval_mode(model)
    try:
        samples = _sample_layers(model, x, "x", repeats=n_rep, batch_size=batch_size, rng=generator)
    finally:
        restore()

    options = dict(mc_samples=mc_samples, mc_queries=mc_queries, max_centers=max_centers, base=base,
                   rng=generator, num_threads=num_threads, convergence=bool(convergence), warn=False)
    items = samples.items()
    if progress:
        from tqdm import tqdm

        items = tqdm(items, total=len(samples), desc="information flow", unit="layer")
    rows = []
    for name, layer_samples in items:
        s = _collapse_deterministic(layer_samples, beta)
        ixt, iyt = layer_information(s, labels, beta, **options)  # one h(T) for both
        for key, estimate in (("ixt", ixt), ("iyt", iyt)):
            if estimate.convergence is not None:
                warn_if_unconverged(key, estimate.convergence, where=f"{name}: ", stacklevel=2)
        rows.append(LayerInformation(name, int(s.shape[2]), float(ixt.value), float(ixt.stderr),
                                     float(iyt.value), float(iyt.stderr), ixt.unit, int(s.shape[1]),
                                     ixt.convergence, iyt.convergence))
    return InformationFlow(rows, beta=beta, repeats=n_rep, n_inputs=m, unit=unit_name(base))


# ---------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------

def _non_negative_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name}: must be >= 0, got {value}")
    return int(value)


def log_spaced_epochs(max_epoch: int, n_points: int = 20) -> list[int]:
    """``n_points`` distinct integer epochs from 0 to ``max_epoch``, log-spaced.

    Always contains 0 (the initial weights) and ``max_epoch``, and 1 when there are at
    least 3 points.  Epochs after 1 follow
    a geometric progression; where it would repeat an integer (at the start), the next
    epoch is the previous one plus 1 and the ratio is recomputed for the points left, so
    the result has exactly ``n_points`` entries.

    Parameters
    ----------
    max_epoch : int
        The last epoch, >= 0.
    n_points : int
        The number of epochs, >= 2 (>= 1 when ``max_epoch`` is 0) and at most 2**16
        (:data:`MAX_POINTS`).  When it exceeds ``max_epoch + 1``, every epoch
        0..max_epoch is returned.

    Returns
    -------
    list of int
        Sorted, distinct epochs.

    Examples
    --------
    >>> log_spaced_epochs(10000, 6)
    [0, 1, 10, 100, 1000, 10000]
    >>> log_spaced_epochs(3, 10)
    [0, 1, 2, 3]
    """
    max_epoch = _non_negative_int(max_epoch, "max_epoch")
    n_points = positive_int(n_points, "n_points", allow_none=False)
    if n_points > MAX_POINTS:
        raise ValueError(f"n_points: {n_points} is more than the maximum of 2**16 = {MAX_POINTS} epochs to record "
                         "(each record is a full information_flow)")
    if max_epoch == 0:
        return [0]
    if n_points < 2:
        raise ValueError(f"n_points: must be >= 2 to include epoch 0 and max_epoch={max_epoch}, got {n_points}")
    if n_points >= max_epoch + 1:
        return list(range(max_epoch + 1))
    if n_points == 2:
        return [0, max_epoch]
    epochs = [0, 1]
    for left in range(n_points - 2, 0, -1):  # `left` points still to place in (current, max]
        current = epochs[-1]
        ratio = (max_epoch / current) ** (1.0 / left)
        # Ties (integers that round to the current one) step by one; never pass the end
        # before the last point, so there is room for every remaining epoch.
        step = max(current + 1, int(round(current * ratio)))
        epochs.append(min(step, max_epoch - left + 1))
    return epochs


def _explicit_epochs(epochs) -> list[int]:
    if isinstance(epochs, (str, bytes)) or not isinstance(epochs, Iterable):
        raise TypeError(f"epochs: expected a sequence of ints, got {type(epochs).__name__}")
    values = [_non_negative_int(e, f"epochs[{i}]") for i, e in enumerate(epochs)]
    if not values:
        raise ValueError("epochs: empty schedule")
    return sorted(set(values))


# ---------------------------------------------------------------------------------------
# InformationPlane
# ---------------------------------------------------------------------------------------

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
    """Records :func:`information_flow` at chosen epochs of a training loop.

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained; measured in place at each recorded epoch (see
        :func:`information_flow` for the requirements).
    x, y : arrays, or a torch Dataset or DataLoader and None
        The inputs and integer labels over which X and Y are uniform (use the whole
        dataset, not only the training split), as for :func:`information_flow`; a
        ``Dataset`` or ``DataLoader`` is iterated once, here.
    beta : float, optional
        Must equal the model's noise std if given (default: read from the model).
    epochs : sequence of int, optional
        Explicit epochs to record (sorted and deduplicated).  Exclusive with
        ``max_epoch``.
    max_epoch : int, optional
        Record ``n_points`` log-spaced epochs from 0 to ``max_epoch``
        (:func:`log_spaced_epochs`).  Epoch 0 means the initial weights and epoch e the
        weights after e epochs of training.
    n_points : int
        Number of epochs of the default schedule (default 20).
    repeats, mc_samples, mc_queries, max_centers, num_threads, convergence : optional
        Passed to :func:`information_flow` (R default 8; the R-convergence sequences
        are recorded by default).
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
        One generator for all records: the same seed and the same sequence of records
        give the same history.
    progress : bool
        Passed to :func:`information_flow`.

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
        self.beta = _noise_beta(model, beta)  # fail now rather than at the first record
        x, labels = _inputs_and_labels(x, y)
        self.n_inputs = int(x.shape[0])
        if (epochs is None) == (max_epoch is None):
            raise ValueError("epochs, max_epoch: give exactly one (an explicit list, or the last epoch "
                             "of a log-spaced schedule)")
        self.schedule = _explicit_epochs(epochs) if epochs is not None else log_spaced_epochs(max_epoch, n_points)
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
        epoch = _non_negative_int(epoch, "epoch")
        return epoch in self.schedule and epoch not in self._recorded

    def record(self, epoch: int) -> InformationFlow:
        """Measure the model now and append its rows with this ``epoch``.

        Any epoch can be recorded, in the schedule or not; recording one twice raises
        ValueError.  The rows are appended only once every layer is estimated, so an
        interruption (Ctrl-C) leaves the history consistent.
        """
        epoch = _non_negative_int(epoch, "epoch")
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
        """Draw the history with :func:`plot_information_plane`, with H(X) and H(Y) marked;
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


# ---------------------------------------------------------------------------------------
# Plot
# ---------------------------------------------------------------------------------------

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
_LINESTYLES = ("-", "--", "-.", ":")


def _by_layer(history: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """{layer: {"epoch", "ixt", "ixt_stderr", "iyt", "iyt_stderr", "width"}}, epochs sorted,
    layers in order of first appearance."""
    layers: dict[str, list] = {}
    for row in history:
        layers.setdefault(str(row["layer"]), []).append(row)
    result = {}
    for name, rows in layers.items():
        rows = sorted(rows, key=lambda r: r["epoch"])
        result[name] = {key: np.array([float(r[key]) for r in rows])
                        for key in ("epoch", "ixt", "ixt_stderr", "iyt", "iyt_stderr")}
        result[name]["width"] = int(rows[0]["width"])
    return result


def layer_style(index: int) -> dict:
    """Colour, marker, marker size and line style of the index-th layer in every figure.

    Layers that coincide (the first two layers both at H(X), say) stay visible: each
    later layer has a smaller marker drawn over the earlier one's, and its own dashes."""
    from matplotlib import colormaps

    return {"color": colormaps["tab10"](index % 10), "marker": _MARKERS[index % len(_MARKERS)],
            "markersize": max(3.0, 7.5 - 1.0 * index), "linestyle": _LINESTYLES[index % len(_LINESTYLES)]}


def _epoch_axis(ax, max_epoch: float) -> None:
    """An epoch axis that reads well at any length: linear with integer ticks up to 30
    epochs; beyond, logarithmic above epoch 1 and linear below (symlog, so that epoch 0,
    the initial weights, has a place), with labels at 0, 1, 2, 5, 10, 20, 50, ... up to
    300 epochs and at 0, 1, 10, 100, ... beyond."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullFormatter, ScalarFormatter

    if max_epoch <= 30:
        ax.set_xlim(-0.5, max(1.0, max_epoch) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
    else:
        ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
        ax.set_xlim(0, max_epoch * 1.15)
        # Labels at 1-2-5 steps while they fit (up to a few hundred epochs), at the powers
        # of ten beyond, where the 1-2-5 steps stay as unlabelled minor ticks.
        decades = range(int(math.log10(max_epoch)) + 1)
        steps = [m * 10.0**p for p in decades for m in (1, 2, 5)]
        major = [0.0] + (steps if max_epoch <= 300 else [10.0**p for p in decades])
        ax.xaxis.set_major_locator(FixedLocator([t for t in major if t <= max_epoch * 1.15]))
        ax.xaxis.set_minor_locator(FixedLocator([t for t in steps if t <= max_epoch * 1.15]))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("epoch (log scale above 1)")
    ax.grid(True, which="major", alpha=0.3)


def finish_epoch_panel(ax, max_epoch: float, symbol: str, unit: str, bound: float | None, bound_name: str,
                       title: str, fontsize: float = 10) -> None:
    """The common finish of a panel of ``symbol`` against epoch: the bound dashed (when
    given), the epoch axis, 0 shown, labels, title and legend."""
    if bound is not None:
        ax.axhline(bound, color="0.3", linestyle="--", linewidth=1, label=f"{bound_name} = {bound:.3f}")
    _epoch_axis(ax, max_epoch)
    # Mutual information is >= 0: showing 0 keeps magnitudes honest and leaves room below
    # the curves for the legend.
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    ax.set_ylim(top=ax.get_ylim()[1] * 1.02)
    ax.set_ylabel(f"{symbol} [{unit}]")
    ax.set_title(title, fontsize=fontsize)
    ax.legend(fontsize=fontsize - 2, loc="best")


def finish_plane(ax, unit: str, ixt_max: float | None, iyt_max: float | None, title: str,
                 fontsize: float = 10) -> None:
    """The common finish of an information plane: the H(X) and H(Y) bounds dashed (when
    given), axis labels, title and grid."""
    if ixt_max is not None:
        ax.axvline(ixt_max, color="0.3", linestyle="--", linewidth=1)
    if iyt_max is not None:
        ax.axhline(iyt_max, color="0.3", linestyle="--", linewidth=1)
    ax.set_xlabel(f"I(X;T) [{unit}]")
    ax.set_ylabel(f"I(Y;T) [{unit}]")
    ax.set_title(title, fontsize=fontsize)
    ax.grid(True, alpha=0.3)


def _convergence_panels(axes, layers: dict, history: Sequence[Mapping[str, Any]], unit: str) -> None:
    """For I(X;T) and I(Y;T): the estimates at R/4 and R/2 minus the one at R, against R,
    at the last recorded epoch, one line per layer (±1 stderr of the difference).  A line
    that still falls towards R says the plug-in bias has not settled."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    last = max(int(row["epoch"]) for row in history)
    rows = {row["layer"]: row for row in history if int(row["epoch"]) == last}
    for ax, (key, symbol) in zip(axes, (("ixt", "I(X;T)"), ("iyt", "I(Y;T)"))):
        levels_seen = set()
        for index, name in enumerate(layers):
            sequence = None if name not in rows else row_convergence(rows[name], key)
            if sequence is None:
                continue  # deterministic given X, or no sequence recorded
            levels_seen.update(sequence.repeats)
            at_r, se_r = sequence.values[-1], sequence.stderrs[-1]
            shift = [value - at_r for value in sequence.values]
            err = [math.hypot(se, se_r) for se in sequence.stderrs[:-1]] + [se_r]
            ax.errorbar(sequence.repeats, shift, yerr=err, capsize=2, label=name, **layer_style(index))
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(sorted(levels_seen)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("R, samples per input (nested subsets of the same samples)")
        ax.set_ylabel(f"{symbol} at R' minus at R [{unit}]")
        ax.set_title(f"R-convergence of {symbol} at epoch {last} (deterministic layers omitted)", fontsize=9)
        ax.grid(True, alpha=0.3)
        if levels_seen:
            ax.legend(fontsize=7, loc="best")


def plot_information_plane(history, path, *, title=None, ixt_max=None, iyt_max=None) -> Path:
    """Draw an information-plane history as a PNG.

    Top row: :math:`I(X;T_\\ell)` and :math:`I(Y;T_\\ell)` against epoch, one line per
    layer with a ±1 standard-error band.  Middle: the information plane, I(X;T) on x and
    I(Y;T) on y, one trajectory per layer (colour, marker and dashes identify the layer,
    error bars ±1 stderr) with the points coloured by epoch (colour bar).  Bottom, when
    the rows carry R-convergence columns: how much the estimates at R/4 and R/2 exceed
    the one at R, at the last epoch.  Layers that coincide stay visible (:func:`layer_style`).

    Parameters
    ----------
    history : sequence of dict
        Rows with ``epoch, layer, width, ixt, ixt_stderr, iyt, iyt_stderr, unit`` (as in
        :attr:`InformationPlane.history` or :meth:`InformationPlane.load_history`), all
        in one unit, optionally with the :data:`CONVERGENCE_FIELDS`.
    path : str or path
        The PNG to write.
    title : str, optional
        Figure title (say protocol, R, seeds and beta).
    ixt_max, iyt_max : float, optional
        Upper bounds to draw as dashed lines, in the history's unit: H(X) (ln m for m
        distinct inputs) for I(X;T) and H(Y) for I(Y;T).

    Returns
    -------
    Path
        ``path``.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import SymLogNorm
    from matplotlib.lines import Line2D

    history = list(history)
    if not history:
        raise ValueError("history: no rows to plot")
    units = {str(row["unit"]) for row in history}
    if len(units) != 1:
        raise ValueError(f"history: rows in different units {sorted(units)}")
    unit = units.pop()
    layers = _by_layer(history)
    max_epoch = max(float(row["epoch"]) for row in history)
    with_convergence = any(row.get("r_half") is not None for row in history)

    fig, axes = new_figure(ncols=2, nrows=3 if with_convergence else 2, width=6.4, height=4.4)
    grid = axes[1, 0].get_gridspec()
    for ax in axes[1:].ravel():
        ax.remove()
    plane = fig.add_subplot(grid[1, :])

    for column, (key, symbol, bound, bound_name) in enumerate(
            (("ixt", "I(X;T)", ixt_max, "H(X)"), ("iyt", "I(Y;T)", iyt_max, "H(Y)"))):
        ax = axes[0, column]
        for index, (name, data) in enumerate(layers.items()):
            style = layer_style(index)
            value, err = data[key], data[key + "_stderr"]
            ax.plot(data["epoch"], value, label=f"{name} (d={data['width']})", **style)
            ax.fill_between(data["epoch"], value - err, value + err, color=style["color"], alpha=0.25, linewidth=0)
        finish_epoch_panel(ax, max_epoch, symbol, unit, bound, bound_name,
                           f"{symbol} per layer over training (band: ±1 std. error)")

    norm = SymLogNorm(linthresh=1.0, linscale=0.5, vmin=0.0, vmax=max(1.0, max_epoch))
    cmap = colormaps["viridis"]
    handles = []
    for index, (name, data) in enumerate(layers.items()):
        style = layer_style(index)
        plane.errorbar(data["ixt"], data["iyt"], xerr=data["ixt_stderr"], yerr=data["iyt_stderr"],
                       color=style["color"], linestyle=style["linestyle"], linewidth=1, alpha=0.7,
                       elinewidth=0.8, zorder=1)
        plane.scatter(data["ixt"], data["iyt"], c=data["epoch"], cmap=cmap, norm=norm, marker=style["marker"],
                      s=style["markersize"] ** 2 * 1.6, edgecolors=style["color"], linewidths=1.0, zorder=2 + index)
        handles.append(Line2D([], [], color=style["color"], marker=style["marker"], linestyle=style["linestyle"],
                              markerfacecolor="white", label=f"{name} (d={data['width']})"))
    if ixt_max is not None or iyt_max is not None:
        handles.append(Line2D([], [], color="0.3", linestyle="--", label="H(X) / H(Y) bounds"))
    finish_plane(plane, unit, ixt_max, iyt_max,
                 "Information plane: one trajectory per layer, colour = epoch, bars ±1 std. error")
    plane.legend(handles=handles, fontsize=8, loc="best")
    colorbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=plane)
    colorbar.set_label("epoch")
    if with_convergence:
        _convergence_panels([fig.add_subplot(grid[2, 0]), fig.add_subplot(grid[2, 1])], layers, history, unit)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
