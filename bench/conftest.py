"""Shared data, reference values and checks for the benchmark suite.

Run explicitly (``testpaths`` in pyproject.toml only names ``tests``, so a bare
``python -m pytest`` never collects this directory).  Three suites, each with its
own JSON file (``--benchmark-json`` does not create directories, hence the mkdir)::

    mkdir -p bench/results
    # headline: m = n = 20000, d = 2, 10, 100, float32 (test_bench_log_density.py)
    python -m pytest bench/ --benchmark-only --benchmark-json=bench/results/headline.json
    # grid: n = 1e3..1e5, d = 1..784, float32 and float64 (test_bench_grid.py)
    python -m pytest bench/ --benchmark-only -m grid --benchmark-json=bench/results/grid.json
    # one epoch of the 12-bit experiment's I(X;T) estimates (test_bench_end_to_end.py)
    python -m pytest bench/ --benchmark-only -m end_to_end \\
        --benchmark-json=bench/results/end_to_end.json
    # scaling facts: n, d, threads, dtype, memory, machine limit (a script)
    python bench/scaling.py
    python bench/render.py --headline bench/results/headline.json --grid bench/results/grid.json \\
        --end-to-end bench/results/end_to_end.json --scaling bench/results/scaling.json

The grid and end-to-end suites are long, so they are deselected unless their
marker or name appears in ``-m`` or ``-k``; a plain run is the headline suite
alone, as before.  ``INFOFLOW_BENCH_SIZE`` sets the headline's m = n, for a quick
smoke run; ``config.py`` lists every variable of the suites, with its default.

The float64 reference and the error measure are the tests' own (``tests/reference.py``,
put on ``sys.path`` here).
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))  # for `reference`

import budget  # noqa: E402
import config  # noqa: E402
from reference import lse_reference, relative_errors  # noqa: E402

#: Long suites, selected only on request: marker name -> description.
OPT_IN_SUITES = {
    "grid": "grid benchmark over n, d and dtype (test_bench_grid.py); select with -m grid",
    "end_to_end": "one epoch of the 12-bit experiment's estimates (test_bench_end_to_end.py); "
    "select with -m end_to_end",
}


def pytest_configure(config):
    """Register the suite markers (the project runs pytest with ``--strict-markers``)."""
    for name, text in OPT_IN_SUITES.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_collection_modifyitems(config, items):
    """Deselect the opt-in suites unless ``-m`` or ``-k`` names them.

    Keeps ``python -m pytest bench/ --benchmark-only`` what it always was (the
    headline suite, minutes) instead of silently starting an hour-long grid.
    """
    asked = f"{config.option.markexpr or ''} {config.option.keyword or ''}"
    # "end_to_end" contains "end"; match the marker names as whole words only.
    words = set(asked.replace("(", " ").replace(")", " ").split())
    keep, drop = [], []
    for item in items:
        suites = [s for s in OPT_IN_SUITES if item.get_closest_marker(s) is not None]
        (drop if suites and not words.intersection(suites) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep

DIMS = (2, 10, 100)
DTYPE = np.float32
N_CHECK = 200  # query rows checked against the float64 reference
RTOL = config.EXACT_TOL[np.dtype(DTYPE).name]  # on the LSE value, relative to max(1, |ref|)
SEED = 20190609


@dataclass
class Problem:
    """One benchmark problem: data, bandwidth and the float64 check values.

    Attributes
    ----------
    d : int
        Dimension.
    q, c : numpy.ndarray, shapes (m, d) and (n, d)
        Queries and centres, float32, uniform in ``[-1, 1]^d``.
    beta : float
        Bandwidth, ``0.1 * sqrt(d)``: comparable to nearest-neighbour distances,
        so the sum is dominated by a handful of centres but not by a single one.
    rows : numpy.ndarray, shape (N_CHECK,)
        Sorted indices of the query rows that are checked.
    ref : numpy.ndarray, shape (N_CHECK,)
        Float64 reference log-sum-exp at ``q[rows]``.
    """

    d: int
    q: np.ndarray
    c: np.ndarray
    beta: float
    rows: np.ndarray
    ref: np.ndarray

    @property
    def m(self):
        return self.q.shape[0]

    @property
    def n(self):
        return self.c.shape[0]


@pytest.fixture(scope="session", params=DIMS, ids=lambda d: f"d={d}")
def problem(request):
    """Session-scoped :class:`Problem` for each ``d`` (data and reference made once).

    Returns
    -------
    Problem
    """
    d = request.param
    rng = np.random.default_rng([SEED, d])
    size = config.SIZE
    q = rng.uniform(-1.0, 1.0, size=(size, d)).astype(DTYPE)
    c = rng.uniform(-1.0, 1.0, size=(size, d)).astype(DTYPE)
    beta = 0.1 * float(np.sqrt(d))
    rows = np.sort(rng.choice(size, size=min(N_CHECK, size), replace=False))
    ref = lse_reference(q[rows], c, beta)
    return Problem(d=d, q=q, c=c, beta=beta, rows=rows, ref=ref)


def check_agreement(benchmark, out, problem, rtol=RTOL, rows=None):
    """Record the worst error against the float64 reference, then assert it is small.

    The error is stored as ``extra_info["max_rel_err"]`` before asserting, so
    ``report.py`` can show every method's accuracy next to its time.

    Parameters
    ----------
    benchmark : pytest_benchmark.fixture.BenchmarkFixture
    out : numpy.ndarray, shape (m,) or (k,)
        Log-sum-exp values from the benchmarked method.
    problem : Problem
        The problem ``out`` was computed for.
    rtol : float, optional
        Tolerance on ``|out - ref| / max(1, |ref|)``.
    rows : int, optional
        ``out`` covers only the first ``rows`` queries (a timed subset); check
        the reference rows that fall inside it.

    Raises
    ------
    AssertionError
        If any checked value differs by more than ``rtol * max(1, |ref|)``.
    """
    out = np.asarray(out, dtype=np.float64)
    keep = problem.rows < (problem.m if rows is None else rows)
    assert keep.any(), "no reference rows inside the timed subset"
    ref = problem.ref[keep]
    got = out[problem.rows[keep]]
    err = relative_errors(got, ref)
    worst = int(np.argmax(err))
    benchmark.extra_info["max_rel_err"] = float(err[worst])
    assert err[worst] <= rtol, (
        f"d={problem.d}: relative error {err[worst]:.3e} > {rtol} at query "
        f"{problem.rows[keep][worst]} (got {got[worst]!r}, reference {ref[worst]!r})"
    )


def describe(benchmark, problem, method, **extra):
    """Put the benchmark in its ``d`` group and record what ``report.py`` needs.

    Parameters
    ----------
    benchmark : pytest_benchmark.fixture.BenchmarkFixture
    problem : Problem
    method : str
        Column name in the report (``infoflow``, ``numpy``, ...).
    **extra
        More ``extra_info`` entries, e.g. ``time_scale`` for a timed subset.
    """
    benchmark.group = f"d={problem.d}"
    info = dict(
        method=method,
        m=problem.m,
        n=problem.n,
        d=problem.d,
        beta=problem.beta,
        dtype=np.dtype(DTYPE).name,
        time_scale=1,
    )
    benchmark.extra_info.update(info, **extra)


def _cpu_model():
    """CPU model name and ISA highlights from ``/proc/cpuinfo`` (Linux), else ``None``."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model is None:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    # The model string alone can be vague under a hypervisor ("AMD EPYC"); the
    # widest SIMD level is what the kernels' speed depends on.
    isa = next((x for x in ("avx512f", "avx2", "sse4_2") if x in flags), None)
    return f"{model} ({isa})" if model and isa else model


def invocation(config):
    """The command line that ran this session, with the environment variables that shape it.

    Parameters
    ----------
    config : pytest.Config

    Returns
    -------
    str
        E.g. ``INFOFLOW_BENCH_GRID_N=1000 python -m pytest bench/ -m grid ...``,
        for the README and reports ("the exact commands that produced them").
    """
    env = " ".join(
        f"{k}={shlex.quote(v)}"
        for k, v in sorted(os.environ.items())
        if k.startswith("INFOFLOW_") or k == "OMP_NUM_THREADS"
    )
    args = shlex.join(str(a) for a in config.invocation_params.args)
    return f"{env + ' ' if env else ''}python -m pytest {args}"


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Add the command line and the budget rule's skipped cells to the JSON.

    A skipped cell has no timing, so pytest-benchmark would leave it out; it is
    listed under ``"skipped"`` with its estimate instead, for ``render.py``.
    """
    output_json["command"] = invocation(config)
    output_json["skipped"] = list(budget.SKIPPED)


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record the CPU model and usable cores in the JSON, for ``report.py``."""
    machine_info["cpu_model"] = _cpu_model()
    machine_info["cores"] = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    )
