"""Grid benchmark: infoflow.gaussian_lse against every peer over n, d and dtype.

Selected only on request (``conftest.py`` deselects it otherwise)::

    mkdir -p bench/results
    python -m pytest bench/ --benchmark-only -m grid --benchmark-json=bench/results/grid.json
    python bench/render.py --grid bench/results/grid.json

Cells: m = n in ``INFOFLOW_BENCH_GRID_N`` (by default 1e3, 1e4, 2e4, 1e5), d in
``INFOFLOW_BENCH_GRID_D`` (1, 2, 10, 100, 784), dtype in ``INFOFLOW_BENCH_GRID_DTYPES``
(float32, float64); methods in ``INFOFLOW_BENCH_GRID_METHODS`` (all of
:data:`METHODS`).  ``config.py`` reads and documents every ``INFOFLOW_BENCH_*``
variable.  Data as in the headline suite: uniform in ``[-1, 1]^d``, beta =
0.1 sqrt(d).  The float64 cell of each (n, d) holds exactly the float32 values, so
both dtypes solve the same problem and share one float64 reference.

Time budget (``budget.py`` has the rule in full).  infoflow always runs on the
full problem.  A peer whose estimated full time (from a short pilot on the first
queries) is at most ``INFOFLOW_BENCH_GRID_FULL_S`` (10 s) is timed in full; one
above ``INFOFLOW_BENCH_GRID_SKIP_S`` (60 s) is skipped and
recorded in the JSON as "skipped (est. N s)"; in between it is timed once on
the first k queries (about ``FULL_S`` of work) and scaled to m, and the cell is
marked as scaled.  With the defaults the grid is estimated (extrapolated from
small runs) at 20-30 minutes on a 2-core AVX-512 machine: ~5 min of infoflow's
own runs (n = 1e5, d = 784 alone ~1 min in float32, ~2 in float64), ~10 s per
scaled peer cell, a few seconds per pilot, ~1-2 min of KeOps compilation (once per
d and dtype, cached on disk afterwards) and float64 references.  At n = 1e5 the
budget skips nearly every peer (their estimates are minutes to hours); set
``INFOFLOW_BENCH_GRID_SKIP_S=600`` to time those on subsets too (~+7 min).

Correctness, in every benchmark: ``INFOFLOW_BENCH_GRID_CHECK`` (100) random query
rows are compared with the tests' float64 reference (``tests/reference.py``: direct
differences, SciPy logsumexp), error measured as ``|got - ref| / max(1, |ref|)``.  A
subset run is checked by an extra, untimed call on exactly those rows.  Tolerances
per method are in :func:`tolerance`, with the measurements behind them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from importlib.util import find_spec

import budget
import config
import numpy as np
import peers
import pytest
from reference import lse_reference, relative_errors

import infoflow

pytestmark = pytest.mark.grid


GRID_N, GRID_D, GRID_DTYPES = config.GRID_N, config.GRID_D, config.GRID_DTYPES
FULL_S, SKIP_S, N_CHECK = config.GRID_FULL_S, config.GRID_SKIP_S, config.GRID_CHECK
SEED = 20190610


@dataclass(frozen=True)
class Method:
    """One column of the grid.

    Attributes
    ----------
    fn : callable
        ``fn(queries, centres, beta)`` -> raw log-sum-exp per query.
    needs : str or None
        Module that must be importable, else the cell is recorded as skipped.
    """

    fn: object
    needs: str | None = None


METHODS = {
    "infoflow": Method(infoflow.gaussian_lse),
    "numpy": Method(peers.numpy_lse),
    "torch": Method(peers.torch_lse, "torch"),
    "sklearn": Method(peers.sklearn_lse, "sklearn"),
    # The official code of Goldfeld et al. uses KernelDensity(rtol=1e-3).
    "sklearn_rtol1e-3": Method(partial(peers.sklearn_lse, rtol=1e-3), "sklearn"),
    "pykeops": Method(peers.keops_lse, "pykeops"),
}
GRID_METHODS = tuple(METHODS) if config.GRID_METHODS is None else config.GRID_METHODS


def tolerance(method, dtype, d):
    """Largest accepted ``|got - ref| / max(1, |ref|)`` for a method, dtype and d.

    * Exact methods (infoflow, NumPy, torch, KeOps): ``config.EXACT_TOL``, 1e-4 in
      float32 and 1e-9 in float64 (the measurements behind them are there; at
      beta = 0.1 sqrt(d) the expanded form of NumPy and torch loses only a few digits).
    * scikit-learn computes in float64 whatever the input dtype, and its tree walk
      with atol = rtol = 0 is *not* exact in high dimension: it still prunes nodes
      whose bounds it judges tight (log-space bookkeeping), and the error grows with
      n and d.  Measured worst errors (scikit-learn 1.9): ~1e-10 for d <= 10;
      5.6e-4 (n = 3000), 3.3e-3 (n = 2e4) at d = 100; 2.3e-2 (n = 5000) and 8.6e-2
      (n = 1e5, 0.8 nats on a log-density of -20) at d = 784.  Tolerances:

      - exact (atol = rtol = 0): 1e-4 for d <= 10, as for the exact methods;
      - rtol = 1e-3: 2e-3 for d <= 10, since by construction the density is
        within a relative 1e-3, so its log within ln(1/(1 - 1e-3)) ~ 1e-3;
      - both: 5e-2 for 10 < d <= 100 and 2e-1 above, where the tree's own error
        dominates.  These loose bounds still catch a wrong normalisation (off by
        ln n or (d/2) ln(2 pi beta^2)); the measured error is recorded either way
        and ``render.py`` prints it next to the tolerance.

    Parameters
    ----------
    method : str
    dtype : str
    d : int

    Returns
    -------
    float
    """
    if method.startswith("sklearn"):
        if d > 100:
            return 2e-1
        if d > 10:
            return 5e-2
        return 2e-3 if "rtol" in method else config.EXACT_TOL["float32"]
    return config.EXACT_TOL[dtype]


@dataclass
class GridProblem:
    """Data and float64 reference of one (n, d) cell, shared by both dtypes.

    Attributes
    ----------
    n, d : int
        m = n queries and n centres in dimension d.
    beta : float
        0.1 sqrt(d), as in the headline suite.
    rows : numpy.ndarray
        Sorted indices of the checked query rows.
    ref : numpy.ndarray
        Float64 reference log-sum-exp at ``q[rows]``.
    """

    n: int
    d: int
    beta: float
    rows: np.ndarray
    ref: np.ndarray
    _arrays: dict = field(default_factory=dict, repr=False)

    def arrays(self, dtype):
        """Queries and centres in ``dtype`` (the float64 copy is made on first use)."""
        if dtype not in self._arrays:
            q32, c32 = self._arrays["float32"]
            self._arrays[dtype] = (q32.astype(dtype), c32.astype(dtype))
        return self._arrays[dtype]


@pytest.fixture(
    scope="session",
    params=[(n, d) for n in GRID_N for d in GRID_D],
    ids=lambda nd: f"n={nd[0]}-d={nd[1]}",
)
def grid_problem(request):
    """Session-scoped :class:`GridProblem`; pytest drops it when the next (n, d) starts.

    Returns
    -------
    GridProblem
    """
    n, d = request.param
    rng = np.random.default_rng([SEED, n, d])
    q = rng.uniform(-1.0, 1.0, size=(n, d)).astype(np.float32)
    c = rng.uniform(-1.0, 1.0, size=(n, d)).astype(np.float32)
    beta = 0.1 * math.sqrt(d)
    rows = np.sort(rng.choice(n, size=min(N_CHECK, n), replace=False))
    ref = lse_reference(q[rows], c, beta)  # float64 of the float32 values
    return GridProblem(n=n, d=d, beta=beta, rows=rows, ref=ref, _arrays={"float32": (q, c)})


def _record_skip(cell, reason, **extra):
    budget.SKIPPED.append(dict(cell, suite="grid", reason=reason, **extra))
    pytest.skip(reason)


def _check(benchmark, got, problem, tol, label):
    """Store the worst error in ``extra_info``, then assert it is within ``tol``."""
    got = np.asarray(got, dtype=np.float64)
    err = relative_errors(got, problem.ref)
    worst = int(np.argmax(err))
    benchmark.extra_info["max_rel_err"] = float(err[worst])
    assert err[worst] <= tol, (
        f"{label}: error {err[worst]:.3e} > tolerance {tol:g} at query row "
        f"{problem.rows[worst]} (got {got[worst]!r}, reference {problem.ref[worst]!r})"
    )


@pytest.mark.parametrize("method", GRID_METHODS)
@pytest.mark.parametrize("dtype", GRID_DTYPES)
def test_grid(benchmark, grid_problem, dtype, method):
    p = grid_problem
    q, c = p.arrays(dtype)
    cell = dict(method=method, n=p.n, m=p.n, d=p.d, dtype=dtype, beta=p.beta)
    label = f"{method} n={p.n} d={p.d} {dtype}"
    benchmark.group = f"n={p.n} d={p.d} {dtype}"
    spec = METHODS[method]
    if spec.needs == "pykeops" and not peers.keops_available():
        _record_skip(cell, "pykeops not importable")  # it can also fail at import time
    elif spec.needs and find_spec(spec.needs) is None:
        _record_skip(cell, f"{spec.needs} not installed")

    plan = budget.plan(spec.fn, q, c, p.beta, full_s=FULL_S, skip_s=SKIP_S,
                       always_full=method == "infoflow")
    tol = tolerance(method, dtype, p.d)
    if plan.kind == "skip":
        _record_skip(cell, f"est. {plan.estimate_s:.3g} s > {SKIP_S:g} s budget",
                     estimate_s=plan.estimate_s, fixed_s=plan.fixed_s, budget_s=SKIP_S,
                     pilot_queries=plan.pilot_queries)

    benchmark.extra_info.update(cell, suite="grid", tolerance=tol, full_s=FULL_S,
                                skip_s=SKIP_S, **plan.info())
    k = plan.queries
    out = benchmark.pedantic(spec.fn, args=(q[:k], c, p.beta), rounds=plan.rounds,
                             iterations=1)
    # A subset run is checked on the reference rows themselves, by one more call
    # outside the timing: queries are independent, so these are the values the
    # full run would have produced.
    got = np.asarray(out)[p.rows] if k == p.n else spec.fn(q[p.rows], c, p.beta)
    _check(benchmark, got, p, tol, label)
