r"""The binning estimator of Shwartz-Ziv & Tishby for deterministic networks.

X is uniform over the m rows of a dataset (distinct inputs) and T = f(X) is the layer's
activation.  Each coordinate of T is quantised into equal-width bins, and the mutual
informations are those of the discrete variable Bin(T):

    I(X; Bin T) = H(Bin T)                            (Bin T is a function of X)
    I(Y; Bin T) = H(Bin T) - sum_y p(y) H(Bin T | Y = y) = H(Y) - H(Y | Bin T)

all from the empirical distribution over the m inputs.  As the bins shrink, I(X; Bin T)
tends to ln m for an injective network whatever its weights: the "compression" that
the estimator shows comes from the binning (Goldfeld et al., ICML 2019, section 2), which
is what the noisy-network estimators of this package avoid.

References
----------
R. Shwartz-Ziv and N. Tishby, *Opening the Black Box of Deep Neural Networks via
Information*, arXiv:1703.00810 (2017).

Z. Goldfeld et al., *Estimating Information Flow in Deep Neural Networks*, ICML 2019.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np

from ._intake import class_labels, host_array, log_of_base, positive_int, positive_real, torch_module

__all__ = ["BinningMI", "binning_mi", "DEFAULT_N_BINS", "MAX_BINS"]

#: Bins per coordinate when neither ``bin_size`` nor ``n_bins`` is given (the paper's
#: choice for tanh activations on [-1, 1]).
DEFAULT_N_BINS = 30

#: Largest number of bins per coordinate, 2**53.  A bin index is computed in float64 as
#: floor((t - low) / w), and float64 holds every integer only up to 2**53: beyond, some
#: bin indices cannot be represented, neighbouring bins merge, and (past 2**64) the cast
#: to uint64 overflows, so the estimate would silently be that of coarser bins.
MAX_BINS = 1 << 53

# Activation elements converted to float64 at a time while binning (64 MiB of float64).
_BIN_CHUNK_ELEMENTS = 1 << 23


class BinningMI(NamedTuple):
    """Mutual informations of the binning estimator, in the units of ``base``.

    Attributes
    ----------
    ixt : float
        I(X; Bin T) = H(Bin T), in nats (``base=None``) or the units of ``base``.
    iyt : float or None
        I(Y; Bin T), same units; None when no labels were given.
    """

    ixt: float
    iyt: float | None


def _activations(x: Any) -> np.ndarray:
    torch = torch_module()
    host = host_array(x, "activations")
    if host is not None:
        x = host
        if x.dtype.kind != "f":
            raise TypeError(
                f"activations: expected a floating-point dtype, got {x.dtype}; convert explicitly, "
                "e.g. activations.astype(numpy.float64)"
            )
        data = x
    elif torch is not None and isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(
                f"activations: expected a floating-point dtype, got {x.dtype}; convert explicitly, "
                "e.g. activations.double()"
            )
        t = x.detach()
        if t.dtype not in (torch.float32, torch.float64):  # float16/bfloat16: numpy lacks bfloat16
            t = t.float()
        data = t.cpu().resolve_conj().resolve_neg().numpy()
    else:
        raise TypeError(f"activations: expected a numpy.ndarray or torch.Tensor, got {type(x).__name__}")
    if data.ndim != 2:
        hint = " (for one unit use activations.reshape(-1, 1))" if data.ndim == 1 else ""
        raise ValueError(f"activations: expected shape (m, d), got shape {data.shape}{hint}")
    if data.size == 0:
        raise ValueError(f"activations: empty input, shape {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError("activations: contains NaN or infinity")
    return data


def _limits(limits: Any) -> tuple[float, float]:
    if isinstance(limits, (str, bytes)) or not hasattr(limits, "__len__") or len(limits) != 2:
        raise TypeError(f"limits: expected a pair (low, high), got {limits!r}")
    pair = []
    for value in limits:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"limits: expected real numbers, got {type(value).__name__}")
        pair.append(float(value))
    low, high = pair
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"limits: must be finite, got ({low!r}, {high!r})")
    if not low < high:
        raise ValueError(f"limits: expected low < high, got ({low!r}, {high!r})")
    return low, high


def _bin_count(span: float, bin_size: float) -> int:
    """Bins of width ``bin_size`` needed to cover ``span``: ceil(span / bin_size), but a
    ratio within rounding of an integer (2 / 0.1 = 20.000000000000004) counts as that integer."""
    ratio = span / bin_size
    if not ratio <= MAX_BINS:
        raise ValueError(f"bin_size: {bin_size!r} is too small for limits of width {span!r} (more than "
                         f"2**53 = {MAX_BINS} bins, beyond which float64 cannot tell neighbouring bins apart)")
    nearest = round(ratio)
    if nearest >= 1 and abs(ratio - nearest) <= 1e-9 * nearest:
        return int(nearest)
    return max(1, math.ceil(ratio))


def _bin_indices(act: np.ndarray, low: float, width: float, n_bins: int) -> np.ndarray:
    """Bin index of every element, C-contiguous (m, d), in the smallest unsigned dtype."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if n_bins - 1 <= np.iinfo(dtype).max:
            break
    m, d = act.shape
    out = np.empty((m, d), dtype=dtype)
    rows = max(1, _BIN_CHUNK_ELEMENTS // d)
    for r0 in range(0, m, rows):
        k = act[r0 : r0 + rows].astype(np.float64)  # a fresh copy, worked on in place
        k -= low
        k /= width
        np.floor(k, out=k)
        np.clip(k, 0, n_bins - 1, out=k)  # values outside the limits go to the end bins
        out[r0 : r0 + rows] = k
    return out


def _hash_multipliers(d: int) -> np.ndarray:
    """d fixed random odd 64-bit multipliers (seeded: results never depend on chance)."""
    gen = np.random.default_rng(0x1F0F10)
    return gen.integers(0, 1 << 63, size=d, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def _row_hashes(idx: np.ndarray) -> np.ndarray:
    """sum_j idx[:, j] * a_j modulo 2**64 (numpy integer arrays wrap around silently)."""
    m, d = idx.shape
    mult = _hash_multipliers(d)
    out = np.empty(m, dtype=np.uint64)
    rows = max(1, _BIN_CHUNK_ELEMENTS // d)
    for r0 in range(0, m, rows):
        out[r0 : r0 + rows] = idx[r0 : r0 + rows].astype(np.uint64) @ mult
    return out


def _distinct_rows_by_bytes(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys = idx.view(np.dtype((np.void, idx.dtype.itemsize * idx.shape[1]))).ravel()
    _, row_id, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return row_id.reshape(-1), counts


def _distinct_rows(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal rows of ``idx``: an id per row (0..u-1) and the count of each group.

    Rows are grouped by a 64-bit hash, and every group is then checked row by row, so the
    result is exact; on a hash collision (probability about m^2 / 2^64) it falls back to
    sorting the rows' bytes, which is exact but slower for wide rows of large indices.
    """
    m, d = idx.shape
    hashes = _row_hashes(idx)
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    same = sorted_hashes[1:] == sorted_hashes[:-1]
    # Equal hashes must mean equal rows: compare each row with its predecessor in the
    # sorted order (transitivity then covers whole groups).
    first, second = order[:-1][same], order[1:][same]
    rows = max(1, _BIN_CHUNK_ELEMENTS // d)
    for p0 in range(0, len(first), rows):
        if not np.array_equal(idx[first[p0 : p0 + rows]], idx[second[p0 : p0 + rows]]):
            return _distinct_rows_by_bytes(idx)
    starts = np.concatenate(([True], ~same))
    group_of_sorted = np.cumsum(starts) - 1
    row_id = np.empty(m, dtype=np.int64)
    row_id[order] = group_of_sorted
    boundaries = np.flatnonzero(np.concatenate((starts, [True])))
    return row_id, np.diff(boundaries)


def _entropy_of_counts(counts: np.ndarray, total: int) -> float:
    """H = sum_c (c / total) ln(total / c) in nats, grouped by distinct count value.

    Grouping makes both limits exact: all counts 1 gives 1.0 * ln(total) = ln(total), and
    one count equal to the total gives ln(1) = 0.
    """
    values, multiplicity = np.unique(counts, return_counts=True)
    return math.fsum(
        (int(k) * int(c) / total) * math.log(total / int(c)) for c, k in zip(values, multiplicity)
    )


def binning_mi(activations, labels=None, *, bin_size=None, n_bins=None, limits=(-1, 1), base=None) -> BinningMI:
    r"""I(X; Bin T) and I(Y; Bin T) by binning, the estimator of Shwartz-Ziv & Tishby (2017).

    X is taken to be uniform over the m rows (distinct inputs) and T = ``activations``
    a deterministic function of X.  Every coordinate of T is quantised into equal-width
    bins over ``limits``: bin k is [low + k w, low + (k + 1) w), values below ``low`` or
    at or above ``high`` are clipped into the first or last bin.  (The index is computed
    in float64 as floor((t - low) / w); a value within rounding of an edge may land on
    either side.)  Then, with Bin T the tuple of the d bin indices,

    .. math::

        I(X; \mathrm{Bin}\,T) &= H(\mathrm{Bin}\,T), \\
        I(Y; \mathrm{Bin}\,T) &= H(\mathrm{Bin}\,T) - \sum_y p(y)\, H(\mathrm{Bin}\,T \mid Y = y)
                               = H(Y) - H(Y \mid \mathrm{Bin}\,T),

    from the empirical distribution of the binned rows over the m inputs.  The results
    lie in [0, ln m] and I(Y; Bin T) <= min(I(X; Bin T), H(Y)).  As bins shrink,
    I(X; Bin T) tends to ln m for distinct activations (a property of binning, not of
    the network; see Goldfeld et al. 2019).

    Parameters
    ----------
    activations : numpy.ndarray or torch.Tensor, shape (m, d)
        Floating-point activations of one layer, one row per input (any device; torch
        tensors are detached and copied to the CPU).
    labels : numpy.ndarray or torch.Tensor of integers, shape (m,), optional
        Class of each input.  Without labels, ``iyt`` is None.
    bin_size : float, optional
        Width of a bin, > 0; the limits are then covered by ceil((high - low) / bin_size)
        bins starting at ``low``, at most 2**53 (see ``n_bins``).  At most one of
        ``bin_size`` and ``n_bins``.
    n_bins : int, optional
        Number of bins per coordinate, 1 <= n_bins <= 2**53 (:data:`MAX_BINS`: bin indices
        are computed in float64, which represents every integer only up to 2**53).
        Default 30 (the paper's choice for tanh) when neither ``bin_size`` nor ``n_bins``
        is given.
    limits : (float, float)
        Range (low, high) divided into bins, low < high.  Default (-1, 1), the range of
        tanh.
    base : float, optional
        Logarithm base of the results; None (default) gives nats, 2 gives bits.

    Returns
    -------
    BinningMI
        ``(ixt, iyt)`` as floats in nats (or the units of ``base``); ``iyt`` is None
        when ``labels`` is None.

    Raises
    ------
    TypeError
        ``activations`` not a floating-point numpy array or torch tensor (masked arrays
        included); ``labels`` not an integer array; ``bin_size``, ``n_bins``, ``limits`` or ``base`` of the wrong type.
    ValueError
        ``activations`` not 2-D, empty, or containing NaN or infinity; ``labels`` not of
        shape (m,); both ``bin_size`` and ``n_bins`` given; ``bin_size <= 0``;
        ``n_bins < 1``; more than 2**53 bins (``n_bins``, or ``bin_size`` too small for the
        limits); ``limits`` not finite with low < high; ``base`` <= 0 or 1.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array([[0.1], [0.2], [0.7], [0.8]])
    >>> binning_mi(t, np.array([0, 0, 1, 1]), n_bins=2, limits=(0, 1), base=2)
    BinningMI(ixt=1.0, iyt=1.0)
    """
    act = _activations(activations)
    m = act.shape[0]
    y = None if labels is None else class_labels(labels, m, rows="activations")
    low, high = _limits(limits)
    log_base = log_of_base(base)
    if bin_size is not None and n_bins is not None:
        raise ValueError("bin_size and n_bins: give at most one of them")
    if bin_size is not None:
        width = positive_real(bin_size, "bin_size")
        count = _bin_count(high - low, width)
    else:
        count = positive_int(n_bins, "n_bins")
        if count is None:
            count = DEFAULT_N_BINS
        if count > MAX_BINS:
            raise ValueError(f"n_bins: {count} is more than 2**53 = {MAX_BINS} bins per coordinate, beyond "
                             "which float64 cannot tell neighbouring bins apart")
        width = (high - low) / count

    idx = _bin_indices(act, low, width, count)
    row_id, row_counts = _distinct_rows(idx)
    h_t = _entropy_of_counts(row_counts, m)
    ixt = h_t / log_base
    if y is None:
        return BinningMI(ixt, None)

    classes, class_id, class_counts = np.unique(y, return_inverse=True, return_counts=True)
    joint = row_id.astype(np.int64) * len(classes) + class_id.reshape(-1)
    _, joint_counts = np.unique(joint, return_counts=True)
    h_y = _entropy_of_counts(class_counts, m)
    h_ty = _entropy_of_counts(joint_counts, m)
    # I(Y; T) = H(T) + H(Y) - H(T, Y), clipped to its range [0, min(H(T), H(Y))] against
    # rounding (the bounds hold exactly for the empirical distribution).
    i_yt = min(max(h_t + h_y - h_ty, 0.0), h_t, h_y)
    return BinningMI(ixt, i_yt / log_base)
