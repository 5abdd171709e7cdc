"""The time-budget rule of the grid benchmark: time a method in full, on a subset, or skip it.

Every method in the grid answers each query independently of the others, so its
cost is affine in the number of queries m: ``cost(m) = a + b m``, where ``a`` is
the per-call set-up (the centres' norms for NumPy, scikit-learn's tree build,
KeOps' dispatch) and ``b`` the cost of one query against all n centres.  The rule,
applied to every (method, n, d, dtype) cell:

1. Warm up on two queries and two centres (loads libraries, compiles KeOps).
2. ``a``: the best of up to three two-query calls against all n centres.
3. Pilot: time the first k queries, k = 8, 128, ... (growing by up to 16x) until
   the pilot takes ``max(PILOT_S, a / 2)`` beyond ``a`` or covers all m queries;
   the last k is timed twice and the faster reading kept.  Then
   ``b = (t_k - a) / k`` and the estimate is ``a + b m`` (or ``t_m`` itself when
   the pilot covered all m).
4. Decide, with ``full_s`` and ``skip_s`` from the environment (see
   ``test_bench_grid.py``):

   * estimate <= ``full_s``, or infoflow (always run on the full problem):
     **full** -- all m queries, ``rounds = clip(ROUND_S / estimate, 1, MAX_ROUNDS)``
     rounds, the median is reported;
   * estimate > ``skip_s``: **skip** -- nothing more is run; the cell is recorded
     in the JSON as skipped with its estimate, never silently missing;
   * otherwise **subset** -- one round on the first k queries, k chosen so that it
     takes about ``full_s``; the reported time is ``a + (t_k - a) m / k`` (the
     set-up is counted once, not m/k times, so a peer's time is not inflated).

A pilot costs about three set-ups plus twice ``max(PILOT_S, a / 2)`` (more only
through noise, at most 16x per step): well under a second for most cells, ~30 s
for scikit-learn at n = 1e5, d = 784, whose tree build alone takes seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

PILOT_S = 0.25  # pilot length beyond the set-up: long enough to average out timer noise
ROUND_S = 1.0  # a full-problem benchmark gets about this much time in total ...
MAX_ROUNDS = 15  # ... but no more than this many rounds (n = 1000 calls take ~1 ms)
FIRST_PILOT = 8  # queries in the first pilot call

#: Cells skipped by the budget rule (or because a peer is missing), as dicts; the
#: ``pytest_benchmark_update_json`` hook in ``conftest.py`` writes them to the JSON
#: next to the timed benchmarks.
SKIPPED: list[dict] = []


@dataclass
class Plan:
    """What the budget rule decided for one cell.

    Attributes
    ----------
    kind : {"full", "subset", "skip"}
    queries : int
        Queries in each timed call (m for ``full``).
    rounds : int
        Timed rounds (1 for ``subset``).
    fixed_s : float
        Measured set-up cost ``a`` of one call, seconds.
    estimate_s : float
        Estimated time of one call on all m queries, from the pilot.
    pilot_queries : int
        Queries in the last pilot call.
    m : int
        Queries in the full problem.
    """

    kind: str
    queries: int
    rounds: int
    fixed_s: float
    estimate_s: float
    pilot_queries: int
    m: int

    @property
    def time_scale(self) -> float:
        """m / queries: by how much the variable part of a subset's time is scaled."""
        return self.m / self.queries

    def info(self) -> dict:
        """The plan as ``extra_info`` entries (read back by ``render.py``)."""
        return {
            "plan": self.kind,
            "timed_queries": self.queries,
            "time_scale": self.time_scale,
            "fixed_s": self.fixed_s,
            "estimate_s": self.estimate_s,
            "pilot_queries": self.pilot_queries,
        }


def _seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def plan(fn, q, c, beta, *, full_s, skip_s, always_full=False):
    """Warm up ``fn``, estimate its time on the full problem, and decide how to time it.

    Parameters
    ----------
    fn : callable
        ``fn(queries, centres, beta)``, one method of the grid.
    q, c : array_like, shapes (m, d) and (n, d)
        The cell's queries and centres (``q[:k]`` must be a cheap view).
    beta : float
        Bandwidth.
    full_s : float
        Estimates up to this many seconds are timed on all m queries.
    skip_s : float
        Estimates above this many seconds are skipped.
    always_full : bool, optional
        Time all m queries whatever the estimate (infoflow: the method under test is
        never extrapolated).

    Returns
    -------
    Plan
    """
    m = q.shape[0]
    fn(q[:2], c[:2], beta)  # imports, thread pools, KeOps compilation: never timed
    # The set-up probe uses two queries, not one: KeOps compiles a different
    # formula (the query becomes a parameter) for a single row, and two queries'
    # own work is negligible next to m.
    first = _seconds(fn, q[:2], c, beta)
    fixed = first
    # A slow set-up (a tree over 1e5 points) is measured once; a fast one three
    # times, because timer noise would otherwise dominate it.
    if first < 1.0:
        fixed = min(first, *(_seconds(fn, q[:2], c, beta) for _ in range(2)))

    # The variable part t_k - a must stand clear of the noise in a, or a slow
    # set-up (a 5 s tree build, +-10%) could make a method look nearly free and be
    # run in full for hours: so it must reach half of a, as well as PILOT_S.
    goal = max(PILOT_S, 0.5 * fixed)
    k = min(m, FIRST_PILOT)
    while True:
        t = _seconds(fn, q[:k], c, beta)
        variable = max(t - fixed, 1e-9)
        if variable >= goal or k == m:
            break
        # Aim just past the goal, but grow by at most 16x: a noisy first reading
        # must not turn the pilot into a full run of a slow method.
        target = math.ceil(1.2 * goal * k / variable)
        k = min(m, max(2 * k, min(16 * k, target)))
    if k < m:
        # One more reading at the final k: on a busy machine a single reading can
        # be several times too slow, and this one decides between full, subset
        # and skip.  Interference only ever adds time, so keep the faster.
        t = min(t, _seconds(fn, q[:k], c, beta))
        variable = max(t - fixed, 1e-9)
    per_query = variable / k
    estimate = t if k == m else fixed + per_query * m

    def make(kind, queries, rounds):
        return Plan(kind, queries, rounds, fixed, estimate, k, m)

    if always_full or estimate <= full_s:
        rounds = int(min(MAX_ROUNDS, max(1, ROUND_S // max(estimate, 1e-9))))
        return make("full", m, rounds)
    if estimate > skip_s:
        return make("skip", m, 0)  # nothing is timed; queries = m keeps time_scale at 1
    queries = max(k, min(m, math.ceil(max(full_s - fixed, PILOT_S) / per_query)))
    return make("subset" if queries < m else "full", queries, 1)


def scaled_seconds(measured, fixed_s, time_scale):
    """Full-problem seconds from a subset's measured time: ``a + (t - a) * m / k``.

    Parameters
    ----------
    measured : float
        Seconds of the timed call on k queries.
    fixed_s : float
        Set-up cost ``a`` (counted once).
    time_scale : float
        m / k.

    Returns
    -------
    float
    """
    if time_scale == 1:
        return measured
    return fixed_s + max(measured - fixed_s, 0.0) * time_scale
