"""Gradients: gradcheck in float64, agreement with dense torch autograd of a reference,
float32 against float64, the Monte Carlo estimators against finite differences with
common random numbers, and the errors for what is not supported."""

import math

import numpy as np
import pytest

import infoflow

torch = pytest.importorskip("torch")


def dense_log_density(q, c, beta, w=None, *, normalise=True):
    """The reference: the m x n matrix in torch autograd, float64."""
    d2 = ((q[..., :, None, :] - c[..., None, :, :]) ** 2).sum(-1)
    s = -d2 / (2 * beta**2)
    if w is not None:
        s = s + w.log()[..., None, :]
    lse = torch.logsumexp(s, dim=-1)
    if not normalise:
        return lse
    log_total = math.log(c.shape[-2]) if w is None else w.sum(-1).log()[..., None]
    return lse - log_total - c.shape[-1] * (0.5 * math.log(2 * math.pi) + torch.log(torch.as_tensor(beta)))


def _inputs(rng, shape_q, shape_c, dtype=torch.float64, weighted=False):
    q = torch.from_numpy(rng.normal(size=shape_q)).to(dtype).requires_grad_()
    c = torch.from_numpy(rng.normal(size=shape_c)).to(dtype).requires_grad_()
    w = torch.from_numpy(rng.uniform(0.2, 2.0, shape_c[:-1])).to(dtype).requires_grad_() if weighted else None
    return q, c, w


@pytest.mark.parametrize("fn", [infoflow.gaussian_lse, infoflow.log_density])
@pytest.mark.parametrize("weighted", [False, True])
def test_gradcheck(rng, fn, weighted):
    q, c, w = _inputs(rng, (2, 5, 3), (2, 7, 3), weighted=weighted)
    beta = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    inputs = (q, c, beta) + ((w,) if weighted else ())
    assert torch.autograd.gradcheck(lambda q, c, b, *w: fn(q, c, b, weights=w[0] if w else None), inputs)


def test_gradcheck_float_beta_and_broadcast_weights(rng):
    # beta a plain float (no gradient for it), weights of shape (n,) shared by the batch.
    q, c, _ = _inputs(rng, (3, 4, 2), (3, 6, 2))
    w = torch.from_numpy(rng.uniform(0.2, 2.0, 6)).requires_grad_()
    assert torch.autograd.gradcheck(lambda q, c, w: infoflow.log_density(q, c, 0.6, weights=w), (q, c, w))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_medium_case_matches_dense_autograd(rng, weighted, threads):
    q, c, w = _inputs(rng, (300, 10), (700, 10), weighted=weighted)
    beta = torch.tensor(1.1, dtype=torch.float64, requires_grad=True)
    upstream = torch.from_numpy(rng.normal(size=300))
    wanted = (q, c, beta) + ((w,) if weighted else ())
    got = torch.autograd.grad((infoflow.log_density(q, c, beta, weights=w, num_threads=threads) * upstream).sum(),
                              wanted)
    expected = torch.autograd.grad((dense_log_density(q, c, beta, w) * upstream).sum(), wanted)
    for name, a, b in zip("q c beta w".split(), got, expected):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11 * float(b.abs().max())), name


# The compiled backward is specialised for the inputs that want a gradient; each subset
# must give the dense reference's gradients, in wide query tiles (spread 4: coordinates in
# (-4, 4), wider than 8 beta = 4) and compact ones (spread 0.5: all within 8 beta).
@pytest.mark.parametrize("wanted", ["q", "c", "qc", "beta", "w", "qw", "cbeta"])
@pytest.mark.parametrize("spread", [4.0, 0.5])
def test_each_subset_of_inputs_matches_dense_autograd(rng, wanted, spread):
    q = torch.from_numpy(np.tanh(rng.normal(size=(260, 5))) * spread).requires_grad_("q" in wanted)
    c = torch.from_numpy(np.tanh(rng.normal(size=(500, 5))) * spread).requires_grad_("c" in wanted)
    w = torch.from_numpy(rng.uniform(0.2, 2.0, 500)).requires_grad_() if "w" in wanted else None
    beta = torch.tensor(0.5, dtype=torch.float64, requires_grad="beta" in wanted)
    upstream = torch.from_numpy(rng.normal(size=260))
    inputs = [x for name, x in (("q", q), ("c", c), ("beta", beta), ("w", w)) if name in wanted]
    got = torch.autograd.grad((infoflow.log_density(q, c, beta, weights=w, num_threads=2) * upstream).sum(), inputs)
    expected = torch.autograd.grad((dense_log_density(q, c, beta, w) * upstream).sum(), inputs)
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11 * float(b.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("threads", [1, 2])
def test_compact_and_wide_query_tiles(rng, dtype, threads):
    # The kernel takes a register tile of consecutive queries in the form expanded around
    # its first query when they lie within a few beta of it, and by direct differences
    # otherwise: queries in runs of each kind (and runs of odd lengths, so tiles straddle
    # them) must give the dense reference's gradients either way.
    beta = 0.2
    runs = []
    for length in (2, 3, 5, 7, 4, 6, 9, 1, 8):
        center = rng.uniform(-3, 3, size=(1, 4))
        runs.append(center + 0.3 * beta * rng.normal(size=(length, 4)))  # compact
        runs.append(rng.uniform(-3, 3, size=(length, 4)))  # wide
    q64 = torch.from_numpy(np.concatenate(runs)).requires_grad_()
    near = q64.detach().numpy()[::2]
    c64 = torch.from_numpy(np.concatenate([near + beta * rng.normal(size=near.shape),
                                           rng.uniform(-3, 3, size=(60, 4))])).requires_grad_()
    upstream = torch.from_numpy(rng.normal(size=q64.shape[0]))
    expected = torch.autograd.grad((dense_log_density(q64, c64, beta) * upstream).sum(), (q64, c64))
    q, c = (x.detach().to(dtype).requires_grad_() for x in (q64, c64))
    got = torch.autograd.grad((infoflow.log_density(q, c, beta, num_threads=threads) * upstream.to(dtype)).sum(),
                              (q, c))
    for a, b in zip(got, expected):
        assert a.dtype == dtype
        if dtype == torch.float64:
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-11 * float(b.abs().max()))
        else:  # the float32 contract of test_float32_gradients_against_float64
            assert float((a.double() - b).abs().max()) <= 2e-4 * float(b.abs().max())


@pytest.mark.parametrize("beta", [0.05, 0.5, 3.0])
def test_float32_gradients_against_float64(rng, beta):
    # Stated tolerance: float32 gradients agree with float64 to 2e-4 of the largest
    # component (the squared distances are float32, so r_ij carries ~1e-6 relative).
    q64 = torch.from_numpy(np.tanh(rng.normal(size=(400, 6)))).requires_grad_()
    c64 = torch.from_numpy(np.tanh(rng.normal(size=(500, 6)))).requires_grad_()
    q32 = q64.detach().float().requires_grad_()
    c32 = c64.detach().float().requires_grad_()
    g64 = torch.autograd.grad(infoflow.log_density(q64, c64, beta).sum(), (q64, c64))
    g32 = torch.autograd.grad(infoflow.log_density(q32, c32, beta).sum(), (q32, c32))
    for a, b in zip(g32, g64):
        assert a.dtype == torch.float32
        assert float((a.double() - b).abs().max()) <= 2e-4 * float(b.abs().max())


def test_extreme_beta_scales_back(rng):
    # beta = 1e-160: the kernel works in units of a power of two; the gradients scale back.
    q, c, _ = _inputs(rng, (20, 3), (30, 3))
    scale = 1e-160
    qs, cs = (q.detach() * scale).requires_grad_(), (c.detach() * scale).requires_grad_()
    got = torch.autograd.grad(infoflow.log_density(qs, cs, 0.7 * scale).sum(), (qs, cs))
    expected = torch.autograd.grad(infoflow.log_density(q, c, 0.7).sum(), (q, c))
    for a, b in zip(got, expected):
        # (the inputs times 1e-160 are rounded, so the two problems differ in the last bits)
        assert torch.allclose(a * scale, b, rtol=1e-9, atol=1e-12 * float(b.abs().max()))


def test_chunked_backward_matches_the_compiled_one(rng):
    # The torch fallback used for CUDA tensors, run on the CPU against the compiled pass.
    from infoflow import autograd

    q, c, w = _inputs(rng, (2, 90, 4), (2, 120, 4), weighted=True)
    q, c, w = q.detach(), c.detach(), w.detach()
    lse = dense_log_density(q, c, 0.7, w, normalise=False)
    upstream = torch.from_numpy(rng.normal(size=(2, 90)))
    compiled = autograd._compiled_backward(q, c, 0.7, w, lse, upstream, None, True, True, True, True)
    chunked = autograd._chunked_backward(q, c, 0.7, w, lse, upstream, True, True, True, True)
    for a, b in zip(compiled, chunked):
        assert torch.allclose(a, b.to(a.dtype), rtol=1e-10, atol=1e-12)


def test_double_backward_is_a_clear_error(rng):
    q, c, _ = _inputs(rng, (5, 2), (6, 2))
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(infoflow.gaussian_lse(q, c, 0.5).sum(), (q,), create_graph=True)


def test_numpy_input_has_no_graph_and_no_grad_mode_none(rng):
    x = rng.normal(size=(10, 2))
    assert isinstance(infoflow.log_density(x, x, 0.5), np.ndarray)
    t = torch.from_numpy(x).requires_grad_()
    with torch.no_grad():
        assert not infoflow.log_density(t, t, 0.5).requires_grad


def _finite_difference(f, x, index, eps):
    plus, minus = x.detach().clone(), x.detach().clone()
    plus[index] += eps
    minus[index] -= eps
    return (f(plus) - f(minus)) / (2 * eps)


def test_mixture_entropy_gradient_against_finite_differences(rng):
    # Without the control variate the estimate is -mean_r log g(c_J + beta z_r), smooth in
    # the centres and beta for fixed draws: central differences with the same seed.
    x = torch.from_numpy(rng.normal(size=(200, 2))).requires_grad_()
    beta = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    estimate = infoflow.mixture_entropy(x, beta, rng=3, control_variate=False)
    assert estimate.value.requires_grad and estimate.value.dtype == torch.float64
    assert float(estimate) == float(infoflow.mixture_entropy(x.detach().numpy(), 0.4, rng=3,
                                                             control_variate=False))
    grad_x, grad_beta = torch.autograd.grad(estimate.value, (x, beta))

    def h_of_x(xx):
        return float(infoflow.mixture_entropy(xx, 0.4, rng=3, control_variate=False))

    for index in [(0, 0), (17, 1), (123, 0)]:
        assert float(grad_x[index]) == pytest.approx(_finite_difference(h_of_x, x, index, 1e-5), rel=1e-5, abs=1e-9)
    fd_beta = (float(infoflow.mixture_entropy(x.detach(), 0.4 + 1e-6, rng=3, control_variate=False))
               - float(infoflow.mixture_entropy(x.detach(), 0.4 - 1e-6, rng=3, control_variate=False))) / 2e-6
    assert float(grad_beta) == pytest.approx(fd_beta, rel=1e-6)


def test_control_variate_estimate_is_differentiated_exactly(rng):
    # With the control variate the value depends on the centres through its fitted
    # coefficients too: the gradient is the derivative of the value returned, which
    # central differences with the same draws check (to 1e-5 of the largest component).
    x = torch.from_numpy(np.tanh(rng.normal(size=(256, 8)))).requires_grad_()
    estimate = infoflow.mixture_entropy(x, 0.1, mc_queries=2048, rng=7)
    (grad,) = torch.autograd.grad(estimate.value, (x,))
    direction = torch.from_numpy(rng.normal(size=(256, 8)))
    eps = 1e-6

    def value(xx):
        return float(infoflow.mixture_entropy(xx, 0.1, mc_queries=2048, rng=7))

    fd = (value(x.detach() + eps * direction) - value(x.detach() - eps * direction)) / (2 * eps)
    assert float((grad * direction).sum()) == pytest.approx(fd, rel=1e-5)


def test_mixture_entropy_batched_gradients_and_closed_form():
    # One centre per mixture: h = h_Z exactly, whatever the centre, so d h / d c = 0 and
    # d h / d beta = d / beta, for every mixture of a batch.
    x = torch.zeros((3, 1, 4), dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    estimate = infoflow.mixture_entropy(x, beta, mc_queries=64, rng=0)
    assert estimate.value.shape == (3,)
    grad_x, grad_beta = torch.autograd.grad(estimate.value.sum(), (x, beta))
    assert float(grad_x.abs().max()) < 1e-12
    assert float(grad_beta) == pytest.approx(3 * 4 / 0.3, rel=1e-12)


def test_mixture_entropy_rejects_weight_gradients(rng):
    x = torch.from_numpy(rng.normal(size=(20, 2)))
    w = torch.ones(20, dtype=torch.float64, requires_grad=True)
    with pytest.raises(NotImplementedError, match="weights: mixture_entropy has no gradient"):
        infoflow.mixture_entropy(x, 0.5, weights=w, rng=0)


def test_mi_xt_gradient_of_a_deterministic_layer(rng):
    # R = 1: I(X;T) = h(T) - h_Z, so its gradient in the samples is that of the pooled
    # mixture's entropy (same budget and seed stream) and in beta that minus d / beta.
    s = torch.from_numpy(np.tanh(rng.normal(size=(64, 1, 3)))).requires_grad_()
    beta = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    mi = infoflow.mi_xt(s, beta, rng=5)
    assert mi.convergence is None and mi.value.requires_grad
    grad_s, grad_beta = torch.autograd.grad(mi.value, (s, beta))
    from infoflow._random import child_streams, make_rng

    stream = child_streams(make_rng(5), 3)[0]
    beta2 = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    h = infoflow.mixture_entropy(s.reshape(64, 3), beta2, rng=stream)
    grad_h_s, grad_h_beta = torch.autograd.grad(h.value, (s, beta2))
    assert torch.allclose(grad_s, grad_h_s, rtol=1e-12, atol=1e-15)
    assert float(grad_beta) == pytest.approx(float(grad_h_beta) - 3 / 0.2, rel=1e-10)


def test_mi_gradients_reach_every_sample_and_agree_with_the_default_path(rng):
    s = torch.from_numpy(np.tanh(rng.normal(size=(30, 6, 2)))).requires_grad_()
    y = np.arange(30) % 3
    from infoflow.mutual_information import layer_information

    ixt, iyt = layer_information(s, y, 0.1, rng=1, mc_queries=8192)
    plain_x, plain_y = layer_information(s.detach(), y, 0.1, rng=1, mc_queries=8192, warn=False)
    for got, reference in ((ixt, plain_x), (iyt, plain_y)):
        # Different draws of the same estimator: within 5 combined standard errors.
        assert abs(float(got) - reference.value) <= 5 * math.hypot(got.stderr, reference.stderr)
        (grad,) = torch.autograd.grad(got.value, (s,), retain_graph=True)
        assert bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0
