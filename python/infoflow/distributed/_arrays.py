r"""The kernel on dask arrays: :func:`log_density` and :func:`gaussian_lse` block by block.

Queries are split by rows (each block of rows is an independent kernel call). When the
centres are split too, every (query block, centre block) pair is one kernel call giving,
per query, :math:`\ell_b = \log \sum_{j \in b} w_j \exp(-\lVert q - c_j\rVert^2/2\beta^2)`
(minus the global normaliser for :func:`log_density`); the blocks then combine by a
log-sum-exp tree, :math:`\ell = \log \sum_b e^{\ell_b}`, which is exact: only the roundings
of the :math:`\ell_b` and of the float64 combination stand between it and the one-call value.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import _backend
from .._intake import FLOAT_DTYPES, FloatArray, beta_for_dtype, float_array, thread_count
from ..density import log_gaussian_normaliser
from ._cluster import worker_slot

__all__ = ["log_density", "gaussian_lse"]


def _as_dask(x, name: str):
    """``x`` as a dask array (a numpy array becomes one chunk), with its dtype and rank checked."""
    import dask.array as da

    if isinstance(x, np.ndarray):
        x = da.from_array(x, chunks=x.shape)
    elif not isinstance(x, da.Array):
        raise TypeError(f"{name}: expected a dask.array.Array or numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {x.dtype}; convert explicitly, "
                        f"e.g. {name}.astype(numpy.float64)")
    return x


def _validated(queries, centers, weights, beta, num_threads):
    q = _as_dask(queries, "queries")
    c = _as_dask(centers, "centers")
    for arr, name in ((q, "queries"), (c, "centers")):
        if arr.ndim < 2:
            raise ValueError(f"{name}: expected at least 2 dimensions (..., rows, dim), got shape {arr.shape}")
        if any(math.isnan(s) for s in arr.shape):
            raise ValueError(f"{name}: unknown chunk sizes (shape {arr.shape}); call {name}.compute_chunk_sizes()")
        if 0 in arr.shape:
            raise ValueError(f"{name}: empty input, shape {arr.shape}")
    if q.dtype != c.dtype:
        raise TypeError(f"queries has dtype {q.dtype} but centers has dtype {c.dtype}; convert one explicitly")
    if q.shape[-1] != c.shape[-1]:
        raise ValueError(f"queries and centers must have the same dimension d (last axis): "
                         f"got {q.shape[-1]} and {c.shape[-1]}")
    if q.shape[:-2] != c.shape[:-2]:
        raise ValueError(f"queries and centers must have equal leading batch shapes: "
                         f"got {q.shape[:-2]} and {c.shape[:-2]}")
    beta = beta_for_dtype(beta, q.dtype)
    threads = thread_count(num_threads)
    # d in one chunk: a kernel call needs whole points.
    q, c = q.rechunk({q.ndim - 1: -1}), c.rechunk({c.ndim - 1: -1})
    w = None
    if weights is not None:
        w = _as_dask(weights, "weights")
        if w.dtype != c.dtype:
            raise TypeError(f"weights: has dtype {w.dtype} but centers has dtype {c.dtype}; convert one explicitly")
        n = c.shape[-2]
        if tuple(w.shape) not in (tuple(c.shape[:-1]), (n,)):
            raise ValueError(f"weights: expected shape {tuple(c.shape[:-1])} (one weight per centre) or ({n},), "
                             f"got {tuple(w.shape)}")
        # The weights of a centre block travel with it.
        w = w.rechunk(c.chunks[:-1] if w.ndim == c.ndim - 1 else (c.chunks[-2],))
    return q, c, w, beta, threads


def _block(q, c, w=None, log_total=None, *, beta, shift, num_threads):
    """One kernel call: (..., mi, d) queries against (..., nj, d) centres -> (..., mi, 1)
    float64, the block's log-sum-exp plus ``shift`` (and minus ``log_total``), rounded once
    to the dtype by the kernel."""
    qa, ca = float_array(q, "queries"), float_array(c, "centers")  # NaN/Inf raise here, naming the argument
    batch_shape, (mi, d), nj = q.shape[:-2], q.shape[-2:], c.shape[-2]
    batch = math.prod(batch_shape)
    q3, c3 = _backend.reshape_3d(qa, batch, mi, d), _backend.reshape_3d(ca, batch, nj, d)
    w3, empty = None, np.zeros(batch, dtype=bool)
    if w is not None:
        w2 = np.ascontiguousarray(np.broadcast_to(w, (*batch_shape, nj))).reshape(batch, nj)
        if not np.all(np.isfinite(w2)):
            raise ValueError("weights: contains NaN or infinity")
        if np.any(w2 < 0):
            raise ValueError("weights: must be >= 0 (got a negative weight)")
        # A block whose centres all have weight 0 adds nothing: its log-sum-exp is -inf
        # (the kernel needs a positive weight, so it gets ones and the rows are overwritten).
        empty = ~(w2 > 0).any(axis=1)
        if empty.any():
            w2 = w2.copy()
            w2[empty] = 1
        w3 = FloatArray(w2, "numpy", "cpu", w2.dtype, w2.shape)
    shifts = np.full(batch, shift, dtype=np.float64)
    if log_total is not None:  # checked after this block's own weights, which may say why it is bad
        total = np.broadcast_to(np.asarray(log_total, dtype=np.float64), batch_shape).reshape(batch)
        if not np.all(np.isfinite(total)):
            raise ValueError("weights: every mixture needs a positive weight (got all zeros)")
        shifts -= total
    with worker_slot() as worker:
        out = _backend.log_density_3d(q3, c3, beta, num_threads or worker, weights=w3, shift=shifts)
    out = out.astype(np.float64)
    out[empty] = -np.inf
    return out.reshape(*batch_shape, mi, 1)


def _first_axis(axis) -> int:
    return axis[0] if isinstance(axis, tuple) else axis


def _lse_chunk(x, axis, keepdims):
    return x  # one value per centre block already


def _lse_combine(x, axis, keepdims):
    # logaddexp is not reorderable, so numpy reduces it over one axis only: the centre blocks'.
    return np.logaddexp.reduce(x, axis=_first_axis(axis), keepdims=True)


def _lse_aggregate(x, axis, keepdims, dtype):
    return np.logaddexp.reduce(x, axis=_first_axis(axis), keepdims=keepdims).astype(dtype)


def _kernel(queries, centers, beta, weights, num_threads, split_every, normalise: bool):
    import dask.array as da

    q, c, w, beta, threads = _validated(queries, centers, weights, beta, num_threads)
    dtype = q.dtype
    nb = q.ndim - 2
    batch = tuple(f"b{i}" for i in range(nb))
    args = [q, (*batch, "i", "d"), c, (*batch, "j", "d")]
    if w is not None:
        args += [w, (*batch, "j") if w.ndim == nb + 1 else ("j",)]
    shift, log_total = 0.0, None
    if normalise:
        d, n = c.shape[-1], c.shape[-2]
        shift = -log_gaussian_normaliser(d, beta)
        if w is None:
            shift -= math.log(n)
        else:
            # ln W per mixture, summed in float64 over all centre blocks.
            log_total = da.log(da.broadcast_to(w, c.shape[:-1]).astype(np.float64).sum(axis=-1))
            args += [log_total, batch]
    partial = da.blockwise(_block, (*batch, "i", "j"), *args, adjust_chunks={"j": lambda _: 1}, dtype=np.float64,
                           concatenate=True, meta=np.empty((0,) * (nb + 2), dtype=np.float64), beta=beta,
                           shift=shift, num_threads=threads, token="infoflow-lse-block")
    if partial.numblocks[-1] == 1:
        return partial[..., 0].astype(dtype)
    return da.reduction(partial, _lse_chunk, functools.partial(_lse_aggregate, dtype=dtype),
                        axis=-1, keepdims=False, dtype=dtype, split_every=split_every, combine=_lse_combine,
                        concatenate=True, meta=np.empty((0,) * (nb + 1), dtype=dtype), name="infoflow-lse-tree")


def gaussian_lse(queries, centers, beta, *, weights=None, num_threads=None, split_every=None):
    r"""Batched Gaussian log-sum-exp on dask arrays, the raw kernel, lazily.

    .. math:: \mathrm{out}[\dots, i] = \log \sum_j w_j \exp\!\left(-\frac{\lVert q_i - c_j \rVert^2}{2\beta^2}\right)

    Same conventions as :func:`infoflow.gaussian_lse`; the differences are in
    :func:`log_density`.

    Parameters
    ----------
    queries : dask.array.Array or numpy.ndarray, shape (..., m, d)
        Chunked along m (and the batch axes) as you like; d is put into one chunk.
    centers : dask.array.Array or numpy.ndarray, shape (..., n, d)
        Same dtype and batch shape as ``queries``; chunked along n or not.
    beta : float
        Noise standard deviation, > 0.
    weights : dask.array.Array or numpy.ndarray, shape (..., n) or (n,), optional
        Non-negative weights of the centres' dtype (rechunked to the centres' blocks).
    num_threads : int, optional
        Kernel threads per block (default: the worker's thread count on a Dask worker,
        all cores under dask's local schedulers).
    split_every : int, optional
        Fan-in of the log-sum-exp tree over centre blocks (dask's default when None).

    Returns
    -------
    dask.array.Array, shape (..., m)
        Lazy; ``.compute()`` runs it on the current scheduler (a ``distributed.Client``
        when one is the default).
    """
    return _kernel(queries, centers, beta, weights, num_threads, split_every, normalise=False)


def log_density(queries, centers, beta, *, weights=None, num_threads=None, split_every=None):
    r"""Log-density of a Gaussian mixture on dask arrays: :func:`infoflow.log_density` block by block, lazily.

    .. math:: \log g(q) = \operatorname{LSE}_j\!\left(\ln w_j - \frac{\lVert q - c_j\rVert^2}{2\beta^2}\right)
              - \ln W - \frac{d}{2}\ln(2\pi\beta^2)

    Each block of query rows is mapped over the workers with the compiled kernel.  When
    the centres are chunked too, each (query block, centre block) call returns, per query,
    the log of that block's share of the density, :math:`\ell_b`, with the global
    normaliser (:math:`\ln W` over *all* centres, and the Gaussian's) subtracted in double
    precision inside the kernel before its one rounding; the blocks then combine by a
    log-sum-exp tree in float64 (``numpy.logaddexp``), and the result is rounded to the
    dtype.

    Parameters
    ----------
    queries, centers, beta, weights, num_threads, split_every
        As in :func:`gaussian_lse`.

    Returns
    -------
    dask.array.Array, shape (..., m)
        Log-density in nats, of the input dtype; lazy.

    Raises
    ------
    TypeError
        Not a dask or numpy array; a dtype other than float32/float64; mixed dtypes.
    ValueError
        Wrong ranks, mismatched d or batch shapes, empty input, beta out of range,
        ``weights`` of the wrong shape (here); NaN/Inf in a block, a negative weight or a
        mixture whose weights are all 0 (when the block is computed, naming the argument).

    Notes
    -----
    Equality with the one-call :func:`infoflow.log_density`: with the centres in one
    chunk, each query's value is the kernel's for that query (the kernel's pruning
    groups queries, so values agree to the dtype's rounding, usually bit for bit).  With
    B centre blocks, the sum over centres is exact and the value differs from the
    one-call value only by the roundings: each :math:`\ell_b` is rounded once to the dtype
    (unit roundoff u = 2^-24 in float32, 2^-53 in float64), and since
    :math:`\ell = \log\sum_b e^{\ell_b}` has derivative :math:`p_b = e^{\ell_b - \ell}` in
    :math:`\ell_b`, these add at most :math:`u \sum_b p_b |\ell_b| \le u (|\ell| + B/e)`;
    the float64 tree adds a couple of float64 units in the last place per combination,
    and the final rounding :math:`u\,|\ell|`.  In all,
    :math:`|\Delta| \le u\,(2|\ell| + B/e) + 2B \cdot 2^{-53} (|\ell| + 1)` (tested).

    Examples
    --------
    No cluster is needed: without a ``distributed.Client``, ``.compute()`` runs on dask's
    local scheduler.

    >>> import dask.array as da, numpy as np
    >>> from infoflow import distributed
    >>> x = da.zeros((4, 3), chunks=(2, 3))
    >>> density = distributed.log_density(x, x, 1.0)  # lazy
    >>> density.compute()  # log N(0; 0, I_3), as infoflow.log_density(np.zeros((4, 3)), ...)
    array([-2.756816, -2.756816, -2.756816, -2.756816])
    """
    return _kernel(queries, centers, beta, weights, num_threads, split_every, normalise=True)
