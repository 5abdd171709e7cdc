"""From Monte Carlo terms to an estimate and its stderr: running moments and the cross-fitted control variate.

The terms T_r = -ln g(q_r) of a chunk of queries are folded into running moments
(:class:`Moments`, exact whatever the chunking); with the control variate the moments
are kept of the residuals and of C_r in two halves, which :func:`finish_estimate` turns
into the cross-fitted estimate and its stderr.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["B_RANGE", "ROUNDING_ULPS", "Moments", "chunk_moments", "cross_fitting_possible", "control_variate",
           "log_proportions", "term_moments", "finish_estimate"]

# Control variate.  C_r = |z_r|^2/2 - d/2 - ln(w_J/W) - H_w has mean exactly 0: the first
# part is -ln phi_beta(beta z_r) - h_Z for any centre, and with weights J is drawn with
# probability p_J = w_J/W, so E[-ln p_J] = H_w (equal weights: the bracket is 0).  For
# well separated components T_r = C_r + h_Z + H_w exactly, so T - bC with b near 1 removes
# most of the variance.  b is cross-fitted: the queries are split by the parity of their
# index r (within the mixture, in the drawn order: whatever the chunking), and each half
# is corrected with the b fitted on the other half.  b_B depends only on half B's draws,
# and for r in half A, C_r has mean 0 given those (z_r is independent of them; with
# weights J_r too), in every design: each correction b_B * C_r has mean exactly 0 and the
# estimate stays exactly unbiased (an in-sample b would add an O(1/N) bias).  The moments
# are kept of D = T - C and C, the same information as T and C (T = D + C) without the
# cancellation that would otherwise swamp the tiny residual variance of separated
# components.
#
# Each half needs _MIN_HALF queries: b from m queries is a ratio whose denominator M2_CC
# has a positive density near 0, so unclipped E|b| is infinite for m = 2 and E[b^2] for
# m = 3, and in d = 1 E[1/M2_CC] diverges for small m too; with few queries the fit is
# worth less than its noise.  Each half needs max(_MIN_HALF, _MIN_HALF_TIMES_D / d)
# queries, else the plain estimator is used: in d = 1 (where C = (z^2 - 1)/2 is most
# skewed) the control variate's spread measured 1.4x the plain one at 8 queries per half
# and 1.07x at 32 (16 partly overlapping centres); in d = 2 at 16 per half, 0.7x.
_MIN_HALF = 8
_MIN_HALF_TIMES_D = 32
#: The fitted coefficient is clipped to this range (still a function of the other half
#: only, so the estimate stays unbiased): with few queries in low dimension M2_CC can be
#: tiny and b wild (d = 1, 8 queries: 3x the plain estimator's spread unclipped).  The best
#: b lies near 1 for separated components and between 0 and 1 otherwise.
B_RANGE = (0.0, 1.5)
# |D| above which a query counts as a rare event in the continuity correction of the stderr:
# its own component's posterior below 0.7, a query past about the midpoint to another
# component.  (A lower threshold counts the many shallow queries whose |D| is small and
# misses that the variance comes from the deeper ones.)
_EVENT = 0.35
#: The rounding allowance in the stderr, in units in the last place of the value.
ROUNDING_ULPS = 8


class Moments:
    """Per-batch count, mean and sum of squared deviations of x (with ``paired``: also
    of y, and the sum of cross products of the deviations), merged chunk by chunk
    (Chan et al.), so that the (co)variances stay exact however large the means."""

    def __init__(self, batch: int, paired: bool = False):
        self.count = np.zeros(batch)
        self.mean = np.zeros(batch)
        self.m2 = np.zeros(batch)
        if paired:
            self.mean_y = np.zeros(batch)
            self.m2_y = np.zeros(batch)
            self.m_xy = np.zeros(batch)
            self.events = np.zeros(batch)  # how many |x| > _EVENT

    def merge(self, b0: int, b1: int, chunk: dict | None) -> None:
        """Fold in the :func:`chunk_moments` of rows b0..b1's next queries (Chan et al.'s
        pairwise update: exact, whatever the sizes; infoflow.distributed merges the
        moments that workers computed this way)."""
        if chunk is None:
            return
        k = chunk["count"]
        n_old = self.count[b0:b1]
        total = n_old + k
        delta = chunk["mean"] - self.mean[b0:b1]
        if "mean_y" in chunk:
            self.events[b0:b1] += chunk["events"]
            delta_y = chunk["mean_y"] - self.mean_y[b0:b1]
            self.mean_y[b0:b1] += delta_y * k / total
            self.m2_y[b0:b1] += chunk["m2_y"] + delta_y**2 * n_old * k / total
            self.m_xy[b0:b1] += chunk["m_xy"] + delta * delta_y * n_old * k / total
        self.mean[b0:b1] += delta * k / total
        self.m2[b0:b1] += chunk["m2"] + delta**2 * n_old * k / total
        self.count[b0:b1] = total

    def standard_error(self) -> np.ndarray:
        """sd / sqrt(count) per batch row (NaN for fewer than 2 values)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            variance = np.where(self.count > 1, self.m2 / np.maximum(self.count - 1, 1), np.nan)
            return np.sqrt(variance / self.count)


def chunk_moments(x: np.ndarray, y: np.ndarray | None = None) -> dict | None:
    """Per-row count, mean and sum of squared deviations of a chunk x (batch, k) (with y:
    also of y, their cross products and the rare events of x), for :meth:`Moments.merge`;
    None for an empty chunk."""
    k = x.shape[1]
    if k == 0:
        return None
    mean = x.mean(axis=1)
    dev = x - mean[:, None]
    chunk = {"count": k, "mean": mean, "m2": (dev**2).sum(axis=1)}
    if y is not None:
        mean_y = y.mean(axis=1)
        dev_y = y - mean_y[:, None]
        chunk.update(events=(np.abs(x) > _EVENT).sum(axis=1), mean_y=mean_y, m2_y=(dev_y**2).sum(axis=1),
                     m_xy=(dev * dev_y).sum(axis=1))
    return chunk


def cross_fitting_possible(count: int, d: int) -> bool:
    """Whether ``count`` queries per mixture in dimension d are enough for the
    cross-fitted control variate (each half max(8, 32 / d) of them), see above."""
    return count >= 2 * max(_MIN_HALF, math.ceil(_MIN_HALF_TIMES_D / d))


def control_variate(noise: np.ndarray, owner: np.ndarray, log_p: np.ndarray | None, h_w: np.ndarray | None,
                    b0: int, b1: int) -> np.ndarray:
    """C_r (float64, shape (b1 - b0, queries)) for the chunk's standard normal ``noise``."""
    d = noise.shape[-1]
    cv = 0.5 * np.einsum("brd,brd->br", noise, noise, dtype=np.float64) - 0.5 * d
    if log_p is not None:
        rows = log_p[b0:b1]
        picked = rows[:, owner] if owner.ndim == 1 else np.take_along_axis(rows, owner, axis=1)
        cv -= picked + h_w[b0:b1, None]
    return cv


def log_proportions(weights: np.ndarray, log_total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ln(w_j / W) (-inf for a zero weight, never drawn) and H_w = -sum_j (w_j/W) ln(w_j/W), per batch row."""
    w = weights.astype(np.float64)
    with np.errstate(divide="ignore"):
        log_p = np.log(w) - log_total[:, None]
    positive = w > 0
    terms = np.zeros_like(log_p)
    terms[positive] = np.exp(log_p[positive]) * log_p[positive]
    return log_p, -terms.sum(axis=1)


def term_moments(terms: np.ndarray, cv: np.ndarray | None, baseline: np.ndarray | None, r0: int) -> list:
    """The :func:`chunk_moments` of a chunk's terms T_r (float64, (rows, queries) from query
    index r0 on): ``[plain]`` without the control variate (``cv`` None), else those of the
    residual T - C - ``baseline`` (per row) and C in the even and the odd half of r."""
    if cv is None:
        return [chunk_moments(terms)]
    residual = terms - cv - baseline[:, None]
    halves = []
    for parity in range(2):
        cols = slice((parity - r0) % 2, None, 2)  # global query index r = r0 + column
        halves.append(chunk_moments(residual[:, cols], cv[:, cols]))
    return halves


def _cross_fitted(halves: tuple[Moments, Moments]) -> tuple[np.ndarray, np.ndarray]:
    """Estimate and stderr from the moments of (D, C) of the two halves (see above).

    With b_h = M2_TC / M2_CC of half h, clipped to B_RANGE (0 when M2_CC = 0), half
    h's estimate is mean_T - b mean_C with b from the other half, and its variance
    (M2_TT - 2b M2_TC + b^2 M2_CC) / (N_h - 1); in terms of D = T - C and a = 1 - b:
    mean_D + a mean_C and (M2_DD + 2a M2_DC + a^2 M2_CC) / (N_h - 1).

    The variance counts one rare event more than the half saw (a continuity correction,
    as for a Poisson count): D = ln P(J | q) is 0 for almost every query of separated
    components and of order ln 2 or more for the rare query that lands near another
    component (ln 2 at the midpoint of two equal ones).  When such events are rare the
    sample variance misses them most of the time, and the stderr would be far too small
    (coverage of +-1.96 stderr measured 0.07 for components 8 beta apart, N = 2048).  So
    with k >= 1 queries with |D| > 0.35 the residual sum of squares is scaled by
    (k + 1) / k (next to nothing where, as in dense clusters, every query is one), and with
    none it gets one residual of ln 2."""
    one_minus_b = []
    for half in halves:
        fitted = (half.count > 1) & (half.m2_y > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            b = np.where(fitted, 1.0 + half.m_xy / np.where(fitted, half.m2_y, 1.0), 0.0)
        one_minus_b.append(1.0 - np.clip(b, *B_RANGE))
    total = halves[0].count + halves[1].count
    value = np.zeros_like(total)
    spread = np.zeros_like(total)
    for half, a in zip(halves, one_minus_b[::-1]):
        value += half.count * (half.mean + a * half.mean_y)
        residual = half.m2 + 2.0 * a * half.m_xy + a * a * half.m2_y
        seen = half.events
        residual = np.where(seen > 0, residual * (seen + 1) / np.maximum(seen, 1), residual + math.log(2.0) ** 2)
        spread += half.count * residual / (half.count - 1)
    return value / total, np.sqrt(spread) / total


def finish_estimate(moments, baseline: np.ndarray | None, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(value, stderr) in nats from the merged moments: a :class:`Moments` of the plain
    terms (``baseline`` None), or the two halves' moments of the control-variate residuals
    (``baseline`` h_Z + H_w added back)."""
    if baseline is None:
        value, stderr = moments.mean, moments.standard_error()
    else:
        value, stderr = _cross_fitted(moments)
        value = value + baseline
    # The stderr also allows for the rounding of the value (the kernel's dtype), which
    # matters only where the Monte Carlo error all but vanishes (identical centres).
    rounding = ROUNDING_ULPS * np.finfo(dtype).eps * np.maximum(np.abs(value), 1.0)
    return value, np.hypot(stderr, rounding)
