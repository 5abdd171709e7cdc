"""Shared data, reference values and checks for the benchmark suite.

Run explicitly (``testpaths`` in pyproject.toml only names ``tests``, so a bare
``python -m pytest`` never collects this directory)::

    python -m pytest bench/ --benchmark-only --benchmark-json=bench-results.json
    python bench/report.py bench-results.json

``INFOFLOW_BENCH_SIZE`` (default 20000) sets m = n, for a quick smoke run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest

import peers

SIZE = int(os.environ.get("INFOFLOW_BENCH_SIZE", "20000"))
DIMS = (2, 10, 100)
DTYPE = np.float32
N_CHECK = 200  # query rows checked against the float64 reference
RTOL = 1e-4  # on the LSE value, relative to max(1, |ref|)
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
    q = rng.uniform(-1.0, 1.0, size=(SIZE, d)).astype(DTYPE)
    c = rng.uniform(-1.0, 1.0, size=(SIZE, d)).astype(DTYPE)
    beta = 0.1 * float(np.sqrt(d))
    rows = np.sort(rng.choice(SIZE, size=min(N_CHECK, SIZE), replace=False))
    ref = peers.reference_lse(q[rows], c, beta)
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
    err = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
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


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record the CPU model and usable cores in the JSON, for ``report.py``."""
    machine_info["cpu_model"] = _cpu_model()
    machine_info["cores"] = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    )
