"""Output helpers for results and figures: folders, CSV, JSON, matplotlib figures without pyplot, Ctrl-C."""

from __future__ import annotations

import csv
import json
import math
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["output_dir", "write_csv", "write_json", "new_figure", "save_figure", "stoppable"]


def output_dir(out: str | Path) -> Path:
    """Create (if needed) and return the experiment's output folder."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as plain Python values; NaN as None for JSON."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) else value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write rows (dicts with the same keys) as a CSV file with a header."""
    rows = list(rows)
    path = Path(path)
    with path.open("w", newline="") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0].keys()))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _plain(v) for k, v in row.items()})
    return path


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    path.write_text(json.dumps(_plain(data), indent=2) + "\n")
    return path


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 6.0, height: float = 4.5):
    """A matplotlib Figure and its axes, without pyplot's global state or a display."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=120)
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
