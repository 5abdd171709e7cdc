"""Output helpers for results and figures: folders, CSV, JSON, matplotlib figures without pyplot, Ctrl-C.

Every file is written atomically (:func:`atomic_write`): into a temporary file in the
same folder, then renamed over the target, so that a reader, a crash or a Ctrl-C never
sees a half-written file, only the old one or the complete new one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["output_dir", "atomic_write", "check_new_files", "remove_files", "write_csv", "write_header_csv",
           "to_json", "write_json", "new_figure", "save_figure", "stoppable"]


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", *, newline: str | None = None,
                 encoding: str | None = None) -> Iterator[io.IOBase]:
    """Open a file for writing that appears at ``path`` only once complete.

    The handle writes to a hidden temporary file in the same folder (so that the rename
    stays on one file system); on leaving the block normally it is flushed, synced and
    renamed over ``path`` with :func:`os.replace`, which is atomic.  If the block raises
    (any exception, Ctrl-C included) the temporary file is removed and ``path`` keeps
    its old contents, or stays absent.

    Parameters
    ----------
    path : str or path
        The file to (re)write; its folder must exist.
    mode : {"w", "wb"}
        Text or binary.
    newline, encoding : str, optional
        As for :func:`open` in text mode (encoding default UTF-8).

    Yields
    ------
    file object
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', got {mode!r}")
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask decide the permissions, as for any new file
    # (tempfile would make it 0o600); O_EXCL never reuses someone else's file.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        if mode == "wb":
            handle = os.fdopen(descriptor, "wb")
        else:
            handle = os.fdopen(descriptor, "w", newline=newline, encoding=encoding or "utf-8")
    except BaseException:
        os.close(descriptor)
        temporary.unlink(missing_ok=True)
        raise
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            # A replaced file keeps its permissions (the user may have made it read-only for others).
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def check_new_files(folder: str | os.PathLike, names: Iterable[str], *, overwrite: bool) -> list[Path]:
    """The paths ``folder / name``; FileExistsError naming those that exist, unless ``overwrite``.

    Called before any long computation, so that a run that would replace a user's files
    stops at once rather than after an hour.
    """
    folder, names = Path(folder), [str(name) for name in names]
    paths = [folder / name for name in names]
    existing = [] if overwrite else [name for name, path in zip(names, paths) if path.exists()]
    if existing:
        raise FileExistsError(f"{folder}: would overwrite {', '.join(existing)}; pass --overwrite "
                              "(overwrite=True in Python) to replace, or choose another output folder")
    return paths


def remove_files(paths: Iterable[str | os.PathLike]) -> None:
    """Delete those of ``paths`` that exist.

    Used just before a run writes its set of files over an earlier run's: should the
    writing stop half-way (a second Ctrl-C), no file of the old run is left beside the
    new ones, only some of the new run's files are missing.
    """
    for path in paths:
        Path(path).unlink(missing_ok=True)


def output_dir(out: str | Path) -> Path:
    """Create (if needed) and return the experiment's output folder."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _plain(value: Any, *, for_json: bool = False) -> Any:
    """numpy scalars and arrays as plain Python values, NaN as None (an empty CSV cell).

    With ``for_json``, infinities become None too: JSON has no such numbers
    (``json.dumps`` would write ``NaN``/``Infinity``, which strict JSON readers reject),
    while a CSV cell can say ``inf``.
    """
    if isinstance(value, np.ndarray):
        return [_plain(v, for_json=for_json) for v in value.tolist()]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) or (for_json and math.isinf(value)) else value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, for_json=for_json) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, for_json=for_json) for v in value]
    return value


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write rows (dicts with the same keys) as a CSV file with a header."""
    rows = list(rows)
    path = Path(path)
    with atomic_write(path, newline="") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0].keys()))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _plain(v) for k, v in row.items()})
    return path


def write_header_csv(path: str | Path, fields: Iterable[str]) -> Path:
    """Write a CSV file holding only its header row (a table with no rows yet)."""
    path = Path(path)
    with atomic_write(path, newline="") as handle:
        csv.writer(handle).writerow(list(fields))
    return path


def to_json(data: Any, **options) -> str:
    """``data`` as strict JSON text: numpy values as plain ones, NaN and infinities as null."""
    return json.dumps(_plain(data, for_json=True), allow_nan=False, **options)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as strict JSON (see :func:`to_json`), indented."""
    path = Path(path)
    text = to_json(data, indent=2) + "\n"  # serialised first: an error leaves no file behind
    with atomic_write(path) as handle:
        handle.write(text)
    return path


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 6.0, height: float = 4.5):
    """A matplotlib Figure and its axes, without pyplot's global state or a display."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig, path: str | Path) -> Path:
    """Save a matplotlib figure, atomically; the format follows the suffix (default PNG)."""
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        # Drawn into the temporary file: matplotlib cannot infer the format from its name.
        fig.savefig(handle, format=path.suffix[1:].lower() or "png", dpi=120)
    return path


@contextmanager
def stoppable(what: str):
    """Turn Ctrl-C inside the block into a clean stop.

    Yields a one-element list; ``state[0]`` becomes True if the block was interrupted.
    The code after the block then writes what was done.
    """
    state = [False]
    try:
        yield state
    except KeyboardInterrupt:
        state[0] = True
        print(f"\n{what}: interrupted; writing the results so far", file=sys.stderr)
