"""Run processes: where a sweep's run executes on a worker.

A Dask task of a sweep hands its run to a run process, a Python process that the worker
starts (on its interpreter and ``sys.path``) and keeps for its next runs, one run at a
time.  A process of its own, because a run uses process-wide state (torch's global
generator and thread count, ``sys.stdout``) that concurrent runs in one worker would
share; see :mod:`infoflow.distributed._sweep`."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["run_in_own_process", "IDLE_SECONDS"]


# The program of a run process (python -c).  It reads the folders of requests, one a line,
# from stdin and runs each request in turn (as the local command runs its seeds, one after
# another in one process), writing reply.pickle beside it; it ends at the end of stdin.
# It imports neither dask nor infoflow.distributed (seconds of start-up), only what
# unpickling the plan and running it import.  It ends too when the worker that started it
# is gone (killed, or its cluster closed), so that Dask's retry elsewhere is the only copy.
_CHILD = """\
import contextlib, io, os, pickle, sys, threading, time, traceback
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(70)
threading.Thread(target=watch, name="infoflow-orphan-watch", daemon=True).start()
while True:
    base = sys.stdin.readline().rstrip("\\n")
    if not base:
        break
    output = io.StringIO()
    try:
        with open(os.path.join(base, "request.pickle"), "rb") as handle:
            sys.path.extend(entry for entry in pickle.load(handle) if entry not in sys.path)
            request = pickle.load(handle)
        import torch
        torch.set_num_threads(request["torch_threads"])
        with contextlib.redirect_stdout(output):
            result = request["plan"].run_one(request["folder"], request["root"], request["torch_seed"],
                                             request["label"], request["kernel_threads"])
        reply = {"result": {key: value for key, value in result.items() if key != "files"},
                 "files": [os.path.basename(str(path)) for path in result["files"]],
                 "torch_threads": torch.get_num_threads(), "pid": os.getpid()}
    except BaseException as exc:
        reply = {"error": exc, "traceback": traceback.format_exc()}
    reply["output"] = output.getvalue()
    try:
        data = pickle.dumps(reply)
        pickle.loads(data)
    except Exception:
        reply["error"] = None
        data = pickle.dumps(reply)
    with open(os.path.join(base, "reply.tmp"), "wb") as handle:
        handle.write(data)
    os.replace(os.path.join(base, "reply.tmp"), os.path.join(base, "reply.pickle"))
"""

#: Seconds an idle run process waits for the next run of its worker before it ends.
IDLE_SECONDS = 60.0

# This worker process's idle run processes, each with the timer that ends it.
_IDLE: list = []
_POOL = threading.Lock()


def _run_process() -> subprocess.Popen:
    """An idle run process of this worker, or a new one.

    Its own session (POSIX), so that a Ctrl-C in the terminal of a ``--workers`` sweep
    reaches the client, not the runs; its output goes where the worker's goes."""
    with _POOL:
        while _IDLE:
            process, timer = _IDLE.pop()
            timer.cancel()
            if process.poll() is None:
                return process
    return subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, text=True,
                            start_new_session=os.name == "posix")


def _end(process: subprocess.Popen) -> None:
    """End a run process: the end of its input if it is idle, else (or if that fails) a kill."""
    try:
        process.stdin.close()
        process.wait(5.0)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait()


def _expire(process: subprocess.Popen) -> None:
    with _POOL:
        if not any(idle is process for idle, _ in _IDLE):
            return  # taken for a run meanwhile
        _IDLE[:] = [(idle, timer) for idle, timer in _IDLE if idle is not process]
    _end(process)


def _keep(process: subprocess.Popen) -> None:
    """Keep a run process for this worker's next run, for at most :data:`IDLE_SECONDS`."""
    timer = threading.Timer(IDLE_SECONDS, _expire, args=(process,))
    timer.daemon = True
    with _POOL:
        _IDLE.append((process, timer))
    timer.start()


def _cancelled() -> bool:
    """Whether the scheduler has released the task running in this worker thread (the
    client cancelled it: Ctrl-C, or another run failed)."""
    try:
        from distributed import get_worker

        worker = get_worker()
        key = worker.get_current_task()
    except (ImportError, ValueError, AttributeError):
        return False
    # Worker.state is dask's own bookkeeping, not public API: where it cannot be read, the
    # run is never taken for cancelled (it then ends with its worker, as before).
    tasks = getattr(getattr(worker, "state", None), "tasks", None)
    if tasks is None:
        return False
    task = tasks.get(key)
    return task is None or task.state == "cancelled"


def run_in_own_process(base: Path, request: dict) -> dict:
    """Run ``request`` (see ``_CHILD``) in a run process; its reply, or its error raised here.

    The process is kept for the worker's next run if the run ends normally (an error of
    the run included), else killed: when the task is cancelled (checked ten times a
    second; for a second in a row, as a task may be resumed) or anything else fails here.
    """
    with open(base / "request.pickle", "wb") as handle:
        pickle.dump(list(sys.path), handle)
        pickle.dump(request, handle)
    label, reply_path = request["label"], base / "reply.pickle"
    process = _run_process()
    done = False
    try:
        process.stdin.write(f"{base}\n")
        process.stdin.flush()
        strikes = 0
        while not reply_path.exists():
            code = process.poll()
            if code is not None:
                if reply_path.exists():
                    break
                raise RuntimeError(f"sweep run {label}: its process exited with status {code} without a result "
                                   "(its error output is in the worker's log)")
            strikes = strikes + 1 if _cancelled() else 0
            if strikes >= 10:
                raise RuntimeError(f"sweep run {label}: cancelled")
            time.sleep(0.1)
        reply = pickle.loads(reply_path.read_bytes())
        done = True
    finally:
        if done and process.poll() is None:
            _keep(process)
        elif process.poll() is None:
            process.kill()
            process.wait()
    if "error" in reply:
        exc = reply["error"]
        if exc is None:
            raise RuntimeError(f"sweep run {label} failed:\n{reply['traceback']}")
        if hasattr(exc, "add_note"):  # Python >= 3.11: the run's traceback travels with the error
            exc.add_note(f"in the process of sweep run {label}:\n{reply['traceback']}")
        raise exc
    return reply
