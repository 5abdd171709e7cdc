"""Experiment sweeps on a Dask cluster: one task per (setting, seed), files written as each finishes.

Each run is a Dask task, and each task hands its run to a run process: a Python process
that the worker starts (on its interpreter and ``sys.path``) and keeps for its next runs,
one run at a time, as the local command runs its seeds one after another in one process.
A worker with T threads runs T runs at once (``runs_per_worker`` fewer), each in its own
run process, with its share of the threads for the kernel and torch single-threaded, as
the local command trains.  Processes, not threads of the worker, because a run uses
process-wide state that concurrent runs in one process would share: torch's global
generator (seeded by ``torch.manual_seed``, it draws the initial weights and the training
noise, so the values would depend on the timing), ``torch.set_num_threads`` (and through
the OpenMP runtime torch shares with the kernel, the kernel's default thread count) and
``sys.stdout``."""

from __future__ import annotations

import inspect
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .._intake import positive_int
from .._output import atomic_write, check_new_files, output_dir, remove_files
from ._cluster import DEFAULT_CONNECT_TIMEOUT, connect, local_cluster, resolve_client, run_slot, runs_at_once
from ._run_process import run_in_own_process

__all__ = ["sweep"]

def _run_seed(plan, root, torch_seed: int, label: str, runs_per_worker: int | None = None) -> dict:
    """On a worker: one run of ``plan`` in a run process, into a private temporary
    folder; returns its files' bytes (the client writes them: the workers need not share
    its file system), its result and what it printed.

    Threads as ``run_each`` sets them locally: torch single-threaded unless the user gave
    ``num_threads`` (this tiny network trains fastest that way), the kernel on the given
    threads, else on this run's share of the worker's (:func:`run_slot`; Dask starts
    workers with ``OMP_NUM_THREADS=1``, so they are passed explicitly).
    """
    started = time.perf_counter()
    with run_slot(runs_per_worker) as share, tempfile.TemporaryDirectory(prefix="infoflow-sweep-") as base:
        folder = Path(base) / "run"
        folder.mkdir()
        kernel_threads = plan.num_threads or share
        request = {"plan": plan, "root": root, "torch_seed": torch_seed, "label": label, "folder": folder,
                   "kernel_threads": kernel_threads, "torch_threads": plan.num_threads or 1}
        reply = run_in_own_process(Path(base), request)
        files = {name: (folder / name).read_bytes() for name in reply["files"]}
    return {"result": reply["result"], "files": files, "output": reply["output"], "folder": str(folder),
            "seconds": time.perf_counter() - started, "kernel_threads": kernel_threads,
            "torch_threads": reply["torch_threads"]}


@contextmanager
def _ctrl_c_deferred():
    """Hold a Ctrl-C (SIGINT) until the block is done, then raise it: a run's folder is
    written whole or not at all, in milliseconds.  (Only the main thread gets signals.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *_: received.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def _write_run(folder: Path, plan, payload: dict) -> list[Path]:
    """Write a finished run's files into ``folder``, each atomically; the files of an
    earlier run there go first (the overwrite check was made before the sweep)."""
    folder = output_dir(folder)
    remove_files(folder / name for name in plan.files)
    paths = []
    for name, data in payload["files"].items():
        path = folder / name
        with atomic_write(path, "wb") as handle:
            handle.write(data)
        paths.append(path)
    return paths


def _settings(settings) -> list[tuple[str, dict]]:
    """[(folder name, options)]: one unnamed setting without ``settings``."""
    if settings is None:
        return [("", {})]
    if not isinstance(settings, Mapping) or not settings:
        raise TypeError("settings: expected a non-empty mapping {folder name: {option: value}}, got "
                        f"{type(settings).__name__}")
    out = []
    for name, values in settings.items():
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"settings: {name!r} is not a folder name (a non-empty name without slashes)")
        if not isinstance(values, Mapping):
            raise TypeError(f"settings[{name!r}]: expected a mapping of options, got {type(values).__name__}")
        out.append((name, dict(values)))
    return out


def _check_options(module, experiment: str, options: dict, where: str) -> None:
    known = set(inspect.signature(module.seed_plan).parameters)
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"{where}: {experiment} has no option {unknown[0]!r} (options: {', '.join(sorted(known))})")


def _connected(stack: ExitStack, client, scheduler, workers, timeout: float):
    """The client to use, from at most one of client=, scheduler=, workers= (default: the current client)."""
    given = [name for name, value in (("client", client), ("scheduler", scheduler), ("workers", workers))
             if value is not None]
    if len(given) > 1:
        raise ValueError(f"{given[0]} and {given[1]}: give at most one of client=, scheduler= (--scheduler) and "
                         "workers= (--workers)")
    if scheduler is not None:
        made = connect(scheduler, timeout=timeout)
        stack.callback(made.close)
        return made
    if workers is not None:
        return stack.enter_context(local_cluster(workers))
    return resolve_client(client)


def sweep(experiment, out_dir, *, seeds=1, seed=0, settings=None, client=None, scheduler=None, workers=None,
          runs_per_worker=None, overwrite=False, progress=True, connect_timeout=DEFAULT_CONNECT_TIMEOUT,
          **options) -> dict:
    """Run an experiment's seeds (and settings) as Dask tasks, streaming each run's files to ``out_dir``.

    The same runs as ``infoflow.experiments.EXPERIMENTS[experiment].run(out_dir,
    seeds=seeds, seed=seed, **options)``, the same files: with one seed the run's files in
    ``out_dir``, with several each run's in ``out_dir/seed_<i>/`` and the aggregate
    (``<experiment>_seeds.csv``/``.json``/``.png``) in ``out_dir``.  Each run is a task on
    the cluster; its files are written here, atomically, as soon as it finishes, so a
    crash or Ctrl-C loses no run that finished.  A task whose worker dies is run again
    elsewhere by Dask (up to ``distributed.scheduler.allowed-failures`` times).

    Threads: a worker with T threads runs T runs at once (``runs_per_worker`` r: r, at
    most T; by default also at most the sweep's runs per worker), each in a run process
    of its own (started by the worker and kept for its next runs), with torch
    single-threaded (as the local command trains) and the kernel on T // r threads (by
    default 1).  A run trains on one thread for about a third of its time, so one run per
    thread keeps every core busy where one run on all of a worker's threads would leave
    all but one idle while it trains; and no worker runs more threads than it has.  Own processes because
    concurrent runs in one process would share torch's global generator (the initial
    weights and training noise: the values would depend on the timing) and its thread
    setting.  ``runs_per_worker=1`` gives each run all its worker's threads, for runs
    that need a worker's memory (a run process's memory is not counted in the worker's
    Dask memory limit).  The scheduler places a run on a worker with room; the sweep keeps
    only as many runs on the cluster as its workers run at once, so that the rest wait on
    the client (and a Ctrl-C has few to cancel).  (With ``runs_per_worker`` below a
    worker's threads the scheduler may still place a run on a worker that is full while
    another has room; that run then waits for its worker.)  A cancelled run's process is
    stopped.

    Parameters
    ----------
    experiment : {"szt", "binning"}
        An experiment with seeds (``infoflow reproduce NAME --seeds N``).
    out_dir : str or path
        Output folder (created).
    seeds : int
        Runs per setting (default 1); run i is the i-th run of the local ``--seeds``.
    seed : int
        The root seed (default 0).
    settings : mapping of str to mapping, optional
        Several settings at once: ``{folder name: {option: value}}``; each setting's runs
        and aggregate go to ``out_dir/<folder name>/`` exactly as a local run of those
        options would write them there.  Default: one setting, ``options``.
    client : distributed.Client, optional
        The cluster to use.  Give at most one of ``client``, ``scheduler`` and
        ``workers``; with none, the current default client.
    scheduler : str, optional
        Address of a running Dask scheduler (``"tcp://host:8786"``); connected and closed here.
    workers : int, optional
        Start a :class:`distributed.LocalCluster` of this many worker processes, each
        with an equal share of this machine's cores, and close it afterwards.
    runs_per_worker : int, optional
        Runs a worker runs at once (default: as many as it has threads, and no more than
        the sweep's runs divided by the workers; at most its threads), each with the
        kernel on an equal share of the worker's threads.  1: one run per
        worker on all its threads (big runs where memory is the limit).
    overwrite : bool
        Replace the files of an earlier run (default False: FileExistsError naming them,
        before anything is computed).
    progress : bool
        A progress bar over the runs (the runs themselves show none).
    connect_timeout : float
        Seconds to wait for ``scheduler`` (default 5).
    **options
        The experiment's options (``epochs``, ``beta``, ``num_threads``, ...), as for its
        ``run``.  ``num_threads`` is per run (torch and the kernel of each run, whatever
        the worker's threads: combine it with ``runs_per_worker``); by default torch runs
        single-threaded (as locally) and the kernel on the run's share of the worker's
        threads.

    Returns
    -------
    dict
        What the local ``run`` returns (one seed: the run's result; several: the
        aggregate's), with ``"interrupted"`` (True after Ctrl-C) and ``"runs_done"``; with
        ``settings``: ``{"settings": {name: that}, "interrupted": ...}``.

    Raises
    ------
    TypeError, ValueError
        Bad options, an experiment without seeds, ``settings`` that are no folder names,
        a malformed ``scheduler`` address: before anything is started.
    OSError
        No scheduler at ``scheduler`` within ``connect_timeout`` seconds;
        FileExistsError for files of an earlier run without ``overwrite``.
    """
    from ..experiments import EXPERIMENTS
    from ..experiments.seeds import aggregate_files
    from ..experiments.training import run_seeds

    if experiment not in EXPERIMENTS or not hasattr(EXPERIMENTS[experiment].load(), "seed_plan"):
        sweepable = [name for name, e in EXPERIMENTS.items() if hasattr(e.load(), "seed_plan")]
        raise ValueError(f"experiment: sweeps run the experiments with seeds ({', '.join(sweepable)}), "
                         f"got {experiment!r}")
    module = EXPERIMENTS[experiment].load()
    count = positive_int(seeds, "seeds", allow_none=False)
    if workers is not None:
        positive_int(workers, "workers", allow_none=False)
    runs_per_worker = positive_int(runs_per_worker, "runs_per_worker")
    runs = run_seeds(seed, count)
    _check_options(module, experiment, options, "options")
    out = Path(out_dir)
    jobs = []  # (folder of the setting, plan)
    for name, values in _settings(settings):
        _check_options(module, experiment, values, f"settings[{name!r}]" if name else "options")
        merged = {**options, **values, "progress": False}
        if merged.get("noisy_csv") is not None:
            raise ValueError("noisy_csv: not in a sweep (the runs train their own noisy twins); run locally to "
                             "compare with a file")
        plan = module.seed_plan(**merged)
        folder = out / name if name else out
        if count == 1:
            check_new_files(folder, plan.files, overwrite=overwrite)
        else:
            check_new_files(folder, [f"seed_{i}/{file}" for i in range(count) for file in plan.files]
                            + list(aggregate_files(plan.name)), overwrite=overwrite)
        jobs.append((folder, plan))

    from distributed import as_completed
    from tqdm.auto import tqdm

    tasks = [(j, i) for j in range(len(jobs)) for i in range(count)]
    finished: dict[tuple[int, int], dict] = {}
    interrupted = False
    with ExitStack() as stack:
        client = _connected(stack, client, scheduler, workers, float(connect_timeout))
        if runs_per_worker is None:
            # One run per thread, but no more runs per worker than the sweep has for each:
            # a sweep of fewer runs than threads gives each run the threads left over.
            runs_per_worker = -(-len(tasks) // max(1, len(client.nthreads())))
        bar = stack.enter_context(tqdm(total=len(tasks), desc=f"sweep {experiment}", unit="run",
                                       disable=not progress, dynamic_ncols=True))
        futures: dict[str, tuple[int, int]] = {}
        live: dict[str, object] = {}
        pending = as_completed([], with_results=False)
        queue = list(tasks)
        token = f"{time.time_ns():x}"

        def submit_more() -> None:
            # As many runs on the cluster as its workers run at once (run_slot); the
            # scheduler places each on a worker with room, and more go out as runs finish.
            slots = sum(runs_at_once(threads, runs_per_worker) for threads in client.nthreads().values())
            room = max(1, slots) - len(futures)
            while queue and room > 0:
                j, i = queue.pop(0)
                root, torch_seed = runs[i]
                label = str(seed) if count == 1 else f"{seed} run {i}"
                future = client.submit(_run_seed, jobs[j][1], root, torch_seed, label, runs_per_worker, pure=False,
                                       key=f"infoflow-{experiment}-{j}-seed_{i}-{token}")
                futures[future.key] = (j, i)
                live[future.key] = future
                pending.add(future)
                room -= 1

        try:
            submit_more()
            for future in pending:
                j, i = futures.pop(future.key)
                live.pop(future.key)
                payload = future.result()  # a run's error is raised here
                folder, plan = jobs[j]
                run_folder = folder if count == 1 else folder / f"seed_{i}"
                with _ctrl_c_deferred():
                    paths = _write_run(run_folder, plan, payload)
                    finished[(j, i)] = {**payload["result"], "files": paths}
                text = payload["output"].replace(payload["folder"], str(run_folder)).rstrip()
                if text:
                    bar.write(text, file=sys.stdout)
                bar.update(1)
                submit_more()
        except KeyboardInterrupt:
            interrupted = True
            print(f"\nsweep {experiment}: interrupted; {len(finished)} of {len(tasks)} runs finished and written",
                  file=sys.stderr)
        finally:
            if live:  # Ctrl-C or a failed run: stop the others on the cluster too
                client.cancel(list(live.values()))

    return _aggregate(jobs, finished, count, seed, interrupted, settings is not None)


def _aggregate(jobs, finished: dict, count: int, seed: int, interrupted: bool, named: bool) -> dict:
    """Per setting: the run itself (one seed) or the aggregate of the finished runs."""
    outcome = {}
    for j, (folder, plan) in enumerate(jobs):
        done = sorted(i for (job, i) in finished if job == j)
        results = [finished[(j, i)] for i in done]
        if count == 1:
            value = dict(results[0]) if results else {"history": [], "files": []}
        elif results:
            value = plan.aggregate(folder, results, seed=seed, runs=[f"seed_{i}" for i in done])
        else:
            value = {"runs": [], "history": [], "files": []}
        value.update(interrupted=interrupted or len(done) < count, runs_done=len(done))
        outcome[folder.name] = value
    if not named:
        return next(iter(outcome.values()))
    return {"settings": outcome, "interrupted": interrupted or any(v["interrupted"] for v in outcome.values())}
