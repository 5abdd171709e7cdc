"""The benchmark suite's configuration: every ``INFOFLOW_BENCH_*`` variable, read once.

Each variable is read here at import and nowhere else; the suites import the values.
All are optional (the defaults are the published runs) and are meant for smoke runs
or for timing more or fewer cells.

Headline suite (``test_bench_log_density.py``):

``INFOFLOW_BENCH_SIZE`` (default 20000)
    m = n of the headline problems.
``INFOFLOW_BENCH_SKLEARN_QUERIES`` (default 0: all)
    Time scikit-learn's exact KDE on only the first k queries and scale its time to m
    (one full call takes minutes at d = 100).

Grid suite (``test_bench_grid.py``; lists are comma-separated, ``1e5`` reads as 100000):

``INFOFLOW_BENCH_GRID_N`` (default 1000,10000,20000,100000)
    m = n of the cells.
``INFOFLOW_BENCH_GRID_D`` (default 1,2,10,100,784)
    Dimensions of the cells.
``INFOFLOW_BENCH_GRID_DTYPES`` (default float32,float64)
    Dtypes of the cells.
``INFOFLOW_BENCH_GRID_METHODS`` (default: every method of ``test_bench_grid.METHODS``)
    Methods timed.
``INFOFLOW_BENCH_GRID_FULL_S`` (default 10)
    A peer whose estimated full time is at most this many seconds is timed in full.
``INFOFLOW_BENCH_GRID_SKIP_S`` (default 60)
    A peer estimated above this many seconds is skipped (recorded in the JSON); in
    between, it is timed on a subset of the queries and scaled (``budget.py``).
``INFOFLOW_BENCH_GRID_CHECK`` (default 100)
    Query rows of each cell checked against the float64 reference.

End-to-end suite (``test_bench_end_to_end.py``):

``INFOFLOW_BENCH_E2E_INPUTS`` (default 4096)
    The first k inputs of the 12-bit dataset.
``INFOFLOW_BENCH_E2E_REPEATS`` (default 8)
    R, the noisy samples of every hidden layer per input.
``INFOFLOW_BENCH_E2E_BUDGET_S`` (default 300)
    Seconds the KDE side may take; past it, only an evenly spaced fraction of the
    conditional entropies is computed.

The tolerances of the benchmarks' checks against the float64 reference are here too.
"""

from __future__ import annotations

import os


def _int(text):
    """Accept ``1e5`` as well as ``100000``."""
    return int(float(text))


def _list(name, default, convert):
    """A comma-separated list, or ``default`` (as a tuple; None stays None) when unset or empty."""
    raw = os.environ.get(name)
    if not raw:
        return None if default is None else tuple(default)
    return tuple(convert(v) for v in raw.split(",") if v.strip())


# Headline suite.
SIZE = int(os.environ.get("INFOFLOW_BENCH_SIZE", "20000"))
SKLEARN_QUERIES = int(os.environ.get("INFOFLOW_BENCH_SKLEARN_QUERIES", "0")) or None  # None: all queries

# Grid suite.
GRID_N = _list("INFOFLOW_BENCH_GRID_N", [1000, 10000, 20000, 100000], _int)
GRID_D = _list("INFOFLOW_BENCH_GRID_D", [1, 2, 10, 100, 784], _int)
GRID_DTYPES = _list("INFOFLOW_BENCH_GRID_DTYPES", ["float32", "float64"], str.strip)
GRID_METHODS = _list("INFOFLOW_BENCH_GRID_METHODS", None, str.strip)  # None: every method
GRID_FULL_S = float(os.environ.get("INFOFLOW_BENCH_GRID_FULL_S", "10"))
GRID_SKIP_S = float(os.environ.get("INFOFLOW_BENCH_GRID_SKIP_S", "60"))
GRID_CHECK = int(os.environ.get("INFOFLOW_BENCH_GRID_CHECK", "100"))

# End-to-end suite.
E2E_INPUTS = int(os.environ.get("INFOFLOW_BENCH_E2E_INPUTS", "4096"))
E2E_REPEATS = int(os.environ.get("INFOFLOW_BENCH_E2E_REPEATS", "8"))
E2E_BUDGET_S = float(os.environ.get("INFOFLOW_BENCH_E2E_BUDGET_S", "300"))

#: Largest accepted |got - ref| / max(1, |ref|) of an exact method (infoflow, NumPy,
#: torch, KeOps) against the float64 reference, per dtype: 1e-4 in float32 (rounding of
#: the squared distances, float32 sums over up to 1e5 terms; measured <= 5e-6), 1e-9 in
#: float64 (measured ~1e-15; the margin covers the expanded form |q|^2 + |c|^2 - 2 q.c
#: that NumPy and torch use).  Looser than the tests' float contract (tests/reference.py
#: DTYPE_TOL), which binds infoflow alone: these bind its peers too.
EXACT_TOL = {"float32": 1e-4, "float64": 1e-9}
