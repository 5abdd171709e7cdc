"""I(X;T) and I(Y;T) whose gradient autograd sees, for samples (or a beta) that require one."""

from __future__ import annotations

import math

import numpy as np

from ._intake import class_labels, log_of_base, monte_carlo_budget, unit_name
from ._random import child_streams, make_rng
from .density import gaussian_entropy
from .entropy import mixture_entropy
from .estimate import Estimate
from .layer_terms import samples_array
from .queries import DEFAULT_MC_QUERIES

__all__ = ["wants_graph", "differentiable_information"]


def wants_graph(samples, beta) -> bool:
    """Whether ``samples`` (or ``beta``) is a tensor that requires a gradient."""
    if not hasattr(samples, "requires_grad"):
        return False
    from .autograd import needs_graph

    return needs_graph(samples, beta)


def differentiable_information(samples, labels, beta, which, mc_samples, mc_queries, max_centers, base, rng,
                               num_threads) -> dict[str, Estimate]:
    """I(X;T) and/or I(Y;T) as tensors whose gradient is the estimator's, for samples (or a
    beta) that require a gradient.

    The same SP estimator, composed from differentiable :func:`~infoflow.mixture_entropy`
    calls: h(T) from the m*R pooled samples with the full query budget, the conditional
    entropies batched (given X) or per class (given Y) sharing as many queries, h_Z exactly
    when R = 1.  Unlike the default path it neither merges identical centers nor
    subsamples (``max_centers`` is not accepted) nor estimates the R-convergence sequence
    (``.convergence`` is None): its value is a valid estimate with its stderr, drawn
    differently, and its gradient that of the value."""
    import torch

    samples_array(samples, (2, 3) if "ixt" not in which else (3,), "(m inputs, R samples each, d)")  # validation
    if max_centers is not None:
        raise ValueError("max_centers: not supported for samples that require a gradient (pass samples.detach() "
                         "for a subsampled estimate without one)")
    t = samples if samples.dim() == 3 else samples[:, None, :]
    m, r, d = t.shape
    k_user, queries = monte_carlo_budget(mc_samples, mc_queries)
    queries = queries or DEFAULT_MC_QUERIES
    generator = make_rng(rng)
    streams = child_streams(generator, 3)
    log_base, unit = log_of_base(base), unit_name(base)
    budget = {"mc_samples": k_user} if k_user is not None else {"mc_queries": queries}
    h_t = mixture_entropy(t.reshape(m * r, d), beta, rng=streams[0], num_threads=num_threads, **budget)
    results = {}
    if "ixt" in which:
        if r == 1:  # S is a function of X: h(T | X = x) = h_Z exactly
            h_z = gaussian_entropy(d, torch.as_tensor(beta, dtype=torch.float64))
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
        for stream, (label, count) in zip(child_streams(streams[2], len(classes)), zip(classes, counts)):
            members = t[torch.as_tensor(np.flatnonzero(y == label), device=t.device)].reshape(count * r, d)
            each = {"mc_samples": k_user} if k_user is not None else {"mc_queries": -(-queries * count // m)}
            h_y = mixture_entropy(members, beta, rng=stream, num_threads=num_threads, **each)
            conditional = conditional + (count / m) * h_y.value
            variance += (count / m) ** 2 * h_y.stderr ** 2
        value = (h_t.value - conditional) / log_base
        results["iyt"] = Estimate(value, math.hypot(h_t.stderr, math.sqrt(variance)) / log_base, unit)
    return results
