"""The experiments' output files: refuse to replace an earlier run's before computing, write after.

Each experiment checks first (:func:`prepare_output`), so that a run that would replace
files of an earlier one stops before any work, and writes its tables, figure and JSON
at the end (:func:`save_result`), every file atomically (:mod:`infoflow._output`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Callable

from .._output import check_new_files, output_dir, remove_files, write_csv, write_json

__all__ = ["prepare_output", "save_result", "report_written"]


def prepare_output(out_dir, files: Iterable[str], *, overwrite: bool) -> tuple[Path, list[Path]]:
    """Check, then create, an experiment's output folder.

    Parameters
    ----------
    out_dir : str or path
        The folder (created, with its parents).
    files : iterable of str
        The files the run will write, relative to ``out_dir``.
    overwrite : bool
        Whether they may replace existing files; if not, FileExistsError naming those
        that exist, raised before the folder is created.

    Returns
    -------
    (Path, list of Path)
        The folder and the paths of ``files`` in it.
    """
    paths = check_new_files(out_dir, files, overwrite=overwrite)
    return output_dir(out_dir), paths


def save_result(out: Path, name: str, result: dict, tables: Mapping[str, Sequence[Mapping]],
                figure: Callable[[Path], Path] | None, previous: Iterable[Path]) -> dict:
    """Write an experiment's files into ``out`` and list them in ``result["files"]``.

    First the ``previous`` files (those :func:`prepare_output` checked) are removed, so
    that an interrupted save leaves no file of an earlier run beside the new ones; then
    each table is written as ``<stem>.csv``, the figure drawn by ``figure(out /
    "<name>.png")`` (when given), and ``result`` as ``<name>.json``, its ``"files"`` the
    paths of all of them (as str, the JSON last).

    Parameters
    ----------
    out : Path
        The output folder.
    name : str
        The stem of the figure and of the JSON.
    result : dict
        What the JSON holds; ``"files"`` is set here.
    tables : mapping of str to sequence of dict
        CSV stem -> rows, written in this order.
    figure : callable or None
        Draws the figure at the path it is given; returns that path.
    previous : iterable of Path
        Files of an earlier run to remove first.

    Returns
    -------
    dict
        ``result``.
    """
    remove_files(previous)
    files = [write_csv(out / f"{stem}.csv", rows) for stem, rows in tables.items()]
    if figure is not None:
        files.append(figure(out / f"{name}.png"))
    result["files"] = [str(f) for f in files] + [str(out / f"{name}.json")]
    write_json(out / f"{name}.json", result)
    return result


def report_written(files: Iterable, out: Path) -> None:
    """Print the line that ends an experiment's summary: the names of the files written in ``out``."""
    print("  wrote: " + ", ".join(Path(f).name for f in files) + f" in {out}")
