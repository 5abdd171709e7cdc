"""log_density / gaussian_lse against the float64 reference, over dtype x d x n x batch
x layout x SIMD kernel, plus the float32 accuracy contract at small beta."""

import math

import numpy as np
import pytest
from conftest import needs_memory
from reference import DTYPE_TOL, log_density_reference, lse_reference, relative_error

import infoflow


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
    assert relative_error(infoflow.gaussian_lse(q, c, 0.2), expected) <= DTYPE_TOL[np.float64]
    # A zero-stride (broadcast) centre set: every row is the same point.
    point = rng.uniform(-1, 1, 4)
    centers = np.broadcast_to(point, (1000, 4))
    queries = rng.uniform(-1, 1, (9, 4))
    closed_form = -((queries - point) ** 2).sum(-1) / (2 * 0.3**2) + math.log(1000)
    assert relative_error(infoflow.gaussian_lse(queries, centers, 0.3), closed_form) <= 1e-13


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_torch_cpu(torch, rng, dtype_name):
    dtype = getattr(torch, dtype_name)
    q = torch.from_numpy(rng.uniform(-1, 1, (2, 30, 8))).to(dtype)
    c = torch.from_numpy(rng.uniform(-1, 1, (2, 50, 8))).to(dtype).requires_grad_()
    out = infoflow.log_density(q.transpose(1, 2).contiguous().transpose(1, 2), c, 0.5)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.device.type == "cpu"
    assert out.shape == (2, 30) and out.requires_grad  # centres that require a gradient get one
    expected = log_density_reference(q.numpy(), c.detach().numpy(), 0.5)
    assert relative_error(out.detach().numpy(), expected) <= DTYPE_TOL[np.dtype(dtype_name).type]


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
    centers = np.tanh(rng.normal(size=(600, d)) * 2).astype(np.float32)
    near = (centers[:200] + beta * rng.normal(size=(200, d))).astype(np.float32)
    far = np.tanh(rng.normal(size=(100, d))).astype(np.float32)
    for queries in (near, far):
        out = infoflow.gaussian_lse(queries, centers, beta)
        assert relative_error(out, lse_reference(queries, centers, beta)) <= DTYPE_TOL[np.float32]


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
    centers = np.zeros((x.size, 2, 1), dtype=dtype)
    centers[:, 1, 0] = np.sqrt(x)
    queries = np.zeros((x.size, 1, 1), dtype=dtype)
    out = infoflow.gaussian_lse(queries, centers, beta)[:, 0].astype(np.float64)
    # The exponent exactly as the kernel forms it: fl(fl(c * c) * -scale) in dtype.
    c = centers[:, 1, 0]
    y = np.exp((-((c * c) * dtype(0.5 / (beta * beta)))).astype(np.float64))
    expected = np.log1p(y)
    ulps_of_y = (np.abs(out - expected) - eps * expected - 2.0**-52) / (eps * y)
    assert np.max(ulps_of_y) <= 4.0


def test_online_max_rescales_across_blocks(isa):
    # Far centres come first, the nearest last: the running maximum changes many times
    # and every earlier partial sum must be rescaled, not overflow or vanish.
    n = 3000
    distances = np.linspace(50.0, 0.0, n)
    centers = np.stack([distances, np.zeros(n)], axis=1)
    q = np.zeros((3, 2))
    for dtype in (np.float32, np.float64):
        out = infoflow.gaussian_lse(q.astype(dtype), centers.astype(dtype), 0.5)
        expected = lse_reference(q.astype(dtype), centers.astype(dtype), 0.5)
        assert relative_error(out, expected) <= DTYPE_TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_sums_keep_precision(dtype):
    """n identical centres: LSE = -D/(2 beta^2) + ln n exactly.  A float32 running sum
    over 10^6 terms would be off by ~1e-2 relative; the kernel sums blocks in double."""
    n = 1_000_000
    point = np.array([0.25, -0.5, 0.125], dtype=dtype)
    centers = np.broadcast_to(point, (n, 3))
    q = np.array([[0.25, -0.5, 0.125], [1.0, 0.0, 0.0]], dtype=dtype)
    beta = 0.5
    expected = -((q.astype(np.float64) - point) ** 2).sum(-1) / (2 * beta**2) + math.log(n)
    assert relative_error(infoflow.gaussian_lse(q, centers, beta), expected) <= DTYPE_TOL[dtype]


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
        centers = np.lib.stride_tricks.as_strided(mapped, shape=(3, 1), strides=(stride * 4, 4))
        q = np.array([[3.0]], dtype=np.float32)
        out = infoflow.gaussian_lse(q, centers, 1.0)
        expected = lse_reference(q, np.array([[1.0], [2.0], [3.0]]), 1.0)
        assert relative_error(out, expected) <= 2e-6
        del centers, mapped


@pytest.mark.slow
@needs_memory(10)
def test_more_than_2_31_center_coordinates():
    """n * d > 2^31: every packed-buffer and loop index must be 64-bit.  The centres are a
    zero-stride view (no input memory); the kernel's packed copy takes ~8.6 GB, so the
    test skips where less than 10 GiB is free, except in CI."""
    n = 2**31 + 1000
    centers = np.broadcast_to(np.float32(0.5), (n, 1))
    q = np.array([[0.5], [1.5]], dtype=np.float32)
    out = infoflow.gaussian_lse(q, centers, 1.0)
    expected = np.array([0.0, -0.5]) + math.log(n)
    assert relative_error(out, expected) <= 2e-6


# ---------------------------------------------------------------------------------------
# Extreme beta and data: the kernel scales by a power of two or says what is out of range
# ---------------------------------------------------------------------------------------

def test_beta_whose_square_underflows():
    # beta^2 = 1e-400 underflows: closed forms in ln(beta) (before: ZeroDivisionError).
    d, beta = 3, 1e-200
    log_phi0 = -d * (0.5 * math.log(2 * math.pi) + math.log(beta))  # log N(0; 0, beta^2 I)
    np.testing.assert_allclose(infoflow.log_density(np.zeros((2, d)), np.zeros((4, d)), beta), log_phi0, rtol=1e-15)
    np.testing.assert_allclose(infoflow.gaussian_lse(np.zeros((2, d)), np.zeros((4, d)), beta), math.log(4), rtol=1e-15)
    expected_h_z = d * (0.5 * math.log(2 * math.pi * math.e) + math.log(beta))
    assert infoflow.noise_entropy(d, beta) == pytest.approx(expected_h_z, rel=1e-15)


def test_beta_whose_square_overflows():
    # beta^2 = 1e310 overflows: the result was -inf (should be ln 4), and inf +- nan for
    # the entropy.  Points 1e-160 beta apart form one Gaussian: h = h_Z to ~1e-300.
    np.testing.assert_allclose(infoflow.gaussian_lse(np.zeros((1, 3)), np.zeros((4, 3)), 1e155), math.log(4),
                               rtol=1e-15)
    x = np.random.default_rng(0).normal(size=(500, 2))
    estimate = infoflow.mixture_entropy(x, 1e160, rng=0)
    h_z = infoflow.noise_entropy(2, 1e160)
    assert math.isfinite(estimate.stderr) and abs(estimate.value - h_z) <= 1e-12 * abs(h_z)


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e19), (np.float32, 1e38), (np.float64, 1e155)])
def test_squared_distances_beyond_the_dtype(dtype, scale):
    # |q - c|^2 = 4 scale^2 overflows the dtype; in units of beta = scale it is 4 and 1.
    # Before: the overflowing centre was dropped (-0.5 instead of log(e^-2 + e^-0.5)).
    q = np.array([[2.0 * scale if scale < 1e38 else scale]], dtype)
    c = np.array([[0.0], [scale]], dtype) if scale < 1e38 else np.array([[-scale], [scale]], dtype)
    units = (q.astype(np.float64) / scale, c.astype(np.float64) / scale)  # exact: the same values in units of beta
    expected = lse_reference(units[0], units[1], float(dtype(scale)) / scale)
    got = infoflow.gaussian_lse(q, c, scale)
    assert got.dtype == dtype
    assert relative_error(got, expected) <= (4e-7 if dtype == np.float32 else 1e-14)


def test_data_too_spread_out_in_units_of_beta_is_a_value_error():
    # 1e19 at beta = 1: exponents of ~5e37 are out of float32's range.  Before: dropped.
    with pytest.raises(ValueError, match="beta: 1 is too small .* float32"):
        infoflow.gaussian_lse(np.array([[1e19]], np.float32), np.array([[0.0]], np.float32), 1.0)
    x = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match=r"beta: 1e-200 is too small .* beta >= "):
        infoflow.mixture_entropy(x, 1e-200)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_beta_outside_the_dtype_range_is_a_value_error(dtype):
    x = np.zeros((5, 2), dtype)
    tiny, huge = float(np.finfo(dtype).tiny), float(np.finfo(dtype).max)
    for beta in (tiny / 4, huge * 2 if dtype == np.float32 else math.inf):
        with pytest.raises(ValueError, match="beta"):
            infoflow.log_density(x, x, beta)
    with pytest.raises(ValueError, match=r"beta: .* outside the range supported"):  # x + beta z would overflow
        infoflow.mixture_entropy(x, huge / 16)


def test_float32_log_density_rounds_once():
    # Coordinates on a 2^-10 grid with beta = 2^-10: every float32 squared distance is
    # exact, so the only float32 error left is the final rounding.  The normaliser (~601
    # here) is subtracted in double inside the kernel; before, the float32 log-sum-exp
    # (~601) and normaliser were each rounded (ulp 6e-5) and then subtracted.
    rng = np.random.default_rng(1)
    d, n, beta = 100, 64, 2.0**-10
    centers = rng.integers(-1000, 1000, (n, d)) * beta
    steps = rng.choice([-3, -4, 3, 4], size=(n, d))  # |step|^2 ~ 1250: log g ~ 0
    queries = centers + steps * beta
    expected = infoflow.log_density(queries, centers, beta)  # float64, exact distances too
    assert expected.min() < 0 < expected.max()  # results near 0, where the old rounding showed most
    got = infoflow.log_density(queries.astype(np.float32), centers.astype(np.float32), beta)
    ulp = np.spacing(np.abs(expected).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(got - expected) <= ulp), np.max(np.abs(got - expected) / ulp)
