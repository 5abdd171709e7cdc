r"""Differential entropy of a Gaussian-smoothed empirical measure, :math:`h(\hat P_S * \mathcal N(0, \beta^2 I))`.

This is the sample-propagation (SP) estimator of Goldfeld et al. (ICML 2019): the
entropy of T = S + Z, Z ~ N(0, beta^2 I), estimated from n samples of S as the entropy
of the Gaussian mixture centred at the samples (equal weights, or given weights such as
the counts of repeated samples).
"""

from __future__ import annotations

import contextvars
import copy
import math

import numpy as np

from . import _backend
from ._intake import (
    FloatArray,
    beta_for_dtype,
    centre_weights,
    float_array,
    log_of_base,
    make_rng,
    monte_carlo_budget,
    positive_int,
    positive_real,
    thread_count,
    unit_name,
)
from .density import log_gaussian_normaliser, log_total_weight
from .estimate import Bounds, Estimate, as_result

__all__ = ["noise_entropy", "mixture_entropy", "mixture_entropy_bounds", "default_mc_samples", "MAX_MC_QUERIES"]

#: Monte Carlo queries per mixture that the default ``mc_samples`` aims for.
DEFAULT_MC_QUERIES = 65536

#: The most Monte Carlo queries one estimate may ask for, summed over its batch of
#: mixtures: 2**31.  Each query costs at least one kernel pass over its near centres, so
#: this is hours of work on a few cores; a larger ``mc_samples`` or ``mc_queries`` is
#: rejected up front rather than left to run for days (2**40) or to fill the memory with
#: its list of chunks (2**62).
MAX_MC_QUERIES = 1 << 31

# The engine of :func:`entropy_nats` while infoflow.distributed's ``estimates_on(client)``
# block runs: a callable taking entropy_nats's arguments (the same draws, kernel calls on
# the cluster).  None: the local loop below.
ENGINE: contextvars.ContextVar = contextvars.ContextVar("infoflow_entropy_engine", default=None)

# Query coordinates generated per kernel call: bounds the memory of the noise (64 MiB of
# float64 draws and their cast) whatever n, K and the batch size.
_CHUNK_ELEMENTS = 1 << 23


def noise_entropy(dim, beta, *, base=None) -> float:
    r"""Entropy of the noise N(0, beta^2 I_dim): :math:`h_Z = \tfrac{d}{2}\ln(2\pi e\beta^2)`.

    Parameters
    ----------
    dim : int
        Dimension d >= 1.
    beta : float
        Noise standard deviation, > 0.
    base : float, optional
        Logarithm base of the result; None (default) gives nats, 2 gives bits.

    Returns
    -------
    float
        h_Z in nats (or in the units of ``base``).  Also the conditional entropy
        h(T | X = x) of a first noisy layer, and h(mixture) for a single centre.
    """
    d = positive_int(dim, "dim", allow_none=False)
    b = positive_real(beta, "beta")
    return d * (0.5 * math.log(2.0 * math.pi * math.e) + math.log(b)) / log_of_base(base)


def default_mc_samples(n: int) -> int:
    """The default K for n <= 65536 centres: enough Monte Carlo queries (n * K >= 65536)
    for a stderr of a few thousandths of a nat without the control variate, far less
    with it where the mixture is separated; 1 beyond (where
    :func:`mixture_entropy` draws a subset of 65536 centres instead)."""
    return max(1, math.ceil(DEFAULT_MC_QUERIES / n))


class _Moments:
    """Per-batch count, mean and sum of squared deviations of x (with ``paired``: also
    of y, and the sum of cross products of the deviations), merged chunk by chunk
    (Chan et al.), so that the (co)variances stay exact however large the means."""

    def __init__(self, batch: int, paired: bool = False):
        self.count = np.zeros(batch)
        self.mean = np.zeros(batch)
        self.m2 = np.zeros(batch)
        if paired:
            self.mean_y = np.zeros(batch)
            self.m2_y = np.zeros(batch)
            self.m_xy = np.zeros(batch)
            self.events = np.zeros(batch)  # how many |x| > _EVENT

    def update(self, b0: int, b1: int, x: np.ndarray, y: np.ndarray | None = None) -> None:
        self.merge(b0, b1, chunk_moments(x, y))

    def merge(self, b0: int, b1: int, chunk: dict | None) -> None:
        """Fold in the :func:`chunk_moments` of rows b0..b1's next queries (Chan et al.'s
        pairwise update: exact, whatever the sizes; infoflow.distributed merges the
        moments that workers computed this way)."""
        if chunk is None:
            return
        k = chunk["count"]
        n_old = self.count[b0:b1]
        total = n_old + k
        delta = chunk["mean"] - self.mean[b0:b1]
        if "mean_y" in chunk:
            self.events[b0:b1] += chunk["events"]
            delta_y = chunk["mean_y"] - self.mean_y[b0:b1]
            self.mean_y[b0:b1] += delta_y * k / total
            self.m2_y[b0:b1] += chunk["m2_y"] + delta_y**2 * n_old * k / total
            self.m_xy[b0:b1] += chunk["m_xy"] + delta * delta_y * n_old * k / total
        self.mean[b0:b1] += delta * k / total
        self.m2[b0:b1] += chunk["m2"] + delta**2 * n_old * k / total
        self.count[b0:b1] = total

    def standard_error(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            variance = np.where(self.count > 1, self.m2 / np.maximum(self.count - 1, 1), np.nan)
            return np.sqrt(variance / self.count)


def chunk_moments(x: np.ndarray, y: np.ndarray | None = None) -> dict | None:
    """Per-row count, mean and sum of squared deviations of a chunk x (batch, k) (with y:
    also of y, their cross products and the rare events of x), for :meth:`_Moments.merge`;
    None for an empty chunk."""
    k = x.shape[1]
    if k == 0:
        return None
    mean = x.mean(axis=1)
    dev = x - mean[:, None]
    chunk = {"count": k, "mean": mean, "m2": (dev**2).sum(axis=1)}
    if y is not None:
        mean_y = y.mean(axis=1)
        dev_y = y - mean_y[:, None]
        chunk.update(events=(np.abs(x) > _EVENT).sum(axis=1), mean_y=mean_y, m2_y=(dev_y**2).sum(axis=1),
                     m_xy=(dev * dev_y).sum(axis=1))
    return chunk


# Control variate.  C_r = |z_r|^2/2 - d/2 - ln(w_J/W) - H_w has mean exactly 0: the first
# part is -ln phi_beta(beta z_r) - h_Z for any centre, and with weights J is drawn with
# probability p_J = w_J/W, so E[-ln p_J] = H_w (equal weights: the bracket is 0).  For
# well separated components T_r = C_r + h_Z + H_w exactly, so T - bC with b near 1 removes
# most of the variance.  b is cross-fitted: the queries are split by the parity of their
# index r (within the mixture, in the drawn order: whatever the chunking), and each half
# is corrected with the b fitted on the other half.  b_B depends only on half B's draws,
# and for r in half A, C_r has mean 0 given those (z_r is independent of them; with
# weights J_r too), in every design: each correction b_B * C_r has mean exactly 0 and the
# estimate stays exactly unbiased (an in-sample b would add an O(1/N) bias).  The moments
# are kept of D = T - C and C, the same information as T and C (T = D + C) without the
# cancellation that would otherwise swamp the tiny residual variance of separated
# components.
#
# Each half needs _MIN_HALF queries: b from m queries is a ratio whose denominator M2_CC
# has a positive density near 0, so unclipped E|b| is infinite for m = 2 and E[b^2] for
# m = 3, and in d = 1 E[1/M2_CC] diverges for small m too; with few queries the fit is
# worth less than its noise.  Each half needs max(_MIN_HALF, _MIN_HALF_TIMES_D / d)
# queries, else the plain estimator is used: in d = 1 (where C = (z^2 - 1)/2 is most
# skewed) the control variate's spread measured 1.4x the plain one at 8 queries per half
# and 1.07x at 32 (16 partly overlapping centres); in d = 2 at 16 per half, 0.7x.
_MIN_HALF = 8
_MIN_HALF_TIMES_D = 32
# The fitted coefficient is clipped to this range (still a function of the other half
# only, so the estimate stays unbiased): with few queries in low dimension M2_CC can be
# tiny and b wild (d = 1, 8 queries: 3x the plain estimator's spread unclipped).  The best
# b lies near 1 for separated components and between 0 and 1 otherwise.
_B_RANGE = (0.0, 1.5)
# |D| above which a query counts as a rare event in the continuity correction of the stderr:
# its own component's posterior below 0.7, a query past about the midpoint to another
# component.  (A lower threshold counts the many shallow queries whose |D| is small and
# misses that the variance comes from the deeper ones.)
_EVENT = 0.35
# The rounding allowance in the stderr, in units in the last place of the value.
_ROUNDING_ULPS = 8


def _control_variate(noise: np.ndarray, owner: np.ndarray, log_p: np.ndarray | None, h_w: np.ndarray | None,
                     b0: int, b1: int) -> np.ndarray:
    """C_r (float64, shape (b1 - b0, queries)) for the chunk's standard normal ``noise``."""
    d = noise.shape[-1]
    cv = 0.5 * np.einsum("brd,brd->br", noise, noise, dtype=np.float64) - 0.5 * d
    if log_p is not None:
        rows = log_p[b0:b1]
        picked = rows[:, owner] if owner.ndim == 1 else np.take_along_axis(rows, owner, axis=1)
        cv -= picked + h_w[b0:b1, None]
    return cv


def _log_proportions(weights: np.ndarray, log_total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ln(w_j / W) (-inf for a zero weight, never drawn) and H_w = -sum_j (w_j/W) ln(w_j/W), per batch row."""
    w = weights.astype(np.float64)
    with np.errstate(divide="ignore"):
        log_p = np.log(w) - log_total[:, None]
    positive = w > 0
    terms = np.zeros_like(log_p)
    terms[positive] = np.exp(log_p[positive]) * log_p[positive]
    return log_p, -terms.sum(axis=1)


def _cross_fitted(halves: tuple[_Moments, _Moments]) -> tuple[np.ndarray, np.ndarray]:
    """Estimate and stderr from the moments of (D, C) of the two halves (see above).

    With b_h = M2_TC / M2_CC of half h, clipped to _B_RANGE (0 when M2_CC = 0), half
    h's estimate is mean_T - b mean_C with b from the other half, and its variance
    (M2_TT - 2b M2_TC + b^2 M2_CC) / (N_h - 1); in terms of D = T - C and a = 1 - b:
    mean_D + a mean_C and (M2_DD + 2a M2_DC + a^2 M2_CC) / (N_h - 1).

    The variance counts one rare event more than the half saw (a continuity correction,
    as for a Poisson count): D = ln P(J | q) is 0 for almost every query of separated
    components and of order ln 2 or more for the rare query that lands near another
    component (ln 2 at the midpoint of two equal ones).  When such events are rare the
    sample variance misses them most of the time, and the stderr would be far too small
    (coverage of +-1.96 stderr measured 0.07 for components 8 beta apart, N = 2048).  So
    with k >= 1 queries with |D| > 0.35 the residual sum of squares is scaled by
    (k + 1) / k (next to nothing where, as in dense clusters, every query is one), and with
    none it gets one residual of ln 2."""
    one_minus_b = []
    for half in halves:
        fitted = (half.count > 1) & (half.m2_y > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            b = np.where(fitted, 1.0 + half.m_xy / np.where(fitted, half.m2_y, 1.0), 0.0)
        one_minus_b.append(1.0 - np.clip(b, *_B_RANGE))
    total = halves[0].count + halves[1].count
    value = np.zeros_like(total)
    spread = np.zeros_like(total)
    for half, a in zip(halves, one_minus_b[::-1]):
        value += half.count * (half.mean + a * half.mean_y)
        residual = half.m2 + 2.0 * a * half.m_xy + a * a * half.m2_y
        seen = half.events
        residual = np.where(seen > 0, residual * (seen + 1) / np.maximum(seen, 1), residual + math.log(2.0) ** 2)
        spread += half.count * residual / (half.count - 1)
    return value / total, np.sqrt(spread) / total


def _chunks(batch: int, rows: int, dim: int, limit: int = _CHUNK_ELEMENTS):
    """(b0, b1, r0, r1) ranges of at most ``limit`` query coordinates (or one query)
    covering batch x rows in the order the noise is drawn (batch-major), so the same seed
    gives the same draws whatever the chunking."""
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


def _chunk_count(batch: int, rows: int, dim: int) -> int:
    """How many ranges :func:`_chunks` yields."""
    per_batch = rows * dim
    if per_batch <= _CHUNK_ELEMENTS:
        return -(-batch // max(1, _CHUNK_ELEMENTS // per_batch))
    return batch * -(-rows // max(1, _CHUNK_ELEMENTS // dim))


def _monte_carlo_queries(centers: FloatArray, b0, b1, owner: np.ndarray, beta, noise):
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


class _QueryPlan:
    """Which centre each Monte Carlo query is drawn around, per mixture.

    Three designs, all unbiased for the entropy of every mixture of the batch:

    - ``stratified`` (equal weights, K given or n <= the query budget): every centre K
      times; query r belongs to centre r // K.
    - ``subset`` (equal weights, more centres than the budget): a uniform random subset
      of each mixture's centres, without replacement, one query each.
    - ``iid`` (weighted): centres drawn independently with probability w_j / W.  The
      uniforms that pick them are drawn chunk by chunk, in the order the chunks are asked
      for (which must be the order of :func:`_chunks`), from ``uniforms``.
    """

    def __init__(self, design: str, count: int, owner: np.ndarray | None = None, k: int = 1,
                 uniforms: np.random.Generator | None = None, cdf: np.ndarray | None = None,
                 last_positive: np.ndarray | None = None):
        self.design, self.count, self.owner, self.k = design, count, owner, k
        self.uniforms, self.cdf, self.last_positive = uniforms, cdf, last_positive

    def owners(self, b0: int, b1: int, r0: int, r1: int) -> np.ndarray:
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


def monte_carlo_queries(n: int, k: int | None = None, n_queries: int | None = None) -> int:
    """How many Monte Carlo queries an equal-weight mixture of n centres gets: n K with K
    draws per centre, else ``n_queries`` (default :data:`DEFAULT_MC_QUERIES`) rounded up to
    a whole number of draws per centre when that many reach every centre."""
    if k is not None:
        return n * k
    target = n_queries or DEFAULT_MC_QUERIES
    return target if target < n else n * math.ceil(target / n)


def planned_queries(n: int, k: int | None, n_queries: int | None, weighted: bool = False) -> int:
    """The Monte Carlo queries of one mixture of n centres (see :class:`_QueryPlan`)."""
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


def _query_plan(n: int, weights: np.ndarray | None, k: int | None, n_queries: int | None,
                generator: np.random.Generator, batch: int) -> _QueryPlan:
    """The design of the Monte Carlo queries (see _QueryPlan); draws what it needs from ``generator``."""
    if weights is not None:
        count = planned_queries(n, k, n_queries, weighted=True)
        # The uniforms that pick the centres come first in the stream, batch-major, before
        # any noise, as if drawn as one (batch, count) array; so that they need not be held
        # at once, a copy of the generator draws them chunk by chunk, and ``generator``
        # skips past them here (drawing and dropping them piecewise: the same numbers).
        uniforms = copy.deepcopy(generator)
        left = weights.shape[0] * count
        while left:
            step = min(left, _CHUNK_ELEMENTS)
            generator.random(step)
            left -= step
        cdf = np.cumsum(weights.astype(np.float64), axis=-1)
        last_positive = n - 1 - np.argmax(weights[:, ::-1] > 0, axis=-1)
        return _QueryPlan("iid", count, uniforms=uniforms, cdf=cdf, last_positive=last_positive)
    count = monte_carlo_queries(n, k, n_queries)
    if count >= n:
        return _QueryPlan("stratified", count, k=count // n)
    if batch == 1:
        owner = np.sort(generator.choice(n, size=count, replace=False, shuffle=False)).astype(np.int64)
    else:  # a subset per mixture: mixtures whose rows are alike (e.g. classes in one spatial order) stay independent
        owner = np.sort(generator.permuted(np.tile(np.arange(n, dtype=np.int64), (batch, 1)), axis=1)[:, :count],
                        axis=1)
    return _QueryPlan("subset", count, owner)


def entropy_nats(c3: FloatArray, beta: float, *, weights: FloatArray | None = None, k: int | None = None,
                 n_queries: int | None = None, generator: np.random.Generator, num_threads=None,
                 progress: bool = False, centres_ordered: bool = False,
                 control_variate: bool = True, graph=None) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo entropies (nats) and standard errors of a validated (batch, n, d) stack
    of mixtures, one value per batch row: the engine of :func:`mixture_entropy`, for
    callers that have validated their arrays already.  ``weights`` (batch, n) validated,
    ``k`` draws per centre or ``n_queries`` queries per mixture (default about 65536);
    ``centres_ordered``: see :func:`infoflow._backend.log_density_3d`.

    ``control_variate`` (default): the mean of T_r = -ln g(q_r) corrected by the
    cross-fitted control variate C_r = |z_r|^2/2 - d/2 - ln(w_J/W) - H_w (mean 0), exactly
    unbiased; the stderr is that of the corrected terms with the corrections described in
    the Notes of :func:`mixture_entropy`.  With fewer than 16 queries (64 in d = 1, 32 in
    d = 2), or False: the plain
    mean of the T_r and sd/sqrt(N) (NaN for N = 1).  Both use the same draws, and both
    stderrs include a rounding allowance of 8 units in the last place of the value.

    ``graph`` (an :class:`infoflow.autograd.EntropyGraph`, optional) runs the kernel on
    the caller's tensors through autograd instead, on the same queries (always locally:
    a distributed engine has no autograd)."""
    batch, n, d = c3.shape
    check_query_budget(batch * planned_queries(n, k, n_queries, weights is not None), k, n_queries,
                       f" ({batch} mixture(s) of {n} centres)")
    engine = ENGINE.get()
    if engine is not None and graph is None:
        return engine(c3, beta, weights=weights, k=k, n_queries=n_queries, generator=generator,
                      num_threads=num_threads, progress=progress, centres_ordered=centres_ordered,
                      control_variate=control_variate)
    host_weights = None if weights is None else _backend.to_numpy(weights.data)
    plan = _query_plan(n, host_weights, k, n_queries, generator, batch)
    log_weight = log_total_weight(weights, n)
    log_total = log_gaussian_normaliser(d, beta) + log_weight
    plain = not control_variate or plan.count < 2 * max(_MIN_HALF, math.ceil(_MIN_HALF_TIMES_D / d))
    if plain:
        moments = _Moments(batch)
    else:
        halves = (_Moments(batch, paired=True), _Moments(batch, paired=True))  # even and odd query index r
        log_p, h_w = (None, None) if host_weights is None else _log_proportions(host_weights, log_weight)
        # T - C = h_Z + H_w + ln P(J | q): the moments are kept of the last term, which is
        # 0 for a query deep inside its own component (see _cross_fitted).
        baseline = noise_entropy(d, beta) + (
            np.full(batch, math.log(n)) if h_w is None else h_w)
    # A generator of ranges, not a list: its length grows with the budget.
    chunks = _chunks(batch, plan.count, d)
    n_chunks = _chunk_count(batch, plan.count, d)
    if progress and n_chunks > 1:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, total=n_chunks, desc="mixture entropy", unit="chunk")
    for b0, b1, r0, r1 in chunks:
        # Drawn in float64 whatever the data's dtype, then cast: numpy's float32 normals
        # come from another algorithm, and the same seed must give the same draws (and
        # float32 and float64 data the same estimate up to float32 rounding).
        # ``draws`` (float64, exactly standard normal) serve the control variate; ``noise``,
        # in the data's dtype, everything that builds the queries.
        draws = generator.standard_normal((b1 - b0, r1 - r0, d))
        noise = draws.astype(c3.dtype, copy=False)
        owner = plan.owners(b0, b1, r0, r1)
        queries = _monte_carlo_queries(c3, b0, b1, owner, beta, noise)
        centres_block = FloatArray(c3.data[b0:b1], c3.kind, c3.device, c3.dtype, (b1 - b0, n, d))
        block_weights = None
        if weights is not None:
            block_weights = FloatArray(weights.data[b0:b1], weights.kind, weights.device, weights.dtype, (b1 - b0, n))
        # Each query's own centre bounds its nearest distance: on the brute path at small
        # beta the kernel then skips almost every other centre from the first block on.
        hint = owner if owner.ndim == 1 else owner[0] if owner.shape[0] == 1 else None
        # log g at each query, normalised in the kernel before its rounding to the dtype
        if graph is not None:
            log_g = graph.log_density(b0, b1, r0, owner, noise, np.broadcast_to(log_weight, (batch,))[b0:b1])
        else:
            log_g = _backend.to_numpy(_backend.log_density_3d(
                queries, centres_block, beta, num_threads, weights=block_weights, near_centre=hint,
                centres_ordered=centres_ordered, shift=-np.broadcast_to(log_total, (batch,))[b0:b1]))
        terms = -log_g.astype(np.float64)
        if plain:
            moments.update(b0, b1, terms)
            continue
        cv = _control_variate(draws, owner, log_p, h_w, b0, b1)
        if graph is not None:
            graph.control_variate(b0, b1, r0, cv)
        residual = terms - cv - baseline[b0:b1, None]
        for parity, half in enumerate(halves):
            cols = slice((parity - r0) % 2, None, 2)  # global query index r = r0 + column
            half.update(b0, b1, residual[:, cols], cv[:, cols])
    return finish_estimate(moments if plain else halves, None if plain else baseline, c3.dtype)


def finish_estimate(moments, baseline: np.ndarray | None, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(value, stderr) in nats from the merged moments: a :class:`_Moments` of the plain
    terms (``baseline`` None), or the two halves' moments of the control-variate residuals
    (``baseline`` h_Z + H_w added back)."""
    if baseline is None:
        value, stderr = moments.mean, moments.standard_error()
    else:
        value, stderr = _cross_fitted(moments)
        value = value + baseline
    # The stderr also allows for the rounding of the value (the kernel's dtype), which
    # matters only where the Monte Carlo error all but vanishes (identical centres).
    rounding = _ROUNDING_ULPS * np.finfo(dtype).eps * np.maximum(np.abs(value), 1.0)
    return value, np.hypot(stderr, rounding)


def mixture_entropy(centers, beta, *, weights=None, mc_samples=None, mc_queries=None, base=None, rng=None,
                    num_threads=None, progress=False, control_variate=True) -> Estimate:
    r"""Monte Carlo estimate of :math:`h(\hat P_S * \mathcal N(0, \beta^2 I))` with its standard error.

    With centres :math:`s_1..s_n`, weights :math:`w_j` (all 1 by default, :math:`W = \sum_j
    w_j`) and mixture density :math:`g(t) = \frac1W \sum_j w_j \varphi_\beta(t - s_j)`,

    .. math:: \hat h = -\frac{1}{N} \sum_{r=1}^{N} \log g(s_{J_r} + \beta z_r),
              \qquad z_r \sim \mathcal N(0, I_d),

    an unbiased estimate of the mixture's entropy: each query is an exact draw from the
    mixture component :math:`J_r`, and :math:`\log g` is computed exactly by the compiled
    kernel, all N queries in one pass over the centres.  The components are chosen so
    that every centre is represented in proportion to its weight: each centre K times
    (equal weights, :math:`N = nK`), a uniform random subset of N distinct centres (equal
    weights, more centres than queries), or N independent draws with probability
    :math:`w_j / W` (weighted).

    By default the mean is corrected by a control variate of known mean 0,

    .. math:: C_r = \tfrac12 \lVert z_r \rVert^2 - \tfrac d2 - \ln\frac{w_{J_r}}{W} - H_w,
              \qquad H_w = -\sum_j \frac{w_j}{W} \ln\frac{w_j}{W}

    (the last two terms cancel for equal weights): :math:`\hat h = \frac1N \sum_r (T_r -
    b\,C_r)` with :math:`T_r = -\log g(q_r)`.  For well separated components :math:`T_r =
    C_r + h_Z + H_w` exactly, so with :math:`b \approx 1` the error all but vanishes; where
    components overlap it shrinks less.  The coefficient is cross-fitted: the queries of even
    and of odd index form two halves, each corrected with the least-squares :math:`b`
    fitted on the other half, which keeps the estimate exactly unbiased.

    Parameters
    ----------
    centers : numpy.ndarray or torch.Tensor, shape (..., n, d)
        Samples of S (float32 or float64); leading axes are a batch of independent
        mixtures, estimated in one call.
    beta : float
        Noise standard deviation, > 0, in the units of ``centers``.
    weights : numpy.ndarray or torch.Tensor, shape (..., n) or (n,), optional
        Non-negative weight of each centre (see :func:`log_density`); e.g. the counts of
        repeated samples merged into one centre.  CPU only for now.
    mc_samples : int, optional
        K, noise draws per centre: N = nK queries, each centre K times (with weights: nK
        independent draws).  Cannot be combined with ``mc_queries``.
    mc_queries : int, optional
        N, the Monte Carlo queries per mixture.  Default (when neither is given): about
        65536, that is K = :func:`default_mc_samples` (n) per centre when n <= 65536
        (K = 16 for n = 4096) and a random subset of 65536 centres beyond that, so the
        cost grows with n (the kernel's pruning) rather than with n^2.  The standard
        error falls as 1/sqrt(N).  At most 2**31 = 2147483648 queries in all, summed over
        the batch (:data:`MAX_MC_QUERIES`); a larger budget is a ValueError, raised
        before any work.
    base : float, optional
        Logarithm base of the result: None (default) for nats, 2 for bits.
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
        Source of the Gaussian draws and of the choice of centres (Scientific Python
        SPEC 7, https://scientific-python.org/specs/spec-0007/).  The same seed gives the same
        value, on any device, whatever the batch chunking and, up to float32 rounding,
        whatever the dtype.
    num_threads : int, optional
        CPU threads for the kernel (default: all).
    progress : bool
        Show a tqdm progress bar over the kernel calls.
    control_variate : bool
        Use the control variate (default).  False gives the plain mean of the
        :math:`T_r` from the same draws, for comparison.

    Returns
    -------
    Estimate
        ``.value`` and ``.stderr`` in nats (or ``base`` units): floats for 2-D input,
        arrays of the batch shape otherwise.  The value is an unbiased estimate of the
        mixture's entropy.  The standard error covers the Monte Carlo error (and the
        rounding of the value): the sample standard deviation of the terms
        (:math:`T_r - bC_r`, each half with its own b and mean; :math:`T_r` without the
        control variate or with N < 16, 32 in d = 2, 64 in d = 1) over sqrt(N), slightly
        overstated when each
        centre is used exactly K times or at most once (a stratified design has less
        variance).  It is NaN when N = 1.  With the control variate it also counts one
        rare event more than the draws saw, see Notes.

    See Also
    --------
    mixture_entropy_bounds : deterministic bounds from the same kernel.
    noise_entropy : the closed form for n = 1.

    Notes
    -----
    For centres in :math:`[-1, 1]^d` Goldfeld et al. bound the mean squared error by
    :math:`2d(2+\beta^2)/(\beta^2 N)`.  This measures the Monte Carlo error only: the
    plug-in error of using n samples of S instead of its law is
    :math:`O((\log n)^{d/4}/\sqrt n)` and is not included in ``stderr``.

    With the control variate the residual :math:`T_r - C_r - h_Z - H_w = \ln P(J_r \mid
    q_r) \le 0` is the log posterior of the query's own component.  When components are a
    few to ~12 beta apart it is 0 for almost every query and large for the rare query that
    lands near another component, and the sample variance misses such rare events most of
    the time.  The stderr therefore counts one event more than it saw (with k queries
    where :math:`|\ln P(J \mid q)| > 0.35` the residual variance is scaled by
    :math:`(k+1)/k`; with none, one residual of ln 2 is added), so that it does not claim
    a precision the draws cannot show (it also allows 8 units in the last place of the
    value for rounding): where components are fully separated it is about
    :math:`\sqrt2 \ln 2 / N` (1.5e-5 nats for N = 65536, against 0.009 without the
    control variate at d = 10), and its coverage of ±1.96 stderr measured 0.94 or more
    for 8 components 4, 8 and 12 beta apart in 1-D (400 runs each).  Components about
    6 beta apart with N in the thousands remain a weak spot: the residual's tail is heavier
    there, and the coverage measured 0.86 (1.0 with N = 64).
    """
    c = float_array(centers, "centers")
    w = centre_weights(weights, c)
    beta_argument = beta  # a tensor keeps its graph
    beta = beta_for_dtype(beta, c.dtype, noisy=True)
    n, d = c.shape[-2], c.shape[-1]
    k, n_queries = monte_carlo_budget(mc_samples, mc_queries)
    log_base = log_of_base(base)
    threads = thread_count(num_threads)
    generator = make_rng(rng)
    batch_shape = c.shape[:-2]
    batch = math.prod(batch_shape)
    c3 = _backend.reshape_3d(c, batch, n, d)
    w2 = None if w is None else FloatArray(w.data.reshape(batch, n), w.kind, w.device, w.dtype, (batch, n))
    graph = _entropy_graph(centers, beta_argument, weights, w2, batch, threads)
    value, stderr = entropy_nats(c3, beta, weights=w2, k=k, n_queries=n_queries, generator=generator,
                                 num_threads=threads, progress=progress, control_variate=bool(control_variate),
                                 graph=graph)
    if graph is not None:  # a tensor whose gradient is the estimator's
        value = graph.estimate(value, _B_RANGE).reshape(batch_shape) / log_base
        return Estimate(value if batch_shape else value.reshape(()), as_result(stderr.reshape(batch_shape) / log_base),
                        unit_name(base))
    return Estimate(as_result(value.reshape(batch_shape) / log_base),
                    as_result(stderr.reshape(batch_shape) / log_base), unit_name(base))


def _entropy_graph(centers, beta, weights, w2, batch: int, threads):
    """An EntropyGraph when autograd should see the estimate (torch centres or a beta
    tensor that require a gradient), else None."""
    if not hasattr(centers, "requires_grad"):
        return None
    from . import autograd

    if not autograd.needs_graph(centers, beta, weights):
        return None
    if autograd.needs_graph(weights):
        raise NotImplementedError(
            "weights: mixture_entropy has no gradient with respect to the weights (its components are drawn "
            "in proportion to them); pass weights.detach(), or differentiate log_density with weights")
    c = centers.reshape(batch, *centers.shape[-2:])
    weights_3d = None if w2 is None else torch_from(w2.data)
    return autograd.EntropyGraph(c, beta, weights_3d, threads)


def torch_from(values):
    import torch

    return values if isinstance(values, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(values))


def mixture_entropy_bounds(centers, beta, *, base=None, num_threads=None) -> Bounds:
    r"""Kolchinsky–Tracey bounds on :math:`h(\hat P_S * \mathcal N(0, \beta^2 I))`, computed exactly.

    With :math:`D_{ij} = \lVert s_i - s_j \rVert^2` and
    :math:`m_a = -\frac1n \sum_i \ln\big[\frac1n \sum_j e^{-D_{ij}/a}\big]`,

    .. math:: h_Z + m_{8\beta^2} \;\le\; h \;\le\; h_Z + m_{2\beta^2},

    the Bhattacharyya lower bound and the pairwise-KL upper bound (Kolchinsky & Tracey,
    *Entropy* 2017), with :math:`h_Z = \frac d2 \ln(2\pi e \beta^2)`.  Both are one pass of
    the same kernel with the centres as queries.  They always satisfy
    :math:`h_Z \le \text{lower} \le \text{upper} \le h_Z + \ln n`.

    Parameters
    ----------
    centers : numpy.ndarray or torch.Tensor, shape (..., n, d)
        The mixture centres, float32 or float64.
    beta : float
        Noise standard deviation, > 0.
    base : float, optional
        Logarithm base: None (default) for nats, 2 for bits.
    num_threads : int, optional
        CPU threads (default: all).

    Returns
    -------
    Bounds
        ``(lower, upper)`` in nats (or ``base`` units): floats, or arrays of the batch shape.
    """
    c = float_array(centers, "centers")
    beta = beta_for_dtype(beta, c.dtype)
    log_base = log_of_base(base)
    threads = thread_count(num_threads)
    n, d = c.shape[-2], c.shape[-1]
    batch_shape = c.shape[:-2]
    c3 = _backend.reshape_3d(c, math.prod(batch_shape), n, d)

    def m_term(bandwidth: float) -> np.ndarray:
        # -LSE_j(-D_ij / (2 bandwidth^2)) averaged over i, plus ln n: m_a with a = 2 bandwidth^2.
        lse = _backend.to_numpy(_backend.log_density_3d(c3, c3, bandwidth, threads))
        return math.log(n) - lse.astype(np.float64).mean(axis=-1)

    h_z = noise_entropy(d, beta)
    lower = (h_z + m_term(2.0 * beta)).reshape(batch_shape) / log_base
    upper = (h_z + m_term(beta)).reshape(batch_shape) / log_base
    return Bounds(as_result(lower), as_result(upper))
