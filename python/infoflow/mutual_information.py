r"""Mutual information :math:`I(X;T)` and :math:`I(Y;T)` of a noisy layer :math:`T = S + Z`.

The sample-propagation (SP) estimators of Goldfeld et al., *Estimating Information Flow
in Deep Neural Networks* (ICML 2019).  X is uniform over the m inputs of a dataset, Y
their labels, S the layer's noiseless output and :math:`Z \sim \mathcal N(0, \beta^2 I)`
its noise.  Every differential entropy is that of an equal-weight Gaussian mixture
centred at samples of S, estimated by :func:`infoflow.mixture_entropy`:

.. math::

    I(X;T) = h(T) - \frac1m \sum_{i=1}^m h(T \mid X = x_i), \qquad
    I(Y;T) = h(T) - \sum_y p(y)\, h(T \mid Y = y).

Results are in nats unless ``base=`` says otherwise.  The reported standard errors are
the Monte Carlo errors of the entropy estimates combined in quadrature; they do not
include the plug-in error of using finitely many samples of S.
"""

from __future__ import annotations

import math

import numpy as np

from ._intake import (
    class_labels,
    FloatArray,
    beta_for_dtype,
    float_array,
    log_of_base,
    make_rng,
    positive_int,
    unit_name,
)
from .entropy import default_mc_samples, mixture_entropy, noise_entropy
from .estimate import Estimate

__all__ = ["mi_xt", "mi_yt"]


# ---------------------------------------------------------------------------------------
# Intake
# ---------------------------------------------------------------------------------------

def _samples(samples, ndims: tuple[int, ...], hint: str) -> FloatArray:
    """Validate ``samples`` (type, dtype, finiteness; errors name ``samples``) and its rank."""
    arr = float_array(samples, "samples", min_ndim=0)
    if len(arr.shape) not in ndims:
        wanted = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"samples: expected a {wanted} array {hint}, got shape {arr.shape}")
    return arr


# ---------------------------------------------------------------------------------------
# Helpers on the validated data (numpy for CPU input, the tensor for CUDA input)
# ---------------------------------------------------------------------------------------

def _take(data, index: np.ndarray):
    """data[index] along the first axis, for a numpy array or a (CUDA) torch tensor."""
    if isinstance(data, np.ndarray):
        return data[index]
    import torch

    return data[torch.as_tensor(index, device=data.device)]


def _subset(n: int, max_centers: int | None, generator: np.random.Generator) -> np.ndarray | None:
    """Sorted indices of ``max_centers`` of n rows drawn without replacement, or None for all."""
    if max_centers is None or max_centers >= n:
        return None
    return np.sort(generator.choice(n, size=max_centers, replace=False, shuffle=False))


def _entropies(centres, beta: float, k: int, generator, threads) -> tuple[np.ndarray, np.ndarray]:
    """Entropies in nats and their stderrs of a (batch, n, d) stack of mixtures, one call.

    A single centre (n = 1) is a Gaussian: h = h_Z exactly, with zero standard error.
    """
    batch, n, d = centres.shape
    if n == 1:
        return np.full(batch, noise_entropy(d, beta)), np.zeros(batch)
    est = mixture_entropy(centres, beta, mc_samples=k, rng=generator, num_threads=threads)
    as_vector = lambda x: np.atleast_1d(np.asarray(x, dtype=np.float64))  # noqa: E731
    return as_vector(est.value), as_vector(est.stderr)


def _pooled_entropy(pooled, max_centers, k, beta, generator, threads) -> tuple[float, float]:
    """h(T) from the (N, d) pooled centres, or from a random subset of max_centers of them."""
    index = _subset(pooled.shape[0], max_centers, generator)
    centres = pooled if index is None else _take(pooled, index)
    value, stderr = _entropies(centres[None], beta, k, generator, threads)
    return float(value[0]), float(stderr[0])


def _result(value: float, stderr: float, base) -> Estimate:
    log_base = log_of_base(base)
    return Estimate(float(value) / log_base, float(stderr) / log_base, unit_name(base))


def mi_xt(samples, beta, *, mc_samples=None, max_centers=None, base=None, rng=None,
          num_threads=None) -> Estimate:
    r"""SP estimate of :math:`I(X;T)` for :math:`T = S + Z`, X uniform over m inputs.

    .. math::

        \hat I(X;T) = \hat h\big(\hat P_S * \varphi_\beta\big)
                      - \frac1m \sum_{i=1}^m \hat h\big(\hat P_{S|X=x_i} * \varphi_\beta\big),

    where :math:`\hat P_S` is the empirical measure of all m*R samples pooled and
    :math:`\hat P_{S|X=x_i}` that of the R samples of input i; each :math:`\hat h` is
    the Monte Carlo entropy of an equal-weight Gaussian mixture
    (:func:`~infoflow.mixture_entropy`).  The m conditional entropies are one batched
    kernel call.  With R = 1 (S a deterministic function of X, e.g. the first noisy
    layer) each conditional entropy is exactly :math:`h_Z = \frac d2 \ln(2\pi e\beta^2)`
    and is not estimated.  With m = 1, X is constant and the result is exactly 0.

    Parameters
    ----------
    samples : numpy.ndarray or torch.Tensor, shape (m, R, d)
        ``samples[i, r]`` is the r-th sample of S given input :math:`x_i` (float32 or
        float64; torch tensors may be on a CUDA device).  For a deterministic layer pass
        ``samples[:, None, :]`` (R = 1).
    beta : float
        Noise standard deviation :math:`\beta > 0`, in the units of ``samples``.
    mc_samples : int, optional
        K, the Monte Carlo noise draws per centre, used for every entropy term.  Default:
        ``default_mc_samples(n)``, with n the number of centres in the estimate of h(T)
        (``m*R``, or ``max_centers`` when smaller): about 65536 queries for h(T) and, in
        total over all conditional terms, ``m*R*K`` queries, the same number when h(T)
        is not subsetted, so that the Monte Carlo error of the conditional part is about
        that of h(T).
    max_centers : int, optional
        Estimate h(T) from a random subset of at most this many of the m*R pooled
        centres, drawn without replacement with ``rng`` (default: all).  h(T) costs about
        ``n**2 * K`` kernel evaluations, so this bounds the work for large m*R; it adds a
        plug-in error that ``stderr`` does not include.  The conditional terms always use
        all R samples of each input.
    base : float, optional
        Logarithm base of the result: None (default) for nats, 2 for bits.
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
        The one source of randomness (the subsets and every Monte Carlo draw), SPEC 7:
        the same seed reproduces the result exactly.
    num_threads : int, optional
        CPU threads for the kernel (default: all).

    Returns
    -------
    Estimate
        ``.value`` in nats (or ``base`` units), between 0 and :math:`\ln m` up to Monte
        Carlo error (it is not clipped, so it may be slightly negative when the true
        value is near 0).  ``.stderr``: the Monte Carlo standard error of h(T) and that
        of the mean of the m independent conditional estimates,
        :math:`\sqrt{\sum_i \mathrm{se}_i^2}/m`, combined in quadrature (zero for the
        exact conditional term when R = 1).

    See Also
    --------
    mi_yt : the same for the labels.
    infoflow.mixture_entropy : the entropy estimator used for every term.
    infoflow.noise_entropy : :math:`h_Z`, the conditional entropy when R = 1.

    Notes
    -----
    ``stderr`` measures the Monte Carlo error only.  Using n samples of S in place of its
    law adds a plug-in error :math:`O((\log n)^{d/4}/\sqrt n)` to h(T) (Goldfeld,
    Greenewald & Polyanskiy, arXiv:1810.11589), and the same in R to each conditional
    term; the input distribution itself is exact (X is uniform over the m inputs).

    References
    ----------
    Z. Goldfeld, E. van den Berg, K. Greenewald, I. Melnyk, N. Nguyen, B. Kingsbury and
    Y. Polyanskiy, "Estimating Information Flow in Deep Neural Networks", *Proceedings of
    the 36th International Conference on Machine Learning* (ICML), PMLR 97, 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from infoflow.mutual_information import mi_xt
    >>> s = np.array([-3.0, -1.0, 1.0, 3.0]).reshape(4, 1, 1)  # m=4 inputs, R=1, d=1
    >>> est = mi_xt(s, 0.1, rng=0)  # well separated: I(X;T) = ln 4 = 1.386 nats
    >>> bool(abs(est.value - np.log(4)) < 4 * est.stderr)
    True
    """
    arr = _samples(samples, (3,), "(m inputs, R samples each, d); for one sample per input "
                   "(a deterministic layer) pass samples[:, None, :]")
    beta = beta_for_dtype(beta, arr.dtype)
    m, r, d = arr.shape
    k_user = positive_int(mc_samples, "mc_samples")
    max_centers = positive_int(max_centers, "max_centers")
    log_of_base(base)
    threads = positive_int(num_threads, "num_threads")
    generator = make_rng(rng)

    if m == 1:  # X is constant: I(X;T) = 0 exactly
        return _result(0.0, 0.0, base)
    n_pooled = m * r if max_centers is None else min(m * r, max_centers)
    k = k_user or default_mc_samples(n_pooled)

    h_t, se_t = _pooled_entropy(arr.data.reshape(m * r, d), max_centers, k, beta, generator, threads)
    if r == 1:
        h_cond, se_cond = noise_entropy(d, beta), 0.0
    else:
        values, errors = _entropies(arr.data, beta, k, generator, threads)
        h_cond, se_cond = float(values.mean()), float(np.sqrt(np.sum(errors**2)) / m)
    return _result(h_t - h_cond, math.hypot(se_t, se_cond), base)


def mi_yt(samples, labels, beta, *, mc_samples=None, max_centers=None, base=None, rng=None,
          num_threads=None) -> Estimate:
    r"""SP estimate of :math:`I(Y;T)` for :math:`T = S + Z`, X uniform over m labelled inputs.

    .. math::

        \hat I(Y;T) = \hat h\big(\hat P_S * \varphi_\beta\big)
                      - \sum_y \hat p(y)\, \hat h\big(\hat P_{S|Y=y} * \varphi_\beta\big),

    with :math:`\hat p(y)` the frequency of label y among the m inputs and
    :math:`\hat P_{S|Y=y}` the empirical measure of the pooled samples (all R of each) of
    the inputs labelled y.  Classes whose mixtures have the same number of centres are
    estimated in one batched kernel call; a class of a single centre (one input, R = 1)
    has :math:`h = h_Z` exactly.  With a single class (constant labels),
    :math:`h(T \mid Y) = h(T)` and the result is exactly 0 with zero ``stderr``, without
    any estimation.

    Parameters
    ----------
    samples : numpy.ndarray or torch.Tensor, shape (m, R, d) or (m, d)
        Samples of S, ``samples[i, r]`` the r-th given input :math:`x_i` (float32 or
        float64, torch tensors may be on a CUDA device); a 2-D array means R = 1.
    labels : numpy.ndarray or torch.Tensor of integers (or bools), shape (m,)
        The label of each input.
    beta : float
        Noise standard deviation :math:`\beta > 0`, in the units of ``samples``.
    mc_samples : int, optional
        K, the Monte Carlo noise draws per centre, used for every entropy term.  Default:
        ``default_mc_samples(n)``, with n the number of centres in the estimate of h(T)
        (``m*R``, or ``max_centers`` when smaller): about 65536 queries for h(T) and, in
        total over all classes, ``m*R*K`` queries, the same number when h(T)
        is not subsetted, so that the Monte Carlo error of the conditional part is about
        that of h(T).
    max_centers : int, optional
        Estimate h(T), and each class's entropy, from a random subset of at most this
        many of its pooled centres, drawn without replacement with ``rng`` (default:
        all).  An entropy of n centres costs about ``n**2 * K`` kernel evaluations, so
        this bounds the work for large m*R; it adds a plug-in error that ``stderr`` does
        not include.
    base : float, optional
        Logarithm base of the result: None (default) for nats, 2 for bits.
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
        The one source of randomness (the subsets and every Monte Carlo draw), SPEC 7:
        the same seed reproduces the result exactly.
    num_threads : int, optional
        CPU threads for the kernel (default: all).

    Returns
    -------
    Estimate
        ``.value`` in nats (or ``base`` units), between 0 and :math:`H(\hat p)` up to
        Monte Carlo error (not clipped).  ``.stderr``: the Monte Carlo standard error of
        h(T) and that of :math:`\sum_y \hat p(y)\,\hat h(T \mid Y=y)`,
        :math:`\sqrt{\sum_y \hat p(y)^2\,\mathrm{se}_y^2}`, combined in quadrature.

    See Also
    --------
    mi_xt : the same for the inputs.  With ``labels = arange(m)`` (each input its own
        class) and no ``max_centers`` below R, mi_yt computes what mi_xt does, draw for
        draw: the same seed gives the same result.
    infoflow.mixture_entropy : the entropy estimator used for every term.

    Notes
    -----
    ``stderr`` measures the Monte Carlo error only, not the plug-in error of using finite
    samples of S (see :func:`mi_xt`).

    References
    ----------
    Z. Goldfeld, E. van den Berg, K. Greenewald, I. Melnyk, N. Nguyen, B. Kingsbury and
    Y. Polyanskiy, "Estimating Information Flow in Deep Neural Networks", *Proceedings of
    the 36th International Conference on Machine Learning* (ICML), PMLR 97, 2019.
    """
    arr = _samples(samples, (2, 3), "(m inputs, R samples each, d), or (m, d) for R = 1")
    m = arr.shape[0]
    y = class_labels(labels, m)
    beta = beta_for_dtype(beta, arr.dtype)
    k_user = positive_int(mc_samples, "mc_samples")
    max_centers = positive_int(max_centers, "max_centers")
    log_of_base(base)
    threads = positive_int(num_threads, "num_threads")
    generator = make_rng(rng)

    r = 1 if len(arr.shape) == 2 else arr.shape[1]
    d = arr.shape[-1]
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(classes) == 1:  # constant labels: h(T | Y) = h(T) exactly
        return _result(0.0, 0.0, base)
    n_pooled = m * r if max_centers is None else min(m * r, max_centers)
    k = k_user or default_mc_samples(n_pooled)

    pooled = arr.data.reshape(m * r, d)
    h_t, se_t = _pooled_entropy(pooled, max_centers, k, beta, generator, threads)

    # Row indices of each class's pooled centres (rows i*R .. i*R+R-1 belong to input i),
    # subset where max_centers asks, then classes of equal size batched into one call.
    class_rows = []
    for c in range(len(classes)):
        rows = (np.flatnonzero(inverse == c)[:, None] * r + np.arange(r)).ravel()
        index = _subset(len(rows), max_centers, generator)
        class_rows.append(rows if index is None else rows[index])
    h_cond = np.empty(len(classes))
    se_cond = np.empty(len(classes))
    sizes = np.array([len(rows) for rows in class_rows])
    for size in np.unique(sizes):
        members = np.flatnonzero(sizes == size)
        stack = _take(pooled, np.stack([class_rows[c] for c in members]))
        h_cond[members], se_cond[members] = _entropies(stack, beta, k, generator, threads)

    p = counts / m
    value = h_t - float(np.dot(p, h_cond))
    stderr = math.hypot(se_t, float(np.sqrt(np.dot(p**2, se_cond**2))))
    return _result(value, stderr, base)
