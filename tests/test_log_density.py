"""log_density / gaussian_lse against the float64 reference, over dtype x d x n x batch
x layout x SIMD kernel, plus the float32 accuracy contract at small beta."""

import math

import numpy as np
import pytest
from conftest import relative_error
from reference import log_density_reference, lse_reference

import infoflow

DTYPE_TOL = {np.float32: 2e-5, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 2, 3, 7, 16, 33, 100, 128])
@pytest.mark.parametrize("n", [1, 2, 5, 63, 64, 65, 257, 1000])
def test_grid_against_reference(isa, rng, dtype, d, n):
    m = 37
    beta = 0.3 * math.sqrt(d)
    q = rng.uniform(-1, 1, (m, d)).astype(dtype)
    c = rng.uniform(-1, 1, (n, d)).astype(dtype)
    out = infoflow.log_density(q, c, beta)
    assert out.dtype == dtype and out.shape == (m,)
    assert relative_error(out, log_density_reference(q, c, beta)) <= DTYPE_TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_n(isa, rng, dtype):
    q = rng.normal(size=(50, 4)).astype(dtype)
    c = rng.normal(size=(5000, 4)).astype(dtype)
    for beta in (0.05, 0.5, 5.0):
        assert relative_error(infoflow.gaussian_lse(q, c, beta), lse_reference(q, c, beta)) <= DTYPE_TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_shape", [(1,), (3,), (2, 3)])
def test_batched(rng, dtype, batch_shape):
    q = rng.uniform(-1, 1, (*batch_shape, 21, 5)).astype(dtype)
    c = rng.uniform(-1, 1, (*batch_shape, 70, 5)).astype(dtype)
    out = infoflow.log_density(q, c, 0.4)
    assert out.shape == (*batch_shape, 21)
    assert relative_error(out, log_density_reference(q, c, 0.4)) <= DTYPE_TOL[dtype]
    # Each batch element is its own mixture.
    flat_q, flat_c = q.reshape(-1, 21, 5), c.reshape(-1, 70, 5)
    for b in range(flat_q.shape[0]):
        np.testing.assert_array_equal(out.reshape(-1, 21)[b], infoflow.log_density(flat_q[b], flat_c[b], 0.4))


def _layouts(a):
    """The same values as C-contiguous, Fortran-ordered, strided-slice and reversed views."""
    yield "contiguous", np.ascontiguousarray(a)
    yield "fortran", np.asfortranarray(a)
    wide = np.zeros((a.shape[0] * 2, a.shape[1] * 3), dtype=a.dtype)
    wide[::2, ::3] = a
    yield "strided", wide[::2, ::3]
    yield "reversed", np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layouts_give_identical_results(rng, dtype):
    q = rng.uniform(-1, 1, (40, 6)).astype(dtype)
    c = rng.uniform(-1, 1, (90, 6)).astype(dtype)
    expected = infoflow.log_density(q, c, 0.3)
    assert relative_error(expected, log_density_reference(q, c, 0.3)) <= DTYPE_TOL[dtype]
    for (qname, qv) in _layouts(q):
        for (cname, cv) in _layouts(c):
            np.testing.assert_array_equal(infoflow.log_density(qv, cv, 0.3), expected, err_msg=f"{qname}/{cname}")


def test_transposed_batch_and_broadcast_views(rng):
    c = rng.uniform(-1, 1, (5, 30, 3))
    q = rng.uniform(-1, 1, (3, 12, 5)).transpose(2, 1, 0)  # (5, 12, 3), non-contiguous
    expected = lse_reference(q, c, 0.2)
    assert relative_error(infoflow.gaussian_lse(q, c, 0.2), expected) <= 1e-12
    # A zero-stride (broadcast) centre set: every row is the same point.
    point = rng.uniform(-1, 1, 4)
    centres = np.broadcast_to(point, (1000, 4))
    queries = rng.uniform(-1, 1, (9, 4))
    closed_form = -((queries - point) ** 2).sum(-1) / (2 * 0.3**2) + math.log(1000)
    assert relative_error(infoflow.gaussian_lse(queries, centres, 0.3), closed_form) <= 1e-13


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_torch_cpu(torch, rng, dtype_name):
    dtype = getattr(torch, dtype_name)
    q = torch.from_numpy(rng.uniform(-1, 1, (2, 30, 8))).to(dtype)
    c = torch.from_numpy(rng.uniform(-1, 1, (2, 50, 8))).to(dtype).requires_grad_()
    out = infoflow.log_density(q.transpose(1, 2).contiguous().transpose(1, 2), c, 0.5)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.device.type == "cpu"
    assert out.shape == (2, 30) and not out.requires_grad
    expected = log_density_reference(q.numpy(), c.detach().numpy(), 0.5)
    assert relative_error(out.numpy(), expected) <= DTYPE_TOL[np.dtype(dtype_name).type]


def test_normalisation_closed_form():
    # One centre at the origin: log g(q) is the Gaussian log-density, in nats.
    q = np.array([[0.0, 0.0], [1.0, 2.0]])
    c = np.zeros((1, 2))
    beta = 0.7
    expected = -(q**2).sum(-1) / (2 * beta**2) - math.log(2 * math.pi * beta**2)
    np.testing.assert_allclose(infoflow.log_density(q, c, beta), expected, rtol=1e-14)


@pytest.mark.parametrize("d", [1, 10, 100])
def test_float32_accuracy_at_small_beta(isa, rng, d):
    """The accuracy contract (README, Accuracy): beta = 1e-3 on tanh-range data of norm
    ~sqrt(d), float32 within 2e-5 of float64, for Monte Carlo queries (centre + beta z,
    where the expanded form ||q||^2 + ||c||^2 - 2 q.c would lose every digit) and for
    far queries."""
    beta = 1e-3
    centres = np.tanh(rng.normal(size=(600, d)) * 2).astype(np.float32)
    near = (centres[:200] + beta * rng.normal(size=(200, d))).astype(np.float32)
    far = np.tanh(rng.normal(size=(100, d))).astype(np.float32)
    for queries in (near, far):
        out = infoflow.gaussian_lse(queries, centres, beta)
        assert relative_error(out, lse_reference(queries, centres, beta)) <= 2e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorised_exp_is_accurate_to_a_few_ulp(isa, dtype):
    """The kernel's exp, isolated: a query on one centre (term exactly 1) and a second
    centre whose term is y = exp(x), x = -D * scale, so the result is log(1 + y).  Beyond
    the rounding of 1 + y (in double) and of the result, the error must be a few ulp of
    y.  x spans [-25, 0]: every table entry and many binary exponents, with y large
    enough for its error to show."""
    eps = np.finfo(dtype).eps / 2
    x = np.concatenate([np.linspace(0.0, 25.0, 20001), np.random.default_rng(5).uniform(0, 25.0, 20000)])
    beta = math.sqrt(0.5)
    centres = np.zeros((x.size, 2, 1), dtype=dtype)
    centres[:, 1, 0] = np.sqrt(x)
    queries = np.zeros((x.size, 1, 1), dtype=dtype)
    out = infoflow.gaussian_lse(queries, centres, beta)[:, 0].astype(np.float64)
    # The exponent exactly as the kernel forms it: fl(fl(c * c) * -scale) in dtype.
    c = centres[:, 1, 0]
    y = np.exp((-((c * c) * dtype(0.5 / (beta * beta)))).astype(np.float64))
    expected = np.log1p(y)
    ulps_of_y = (np.abs(out - expected) - eps * expected - 2.0**-52) / (eps * y)
    assert np.max(ulps_of_y) <= 4.0


def test_online_max_rescales_across_blocks(isa):
    # Far centres come first, the nearest last: the running maximum changes many times
    # and every earlier partial sum must be rescaled, not overflow or vanish.
    n = 3000
    distances = np.linspace(50.0, 0.0, n)
    centres = np.stack([distances, np.zeros(n)], axis=1)
    q = np.zeros((3, 2))
    for dtype in (np.float32, np.float64):
        out = infoflow.gaussian_lse(q.astype(dtype), centres.astype(dtype), 0.5)
        expected = lse_reference(q.astype(dtype), centres.astype(dtype), 0.5)
        assert relative_error(out, expected) <= DTYPE_TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_sums_keep_precision(dtype):
    """n identical centres: LSE = -D/(2 beta^2) + ln n exactly.  A float32 running sum
    over 10^6 terms would be off by ~1e-2 relative; the kernel sums blocks in double."""
    n = 1_000_000
    point = np.array([0.25, -0.5, 0.125], dtype=dtype)
    centres = np.broadcast_to(point, (n, 3))
    q = np.array([[0.25, -0.5, 0.125], [1.0, 0.0, 0.0]], dtype=dtype)
    beta = 0.5
    expected = -((q.astype(np.float64) - point) ** 2).sum(-1) / (2 * beta**2) + math.log(n)
    assert relative_error(infoflow.gaussian_lse(q, centres, beta), expected) <= DTYPE_TOL[dtype]


def test_extreme_beta_limits(rng):
    q = rng.uniform(-1, 1, (10, 3))
    c = rng.uniform(-1, 1, (25, 3))
    # beta -> infinity: every term is exp(0) = 1, so LSE = ln n.
    np.testing.assert_allclose(infoflow.gaussian_lse(q, c, 1e12), math.log(25), rtol=1e-12)
    # Tiny beta: only the nearest centre counts.
    beta = 1e-4
    nearest = ((q[:, None, :] - c[None]) ** 2).sum(-1).min(axis=1)
    np.testing.assert_allclose(infoflow.gaussian_lse(q, c, beta), -nearest / (2 * beta**2), rtol=1e-12)


def test_64bit_strides():
    """An element 2^31 elements past the base pointer: 32-bit index arithmetic would wrap.
    A sparse memory map keeps the test to a few touched pages."""
    import tempfile

    stride = 2**30
    with tempfile.TemporaryFile() as handle:
        mapped = np.memmap(handle, dtype=np.float32, mode="w+", shape=(2 * stride + 1,))
        mapped[0], mapped[stride], mapped[2 * stride] = 1.0, 2.0, 3.0
        centres = np.lib.stride_tricks.as_strided(mapped, shape=(3, 1), strides=(stride * 4, 4))
        q = np.array([[3.0]], dtype=np.float32)
        out = infoflow.gaussian_lse(q, centres, 1.0)
        expected = lse_reference(q, np.array([[1.0], [2.0], [3.0]]), 1.0)
        assert relative_error(out, expected) <= 2e-6
        del centres, mapped


@pytest.mark.slow
def test_more_than_2_31_centre_coordinates():
    """n * d > 2^31: every packed-buffer and loop index must be 64-bit.  The centres are a
    zero-stride view (no input memory); the kernel's packed copy takes ~8.6 GB."""
    n = 2**31 + 1000
    centres = np.broadcast_to(np.float32(0.5), (n, 1))
    q = np.array([[0.5], [1.5]], dtype=np.float32)
    out = infoflow.gaussian_lse(q, centres, 1.0)
    expected = np.array([0.0, -0.5]) + math.log(n)
    assert relative_error(out, expected) <= 2e-6
