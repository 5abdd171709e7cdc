"""Independent implementations of the raw Gaussian log-sum-exp, for benchmarking.

Every function here computes the same quantity as :func:`infoflow.gaussian_lse`
for a single mixture,

    out[i] = log sum_j exp(-||q_i - c_j||^2 / (2 beta^2)),

the way a user of that library would write it.  None of them imports infoflow:
they are the peers it is measured against.  The float64 ground truth the benchmarks
check every result against is the tests' ``reference.lse_reference``
(``tests/reference.py``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

# Budget for the largest temporary (a chunk of the m x n distance matrix, plus the
# one or two same-sized temporaries each peer makes), so a 20000 x 20000 problem
# does not need 1.6 GB per matrix.
CHUNK_BYTES = 256 * 2**20


def chunk_rows(n, itemsize=4, temporaries=3, budget=CHUNK_BYTES):
    """Number of query rows per chunk so the chunk's temporaries fit in ``budget``.

    Parameters
    ----------
    n : int
        Number of centres (columns of the distance matrix).
    itemsize : int, optional
        Bytes per matrix element (4 for float32).
    temporaries : int, optional
        How many chunk-sized matrices live at the same time.
    budget : int, optional
        Memory budget in bytes.

    Returns
    -------
    int
        Rows per chunk, at least 1.
    """
    return max(1, budget // (n * itemsize * temporaries))


def numpy_lse(q, c, beta):
    """Chunked NumPy: expanded-form distances by GEMM, then SciPy's ``logsumexp``.

    The expanded form ``||q||^2 + ||c||^2 - 2 q.c`` is what a NumPy user writes
    because it turns the distances into one matrix product (BLAS, all cores);
    the direct difference would materialise a chunk x n x d tensor instead.

    Parameters
    ----------
    q : numpy.ndarray, shape (m, d)
        Queries, float32.
    c : numpy.ndarray, shape (n, d)
        Centres, same dtype as ``q``.
    beta : float
        Kernel bandwidth, > 0.

    Returns
    -------
    numpy.ndarray, shape (m,)
        Raw log-sum-exp, in the dtype of ``q``.
    """
    scale = q.dtype.type(1.0 / (2.0 * beta * beta))
    qq = np.einsum("ij,ij->i", q, q)
    cc = np.einsum("ij,ij->i", c, c)
    out = np.empty(q.shape[0], dtype=q.dtype)
    step = chunk_rows(c.shape[0], q.dtype.itemsize)
    for start in range(0, q.shape[0], step):
        stop = min(start + step, q.shape[0])
        d2 = q[start:stop] @ c.T  # (chunk, n)
        d2 *= -2.0
        d2 += qq[start:stop, None]
        d2 += cc[None, :]
        # Rounding can make the expanded form slightly negative; clamp like cdist does.
        np.maximum(d2, 0.0, out=d2)
        d2 *= -scale
        out[start:stop] = logsumexp(d2, axis=1)
    return out


def torch_lse(q, c, beta):
    """Chunked PyTorch: ``torch.cdist(...)**2`` then ``torch.logsumexp`` over centres.

    This is the idiomatic torch code for a Gaussian mixture log-density, chunked
    over query rows so the distance matrix fits in memory.

    Parameters
    ----------
    q : numpy.ndarray, shape (m, d)
        Queries, float32.
    c : numpy.ndarray, shape (n, d)
        Centres, same dtype as ``q``.
    beta : float
        Kernel bandwidth, > 0.

    Returns
    -------
    numpy.ndarray, shape (m,)
        Raw log-sum-exp, in the dtype of ``q``.
    """
    import torch

    qt = torch.from_numpy(q)
    ct = torch.from_numpy(c)
    scale = -1.0 / (2.0 * beta * beta)
    step = chunk_rows(c.shape[0], q.dtype.itemsize)
    with torch.no_grad():
        parts = [
            torch.logsumexp(torch.cdist(qt[s : s + step], ct) ** 2 * scale, dim=1)
            for s in range(0, q.shape[0], step)
        ]
        return torch.cat(parts).numpy()


def sklearn_lse(q, c, beta, rtol=0.0):
    """scikit-learn ``KernelDensity``, converted back to the raw log-sum-exp.

    ``score_samples`` returns ``log((1/n) sum_j phi_beta(q - c_j))``; adding
    ``ln n + (d/2) ln(2 pi beta^2)`` removes the normalisation.  With the default
    ``atol = rtol = 0`` the tree traversal prunes nothing it could not bound, so it
    is meant to be exact and comparable (it is not quite: see the tolerances in
    ``test_bench_log_density.py`` and ``test_bench_grid.py``).  ``rtol = 1e-3`` is
    the setting of the official code of Goldfeld et al. (2019): far nodes are
    approximated as long as the density stays within a relative 1e-3.

    Parameters
    ----------
    q : numpy.ndarray, shape (m, d)
        Queries.
    c : numpy.ndarray, shape (n, d)
        Centres.
    beta : float
        Kernel bandwidth, > 0.
    rtol : float, optional
        ``KernelDensity(rtol=...)``: relative tolerance on the density, so about
        ``rtol`` absolute on its log.  Default 0 (exact traversal).

    Returns
    -------
    numpy.ndarray, shape (m,)
        Raw log-sum-exp in float64 (scikit-learn computes in float64).
    """
    from sklearn.neighbors import KernelDensity

    n, d = c.shape
    kde = KernelDensity(kernel="gaussian", bandwidth=beta, algorithm="auto", atol=0, rtol=rtol)
    kde.fit(c)
    return kde.score_samples(q) + math.log(n) + 0.5 * d * math.log(2.0 * math.pi * beta * beta)


def keops_available():
    """Whether ``pykeops`` imports (its CPU backend needs a C++ compiler at first use).

    Returns
    -------
    bool
    """
    try:
        import pykeops  # noqa: F401
    except Exception:  # ImportError, or a broken install failing at import
        return False
    return True


def keops_lse(q, c, beta):
    """pykeops symbolic reduction: no m x n matrix, one compiled formula per ``d``.

    The first call for a given ``d`` compiles the formula (seconds); callers warm
    it up outside any timed region.

    Parameters
    ----------
    q : numpy.ndarray, shape (m, d)
        Queries, float32.
    c : numpy.ndarray, shape (n, d)
        Centres, same dtype as ``q``.
    beta : float
        Kernel bandwidth, > 0.

    Returns
    -------
    numpy.ndarray, shape (m,)
        Raw log-sum-exp, in the dtype of ``q``.
    """
    from pykeops.numpy import LazyTensor

    x_i = LazyTensor(np.ascontiguousarray(q)[:, None, :])
    y_j = LazyTensor(np.ascontiguousarray(c)[None, :, :])
    d2 = ((x_i - y_j) ** 2).sum(-1)
    return (-d2 * (1.0 / (2.0 * beta * beta))).logsumexp(dim=1)[:, 0]
