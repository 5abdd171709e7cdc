"""Reproductions of the experiments of Goldfeld et al. (ICML 2019).

Each experiment is a Python function, ``run(out_dir, **options)``, and a command,
``infoflow reproduce NAME [--out DIR] [--overwrite] [options]``.  Each writes its numbers
as CSV/JSON and its figures as PNG into ``out_dir`` (each file atomically; files of an
earlier run are replaced only with ``overwrite=True``, and the check comes before any
computation), shows a progress bar, and on Ctrl-C stops cleanly, keeping (and writing)
what is done; the command then exits with status 130.
"""

from __future__ import annotations

from ._registry import EXPERIMENTS, Experiment, register

__all__ = ["EXPERIMENTS", "Experiment", "register"]
