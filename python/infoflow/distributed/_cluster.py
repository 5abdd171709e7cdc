"""The Dask side of infoflow.distributed: which client, how to reach a scheduler, and what
a task may use on its worker."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction

__all__ = ["resolve_client", "connect", "local_cluster", "worker_slot", "run_slot", "runs_at_once", "worker_threads",
           "total_threads"]

#: Seconds to wait for a scheduler before giving up (``connect_timeout=``, ``--connect-timeout``).
DEFAULT_CONNECT_TIMEOUT = 5.0

# The worker's threads that infoflow tasks in this worker process hold now.  The kernel is
# itself multi-threaded (OpenMP), so a worker with T threads that ran T kernel tasks at
# once, each on T threads, would put T*T threads on T cores.  A kernel task (worker_slot)
# holds all T; a sweep run (run_slot) holds T / r of them, r the runs the worker runs at
# once.  A task whose share is not free waits here until enough is released.
_THREADS = threading.Condition()
_held = Fraction(0)


def resolve_client(client):
    """``client`` itself, or the current default :class:`distributed.Client` when None."""
    from distributed import Client, default_client

    if client is None:
        try:
            return default_client()
        except ValueError:
            raise ValueError("client: none given and no Dask client is running; pass client=distributed.Client(...) "
                             "(e.g. Client(LocalCluster()) or Client('tcp://scheduler:8786')) or create one "
                             "first") from None
    if not isinstance(client, Client):
        raise TypeError(f"client: expected a distributed.Client, got {type(client).__name__}")
    return client


async def _probe(address: str, timeout: float) -> None:
    from distributed.comm import connect as comm_connect

    comm = await comm_connect(address, timeout=timeout)
    await comm.close()


def connect(address, *, timeout: float = DEFAULT_CONNECT_TIMEOUT):
    """A :class:`distributed.Client` of the scheduler at ``address``, or a one-line error
    naming it within ``timeout`` seconds.

    The address is tried with a bare connection first (in a thread of its own, so that it
    works inside a running event loop too): a failed ``Client(...)`` would spend further
    seconds trying to close itself when garbage-collected.

    Raises
    ------
    TypeError
        ``address`` is not a string.
    ValueError
        ``address`` is no scheduler address (``'foo'``: no port).
    OSError
        Nothing answered at ``address`` within ``timeout`` seconds.
    """
    from distributed import Client

    if not isinstance(address, str):
        raise TypeError(f"scheduler: expected an address string such as 'tcp://host:8786', got "
                        f"{type(address).__name__}")
    address = address.strip()
    if not address:
        raise ValueError("scheduler: empty address; expected e.g. 'tcp://host:8786'")
    failure: list[BaseException] = []

    def probe() -> None:
        try:
            asyncio.run(_probe(address, timeout))
        except BaseException as exc:  # reported below, in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=probe, name="infoflow-scheduler-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    if thread.is_alive():
        raise OSError(f"scheduler: no answer from the Dask scheduler at {address!r} within {timeout:g} s")
    if failure:
        exc = failure[0]
        if isinstance(exc, ValueError):
            raise ValueError(f"scheduler: {address!r} is not a Dask scheduler address ({exc})") from None
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise OSError(f"scheduler: cannot reach a Dask scheduler at {address!r} within {timeout:g} s ({reason})") \
            from None
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise OSError(f"scheduler: cannot connect to the Dask scheduler at {address!r}: {exc}") from None


# Dask's background monitoring is tuned for tasks of milliseconds: every process checks
# its event loop every 20 ms, a worker samples its threads' stacks every 10 ms (the
# statistical profiler) and its memory every 100 ms.  Idle, a 2-worker LocalCluster took
# 21 % of a core on the 2-core machine (client and scheduler 9 %, each worker 6 %), which
# runs that need both cores pay for; with these settings 3 %.  infoflow's tasks (a sweep's
# runs, kernel blocks) take seconds to minutes, so the clusters it starts check every
# half second to two seconds and do not profile.  (A worker's memory limit is then
# enforced within a second of being crossed rather than 0.1 s; a sweep's run processes
# are outside it anyway.)  A cluster given by address keeps its own configuration.
QUIET_MONITORING = {
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.worker.profile.enabled": False,
}


@contextmanager
def local_cluster(workers: int, *, threads_per_worker: int | None = None) -> Iterator:
    """A client of a fresh :class:`distributed.LocalCluster` of ``workers`` worker
    processes, closed on leaving the block.

    Each worker gets ``threads_per_worker`` threads, by default an equal share of this
    machine's cores (at least 1), so that together they use every core once.  Dask's
    background monitoring runs at intervals of 0.5-2 s instead of 10-100 ms and the
    statistical profiler is off (the dashboard's profile page stays empty): on a small
    machine it took a fifth of a core from the work.
    """
    import dask
    from distributed import Client, LocalCluster

    from .._intake import positive_int

    count = positive_int(workers, "workers", allow_none=False)
    threads = positive_int(threads_per_worker, "threads_per_worker")
    threads = threads or max(1, (os.cpu_count() or 1) // count)
    # ":0": the scheduler's HTTP server (dashboard, metrics) on a free port; the default,
    # 8787, may belong to another cluster on this machine.
    with dask.config.set(QUIET_MONITORING):  # read as the scheduler and nannies start (workers get a copy)
        cluster = LocalCluster(n_workers=count, threads_per_worker=threads, processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def worker_threads() -> int | None:
    """The thread count of the Dask worker running this code; None outside a worker."""
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        worker = get_worker()
    except ValueError:  # not in a worker (the local threaded scheduler, the client)
        return None
    state = getattr(worker, "state", worker)
    return int(state.nthreads)


@contextmanager
def _holding(share: Fraction, threads: int) -> Iterator[None]:
    """Hold ``share`` of this process's ``threads`` for the block, waiting until it is free.

    A share larger than everything still runs, alone."""
    global _held
    with _THREADS:
        while _held and _held + share > threads:
            _THREADS.wait()
        _held += share
    try:
        yield
    finally:
        with _THREADS:
            _held -= share
            _THREADS.notify_all()


@contextmanager
def worker_slot() -> Iterator[int | None]:
    """Hold all of this worker's threads for a kernel task; yields the threads it may use.

    On a Dask worker: the worker's thread count (which the task passes to the kernel and
    torch explicitly: Dask's nanny starts workers with ``OMP_NUM_THREADS=1``).  Elsewhere
    (dask's local schedulers): None, the kernel's default of all cores; the slot still
    runs one kernel at a time, so that a threaded scheduler does not multiply them.
    """
    threads = worker_threads()
    with _holding(Fraction(threads or 1), threads or 1):
        yield threads


def runs_at_once(threads: int, runs_per_worker: int | None) -> int:
    """How many sweep runs a worker with ``threads`` threads runs at once: one per thread
    (``runs_per_worker`` None), else ``runs_per_worker``, at most ``threads``."""
    return max(1, min(threads, runs_per_worker or threads))


@contextmanager
def run_slot(runs_per_worker: int | None = None) -> Iterator[int | None]:
    """Hold one sweep run's share of this worker's threads; yields the kernel threads of the run.

    A worker with T threads runs r = :func:`runs_at_once` (T, ``runs_per_worker``) runs at
    once (by default r = T), each holding T / r of its threads, so the kernel of each run
    gets T // r threads (by default 1) and the runs together never use more than T.  A
    further run, or a kernel task (:func:`worker_slot`, which needs all T), waits.  Outside
    a worker: one run at a time, the kernel on its default (None: all cores).
    """
    threads = worker_threads()
    if threads is None:
        with _holding(Fraction(1), 1):
            yield None
        return
    runs = runs_at_once(threads, runs_per_worker)
    with _holding(Fraction(threads, runs), threads):
        yield max(1, threads // runs)


def total_threads(client) -> int:
    """Threads over all the client's workers now (at least 1)."""
    return max(1, sum(client.nthreads().values()))
