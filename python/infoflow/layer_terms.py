r"""The entropy terms of one layer's samples, on validated data: h(T), h(T | X = x) and h(T | Y = y).

:class:`Layer` holds the samples (m inputs, R samples each, d) of one noisy layer and
computes each term of the SP estimates of I(X;T) and I(Y;T) once, in a fixed order of
the random stream (:func:`information`); :func:`make_layer` validates the public
functions' arguments into one, and :func:`check_layer_budget` checks its query budget
before any work.  Data are numpy for CPU input, the tensor for CUDA input.
"""

from __future__ import annotations

import math

import numpy as np

from . import _backend
from ._intake import (
    FloatArray,
    beta_for_dtype,
    float_array,
    log_of_base,
    monte_carlo_budget,
    positive_int,
    thread_count,
)
from ._random import make_rng
from .density import gaussian_entropy
from .entropy_engine import entropy_nats
from .queries import DEFAULT_MC_QUERIES, check_query_budget, planned_queries

__all__ = ["Layer", "samples_array", "information", "check_layer_budget", "make_layer"]

# Pooled samples from this many on are put in spatial order once per layer (below, the
# kernel's own ordering of each mixture costs next to nothing).
_ORDER_MIN_CENTERS = 65536


def samples_array(samples, ndims: tuple[int, ...], hint: str) -> FloatArray:
    """Validate ``samples`` (type, dtype, finiteness; errors name ``samples``) and its rank."""
    arr = float_array(samples, "samples", min_ndim=0)
    if len(arr.shape) not in ndims:
        wanted = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"samples: expected a {wanted} array {hint}, got shape {arr.shape}")
    return arr


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


def _merged(centers: FloatArray) -> tuple[FloatArray, FloatArray | None]:
    """One mixture (1, n, d) with identical centers merged into one weighted centre.

    The same inputs drawn twice, or a deterministic layer, give identical rows; the
    mixture of the merged centers with their counts as weights is exactly the same
    mixture, with fewer centers.  Returns ``(centers, None)`` when no two rows are equal
    or the data live on a GPU (the weighted kernel is CPU only).
    """
    if centers.on_cuda:
        return centers, None
    rows = centers.data[0]
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    if len(unique) == len(rows):
        return centers, None
    weights = counts.astype(centers.dtype)[None]
    unique = np.ascontiguousarray(unique)[None]
    return (FloatArray(unique, centers.kind, centers.device, centers.dtype, unique.shape),
            FloatArray(weights, centers.kind, centers.device, centers.dtype, weights.shape))


def _entropies(centers: FloatArray, beta: float, budget: tuple, generator, threads,
               weights: FloatArray | None = None, ordered: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Entropies in nats and their stderrs of a validated (batch, n, d) stack of mixtures.

    ``budget`` is ``(k, None)`` (k draws per centre) or ``(None, queries)`` (queries per
    mixture).  A single centre (n = 1) is a Gaussian: h = h_Z exactly, zero stderr.
    """
    batch, n, d = centers.shape
    if n == 1:
        return np.full(batch, gaussian_entropy(d, beta)), np.zeros(batch)
    k, n_queries = budget
    return entropy_nats(centers, beta, weights=weights, k=k, n_queries=n_queries, generator=generator,
                        num_threads=threads, centers_ordered=ordered)


class Layer:
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
        self.ordered = not arr.on_cuda and self.r > 1 and self.m * self.r >= _ORDER_MIN_CENTERS
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

    def first_repeats(self, r: int, generator: np.random.Generator) -> Layer:
        """The same layer restricted to the first r samples of every input (nested
        subsets, no new forward pass), drawing from ``generator``.  The pooled rows keep
        their order, so a spatial order computed once serves every level."""
        head = self.arr.data[:, :r]
        head = np.ascontiguousarray(head) if isinstance(head, np.ndarray) else head.contiguous()
        child = Layer(_stack(self.arr, head), self.beta, self.k_user, self.queries, self.max_centers,
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
        """h(T) from all m*R pooled centers (or a subset of max_centers of them)."""
        index = _subset(self.m * self.r, self.max_centers, self.generator)
        data = self.pooled if index is None else _take(self.pooled, index)
        centers, weights = _stack(self.arr, data[None]), None
        if self.r == 1:  # inputs repeated in the data: merge them, exactly
            centers, weights = _merged(centers)
        value, stderr = _entropies(centers, self.beta, self.budget(), self.generator, self.threads, weights,
                                   self.ordered)
        return float(value[0]), float(stderr[0])

    def conditional_x(self) -> tuple[float, float]:
        """(1/m) sum_i h(T | X = x_i) and its stderr; h_Z exactly when R = 1."""
        if self.r == 1:
            return gaussian_entropy(self.d, self.beta), 0.0
        values, errors = _entropies(self.arr, self.beta, self.budget(1.0 / self.m), self.generator, self.threads)
        return float(values.mean()), float(np.sqrt(np.sum(errors**2)) / self.m)

    def conditional_y(self, inverse: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
        """sum_y p(y) h(T | Y = y) and its stderr, for class index ``inverse`` per input."""
        r, m = self.r, self.m
        # Row indices of each class's pooled centers, subset where max_centers asks; then
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


def information(layer: Layer, inverse: np.ndarray, counts: np.ndarray, which: tuple[str, ...]) -> dict:
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


def make_layer(samples, beta, mc_samples, mc_queries, max_centers, base, rng, num_threads, *, ndims, hint) -> Layer:
    """Validate the common arguments once and return the layer's term calculator."""
    arr = samples_array(samples, ndims, hint)
    if len(arr.shape) == 2:
        arr = _stack(arr, arr.data[:, None, :])
    beta = beta_for_dtype(beta, arr.dtype, noisy=True)
    k_user, queries = monte_carlo_budget(mc_samples, mc_queries)
    check_layer_budget(arr.shape[0], arr.shape[1], k_user, queries)
    max_centers = positive_int(max_centers, "max_centers")
    log_of_base(base)
    threads = thread_count(num_threads)
    return Layer(arr, beta, k_user, queries, max_centers, make_rng(rng), threads)
