r"""Gradients of the Gaussian log-sum-exp for torch tensors.

:class:`GaussianLSE` is a :class:`torch.autograd.Function` for

.. math:: \mathrm{out}_{bi} = \log \sum_j w_{bj}
          \exp\!\left(-\frac{\lVert q_{bi} - c_{bj}\rVert^2}{2\beta^2}\right) + \mathrm{shift}_b

whose forward is the compiled kernel and whose backward is the compiled backward pass
(``csrc/cpu/lse_backward.hpp``): the forward's result is saved and the responsibilities
recomputed, as FlashAttention does, so memory stays O((m + n) d), never m x n.  Gradients
flow to the queries, the centres, beta (a 0-d tensor), the weights and the shift.  CUDA
tensors take a chunked torch backward (memory bounded by the chunk) until the CUDA
kernels can be verified on a GPU.

This module imports torch; :mod:`infoflow.density` and :mod:`infoflow.entropy` import it
only when a tensor that requires a gradient arrives.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from . import _backend, _core
from ._intake import FloatArray, largest_magnitude
from .density import log_gaussian_normaliser

__all__ = ["GaussianLSE", "EntropyGraph", "needs_graph", "gaussian_lse_graph"]

# Elements of one (chunk x n) block in the CUDA backward.
_CUDA_BACKWARD_ELEMENTS = 1 << 24


def needs_graph(*values: Any) -> bool:
    """Whether autograd is recording and any of ``values`` is a tensor requiring a gradient."""
    return torch.is_grad_enabled() and any(isinstance(v, torch.Tensor) and v.requires_grad for v in values)


def _host(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().resolve_conj().resolve_neg().numpy()


class GaussianLSE(torch.autograd.Function):
    """out = log sum_j w_j exp(-|q - c_j|^2 / (2 beta^2)) + shift, differentiable.

    ``forward(queries (B, m, d), centers (B, n, d), beta (0-d tensor), weights (B, n) or
    None, shift (B,) float64 or None, num_threads)``.  The double backward (gradients
    of gradients, ``create_graph=True``) is not supported: a RuntimeError says so.
    """

    @staticmethod
    def forward(ctx, queries, centers, beta, weights, shift, num_threads):
        beta_value = float(beta)
        q = FloatArray(_host(queries) if not queries.is_cuda else queries.detach(), "torch", str(queries.device),
                       np.dtype(str(queries.dtype).replace("torch.", "")), tuple(queries.shape))
        c = FloatArray(_host(centers) if not centers.is_cuda else centers.detach(), "torch", str(centers.device),
                       q.dtype, tuple(centers.shape))
        w = None
        if weights is not None:
            host = np.ascontiguousarray(_host(weights)) if not weights.is_cuda else weights.detach().contiguous()
            w = FloatArray(host, "torch", str(weights.device), q.dtype, tuple(weights.shape))
        shift_host = None if shift is None else shift.detach().cpu().numpy().astype(np.float64)
        out = _backend.log_density_3d(q, c, beta_value, num_threads, weights=w, shift=shift_host)
        ctx.num_threads = num_threads
        ctx.save_for_backward(queries, centers, beta, weights, shift, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        if torch.is_grad_enabled():  # create_graph=True: a graph of this backward was asked for
            raise RuntimeError("infoflow: double backward (create_graph=True, gradients of gradients) of the "
                               "Gaussian log-sum-exp is not supported; its backward is a compiled kernel")
        queries, centers, beta, weights, shift, out = ctx.saved_tensors
        want_q, want_c, want_beta, want_w, want_shift, _ = ctx.needs_input_grad
        beta_value = float(beta)
        # L_i, the log-sum-exp itself, in double: the forward's result is near 0 when the
        # shift is a normaliser, so out - shift keeps L to the rounding of out.
        lse = out.detach().double()
        if shift is not None:
            lse = lse - shift.detach().double()[:, None]
        upstream = grad_out.detach().double()
        if queries.is_cuda:
            grads = _chunked_backward(queries.detach(), centers.detach(), beta_value,
                                      None if weights is None else weights.detach(), lse, upstream,
                                      want_q, want_c, want_beta, want_w)
        else:
            grads = _compiled_backward(queries, centers, beta_value, weights, lse, upstream, ctx.num_threads,
                                       want_q, want_c, want_beta, want_w)
        grad_q, grad_c, grad_beta, grad_w = grads
        if grad_beta is not None:
            grad_beta = grad_beta.sum().to(dtype=beta.dtype, device=beta.device).reshape(beta.shape)
        grad_shift = None
        if want_shift and shift is not None:
            grad_shift = upstream.sum(dim=1).to(device=shift.device, dtype=shift.dtype)
        return grad_q, grad_c, grad_beta, grad_w, grad_shift, None


def _compiled_backward(queries, centers, beta, weights, lse, upstream, num_threads, want_q, want_c, want_beta,
                       want_w):
    q, c = _host(queries), _host(centers)
    w = None if weights is None else np.ascontiguousarray(_host(weights))
    # The forward's power-of-two scaling (see _backend.power_of_two_scale) applies here
    # too; each gradient then scales back by s (the weights' not at all).
    qa = FloatArray(q, "numpy", "cpu", q.dtype, q.shape, largest_magnitude(q))
    ca = FloatArray(c, "numpy", "cpu", c.dtype, c.shape, largest_magnitude(c))
    s = _backend.power_of_two_scale(qa, ca, beta)
    if s != 1.0:
        q, c = q * s, c * s
    grad_q, grad_c, grad_beta, grad_w = _core.log_density_backward(
        q, c, beta * s, np.ascontiguousarray(lse.numpy()), np.ascontiguousarray(upstream.numpy()),
        num_threads or 0, _backend.simd_level(), w, want_q, want_c, want_beta, want_w)

    def tensor(values, scaled=True):
        if values is None:
            return None
        return torch.from_numpy(values * s if scaled and s != 1.0 else values)

    return tensor(grad_q), tensor(grad_c), tensor(grad_beta), tensor(grad_w, scaled=False)


def _chunked_backward(q, c, beta, w, lse, upstream, want_q, want_c, want_beta, want_w):
    """The same gradients with torch operations on the tensors' device, in chunks of
    queries (memory: one chunk x n block); for CUDA tensors until the CUDA backward
    kernel has been verified on a GPU."""
    batch, m, d = q.shape
    n = c.shape[1]
    inv_two_var = 1.0 / (2.0 * beta * beta)
    cd = c.double()
    grad_q = torch.zeros_like(q) if want_q else None
    grad_c = torch.zeros((batch, n, d), dtype=torch.float64, device=q.device) if want_c else None
    grad_beta = torch.zeros(batch, dtype=torch.float64, device=q.device) if want_beta else None
    grad_w = torch.zeros((batch, n), dtype=torch.float64, device=q.device) if want_w else None
    lse, upstream = lse.to(q.device), upstream.to(q.device)
    step = max(1, _CUDA_BACKWARD_ELEMENTS // max(1, batch * n))
    for i0 in range(0, m, step):
        qd = q[:, i0:i0 + step].double()
        dist = torch.cdist(qd, cd).square()
        e = torch.exp(-dist * inv_two_var - lse[:, i0:i0 + step, None])  # exp(s_ij - L_i)
        r = e if w is None else e * w.double()[:, None, :]
        g = upstream[:, i0:i0 + step, None]
        if want_q:
            grad_q[:, i0:i0 + step] = (g[..., 0, None] * (r @ cd - qd * r.sum(-1, keepdim=True))
                                       / beta**2).to(q.dtype)
        gr = g * r
        if want_c:
            grad_c += (gr.transpose(1, 2) @ qd - cd * gr.sum(1)[..., None]) / beta**2
        if want_beta:
            grad_beta += (gr * dist).sum((1, 2)) / beta**3
        if want_w:
            grad_w += (g * e).sum(1)
    return (grad_q, None if grad_c is None else grad_c.to(q.dtype), grad_beta,
            None if grad_w is None else grad_w.to(q.dtype))


def beta_tensor(beta: Any) -> torch.Tensor:
    """beta as a 0-d float64 tensor on the CPU (a tensor keeps its graph)."""
    if isinstance(beta, torch.Tensor):
        return beta.reshape(()).to(torch.float64)
    return torch.tensor(float(beta), dtype=torch.float64)


def gaussian_lse_graph(queries: torch.Tensor, centers: torch.Tensor, beta: Any, weights: torch.Tensor | None,
                       num_threads: int | None, *, normalise: bool) -> torch.Tensor:
    """The log-sum-exp (``normalise=False``) or the log-density of (B, m, d) queries and
    (B, n, d) centres through :class:`GaussianLSE`, with the normaliser (which depends on
    beta and the weights) as a differentiable shift."""
    batch, _, d = queries.shape
    n = centers.shape[1]
    b = beta_tensor(beta)
    shift = None
    if normalise:
        log_total = (torch.full((batch,), math.log(n), dtype=torch.float64) if weights is None
                     else weights.double().sum(-1).log().cpu())
        shift = -(log_total + log_gaussian_normaliser(d, b))
    return GaussianLSE.apply(queries, centers, b, weights, shift, num_threads)


class EntropyGraph:
    """The differentiable side of a Monte Carlo entropy (see :func:`infoflow.entropy_engine.entropy_nats`).

    The estimator draws its queries q_r = c_{J_r} + beta z_r as usual; this object rebuilds
    each chunk of them from the caller's tensors (so that gradients reach the centres both
    as components and through the queries: the reparameterisation), runs the kernel
    through :class:`GaussianLSE`, and keeps every term T_r = -log g(q_r) with its graph.
    :meth:`estimate` then recomputes the estimator's value from those terms in torch, the
    plain mean or the cross-fitted control-variate estimate with its fitted coefficients
    (which depend on the terms too), so that the gradient is exactly the derivative of
    the value returned.
    """

    def __init__(self, centers: torch.Tensor, beta: Any, weights: torch.Tensor | None, num_threads: int | None):
        self.centers = centers  # (batch, n, d), the caller's tensor (reshaped)
        self.beta = beta_tensor(beta)
        self.weights = weights
        self.num_threads = num_threads
        self.blocks: list[tuple[int, int, int, torch.Tensor]] = []  # (b0, b1, r0, log g) per chunk
        self.control: dict[tuple[int, int, int], np.ndarray] = {}  # C_r of each chunk, when used

    def log_density(self, b0: int, b1: int, r0: int, owner: np.ndarray, noise: np.ndarray,
                    log_weight: np.ndarray) -> np.ndarray:
        """log g at the queries r0.. of mixtures b0..b1 (float64 numpy), recorded for the
        gradient.  ``log_weight``: ln of each mixture's total weight."""
        block = self.centers[b0:b1]
        device = block.device
        index = torch.from_numpy(owner).to(device)
        rows = torch.arange(b1 - b0, device=device)[:, None]
        picked = block[:, index, :] if owner.ndim == 1 else block[rows, index, :]
        # The same arithmetic (and rounding) as the estimator's own queries.
        queries = picked + self.beta.to(block.dtype).to(device) * torch.from_numpy(noise).to(device)
        weights = None if self.weights is None else self.weights[b0:b1]
        d = block.shape[-1]
        # The normaliser as a shift, differentiable in beta: -(ln W + d (ln(2 pi)/2 + ln beta)).
        shift = -(torch.from_numpy(np.array(log_weight, dtype=np.float64)) + log_gaussian_normaliser(d, self.beta))
        log_g = GaussianLSE.apply(queries, block, self.beta, weights, shift, self.num_threads)
        self.blocks.append((b0, b1, r0, log_g))
        return log_g.detach().double().cpu().numpy()

    def control_variate(self, b0: int, b1: int, r0: int, values: np.ndarray) -> None:
        """The control variate C_r of the chunk's queries (float64, (b1 - b0, columns))."""
        self.control[(b0, b1, r0)] = values

    def estimate(self, value: np.ndarray, b_range: tuple[float, float]) -> torch.Tensor:
        """The estimate as a tensor: the value ``value`` (float64, per mixture) computed by
        the estimator, with the gradient of the same value recomputed from the terms."""
        batch = self.centers.shape[0]
        count = max(b[2] + b[3].shape[1] for b in self.blocks)
        terms = torch.zeros((batch, count), dtype=torch.float64)
        for b0, b1, r0, log_g in self.blocks:
            terms = terms.index_put((torch.arange(b0, b1)[:, None], torch.arange(r0, r0 + log_g.shape[1])),
                                    -log_g.double().cpu())
        if not self.control:
            surrogate = terms.mean(dim=1)
        else:
            control = np.zeros((batch, count))
            for (b0, b1, r0), values in self.control.items():
                control[b0:b1, r0:r0 + values.shape[1]] = values
            surrogate = _cross_fitted_value(terms, torch.from_numpy(control), b_range)
        return torch.from_numpy(np.asarray(value, dtype=np.float64)) + (surrogate - surrogate.detach())


def _cross_fitted_value(terms: torch.Tensor, control: torch.Tensor, b_range: tuple[float, float]) -> torch.Tensor:
    """(1/N) sum_h N_h (mean_h T - b_h' mean_h C), b_h' = clip(M_TC / M_CC) fitted on the
    other half (the even and odd query indices), as :func:`infoflow.control_variate.finish_estimate`."""
    halves = [(terms[:, parity::2], control[:, parity::2]) for parity in (0, 1)]
    coefficients = []
    for t, c in halves:
        tc = t - t.mean(dim=1, keepdim=True)
        cc = c - c.mean(dim=1, keepdim=True)
        m2 = (cc * cc).sum(dim=1)
        fitted = (t.shape[1] > 1) & (m2 > 0)
        b = torch.where(fitted, (tc * cc).sum(dim=1) / torch.where(fitted, m2, torch.ones_like(m2)),
                        torch.zeros_like(m2))
        coefficients.append(b.clamp(*b_range))
    total = sum(t.shape[1] for t, _ in halves)
    value = 0.0
    for (t, c), b in zip(halves, coefficients[::-1]):
        value = value + t.shape[1] * (t.mean(dim=1) - b * c.mean(dim=1))
    return value / total
