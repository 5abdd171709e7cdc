r"""Datasets of the experiments: the 12-bit dataset of Shwartz-Ziv & Tishby, and 8x8 digits.

Both are built locally (no file, no download).

References
----------
R. Shwartz-Ziv and N. Tishby, *Opening the Black Box of Deep Neural Networks via
Information*, arXiv:1703.00810 (2017).

Z. Goldfeld, E. van den Berg, K. Greenewald, I. Melnyk, N. Nguyen, B. Kingsbury and
Y. Polyanskiy, *Estimating Information Flow in Deep Neural Networks*, ICML 2019.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "szt",
    "digits",
    "szt_labels",
    "icosahedron_gram",
    "SZT_NEIGHBOURS",
    "SZT_ANTIPODES",
    "SZT_THRESHOLD",
    "SZT_NORM_WEIGHT",
]

#: Neighbours of each of the 12 icosahedron vertices (column i of the 12-bit dataset is v_i).
SZT_NEIGHBOURS: dict[int, tuple[int, ...]] = dict(enumerate((
    (1, 3, 5, 10, 11), (0, 2, 3, 4, 11), (1, 3, 4, 8, 9), (0, 1, 2, 8, 10),  # v0 .. v3
    (1, 2, 6, 9, 11), (0, 6, 7, 10, 11), (4, 5, 7, 9, 11), (5, 6, 8, 9, 10),  # v4 .. v7
    (2, 3, 7, 9, 10), (2, 4, 6, 7, 8), (0, 3, 5, 7, 8), (0, 1, 4, 5, 6),  # v8 .. v11
)))

#: Antipodal vertex pairs (v_i = -v_j).
SZT_ANTIPODES: tuple[tuple[int, int], ...] = ((0, 9), (1, 7), (2, 5), (3, 6), (4, 10), (8, 11))

#: Label rule y = 1 iff  w + SZT_NORM_WEIGHT * ||sum_i x_i v_i|| > SZT_THRESHOLD.
SZT_NORM_WEIGHT = 1.115
SZT_THRESHOLD = 7.7775

_N_BITS = 12


def icosahedron_gram() -> np.ndarray:
    r"""Gram matrix G_ij = v_i . v_j of the 12 unit icosahedron vertices, float64 (12, 12).

    G_ii = 1; G_ij = 1/sqrt(5) for neighbours, -1 for antipodes, -1/sqrt(5) otherwise
    (the vertices are given by their combinatorics alone, see ``SZT_NEIGHBOURS`` and
    ``SZT_ANTIPODES``; no coordinates are needed).
    """
    s = 1.0 / math.sqrt(5.0)
    gram = np.full((_N_BITS, _N_BITS), -s)
    for i, neighbours in SZT_NEIGHBOURS.items():
        gram[i, list(neighbours)] = s
    for i, j in SZT_ANTIPODES:
        gram[i, j] = gram[j, i] = -1.0
    np.fill_diagonal(gram, 1.0)
    return gram


def szt_bits() -> np.ndarray:
    """All 4096 12-bit patterns as uint8 (4096, 12); row k is k in binary, column 0 the MSB."""
    k = np.arange(1 << _N_BITS, dtype=np.int64)
    shifts = np.arange(_N_BITS - 1, -1, -1, dtype=np.int64)
    return ((k[:, None] >> shifts) & 1).astype(np.uint8)


def szt_labels(x) -> np.ndarray:
    r"""The label rule of the 12-bit dataset, applied to any 0/1 rows.

    Parameters
    ----------
    x : array_like, shape (m, 12)
        Binary patterns (entries 0 or 1); column i stands for icosahedron vertex v_i.

    Returns
    -------
    numpy.ndarray of int64, shape (m,)
        1 where ``w + 1.115 * ||sum_i x_i v_i|| > 7.7775`` (w the Hamming weight of the
        row), else 0.  Computed in float64 through the Gram matrix:
        ``||sum_i x_i v_i||^2 = x^T G x``.
    """
    from ._intake import host_array

    host_array(x, "x")  # a masked array's mask would be dropped
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != _N_BITS:
        raise ValueError(f"x: expected shape (m, {_N_BITS}), got {x.shape}")
    score = _szt_score(x)
    return (score > SZT_THRESHOLD).astype(np.int64)


def _szt_score(x: np.ndarray) -> np.ndarray:
    weight = x.sum(axis=1)
    sq_norm = np.einsum("ki,ij,kj->k", x, icosahedron_gram(), x)
    # x^T G x >= 0 in exact arithmetic; rounding can make it -2e-16 (e.g. for an
    # antipodal pair, whose vectors cancel), so clip before the square root.
    norm = np.sqrt(np.maximum(sq_norm, 0.0))
    return weight + SZT_NORM_WEIGHT * norm


def szt() -> tuple[np.ndarray, np.ndarray]:
    r"""The 12-bit dataset of Shwartz-Ziv & Tishby (2017), as used by Goldfeld et al. (2019).

    The inputs are all 4096 binary patterns x in {0, 1}^12.  Column i stands for a vertex
    v_i of a regular icosahedron inscribed in the unit sphere, and the label is the
    spherically symmetric rule

    .. math:: y = 1 \iff w(x) + 1.115\,\Big\|\sum_i x_i v_i\Big\| > 7.7775,

    with w(x) the Hamming weight.  The norm is computed without coordinates as
    sqrt(x^T G x), G the Gram matrix of the vertices (:func:`icosahedron_gram`), in
    float64.  The labels are invariant under the 120 symmetries of the icosahedron
    (permutations of the columns that preserve adjacency), and P(y = 1) = 2118/4096,
    matching the published labels.

    The dataset is generated from the rule, not read from a file; nothing is downloaded.

    Returns
    -------
    X : numpy.ndarray of float32, shape (4096, 12)
        Entries 0 or 1; row k is the binary expansion of k with column 0 the most
        significant bit.
    y : numpy.ndarray of int64, shape (4096,)
        Labels in {0, 1}.

    References
    ----------
    R. Shwartz-Ziv and N. Tishby, *Opening the Black Box of Deep Neural Networks via
    Information*, arXiv:1703.00810 (2017).

    Z. Goldfeld et al., *Estimating Information Flow in Deep Neural Networks*, ICML 2019.
    """
    bits = szt_bits()
    # Floating point at the threshold: the scores w + 1.115 * sqrt(x^T G x) are computed
    # in float64, and the closest of all 4096 scores lies about 0.119 from 7.7775 (checked
    # in tests/test_datasets.py), far above rounding error (~1e-15), so no tie-breaking
    # rule is needed and the labels do not depend on the order of summation.
    y = szt_labels(bits)
    return bits.astype(np.float32), y


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 handwritten digits (no download), scaled to [0, 1].

    Requires scikit-learn (``pip install scikit-learn``); the data ship with it.

    Returns
    -------
    X : numpy.ndarray of float32, shape (1797, 64)
        Pixel intensities divided by 16 (the originals are integers 0..16), in [0, 1].
    y : numpy.ndarray of int64, shape (1797,)
        The digit, 0..9.

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "infoflow.datasets.digits needs scikit-learn, which ships the data: "
            "pip install scikit-learn"
        ) from exc
    bunch = load_digits()
    X = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    return X, y
