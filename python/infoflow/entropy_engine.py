"""The Monte Carlo entropy of validated mixtures: the loop over chunks of queries behind ``mixture_entropy``.

:func:`entropy_nats` draws the query plan, then chunk by chunk the Gaussian noise of the
queries, calls the kernel and folds the chunk's moments into running ones.  The setup it
shares with :mod:`infoflow.distributed`'s engine (which runs the same chunks on a Dask
cluster, see :data:`ENGINE`) is :class:`MonteCarloRun`, and the work of one chunk is
:func:`kernel_terms` and :func:`infoflow.control_variate.term_moments`.
"""

from __future__ import annotations

import contextvars
import math

import numpy as np

from . import _backend
from ._intake import FloatArray
from .control_variate import (
    Moments,
    control_variate,
    cross_fitting_possible,
    finish_estimate,
    log_proportions,
    term_moments,
)
from .density import gaussian_entropy, log_gaussian_normaliser, log_total_weight
from .queries import check_query_budget, chunk_count, chunks, planned_queries, query_plan, query_points

__all__ = ["ENGINE", "MonteCarloRun", "kernel_terms", "entropy_nats"]

#: The engine of :func:`entropy_nats` while infoflow.distributed's ``estimates_on(client)``
#: block runs: a callable taking entropy_nats's arguments (the same draws, kernel calls on
#: the cluster).  None: the local loop below.
ENGINE: contextvars.ContextVar = contextvars.ContextVar("infoflow_entropy_engine", default=None)


class MonteCarloRun:
    """The set-up of one Monte Carlo estimate of a (batch, n, d) stack of mixtures, and its
    running moments: the query plan (drawn from ``generator`` first), the shift that
    normalises the kernel's log-sum-exp, and with the control variate its proportions
    ln(w_j / W), H_w and the baseline h_Z + H_w.  ``host_weights``: the weights as a
    numpy array (None unweighted).

    ``moments`` is ``(Moments,)`` for the plain estimator (``plain``), else the moments
    of the even and the odd half of the queries; :meth:`merge` folds in a chunk's
    :func:`~infoflow.control_variate.term_moments` and :meth:`finish` gives (value, stderr).
    """

    def __init__(self, c3: FloatArray, beta: float, weights: FloatArray | None, k: int | None, n_queries: int | None,
                 generator: np.random.Generator, use_control_variate: bool):
        batch, n, d = c3.shape
        self.dtype = c3.dtype
        self.host_weights = host_weights = None if weights is None else _backend.to_numpy(weights.data)
        self.plan = query_plan(n, host_weights, k, n_queries, generator, batch)
        self.log_weight = log_total_weight(weights, n)
        # minus the log-normaliser, added in the kernel before the rounding to the dtype
        self.shift = -np.broadcast_to(log_gaussian_normaliser(d, beta) + self.log_weight, (batch,)).astype(np.float64)
        self.plain = not use_control_variate or not cross_fitting_possible(self.plan.count, d)
        self.log_p = self.h_w = self.baseline = None
        if self.plain:
            self.moments = (Moments(batch),)
        else:
            self.moments = (Moments(batch, paired=True), Moments(batch, paired=True))  # even and odd query index r
            if host_weights is not None:
                self.log_p, self.h_w = log_proportions(host_weights, self.log_weight)
            # T - C = h_Z + H_w + ln P(J | q): the moments are kept of the last term, which is
            # 0 for a query deep inside its own component (see infoflow.control_variate).
            self.baseline = gaussian_entropy(d, beta) + (np.full(batch, math.log(n)) if self.h_w is None else self.h_w)

    def control_variate(self, draws: np.ndarray, owner: np.ndarray, b0: int, b1: int) -> np.ndarray | None:
        """C_r of a chunk's float64 ``draws``, None for the plain estimator."""
        return None if self.plain else control_variate(draws, owner, self.log_p, self.h_w, b0, b1)

    def merge(self, b0: int, b1: int, stats: list) -> None:
        """Fold in the :func:`~infoflow.control_variate.term_moments` of rows b0..b1's next queries."""
        for moments, chunk in zip(self.moments, stats):
            moments.merge(b0, b1, chunk)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(value, stderr) in nats per batch row."""
        return finish_estimate(self.moments[0] if self.plain else self.moments, self.baseline, self.dtype)


def kernel_terms(centers: FloatArray, weights: FloatArray | None, b0: int, b1: int, owner: np.ndarray, beta: float,
                 noise, shift: np.ndarray, num_threads, centers_ordered: bool) -> np.ndarray:
    """T_r = -ln g(q_r) (float64, (b1 - b0, queries)) of the queries around centres
    ``owner`` with ``noise`` (in the data's dtype) of mixtures b0..b1 of ``centers``, by
    the kernel, normalised by ``shift`` (per batch row) before its rounding."""
    queries = query_points(centers, b0, b1, owner, beta, noise)
    block = FloatArray(centers.data[b0:b1], centers.kind, centers.device, centers.dtype, (b1 - b0, *centers.shape[1:]))
    block_weights = None
    if weights is not None:
        block_weights = FloatArray(weights.data[b0:b1], weights.kind, weights.device, weights.dtype,
                                   (b1 - b0, weights.shape[-1]))
    # Each query's own centre bounds its nearest distance: on the brute path at small
    # beta the kernel then skips almost every other centre from the first block on.
    hint = owner if owner.ndim == 1 else owner[0] if owner.shape[0] == 1 else None
    log_g = _backend.to_numpy(_backend.log_density_3d(queries, block, beta, num_threads, weights=block_weights,
                                                      near_center=hint, centers_ordered=centers_ordered,
                                                      shift=shift[b0:b1]))
    return -log_g.astype(np.float64)


def entropy_nats(c3: FloatArray, beta: float, *, weights: FloatArray | None = None, k: int | None = None,
                 n_queries: int | None = None, generator: np.random.Generator, num_threads=None,
                 progress: bool = False, centers_ordered: bool = False,
                 control_variate: bool = True, graph=None) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo entropies (nats) and standard errors of a validated (batch, n, d) stack
    of mixtures, one value per batch row: the engine of :func:`~infoflow.mixture_entropy`,
    for callers that have validated their arrays already.  ``weights`` (batch, n)
    validated, ``k`` draws per centre or ``n_queries`` queries per mixture (default about
    65536); ``centers_ordered``: see :func:`infoflow._backend.log_density_3d`.

    ``control_variate`` (default): the mean of T_r = -ln g(q_r) corrected by the
    cross-fitted control variate C_r = |z_r|^2/2 - d/2 - ln(w_J/W) - H_w (mean 0), exactly
    unbiased; the stderr is that of the corrected terms with the corrections described in
    the Notes of :func:`~infoflow.mixture_entropy`.  With fewer than 16 queries (64 in d = 1,
    32 in d = 2), or False: the plain
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
                      num_threads=num_threads, progress=progress, centers_ordered=centers_ordered,
                      control_variate=control_variate)
    run = MonteCarloRun(c3, beta, weights, k, n_queries, generator, control_variate)
    # A generator of ranges, not a list: its length grows with the budget.
    ranges = chunks(batch, run.plan.count, d)
    n_chunks = chunk_count(batch, run.plan.count, d)
    if progress and n_chunks > 1:
        from tqdm.auto import tqdm

        ranges = tqdm(ranges, total=n_chunks, desc="mixture entropy", unit="chunk")
    for b0, b1, r0, r1 in ranges:
        # Drawn in float64 whatever the data's dtype, then cast: numpy's float32 normals
        # come from another algorithm, and the same seed must give the same draws (and
        # float32 and float64 data the same estimate up to float32 rounding).
        # ``draws`` (float64, exactly standard normal) serve the control variate; ``noise``,
        # in the data's dtype, everything that builds the queries.
        draws = generator.standard_normal((b1 - b0, r1 - r0, d))
        noise = draws.astype(c3.dtype, copy=False)
        owner = run.plan.owners(b0, b1, r0, r1)
        # log g at each query, normalised in the kernel before its rounding to the dtype
        if graph is not None:
            log_g = graph.log_density(b0, b1, r0, owner, noise, np.broadcast_to(run.log_weight, (batch,))[b0:b1])
            terms = -log_g.astype(np.float64)
        else:
            terms = kernel_terms(c3, weights, b0, b1, owner, beta, noise, run.shift, num_threads, centers_ordered)
        cv = run.control_variate(draws, owner, b0, b1)
        if graph is not None and cv is not None:
            graph.control_variate(b0, b1, r0, cv)
        run.merge(b0, b1, term_moments(terms, cv, None if cv is None else run.baseline[b0:b1], r0))
    return run.finish()
