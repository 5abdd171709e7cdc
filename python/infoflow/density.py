"""Log-density of a Gaussian mixture (equal or given weights): the kernel behind every estimate."""

from __future__ import annotations

import math

import numpy as np

from . import _backend
from ._intake import FloatArray, beta_for_dtype, center_weights, float_array, same_family, thread_count

__all__ = ["log_density", "gaussian_lse"]


def _batched_pair(queries, centers, beta, num_threads, weights):
    q = float_array(queries, "queries")
    c = float_array(centers, "centers")
    same_family(q, c, "queries", "centers")
    if q.shape[-1] != c.shape[-1]:
        raise ValueError(
            f"queries and centers must have the same dimension d (last axis): "
            f"got {q.shape[-1]} and {c.shape[-1]}"
        )
    if q.shape[:-2] != c.shape[:-2]:
        raise ValueError(
            f"queries and centers must have equal leading batch shapes: "
            f"got {q.shape[:-2]} and {c.shape[:-2]}"
        )
    w = center_weights(weights, c)
    beta = beta_for_dtype(beta, q.dtype)
    threads = thread_count(num_threads)
    batch_shape = q.shape[:-2]
    batch = math.prod(batch_shape)
    q3 = _backend.reshape_3d(q, batch, q.shape[-2], q.shape[-1])
    c3 = _backend.reshape_3d(c, batch, c.shape[-2], c.shape[-1])
    w2 = None if w is None else FloatArray(w.data.reshape(batch, c.shape[-2]), w.kind, w.device, w.dtype,
                                           (batch, c.shape[-2]))
    return q3, c3, w2, beta, threads, batch_shape


def log_total_weight(weights: FloatArray | None, n: int) -> np.ndarray | float:
    """ln of each mixture's total weight (float64, one per batch row), or ln n unweighted."""
    if weights is None:
        return math.log(n)
    return np.log(_backend.to_numpy(weights.data).astype(np.float64).sum(axis=-1))


def _log(beta):
    """ln(beta) of a float, or of a tensor (then a tensor, in autograd's graph)."""
    return beta.log() if hasattr(beta, "log") else math.log(beta)


def log_gaussian_normaliser(d: int, beta):
    """ln((2 pi beta^2)^(d/2)), the log-normaliser of N(0, beta^2 I_d), in nats.

    Computed from ln(beta), so that betas whose square under- or overflows (1e-200,
    1e160) still give the right value.  ``beta`` a float gives a float; a torch tensor,
    a tensor through which autograd differentiates."""
    return d * (0.5 * math.log(2.0 * math.pi) + _log(beta))


def gaussian_entropy(d: int, beta):
    """h_Z = (d/2) ln(2 pi e beta^2), the entropy of N(0, beta^2 I_d), in nats (unchecked
    arguments; :func:`infoflow.noise_entropy` checks them).  Computed from ln(beta) as
    :func:`log_gaussian_normaliser`; a tensor ``beta`` gives a differentiable tensor."""
    return d * (0.5 * math.log(2.0 * math.pi * math.e) + _log(beta))


def _graph(queries, centers, beta, weights, threads, batch_shape, *, normalise: bool):
    """The differentiable path for torch tensors that require a gradient (or a beta or
    weights tensor that does); None when no graph is wanted."""
    if not hasattr(queries, "requires_grad"):
        return None
    from . import autograd

    if not autograd.needs_graph(queries, centers, weights, beta):
        return None
    batch = math.prod(batch_shape)
    q = queries.reshape(batch, *queries.shape[-2:])
    c = centers.reshape(batch, *centers.shape[-2:])
    w = None
    if weights is not None:
        w = weights.to(c.dtype).expand(*batch_shape, c.shape[-2]).reshape(batch, c.shape[-2])
    out = autograd.gaussian_lse_graph(q, c, beta, w, threads, normalise=normalise)
    return out.reshape(*batch_shape, q.shape[1])


def gaussian_lse(queries, centers, beta, *, weights=None, num_threads=None):
    r"""Batched Gaussian log-sum-exp, the raw kernel.

    .. math:: \mathrm{out}[\dots, i] = \log \sum_j w_j \exp\!\left(-\frac{\lVert q_i - c_j \rVert^2}{2\beta^2}\right)

    with :math:`w_j = 1` unless ``weights`` are given.  Same arguments and return
    conventions as :func:`log_density`, without the normalisation
    :math:`-\ln \sum_j w_j - \tfrac{d}{2}\ln(2\pi\beta^2)`.

    Examples
    --------
    One query at the origin, centres at squared distances 0 and 25, beta = 5: the sum is
    :math:`e^0 + e^{-25/50}`.

    >>> import numpy as np, infoflow
    >>> q = np.zeros((1, 2))
    >>> c = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> infoflow.gaussian_lse(q, c, 5.0)  # log(1 + exp(-0.5))
    array([0.474077])
    """
    q3, c3, w2, beta_value, threads, batch_shape = _batched_pair(queries, centers, beta, num_threads, weights)
    graph = _graph(queries, centers, beta, weights, threads, batch_shape, normalise=False)
    if graph is not None:
        return graph
    out = _backend.log_density_3d(q3, c3, beta_value, threads, weights=w2)
    return out.reshape(*batch_shape, q3.shape[1])


def log_density(queries, centers, beta, *, weights=None, num_threads=None):
    r"""Natural log of the Gaussian-mixture density :math:`g = \hat P_S * \mathcal N(0, \beta^2 I)`.

    .. math::

        \log g(q) = \log \frac{1}{W} \sum_{j=1}^{n} w_j \varphi_\beta(q - c_j)
                  = \operatorname{LSE}_j\!\left(\ln w_j - \frac{\lVert q - c_j\rVert^2}{2\beta^2}\right)
                    - \ln W - \frac{d}{2}\ln(2\pi\beta^2), \qquad W = \sum_j w_j,

    with equal weights (:math:`w_j = 1`, :math:`W = n`) unless ``weights`` are given,
    computed exactly and without ever forming an m x n matrix.  At small ``beta`` the
    kernel skips blocks of centres whose terms provably cannot change the float result
    (see Notes); nothing is approximated beyond the rounding of the dtype.

    Parameters
    ----------
    queries : numpy.ndarray or torch.Tensor, shape (..., m, d)
        Points at which to evaluate, float32 or float64.
    centers : numpy.ndarray or torch.Tensor, shape (..., n, d)
        Mixture centres: same array type, dtype, device and leading batch shape as
        ``queries``.  Each batch element is its own mixture.
    beta : float
        Standard deviation of the Gaussian noise, in the units of the data; > 0.
    weights : numpy.ndarray or torch.Tensor, shape (..., n) or (n,), optional
        Non-negative weight of each centre (need not sum to 1; a zero weight removes the
        centre), of the centres' array type and dtype (a float array of another dtype is
        accepted when its values convert exactly); a (n,) array applies to every batch
        element.  Integer counts of repeated centres give exactly the mixture of the
        repeated centres.  CPU only for now.
    num_threads : int, optional
        CPU threads (default: OpenMP's default, usually all cores).  Ignored on the GPU.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (..., m)
        Log-density in nats (natural log) of the caller's array type, dtype and device.
        Torch results do not track gradients.

    Raises
    ------
    TypeError
        Non-array input, integer/complex/half dtypes, or mixed types or dtypes (also of
        ``weights``).
    ValueError
        Wrong ranks, mismatched d or batch shapes, empty input, NaN/Inf, beta <= 0,
        mismatched devices; ``weights`` of the wrong shape, negative, NaN/Inf or all zero.

    Notes
    -----
    Squared distances are accumulated from direct coordinate differences, so float32
    results keep their accuracy at small ``beta`` where the expanded form
    :math:`\lVert q\rVert^2 + \lVert c\rVert^2 - 2 q\cdot c` cancels catastrophically.
    The log-sum-exp keeps an online maximum and sums in double precision.  The call
    releases the GIL and can be interrupted with Ctrl-C.

    For at least 2048 centres and 256 queries per mixture, the CPU kernel orders the
    centres into the leaves of a k-d tree (blocks of ~256) and the queries likewise, and
    skips every subtree whose largest possible contribution, bounded through its
    bounding box, is below :math:`2^{-25}` (float32; :math:`2^{-54}` for float64) of what
    each query has already summed, in proportion to the subtree's share of the
    mixture's weight.  The skipped terms together change each result by less than that
    relative amount, below the dtype's rounding, so the pruned and the brute path agree
    to rounding; at small ``beta`` the cost then grows with the number of near pairs
    rather than with m * n.  ``INFOFLOW_PRUNE=off`` selects the brute path.

    Examples
    --------
    >>> import numpy as np, infoflow
    >>> x = np.zeros((1, 3))
    >>> float(infoflow.log_density(x, x, 1.0)[0])  # log N(0; 0, I_3)
    -2.756815599614018
    """
    q3, c3, w2, beta_value, threads, batch_shape = _batched_pair(queries, centers, beta, num_threads, weights)
    graph = _graph(queries, centers, beta, weights, threads, batch_shape, normalise=True)
    if graph is not None:
        return graph
    beta = beta_value
    n, d = c3.shape[1], c3.shape[2]
    # The kernel subtracts the normaliser in double before rounding to the dtype: at small
    # beta both terms are near -d ln(beta) (~600 at d = 100, beta = 1e-3), and a float32
    # difference of two such roundings would lose four digits of a result near 0.
    normaliser = np.broadcast_to(log_total_weight(w2, n) + log_gaussian_normaliser(d, beta), (q3.shape[0],))
    out = _backend.log_density_3d(q3, c3, beta, threads, weights=w2, shift=-normaliser)
    return out.reshape(*batch_shape, q3.shape[1])
