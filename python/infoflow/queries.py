"""The Monte Carlo queries of a mixture entropy: how many, around which centers, in which chunks, where.

The budget (:data:`DEFAULT_MC_QUERIES` per mixture, at most :data:`MAX_MC_QUERIES` per
estimate), the query plan that picks each query's center, the chunks in which the
queries are drawn and evaluated, and the query points themselves.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from ._intake import FloatArray

__all__ = ["DEFAULT_MC_QUERIES", "MAX_MC_QUERIES", "QUERY_CHUNK_ELEMENTS", "default_mc_samples",
           "monte_carlo_queries", "planned_queries", "check_query_budget", "QueryPlan", "query_plan", "chunks",
           "chunk_count", "query_points"]

#: Monte Carlo queries per mixture that the default ``mc_samples`` aims for.
DEFAULT_MC_QUERIES = 65536

#: The most Monte Carlo queries one estimate may ask for, summed over its batch of
#: mixtures: 2**31.  Each query costs at least one kernel pass over its near centers, so
#: this is hours of work on a few cores; a larger ``mc_samples`` or ``mc_queries`` is
#: rejected up front rather than left to run for days (2**40) or to fill the memory with
#: its list of chunks (2**62).
MAX_MC_QUERIES = 1 << 31

#: Query coordinates generated per kernel call: bounds the memory of the noise (64 MiB of
#: float64 draws and their cast) whatever n, K and the batch size; also the piece in
#: which the weighted plan skips past its uniforms.
QUERY_CHUNK_ELEMENTS = 1 << 23


def default_mc_samples(n: int) -> int:
    """The default K for n <= 65536 centres: enough Monte Carlo queries (n * K >= 65536)
    for a stderr of a few thousandths of a nat without the control variate, far less
    with it where the mixture is separated; 1 beyond (where
    :func:`~infoflow.mixture_entropy` draws a subset of 65536 centres instead).

    Parameters
    ----------
    n : int
        Number of centres of the mixture, >= 1.

    Returns
    -------
    int
        K, the noise draws per centre.

    Examples
    --------
    >>> default_mc_samples(4096)
    16
    """
    return max(1, math.ceil(DEFAULT_MC_QUERIES / n))


def monte_carlo_queries(n: int, k: int | None = None, n_queries: int | None = None) -> int:
    """How many Monte Carlo queries an equal-weight mixture of n centres gets: n K with K
    draws per centre, else ``n_queries`` (default :data:`DEFAULT_MC_QUERIES`) rounded up to
    a whole number of draws per centre when that many reach every centre."""
    if k is not None:
        return n * k
    target = n_queries or DEFAULT_MC_QUERIES
    return target if target < n else n * math.ceil(target / n)


def planned_queries(n: int, k: int | None, n_queries: int | None, weighted: bool = False) -> int:
    """The Monte Carlo queries of one mixture of n centres (see :class:`QueryPlan`)."""
    if weighted:
        return n * k if k is not None else (n_queries or DEFAULT_MC_QUERIES)
    return monte_carlo_queries(n, k, n_queries)


def check_query_budget(total: int, k: int | None, n_queries: int | None, what: str = "") -> None:
    """ValueError, naming the budget argument, when ``total`` queries exceed :data:`MAX_MC_QUERIES`.

    ``what`` says where the queries go (e.g. ``" for h(T) of 4096 centres"``)."""
    if total <= MAX_MC_QUERIES:
        return
    if k is not None:
        name, value = "mc_samples", k
    elif n_queries is not None:
        name, value = "mc_queries", n_queries
    else:
        name, value = "mc_queries", None
    given = f"{name}={value}" if value is not None else f"the default of {DEFAULT_MC_QUERIES} queries per mixture"
    raise ValueError(f"{name}: {given} asks for {total} Monte Carlo queries{what}, more than the maximum of "
                     f"2**31 = {MAX_MC_QUERIES} per estimate; lower {name} (or split the batch)")


class QueryPlan:
    """Which centre each Monte Carlo query is drawn around, per mixture.

    Three designs, all unbiased for the entropy of every mixture of the batch:

    - ``stratified`` (equal weights, K given or n <= the query budget): every centre K
      times; query r belongs to centre r // K.
    - ``subset`` (equal weights, more centres than the budget): a uniform random subset
      of each mixture's centres, without replacement, one query each.
    - ``iid`` (weighted): centres drawn independently with probability w_j / W.  The
      uniforms that pick them are drawn chunk by chunk, in the order the chunks are asked
      for (which must be the order of :func:`chunks`), from ``uniforms``.
    """

    def __init__(self, design: str, count: int, owner: np.ndarray | None = None, k: int = 1,
                 uniforms: np.random.Generator | None = None, cdf: np.ndarray | None = None,
                 last_positive: np.ndarray | None = None):
        self.design, self.count, self.owner, self.k = design, count, owner, k
        self.uniforms, self.cdf, self.last_positive = uniforms, cdf, last_positive

    def owners(self, b0: int, b1: int, r0: int, r1: int) -> np.ndarray:
        """The centre index of queries r0..r1 of mixtures b0..b1: (r1 - r0,) when shared by
        the rows, else (b1 - b0, r1 - r0)."""
        if self.design == "stratified":
            return np.arange(r0, r1, dtype=np.int64) // self.k
        if self.design == "iid":
            u = self.uniforms.random((b1 - b0, r1 - r0)) * self.cdf[b0:b1, -1:]
            owner = np.stack([np.searchsorted(self.cdf[b], u[b - b0], side="right") for b in range(b0, b1)])
            # u * W may round up to W: the last centre of positive weight takes it.
            return np.minimum(owner, self.last_positive[b0:b1, None]).astype(np.int64)
        if self.owner.ndim == 1:
            return self.owner[r0:r1]
        return self.owner[b0:b1, r0:r1]


def query_plan(n: int, weights: np.ndarray | None, k: int | None, n_queries: int | None,
               generator: np.random.Generator, batch: int) -> QueryPlan:
    """The design of the Monte Carlo queries (see :class:`QueryPlan`) of ``batch`` mixtures
    of n centres (host ``weights`` (batch, n) or None); draws what it needs from ``generator``."""
    if weights is not None:
        count = planned_queries(n, k, n_queries, weighted=True)
        # The uniforms that pick the centres come first in the stream, batch-major, before
        # any noise, as if drawn as one (batch, count) array; so that they need not be held
        # at once, a copy of the generator draws them chunk by chunk, and ``generator``
        # skips past them here (drawing and dropping them piecewise: the same numbers).
        uniforms = copy.deepcopy(generator)
        left = weights.shape[0] * count
        while left:
            step = min(left, QUERY_CHUNK_ELEMENTS)
            generator.random(step)
            left -= step
        cdf = np.cumsum(weights.astype(np.float64), axis=-1)
        last_positive = n - 1 - np.argmax(weights[:, ::-1] > 0, axis=-1)
        return QueryPlan("iid", count, uniforms=uniforms, cdf=cdf, last_positive=last_positive)
    count = monte_carlo_queries(n, k, n_queries)
    if count >= n:
        return QueryPlan("stratified", count, k=count // n)
    if batch == 1:
        owner = np.sort(generator.choice(n, size=count, replace=False, shuffle=False)).astype(np.int64)
    else:  # a subset per mixture: mixtures whose rows are alike (e.g. classes in one spatial order) stay independent
        owner = np.sort(generator.permuted(np.tile(np.arange(n, dtype=np.int64), (batch, 1)), axis=1)[:, :count],
                        axis=1)
    return QueryPlan("subset", count, owner)


def chunks(batch: int, rows: int, dim: int, limit: int | None = None):
    """(b0, b1, r0, r1) ranges of at most ``limit`` query coordinates (default
    :data:`QUERY_CHUNK_ELEMENTS`; or one query) covering batch x rows in the order the
    noise is drawn (batch-major), so the same seed gives the same draws whatever the
    chunking."""
    limit = QUERY_CHUNK_ELEMENTS if limit is None else limit
    per_batch = rows * dim
    if per_batch <= limit:
        step = max(1, limit // per_batch)
        for b0 in range(0, batch, step):
            yield b0, min(batch, b0 + step), 0, rows
    else:
        step = max(1, limit // dim)
        for b in range(batch):
            for r0 in range(0, rows, step):
                yield b, b + 1, r0, min(rows, r0 + step)


def chunk_count(batch: int, rows: int, dim: int) -> int:
    """How many ranges :func:`chunks` yields with its default limit."""
    per_batch = rows * dim
    if per_batch <= QUERY_CHUNK_ELEMENTS:
        return -(-batch // max(1, QUERY_CHUNK_ELEMENTS // per_batch))
    return batch * -(-rows // max(1, QUERY_CHUNK_ELEMENTS // dim))


def query_points(centers: FloatArray, b0, b1, owner: np.ndarray, beta, noise) -> FloatArray:
    """q = s_j + beta * z for each query's centre j: owner[r] (shared by the batch rows
    b0..b1) or owner[b, r] (one per batch row)."""
    block = centers.data[b0:b1]
    if centers.on_cuda:
        import torch

        owner = torch.as_tensor(owner, device=block.device)
        noise = torch.from_numpy(noise).to(block.device)
        rows = torch.arange(b1 - b0, device=block.device)[:, None]
    else:
        rows = np.arange(b1 - b0)[:, None]
    picked = block[:, owner, :] if owner.ndim == 1 else block[rows, owner, :]
    data = picked + beta * noise
    return FloatArray(data, centers.kind, centers.device, centers.dtype, tuple(data.shape))
