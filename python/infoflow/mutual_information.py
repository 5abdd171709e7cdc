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

import numpy as np

from ._intake import class_labels
from .convergence_in_r import estimates

# repeat_levels and check_layer_budget: public here since before the split.
from .convergence_in_r import repeat_levels as repeat_levels
from .differentiable_mi import differentiable_information, wants_graph
from .estimate import Estimate
from .layer_terms import check_layer_budget as check_layer_budget
from .layer_terms import make_layer

__all__ = ["mi_xt", "mi_yt", "layer_information", "repeat_levels", "check_layer_budget"]


def layer_information(samples, labels, beta, *, mc_samples=None, mc_queries=None, max_centers=None, base=None,
                      rng=None, num_threads=None, convergence=True, warn=True) -> tuple[Estimate, Estimate]:
    """``(mi_xt(...), mi_yt(...))`` of one layer, sharing one estimate of h(T) per level of R.

    The arguments are those of :func:`mi_xt` and :func:`mi_yt`; the random stream is used
    for h(T), then the conditionals given X, then those given Y, at R and then at each
    smaller level of the R-convergence sequence.  ``warn=False`` leaves the
    :class:`~infoflow.RConvergenceWarning` to the caller.  This is what
    :func:`infoflow.information_flow` computes for every layer.
    """
    if wants_graph(samples, beta):
        results = differentiable_information(samples, labels, beta, ("ixt", "iyt"), mc_samples, mc_queries,
                                             max_centers, base, rng, num_threads)
        return results["ixt"], results["iyt"]
    layer = make_layer(samples, beta, mc_samples, mc_queries, max_centers, base, rng, num_threads, ndims=(3,),
                   hint="(m inputs, R samples each, d)")
    labels = class_labels(labels, layer.m)
    results = estimates(layer, labels, ("ixt", "iyt"), base, bool(convergence), bool(warn))
    return results["ixt"], results["iyt"]


def mi_xt(samples, beta, *, mc_samples=None, mc_queries=None, max_centers=None, base=None, rng=None,
          num_threads=None, convergence=True) -> Estimate:
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
        K, Monte Carlo noise draws per centre, used for every entropy term (the cost of
        h(T) is then that of m*R*K queries).  Cannot be combined with ``mc_queries``.
    mc_queries : int, optional
        The Monte Carlo budget in queries (default 65536): h(T) gets this many (K per
        centre when m*R is smaller, else a uniform random subset of the centers, see
        :func:`~infoflow.mixture_entropy`), and the m conditional entropies share as many
        in total, ``ceil(mc_queries / m)`` each, so that the Monte Carlo error of the
        conditional part is about that of h(T) however large R is.  A budget that asks
        for more than 2**31 queries for h(T) or for the conditional terms
        (:data:`~infoflow.entropy.MAX_MC_QUERIES`) is a ValueError, before any work.
    max_centers : int, optional
        Estimate h(T) from a random subset of at most this many of the m*R pooled
        centers, drawn without replacement with ``rng`` (default: all).  Rarely needed
        now that the kernel prunes (the cost of h(T) grows about linearly with m*R at
        small beta); it adds a plug-in error that ``stderr`` does not include.  The
        conditional terms always use all R samples of each input.
    base : float, optional
        Logarithm base of the result: None (default) for nats, 2 for bits.
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
        The one source of randomness (the subsets and every Monte Carlo draw; Scientific
        Python SPEC 7, https://scientific-python.org/specs/spec-0007/): the same seed
        reproduces the result exactly.
    num_threads : int, optional
        CPU threads for the kernel (default: all).
    convergence : bool
        Also estimate from the first R/2 and R/4 samples of every input (nested subsets,
        no new samples; default True) and attach the sequence as ``.convergence``
        (:class:`~infoflow.RConvergence`), warning with
        :class:`~infoflow.RConvergenceWarning` when the last halving of R moved
        the value by more than 3 standard errors.  Each level gets the full query budget
        (so that its error bar is comparable), so the sequence costs 1.7 to 3 times the
        estimate at R alone (more where the cost is in the queries rather than the
        centers); the value at R is the same either way.

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
    if wants_graph(samples, beta):
        return differentiable_information(samples, None, beta, ("ixt",), mc_samples, mc_queries, max_centers,
                                          base, rng, num_threads)["ixt"]
    layer = make_layer(samples, beta, mc_samples, mc_queries, max_centers, base, rng, num_threads, ndims=(3,),
                   hint="(m inputs, R samples each, d); for one sample per input "
                        "(a deterministic layer) pass samples[:, None, :]")
    return estimates(layer, np.zeros(layer.m, dtype=np.int64), ("ixt",), base, bool(convergence), True)["ixt"]


def mi_yt(samples, labels, beta, *, mc_samples=None, mc_queries=None, max_centers=None, base=None, rng=None,
          num_threads=None, convergence=True) -> Estimate:
    r"""SP estimate of :math:`I(Y;T)` for :math:`T = S + Z`, X uniform over m labelled inputs.

    .. math::

        \hat I(Y;T) = \hat h\big(\hat P_S * \varphi_\beta\big)
                      - \sum_y \hat p(y)\, \hat h\big(\hat P_{S|Y=y} * \varphi_\beta\big),

    with :math:`\hat p(y)` the frequency of label y among the m inputs and
    :math:`\hat P_{S|Y=y}` the empirical measure of the pooled samples (all R of each) of
    the inputs labelled y.  Classes whose mixtures have the same number of centers are
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
        K, Monte Carlo noise draws per centre, used for every entropy term.  Cannot be
        combined with ``mc_queries``.
    mc_queries : int, optional
        The Monte Carlo budget in queries (default 65536): h(T) gets this many, and the
        classes share as many in total, in proportion to their frequencies (see
        :func:`mi_xt`).  At most 2**31 queries for any term (as in :func:`mi_xt`).
    max_centers : int, optional
        Estimate h(T), and each class's entropy, from a random subset of at most this
        many of its pooled centers, drawn without replacement with ``rng`` (default:
        all).  It adds a plug-in error that ``stderr`` does not include.
    base : float, optional
        Logarithm base of the result: None (default) for nats, 2 for bits.
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
        The one source of randomness (the subsets and every Monte Carlo draw; Scientific
        Python SPEC 7, https://scientific-python.org/specs/spec-0007/): the same seed
        reproduces the result exactly.
    num_threads : int, optional
        CPU threads for the kernel (default: all).
    convergence : bool
        The R-convergence sequence, as in :func:`mi_xt` (default True).

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
        class), no ``max_centers`` below R and fewer than 65536 samples in all, mi_yt
        computes what mi_xt does, draw for draw: the same seed gives the same result.
        (From 65536 samples on, the pooled samples are taken in the kernel's spatial
        order, so the draws differ, with the same distribution.)
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
    if wants_graph(samples, beta):
        return differentiable_information(samples, labels, beta, ("iyt",), mc_samples, mc_queries, max_centers,
                                          base, rng, num_threads)["iyt"]
    layer = make_layer(samples, beta, mc_samples, mc_queries, max_centers, base, rng, num_threads, ndims=(2, 3),
                   hint="(m inputs, R samples each, d), or (m, d) for R = 1")
    y = class_labels(labels, layer.m)
    return estimates(layer, y, ("iyt",), base, bool(convergence), True)["iyt"]
