r"""Monte Carlo entropies with the kernel calls on a Dask cluster, the same draws as locally.

:func:`infoflow.entropy_engine.entropy_nats` draws a query plan and then, chunk by chunk, the
Gaussian noise of the queries, calls the kernel and folds the chunk's moments into
running ones.  The engine here does exactly that on the client, in the same order from
the same generator, so the draws are the same; only the kernel call and the chunk's
moments run on a worker, and the client merges the moments in chunk order with the same
exact (Chan et al.) update.  With the local chunking (``queries_per_task`` at least the
local chunk) the result is the local one bit for bit; with smaller tasks the merge is
done in more steps, and value and stderr agree to float64 rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .. import entropy as _local
from .._intake import FloatArray, positive_int
from ..control_variate import control_variate as chunk_control_variate
from ..control_variate import term_moments
from ..entropy_engine import ENGINE, MonteCarloRun, kernel_terms
from ..queries import QUERY_CHUNK_ELEMENTS, chunks
from ._cluster import resolve_client, total_threads, worker_slot

__all__ = ["estimates_on", "mixture_entropy", "information_flow", "layer_information", "mi_xt", "mi_yt"]

# Default task size: about this many tasks per worker thread (a few queued behind each
# running one, so that the workers never wait for the client) ...
_TASKS_PER_THREAD = 2
# ... but at least this many Monte Carlo queries per task: below it the per-task cost
# of Dask (~ms) outweighs a kernel call, and the pruned kernel wants 256+ queries.
_MIN_TASK_QUERIES = 4096
# Tasks submitted ahead of the merge, per worker thread: bounds the noise held in memory.
_AHEAD_PER_THREAD = 4


@dataclass(frozen=True)
class _Rows:
    """What a task needs of mixtures b0..b1 (scattered once, shared by their chunks)."""

    b0: int
    centers: FloatArray  # (rows, n, d), numpy
    weights: FloatArray | None  # (rows, n), numpy
    shift: np.ndarray  # (rows,) minus the log-normaliser, added in the kernel before rounding
    log_p: np.ndarray | None  # (rows, n) ln(w_j / W), weighted control variate only
    h_w: np.ndarray | None  # (rows,)
    baseline: np.ndarray | None  # (rows,) h_Z + H_w, control variate only


@dataclass(frozen=True)
class _Chunk:
    """One task's queries: the rows b0..b1, query indices r0..r1, their standard normal
    draws (float64, as entropy_nats draws them) and owners."""

    b0: int
    b1: int
    r0: int
    draws: np.ndarray
    owner: np.ndarray


def _chunk_task(rows: _Rows, chunk: _Chunk, beta: float, plain: bool, centers_ordered: bool,
                num_threads: int | None) -> list:
    """On a worker: the kernel for one chunk of queries and the chunk's moments, as
    :func:`infoflow.entropy_engine.entropy_nats` computes them (see there)."""
    lb0, lb1 = chunk.b0 - rows.b0, chunk.b1 - rows.b0
    # As in entropy_nats: the float64 draws serve the control variate, their cast the queries.
    noise = chunk.draws.astype(rows.centers.dtype, copy=False)
    with worker_slot() as worker:
        terms = kernel_terms(rows.centers, rows.weights, lb0, lb1, chunk.owner, beta, noise, rows.shift,
                             num_threads or worker, centers_ordered)
    if plain:
        return term_moments(terms, None, None, chunk.r0)
    cv = chunk_control_variate(chunk.draws, chunk.owner, rows.log_p, rows.h_w, lb0, lb1)
    return term_moments(terms, cv, rows.baseline[lb0:lb1], chunk.r0)


class _Engine:
    """Takes :func:`infoflow.entropy_engine.entropy_nats`'s arguments; runs its kernel calls on ``client``."""

    def __init__(self, client, queries_per_task: int | None):
        self.client = client
        self.queries_per_task = queries_per_task

    def _limit(self, total_queries: int, d: int) -> int:
        """Query coordinates per task (see :func:`infoflow.queries.chunks`)."""
        if self.queries_per_task is not None:
            per_task = self.queries_per_task
        else:
            per_task = max(_MIN_TASK_QUERIES,
                           math.ceil(total_queries / (_TASKS_PER_THREAD * total_threads(self.client))))
        return max(1, min(QUERY_CHUNK_ELEMENTS, per_task * d))

    def __call__(self, c3: FloatArray, beta: float, *, weights, k, n_queries, generator, num_threads, progress,
                 centers_ordered, control_variate):
        if c3.on_cuda:
            raise ValueError("centers: the distributed estimates run on the Dask workers' CPUs; pass numpy arrays "
                             "or CPU tensors (or estimate on the GPU locally)")
        batch, n, d = c3.shape
        # The same calls on the same generator, in the same order, as entropy_nats.
        run = MonteCarloRun(c3, beta, weights, k, n_queries, generator, control_variate)
        plan, plain, host_weights = run.plan, run.plain, run.host_weights
        ranges = list(chunks(batch, plan.count, d, self._limit(batch * plan.count, d)))
        client = self.client
        rows_cache: dict[tuple[int, int], object] = {}

        def rows_of(b0: int, b1: int):
            # One mixture: all chunks need all its centres, so they go to every worker
            # once.  Several: each chunk's own rows, scattered once per row range.
            key = (0, batch) if batch == 1 else (b0, b1)
            if key not in rows_cache:
                rows_cache.clear()  # chunks come in batch order: earlier row ranges are done
                r0, r1 = key
                rows = _Rows(r0, _host(c3.data[r0:r1]), None if host_weights is None else _host(host_weights[r0:r1]),
                             run.shift[r0:r1], *(None if v is None else v[r0:r1] for v in (run.log_p, run.h_w,
                                                                                             run.baseline)))
                rows_cache[key] = client.scatter(rows, broadcast=batch == 1, hash=False)
            return rows_cache[key]

        def submit(index: int):
            b0, b1, r0, r1 = ranges[index]
            draws = generator.standard_normal((b1 - b0, r1 - r0, d))  # float64, as entropy_nats
            owner = plan.owners(b0, b1, r0, r1)
            chunk = client.scatter(_Chunk(b0, b1, r0, draws, owner), hash=False)
            return client.submit(_chunk_task, rows_of(b0, b1), chunk, beta, plain, bool(centers_ordered),
                                 num_threads, pure=False, key=f"infoflow-entropy-chunk-{index}-{_token()}")

        ahead = max(2, _AHEAD_PER_THREAD * total_threads(client))
        futures: dict[int, object] = {}
        done: dict[int, list] = {}
        bar = None
        if progress and len(ranges) > 1:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(ranges), desc="mixture entropy (dask)", unit="chunk")
        from distributed import as_completed

        try:
            submitted = min(ahead, len(ranges))
            for index in range(submitted):
                futures[index] = submit(index)
            pending = as_completed(list(futures.values()), with_results=False)
            index_of = {f.key: i for i, f in futures.items()}
            merged = 0
            for future in pending:
                i = index_of.pop(future.key)
                done[i] = future.result()  # a task's error is raised here
                futures.pop(i)
                # Merged in chunk order: the same arithmetic whatever order tasks finish in.
                while merged in done:
                    b0, b1 = ranges[merged][:2]
                    run.merge(b0, b1, done.pop(merged))
                    merged += 1
                    if bar is not None:
                        bar.update(1)
                if submitted < len(ranges):
                    futures[submitted] = submit(submitted)
                    index_of[futures[submitted].key] = submitted
                    pending.add(futures[submitted])
                    submitted += 1
        except BaseException:
            # Ctrl-C or a failed task: stop the rest on the cluster too.
            client.cancel(list(futures.values()))
            raise
        finally:
            rows_cache.clear()
            if bar is not None:
                bar.close()
        return run.finish()


def _host(values: np.ndarray) -> FloatArray:
    """A C-contiguous host copy of ``values`` as a validated FloatArray (for a task)."""
    data = np.ascontiguousarray(values)
    return FloatArray(data, "numpy", "cpu", data.dtype, data.shape)


def _token() -> str:
    import secrets

    return secrets.token_hex(6)


@contextmanager
def estimates_on(client=None, *, queries_per_task=None) -> Iterator:
    """Run the Monte Carlo kernel calls of every entropy estimated in the block on a Dask cluster.

    Inside the block, :func:`infoflow.mixture_entropy`, :func:`infoflow.mi_xt`,
    :func:`infoflow.mi_yt`, :func:`infoflow.information_flow`,
    :meth:`infoflow.InformationPlane.record` (anything built on
    :func:`infoflow.entropy_engine.entropy_nats`) draw their queries here, exactly as they would
    locally, and ship them to the workers in tasks; the workers return each task's
    moments, which are merged here exactly.  Sampling and validation stay local.

    Parameters
    ----------
    client : distributed.Client, optional
        Default: the current default client.
    queries_per_task : int, optional
        Monte Carlo queries per task (default: enough tasks for about 2 per worker
        thread, at least 4096 queries each).  With at least the local chunk (2^23 query
        coordinates) the result is the local one bit for bit.

    Yields
    ------
    distributed.Client
        The client used.

    Notes
    -----
    Each task holds its worker's one infoflow slot and runs the kernel on the worker's
    threads (``num_threads`` of the estimator overrides this), so a worker never runs
    more kernel threads than it has.  The estimate equals the local one with the same
    ``rng`` up to float64 rounding of the merge (value and stderr); see the module
    :mod:`infoflow.distributed`.
    """
    engine = _Engine(resolve_client(client), positive_int(queries_per_task, "queries_per_task"))
    token = ENGINE.set(engine)
    try:
        yield engine.client
    finally:
        ENGINE.reset(token)


def mixture_entropy(centers, beta, *, client=None, queries_per_task=None, weights=None, mc_samples=None,
                    mc_queries=None, base=None, rng=None, num_threads=None, progress=False, control_variate=True):
    r"""Monte Carlo estimate of :math:`h(\hat P_S * \mathcal N(0, \beta^2 I))` with the kernel on a Dask cluster.

    :func:`infoflow.mixture_entropy` with its queries split over the workers: the same
    arguments, the same draws for the same ``rng``, and the same :class:`~infoflow.Estimate`
    up to float64 rounding of the merge (value and stderr; bit for bit when
    ``queries_per_task`` covers the local chunk).

    Parameters
    ----------
    centers : numpy.ndarray or torch.Tensor (CPU), shape (..., n, d)
        As for :func:`infoflow.mixture_entropy` (validated here, on the client).
    beta : float
        Noise standard deviation, > 0.
    client : distributed.Client, optional
        Default: the current default client.
    queries_per_task : int, optional
        See :func:`estimates_on`.
    weights, mc_samples, mc_queries, base, rng, num_threads, progress, control_variate
        As for :func:`infoflow.mixture_entropy`; ``num_threads`` is the kernel's threads
        per task on a worker (default: the worker's thread count).

    Returns
    -------
    Estimate
        ``.value`` and ``.stderr`` in nats (or ``base`` units).
    """
    with estimates_on(client, queries_per_task=queries_per_task):
        return _local.mixture_entropy(centers, beta, weights=weights, mc_samples=mc_samples, mc_queries=mc_queries,
                                      base=base, rng=rng, num_threads=num_threads, progress=progress,
                                      control_variate=control_variate)


def information_flow(model, x, y, beta=None, *, client=None, queries_per_task=None, **options):
    """:func:`infoflow.information_flow` with every entropy's kernel calls on a Dask cluster.

    The forward passes (sampling) run here; the Monte Carlo queries of every h(T),
    h(T | X = x) and h(T | Y = y) go to the workers (:func:`estimates_on`).  With the
    same ``rng`` the result equals the local one up to float64 rounding of the merge.

    Parameters
    ----------
    model, x, y, beta
        As for :func:`infoflow.information_flow`.
    client : distributed.Client, optional
        Default: the current default client.
    queries_per_task : int, optional
        See :func:`estimates_on`.
    **options
        ``repeats``, ``mc_samples``, ``mc_queries``, ``max_centers``, ``batch_size``,
        ``base``, ``rng``, ``num_threads``, ``convergence``, ``progress``: as for
        :func:`infoflow.information_flow`.

    Returns
    -------
    InformationFlow
    """
    from ..flow import information_flow as local

    with estimates_on(client, queries_per_task=queries_per_task):
        return local(model, x, y, beta, **options)


def layer_information(samples, labels, beta, *, client=None, queries_per_task=None, **options):
    """:func:`infoflow.mutual_information.layer_information` (I(X;T) and I(Y;T) of one
    layer) with the kernel calls on a Dask cluster; see :func:`information_flow`."""
    from ..mutual_information import layer_information as local

    with estimates_on(client, queries_per_task=queries_per_task):
        return local(samples, labels, beta, **options)


def mi_xt(samples, beta, *, client=None, queries_per_task=None, **options):
    """:func:`infoflow.mi_xt` with the kernel calls on a Dask cluster; see :func:`information_flow`."""
    from ..mutual_information import mi_xt as local

    with estimates_on(client, queries_per_task=queries_per_task):
        return local(samples, beta, **options)


def mi_yt(samples, labels, beta, *, client=None, queries_per_task=None, **options):
    """:func:`infoflow.mi_yt` with the kernel calls on a Dask cluster; see :func:`information_flow`."""
    from ..mutual_information import mi_yt as local

    with estimates_on(client, queries_per_task=queries_per_task):
        return local(samples, labels, beta, **options)
