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
import warnings

import numpy as np

from . import _backend
from ._intake import (
    class_labels,
    FloatArray,
    beta_for_dtype,
    float_array,
    log_of_base,
    make_rng,
    monte_carlo_budget,
    positive_int,
    thread_count,
    unit_name,
)
from .entropy import DEFAULT_MC_QUERIES, check_query_budget, entropy_nats, noise_entropy, planned_queries
from .estimate import R_SHIFT_TOLERANCE, Estimate, RConvergence, RConvergenceWarning

__all__ = ["mi_xt", "mi_yt", "layer_information", "repeat_levels", "check_layer_budget"]

# Pooled samples from this many on are put in spatial order once per layer (below, the
# kernel's own ordering of each mixture costs next to nothing).
_ORDER_MIN_CENTRES = 65536


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
# The terms, on validated data (numpy for CPU input, the tensor for CUDA input)
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


def _stack(arr: FloatArray, data) -> FloatArray:
    """``data`` (batch, n, d), taken from ``arr``, as a validated FloatArray."""
    return FloatArray(data, arr.kind, arr.device, arr.dtype, tuple(data.shape))


def _merged(centres: FloatArray) -> tuple[FloatArray, FloatArray | None]:
    """One mixture (1, n, d) with identical centres merged into one weighted centre.

    The same inputs drawn twice, or a deterministic layer, give identical rows; the
    mixture of the merged centres with their counts as weights is exactly the same
    mixture, with fewer centres.  Returns ``(centres, None)`` when no two rows are equal
    or the data live on a GPU (the weighted kernel is CPU only).
    """
    if centres.on_cuda:
        return centres, None
    rows = centres.data[0]
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    if len(unique) == len(rows):
        return centres, None
    weights = counts.astype(centres.dtype)[None]
    unique = np.ascontiguousarray(unique)[None]
    return (FloatArray(unique, centres.kind, centres.device, centres.dtype, unique.shape),
            FloatArray(weights, centres.kind, centres.device, centres.dtype, weights.shape))


def _entropies(centres: FloatArray, beta: float, budget: tuple, generator, threads,
               weights: FloatArray | None = None, ordered: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Entropies in nats and their stderrs of a validated (batch, n, d) stack of mixtures.

    ``budget`` is ``(k, None)`` (k draws per centre) or ``(None, queries)`` (queries per
    mixture).  A single centre (n = 1) is a Gaussian: h = h_Z exactly, zero stderr.
    """
    batch, n, d = centres.shape
    if n == 1:
        return np.full(batch, noise_entropy(d, beta)), np.zeros(batch)
    k, n_queries = budget
    return entropy_nats(centres, beta, weights=weights, k=k, n_queries=n_queries, generator=generator,
                        num_threads=threads, centres_ordered=ordered)


class _Layer:
    """The validated samples (m, R, d) of one layer and the estimator options: each term
    of I(X;T) and I(Y;T) is computed once, in a fixed order of the random stream."""

    def __init__(self, arr: FloatArray, beta, k_user, mc_queries, max_centers, generator, threads):
        self.arr, self.beta, self.generator, self.threads = arr, beta, generator, threads
        self.m, self.r, self.d = arr.shape
        self.k_user, self.max_centers = k_user, max_centers
        self.queries = mc_queries or DEFAULT_MC_QUERIES
        # input_of[j]: the input whose sample pooled row j is.  Many pooled samples on the
        # CPU are put in the kernel's spatial order (on first use), so that h(T) and every
        # class mixture (a subsequence) skip their own ordering.
        self.ordered = not arr.on_cuda and self.r > 1 and self.m * self.r >= _ORDER_MIN_CENTRES
        self._pooled = None

    @property
    def pooled(self):
        """The m*R samples as rows, in spatial order when ``self.ordered``; row j is
        sample ``repeat_of[j]`` of input ``input_of[j]``."""
        if self._pooled is None:
            self._pooled = self.arr.data.reshape(self.m * self.r, self.d)
            rows = np.arange(self.m * self.r)
            if self.ordered:
                rows = _backend.spatial_order(self._pooled)
                self._pooled = self._pooled[rows]
            self.input_of, self.repeat_of = rows // self.r, rows % self.r
        return self._pooled

    def first_repeats(self, r: int, generator: np.random.Generator) -> "_Layer":
        """The same layer restricted to the first r samples of every input (nested
        subsets, no new forward pass), drawing from ``generator``.  The pooled rows keep
        their order, so a spatial order computed once serves every level."""
        head = self.arr.data[:, :r]
        head = np.ascontiguousarray(head) if isinstance(head, np.ndarray) else head.contiguous()
        child = _Layer(_stack(self.arr, head), self.beta, self.k_user, self.queries, self.max_centers,
                       generator, self.threads)
        child.ordered = self.ordered and r > 1  # at r = 1 the pooled rows get merged (np.unique reorders)
        pooled = self.pooled
        keep = np.flatnonzero(self.repeat_of < r)
        child._pooled = _take(pooled, keep)
        child.input_of, child.repeat_of = self.input_of[keep], self.repeat_of[keep]
        return child

    def budget(self, share: float = 1.0) -> tuple:
        """(k, None) when the user fixed K, else (None, queries) for a share of the budget,
        at least 2 so that every term has a standard error."""
        if self.k_user is not None:
            return self.k_user, None
        return None, max(2, math.ceil(self.queries * share))

    def pooled_entropy(self) -> tuple[float, float]:
        """h(T) from all m*R pooled centres (or a subset of max_centers of them)."""
        index = _subset(self.m * self.r, self.max_centers, self.generator)
        data = self.pooled if index is None else _take(self.pooled, index)
        centres, weights = _stack(self.arr, data[None]), None
        if self.r == 1:  # inputs repeated in the data: merge them, exactly
            centres, weights = _merged(centres)
        value, stderr = _entropies(centres, self.beta, self.budget(), self.generator, self.threads, weights,
                                   self.ordered)
        return float(value[0]), float(stderr[0])

    def conditional_x(self) -> tuple[float, float]:
        """(1/m) sum_i h(T | X = x_i) and its stderr; h_Z exactly when R = 1."""
        if self.r == 1:
            return noise_entropy(self.d, self.beta), 0.0
        values, errors = _entropies(self.arr, self.beta, self.budget(1.0 / self.m), self.generator, self.threads)
        return float(values.mean()), float(np.sqrt(np.sum(errors**2)) / self.m)

    def conditional_y(self, inverse: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
        """sum_y p(y) h(T | Y = y) and its stderr, for class index ``inverse`` per input."""
        r, m = self.r, self.m
        # Row indices of each class's pooled centres, subset where max_centers asks; then
        # classes of equal size and budget are batched into one call.
        pooled = self.pooled
        # One stable sort groups the rows by class and keeps the pooled order within each.
        by_class = np.argsort(inverse[self.input_of], kind="stable")
        class_rows = []
        for rows in np.split(by_class, np.cumsum(counts * r)[:-1]):
            index = _subset(len(rows), self.max_centers, self.generator)
            class_rows.append(rows if index is None else rows[index])
        p = counts / m
        h_cond, se_cond = np.empty(len(counts)), np.empty(len(counts))
        groups: dict[tuple, list[int]] = {}
        for c, rows in enumerate(class_rows):
            groups.setdefault((len(rows), self.budget(p[c])), []).append(c)
        for (_, budget), members in groups.items():
            stack = _stack(self.arr, _take(pooled, np.stack([class_rows[c] for c in members])))
            if r == 1 and len(members) == 1:
                merged, weights = _merged(stack)
                h, se = _entropies(merged, self.beta, budget, self.generator, self.threads, weights)
            else:
                h, se = _entropies(stack, self.beta, budget, self.generator, self.threads, ordered=self.ordered)
            h_cond[members], se_cond[members] = h, se
        return float(np.dot(p, h_cond)), float(np.sqrt(np.dot(p**2, se_cond**2)))


def repeat_levels(r: int) -> tuple[int, ...]:
    """The nested numbers of samples per input at which an estimate is reported:
    R/4, R/2 and R, rounded down, at least 1, without repeats (``(2, 4, 8)`` for R = 8,
    ``(1,)`` for R = 1)."""
    return tuple(sorted({max(1, r // 4), max(1, r // 2), r}))


_SYMBOLS = {"ixt": "I(X;T)", "iyt": "I(Y;T)"}


def warn_if_unconverged(quantity: str, sequence: RConvergence, where: str = "", stacklevel: int = 2) -> None:
    """Issue an :class:`~infoflow.estimate.RConvergenceWarning` when ``sequence`` has not
    converged; ``quantity`` is ``"ixt"`` or ``"iyt"``, ``where`` a prefix such as a layer name."""
    if sequence.converged():
        return
    (r_prev, r), (prev, last) = sequence.repeats[-2:], sequence.values[-2:]
    multiple = abs(sequence.shift) / sequence.shift_stderr if sequence.shift_stderr > 0 else math.inf
    warnings.warn(f"{where}{_SYMBOLS[quantity]} still moves with R (samples per input): {prev:.4f} at R = "
                  f"{r_prev}, {last:.4f} at R = {r} {sequence.unit}, a shift of {multiple:.1f} standard errors "
                  f"(> {R_SHIFT_TOLERANCE:g}); the plug-in bias of the conditional entropies has not "
                  f"settled, and more samples per input would likely {'lower' if last < prev else 'raise'} "
                  "the value further", RConvergenceWarning, stacklevel=stacklevel + 1)


def _information(layer: _Layer, inverse: np.ndarray, counts: np.ndarray, which: tuple[str, ...]) -> dict:
    """{"ixt": (value, stderr), "iyt": ...} in nats for the quantities in ``which``, from
    one estimate of h(T); the random stream serves h(T), then X's terms, then Y's.  A
    constant X (m = 1) or Y (one class) gives exactly 0 without estimation."""
    results = {q: (0.0, 0.0) for q in which if (layer.m == 1 if q == "ixt" else len(counts) == 1)}
    if len(results) == len(which):
        return results
    h_t, se_t = layer.pooled_entropy()
    if "ixt" not in results and "ixt" in which:
        h_x, se_x = layer.conditional_x()
        results["ixt"] = (h_t - h_x, math.hypot(se_t, se_x))
    if "iyt" not in results and "iyt" in which:
        h_y, se_y = layer.conditional_y(inverse, counts)
        results["iyt"] = (h_t - h_y, math.hypot(se_t, se_y))
    return results


def _child_streams(generator: np.random.Generator, count: int) -> list[np.random.Generator]:
    """``count`` independent generators derived from ``generator`` without advancing it
    (``Generator.spawn``; a generator built without a SeedSequence gives seeds instead)."""
    if count == 0:
        return []
    try:
        return generator.spawn(count)
    except (AttributeError, TypeError):
        return [np.random.default_rng(seed) for seed in generator.integers(2**63, size=count)]


def _estimates(layer: _Layer, labels: np.ndarray, which: tuple[str, ...], base, convergence: bool,
               warn: bool) -> dict[str, Estimate]:
    """The estimates of ``which`` at R and, with ``convergence``, their R-convergence
    sequences from the nested first R/2 and R/4 samples of every input (estimated after
    the full-R values, so that those do not depend on ``convergence``)."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    levels = repeat_levels(layer.r) if convergence else (layer.r,)
    by_level = {layer.r: _information(layer, inverse, counts, which)}
    # Each smaller level draws from its own child stream: ``rng`` advances exactly as
    # without them (the values at R, and whatever the caller draws next, do not depend on
    # ``convergence``), and a level's I(X;T) is draw for draw the same whether or not
    # I(Y;T) is estimated with it.
    for r, stream in zip(levels[:-1], _child_streams(layer.generator, len(levels) - 1)):
        by_level[r] = _information(layer.first_repeats(r, stream), inverse, counts, which)
    log_base, unit = log_of_base(base), unit_name(base)
    results = {}
    for q in which:
        sequence = None
        if convergence:
            sequence = RConvergence(levels, tuple(by_level[r][q][0] / log_base for r in levels),
                                    tuple(by_level[r][q][1] / log_base for r in levels), unit)
            if warn:
                warn_if_unconverged(q, sequence, stacklevel=3)
        value, stderr = by_level[layer.r][q]
        results[q] = Estimate(value / log_base, stderr / log_base, unit, sequence)
    return results


def check_layer_budget(m: int, r: int, k: int | None, queries: int | None) -> None:
    """ValueError, before any work, when the Monte Carlo budget of one layer of m inputs
    with R samples each asks for more than :data:`~infoflow.entropy.MAX_MC_QUERIES`
    queries for h(T) or for the conditional entropies given X (those given Y take about
    as many as h(T); each call checks its own again)."""
    check_query_budget(planned_queries(m * r, k, queries), k, queries, f" for h(T) of {m * r} pooled samples")
    if r > 1 and m > 1:
        share = None if k is not None else max(2, math.ceil((queries or DEFAULT_MC_QUERIES) / m))
        check_query_budget(m * planned_queries(r, k, share), k, queries,
                           f" for the {m} conditional entropies h(T | X = x) of {r} samples each")


def _layer(samples, beta, mc_samples, mc_queries, max_centers, base, rng, num_threads, *, ndims, hint) -> _Layer:
    """Validate the common arguments once and return the layer's term calculator."""
    arr = _samples(samples, ndims, hint)
    if len(arr.shape) == 2:
        arr = _stack(arr, arr.data[:, None, :])
    beta = beta_for_dtype(beta, arr.dtype, noisy=True)
    k_user, queries = monte_carlo_budget(mc_samples, mc_queries)
    check_layer_budget(arr.shape[0], arr.shape[1], k_user, queries)
    max_centers = positive_int(max_centers, "max_centers")
    log_of_base(base)
    threads = thread_count(num_threads)
    return _Layer(arr, beta, k_user, queries, max_centers, make_rng(rng), threads)


def _wants_graph(samples, beta) -> bool:
    if not hasattr(samples, "requires_grad"):
        return False
    from .autograd import needs_graph

    return needs_graph(samples, beta)


def _differentiable(samples, labels, beta, which, mc_samples, mc_queries, max_centers, base, rng,
                    num_threads) -> dict[str, Estimate]:
    """I(X;T) and/or I(Y;T) as tensors whose gradient is the estimator's, for samples (or a
    beta) that require a gradient.

    The same SP estimator, composed from differentiable :func:`~infoflow.mixture_entropy`
    calls: h(T) from the m*R pooled samples with the full query budget, the conditional
    entropies batched (given X) or per class (given Y) sharing as many queries, h_Z exactly
    when R = 1.  Unlike the default path it neither merges identical centres nor
    subsamples (``max_centers`` is not accepted) nor estimates the R-convergence sequence
    (``.convergence`` is None): its value is a valid estimate with its stderr, drawn
    differently, and its gradient that of the value."""
    import torch

    from .entropy import mixture_entropy

    _samples(samples, (2, 3) if "ixt" not in which else (3,), "(m inputs, R samples each, d)")  # validation
    if max_centers is not None:
        raise ValueError("max_centers: not supported for samples that require a gradient (pass samples.detach() "
                         "for a subsampled estimate without one)")
    t = samples if samples.dim() == 3 else samples[:, None, :]
    m, r, d = t.shape
    k_user, queries = monte_carlo_budget(mc_samples, mc_queries)
    queries = queries or DEFAULT_MC_QUERIES
    generator = make_rng(rng)
    streams = _child_streams(generator, 3)
    log_base, unit = log_of_base(base), unit_name(base)
    budget = {"mc_samples": k_user} if k_user is not None else {"mc_queries": queries}
    h_t = mixture_entropy(t.reshape(m * r, d), beta, rng=streams[0], num_threads=num_threads, **budget)
    results = {}
    if "ixt" in which:
        if r == 1:  # S is a function of X: h(T | X = x) = h_Z exactly
            h_z = d * (0.5 * math.log(2.0 * math.pi * math.e) + torch.as_tensor(beta, dtype=torch.float64).log())
            conditional, conditional_se = h_z, 0.0
        else:
            each = {"mc_samples": k_user} if k_user is not None else {"mc_queries": -(-queries // m)}
            h_x = mixture_entropy(t, beta, rng=streams[1], num_threads=num_threads, **each)
            conditional = h_x.value.mean()
            conditional_se = float(np.sqrt(np.sum(np.square(h_x.stderr)))) / m
        value = (h_t.value - conditional) / log_base
        results["ixt"] = Estimate(value, math.hypot(h_t.stderr, conditional_se) / log_base, unit)
    if "iyt" in which:
        y = class_labels(labels, m)
        classes, counts = np.unique(y, return_counts=True)
        conditional, variance = 0.0, 0.0
        for stream, (label, count) in zip(_child_streams(streams[2], len(classes)), zip(classes, counts)):
            members = t[torch.as_tensor(np.flatnonzero(y == label), device=t.device)].reshape(count * r, d)
            each = {"mc_samples": k_user} if k_user is not None else {"mc_queries": -(-queries * count // m)}
            h_y = mixture_entropy(members, beta, rng=stream, num_threads=num_threads, **each)
            conditional = conditional + (count / m) * h_y.value
            variance += (count / m) ** 2 * h_y.stderr ** 2
        value = (h_t.value - conditional) / log_base
        results["iyt"] = Estimate(value, math.hypot(h_t.stderr, math.sqrt(variance)) / log_base, unit)
    return results


def layer_information(samples, labels, beta, *, mc_samples=None, mc_queries=None, max_centers=None, base=None,
                      rng=None, num_threads=None, convergence=True, warn=True) -> tuple[Estimate, Estimate]:
    """``(mi_xt(...), mi_yt(...))`` of one layer, sharing one estimate of h(T) per level of R.

    The arguments are those of :func:`mi_xt` and :func:`mi_yt`; the random stream is used
    for h(T), then the conditionals given X, then those given Y, at R and then at each
    smaller level of the R-convergence sequence.  ``warn=False`` leaves the
    :class:`~infoflow.estimate.RConvergenceWarning` to the caller.  This is what
    :func:`infoflow.information_flow` computes for every layer.
    """
    if _wants_graph(samples, beta):
        results = _differentiable(samples, labels, beta, ("ixt", "iyt"), mc_samples, mc_queries, max_centers, base,
                                  rng, num_threads)
        return results["ixt"], results["iyt"]
    layer = _layer(samples, beta, mc_samples, mc_queries, max_centers, base, rng, num_threads, ndims=(3,),
                   hint="(m inputs, R samples each, d)")
    labels = class_labels(labels, layer.m)
    results = _estimates(layer, labels, ("ixt", "iyt"), base, bool(convergence), bool(warn))
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
        centre when m*R is smaller, else a uniform random subset of the centres, see
        :func:`~infoflow.mixture_entropy`), and the m conditional entropies share as many
        in total, ``ceil(mc_queries / m)`` each, so that the Monte Carlo error of the
        conditional part is about that of h(T) however large R is.  A budget that asks
        for more than 2**31 queries for h(T) or for the conditional terms
        (:data:`~infoflow.entropy.MAX_MC_QUERIES`) is a ValueError, before any work.
    max_centers : int, optional
        Estimate h(T) from a random subset of at most this many of the m*R pooled
        centres, drawn without replacement with ``rng`` (default: all).  Rarely needed
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
        (:class:`~infoflow.estimate.RConvergence`), warning with
        :class:`~infoflow.estimate.RConvergenceWarning` when the last halving of R moved
        the value by more than 3 standard errors.  Each level gets the full query budget
        (so that its error bar is comparable), so the sequence costs 1.7 to 3 times the
        estimate at R alone (more where the cost is in the queries rather than the
        centres); the value at R is the same either way.

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
    if _wants_graph(samples, beta):
        return _differentiable(samples, None, beta, ("ixt",), mc_samples, mc_queries, max_centers, base, rng,
                               num_threads)["ixt"]
    layer = _layer(samples, beta, mc_samples, mc_queries, max_centers, base, rng, num_threads, ndims=(3,),
                   hint="(m inputs, R samples each, d); for one sample per input "
                        "(a deterministic layer) pass samples[:, None, :]")
    return _estimates(layer, np.zeros(layer.m, dtype=np.int64), ("ixt",), base, bool(convergence), True)["ixt"]


def mi_yt(samples, labels, beta, *, mc_samples=None, mc_queries=None, max_centers=None, base=None, rng=None,
          num_threads=None, convergence=True) -> Estimate:
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
        K, Monte Carlo noise draws per centre, used for every entropy term.  Cannot be
        combined with ``mc_queries``.
    mc_queries : int, optional
        The Monte Carlo budget in queries (default 65536): h(T) gets this many, and the
        classes share as many in total, in proportion to their frequencies (see
        :func:`mi_xt`).  At most 2**31 queries for any term (as in :func:`mi_xt`).
    max_centers : int, optional
        Estimate h(T), and each class's entropy, from a random subset of at most this
        many of its pooled centres, drawn without replacement with ``rng`` (default:
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
    if _wants_graph(samples, beta):
        return _differentiable(samples, labels, beta, ("iyt",), mc_samples, mc_queries, max_centers, base, rng,
                               num_threads)["iyt"]
    layer = _layer(samples, beta, mc_samples, mc_queries, max_centers, base, rng, num_threads, ndims=(2, 3),
                   hint="(m inputs, R samples each, d), or (m, d) for R = 1")
    y = class_labels(labels, layer.m)
    return _estimates(layer, y, ("iyt",), base, bool(convergence), True)["iyt"]
