"""Slow, independent float64 references the compiled kernels are tested against.

The one oracle of the test suite and of the benchmarks (``bench/conftest.py`` puts this
folder on ``sys.path``): the references, the error measure :func:`relative_error` and
the tolerance tables of the float contract.  Nothing here shares code with the package,
nor imports it: distances are formed by broadcasting in float64 and the log-sum-exp is
scipy's.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate
from scipy.special import logsumexp

#: The float contract (README, Accuracy): the worst :func:`relative_error` of a kernel
#: result against the float64 references here, per dtype of its inputs.
DTYPE_TOL = {np.float32: 2e-5, np.float64: 1e-12}

#: Two kernel results of the same math that differ only in their rounding (scaled or
#: duplicated weights, pruned against brute, one mixture alone against its batch): the
#: worst :func:`relative_error` between them, per dtype.
ROUNDING_TOL = {np.float32: 1e-6, np.float64: 1e-13}

#: float64 elements in one block of query-centre differences (~16 MB).
BLOCK_ELEMENTS = 2_000_000


def relative_errors(actual, expected):
    """Error relative to the exponent scale, elementwise: |a - e| / max(1, |e|) in float64."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))


def relative_error(actual, expected):
    """The worst of :func:`relative_errors`: max |a - e| / max(1, |e|)."""
    return np.max(relative_errors(actual, expected))


def lse_reference(queries, centers, beta):
    """float64 log sum_j exp(-||q_i - c_j||^2 / (2 beta^2)) for (..., m, d) and (..., n, d)."""
    return weighted_lse_reference(queries, centers, beta, np.ones(np.shape(centers)[-2]))


def log_density_reference(queries, centers, beta):
    n, d = np.shape(centers)[-2:]
    return lse_reference(queries, centers, beta) - math.log(n) - 0.5 * d * math.log(2 * math.pi * beta**2)


def entropy_quadrature_1d(centers, beta):
    """h(P * N(0, beta^2)) for P uniform on the 1-D `centers`, by adaptive quadrature."""
    return weighted_entropy_quadrature_1d(centers, np.ones(np.size(centers)), beta)


def kt_bounds_reference(centers, beta):
    """Kolchinsky-Tracey bounds from the full float64 distance matrix."""
    s = np.asarray(centers, dtype=np.float64)
    n, d = s.shape
    sq = ((s[:, None, :] - s[None, :, :]) ** 2).sum(-1)
    h_z = 0.5 * d * math.log(2 * math.pi * math.e * beta**2)

    def m(a):
        return -np.mean(np.log(np.mean(np.exp(-sq / a), axis=1)))

    return h_z + m(8 * beta**2), h_z + m(2 * beta**2)


def _log_weights(weights, centers_shape):
    """float64 log-weights broadcast to centers_shape[:-1]; log 0 = -inf (an absent centre)."""
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), centers_shape[:-1])
    with np.errstate(divide="ignore"):
        return np.log(w)


def weighted_lse_reference(queries, centers, beta, weights):
    """float64 log sum_j w_j exp(-||q_i - c_j||^2 / (2 beta^2)).

    queries (..., m, d), centers (..., n, d), weights (..., n) or (n,) (broadcast over the
    leading batch axes).  Zero weights drop their centre: the log-weight is -inf and
    scipy's logsumexp ignores -inf terms.
    """
    q = np.asarray(queries, dtype=np.float64)
    c = np.asarray(centers, dtype=np.float64)
    batch_shape = q.shape[:-2]
    q3 = q.reshape(-1, *q.shape[-2:])
    c3 = c.reshape(-1, *c.shape[-2:])
    logw = _log_weights(weights, c.shape).reshape(c3.shape[:2])
    n, d = c3.shape[1:]
    out = np.empty(q3.shape[:2])
    # Each block of differences is rows x cols x d float64, at most BLOCK_ELEMENTS.  Past
    # n d > BLOCK_ELEMENTS (n = 1e5, d = 784) even one query row against all centres would
    # not fit, so the centres are blocked too, and a row's squared distances are
    # assembled before its one logsumexp.
    rows = max(1, BLOCK_ELEMENTS // (n * d))
    cols = n if n * d <= BLOCK_ELEMENTS else max(1, BLOCK_ELEMENTS // d)
    for b in range(q3.shape[0]):
        for i0 in range(0, q3.shape[1], rows):
            block = q3[b, i0:i0 + rows]
            sq = np.empty((block.shape[0], n))
            for j0 in range(0, n, cols):
                diff = block[:, None, :] - c3[b, None, j0:j0 + cols, :]
                sq[:, j0:j0 + cols] = np.einsum("ijk,ijk->ij", diff, diff)
            out[b, i0:i0 + rows] = logsumexp(-sq / (2.0 * beta * beta) + logw[b][None, :], axis=1)
    return out.reshape(*batch_shape, q3.shape[1])


def weighted_log_density_reference(queries, centers, beta, weights):
    """float64 log of sum_j (w_j / W) phi_beta(q - c_j), W = sum_j w_j (per batch element)."""
    c_shape = np.shape(centers)
    d = c_shape[-1]
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), c_shape[:-1])
    log_total = np.log(w.sum(axis=-1))[..., None]
    return (weighted_lse_reference(queries, centers, beta, weights) - log_total
            - 0.5 * d * math.log(2 * math.pi * beta**2))


def weighted_entropy_quadrature_1d(centers, weights, beta):
    """h(sum_j (w_j / W) N(c_j, beta^2)) for 1-D `centers`, by adaptive quadrature."""
    s = np.asarray(centers, dtype=np.float64).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    keep = w > 0
    s, p = s[keep], w[keep] / w[keep].sum()
    norm = 1.0 / (beta * math.sqrt(2 * math.pi))

    def integrand(t):
        g = norm * (p * np.exp(-((t - s) ** 2) / (2 * beta**2))).sum()
        return -g * math.log(g) if g > 0 else 0.0

    # Integrate piecewise between sorted centres so quad sees every bump.
    knots = np.unique(np.concatenate([[s.min() - 12 * beta], np.sort(s), [s.max() + 12 * beta]]))
    total = 0.0
    for a, b in zip(knots[:-1], knots[1:]):
        value, _ = integrate.quad(integrand, a, b, limit=200, epsabs=1e-12, epsrel=1e-12)
        total += value
    return total
