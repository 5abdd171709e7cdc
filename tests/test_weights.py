"""Weighted mixtures: gaussian_lse / log_density / mixture_entropy with ``weights``.

gaussian_lse(q, c, beta, weights=w) = log sum_j w_j exp(-||q - c_j||^2 / (2 beta^2)) and
log_density subtracts log(sum_j w_j) + d/2 log(2 pi beta^2).  Tested against the float64
references, against exact identities (integer weights = duplicated centres, a zero
weight = an absent centre, scaling the weights), and for the input checks.
"""

import math

import numpy as np
import pytest
from reference import (
    DTYPE_TOL,
    ROUNDING_TOL,
    entropy_quadrature_1d,
    log_density_reference,
    lse_reference,
    relative_error,
    weighted_entropy_quadrature_1d,
    weighted_log_density_reference,
    weighted_lse_reference,
)

import infoflow


def _weights(rng, shape, dtype, zeros=True):
    """Positive weights over a decade and a half, with some exact zeros (never all)."""
    w = np.exp(rng.uniform(-2.0, 1.5, shape))
    if zeros:
        w[rng.uniform(size=shape) < 0.2] = 0.0
        w[..., 0] = 1.0  # at least one centre per mixture
    return w.astype(dtype)


# --------------------------------------------------------------------------- reference grid


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 3, 17])
@pytest.mark.parametrize("n", [1, 5, 65, 300])
def test_weighted_against_reference(isa, rng, dtype, d, n):
    m = 29
    beta = 0.3 * math.sqrt(d)
    q = rng.uniform(-1, 1, (m, d)).astype(dtype)
    c = rng.uniform(-1, 1, (n, d)).astype(dtype)
    w = _weights(rng, (n,), dtype)
    lse = infoflow.gaussian_lse(q, c, beta, weights=w)
    assert lse.dtype == dtype and lse.shape == (m,)
    assert relative_error(lse, weighted_lse_reference(q, c, beta, w)) <= DTYPE_TOL[dtype]
    dens = infoflow.log_density(q, c, beta, weights=w)
    assert dens.dtype == dtype and dens.shape == (m,)
    assert relative_error(dens, weighted_log_density_reference(q, c, beta, w)) <= DTYPE_TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weights_none_is_the_unweighted_call(rng, dtype):
    q = rng.uniform(-1, 1, (20, 4)).astype(dtype)
    c = rng.uniform(-1, 1, (50, 4)).astype(dtype)
    np.testing.assert_array_equal(infoflow.gaussian_lse(q, c, 0.4, weights=None), infoflow.gaussian_lse(q, c, 0.4))
    np.testing.assert_array_equal(infoflow.log_density(q, c, 0.4, weights=None), infoflow.log_density(q, c, 0.4))
    # Unit weights are the unweighted mixture (up to rounding).
    ones = np.ones(50, dtype=dtype)
    assert relative_error(infoflow.gaussian_lse(q, c, 0.4, weights=ones), lse_reference(q, c, 0.4)) <= DTYPE_TOL[dtype]
    assert relative_error(infoflow.log_density(q, c, 0.4, weights=ones),
                          log_density_reference(q, c, 0.4)) <= DTYPE_TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_shape", [(3,), (2, 3)])
def test_batched_and_broadcast_weights(isa, rng, dtype, batch_shape):
    m, n, d, beta = 17, 80, 5, 0.4
    q = rng.uniform(-1, 1, (*batch_shape, m, d)).astype(dtype)
    c = rng.uniform(-1, 1, (*batch_shape, n, d)).astype(dtype)
    # One weight vector per batch element.
    w = _weights(rng, (*batch_shape, n), dtype)
    lse = infoflow.gaussian_lse(q, c, beta, weights=w)
    assert lse.shape == (*batch_shape, m)
    assert relative_error(lse, weighted_lse_reference(q, c, beta, w)) <= DTYPE_TOL[dtype]
    dens = infoflow.log_density(q, c, beta, weights=w)
    assert relative_error(dens, weighted_log_density_reference(q, c, beta, w)) <= DTYPE_TOL[dtype]
    # Each batch element is its own weighted mixture.
    flat_q, flat_c, flat_w = q.reshape(-1, m, d), c.reshape(-1, n, d), w.reshape(-1, n)
    for b in range(flat_q.shape[0]):
        np.testing.assert_array_equal(dens.reshape(-1, m)[b],
                                      infoflow.log_density(flat_q[b], flat_c[b], beta, weights=flat_w[b]))
    # An (n,) vector broadcasts over the batch axes: the same as tiling it.
    w1 = _weights(rng, (n,), dtype)
    tiled = np.ascontiguousarray(np.broadcast_to(w1, (*batch_shape, n)))
    for fn in (infoflow.gaussian_lse, infoflow.log_density):
        out = fn(q, c, beta, weights=w1)
        assert out.shape == (*batch_shape, m)
        np.testing.assert_array_equal(out, fn(q, c, beta, weights=tiled))
    assert relative_error(infoflow.log_density(q, c, beta, weights=w1),
                          weighted_log_density_reference(q, c, beta, w1)) <= DTYPE_TOL[dtype]
    # A different total weight per batch element: log_density normalises each one by its own sum.
    scaled = w * np.array([10.0 ** (3 * k) for k in range(w.size // n)]).reshape(*batch_shape, 1).astype(dtype)
    assert relative_error(infoflow.log_density(q, c, beta, weights=scaled), dens) <= ROUNDING_TOL[dtype]


def test_weights_in_non_contiguous_layouts(rng):
    q = rng.uniform(-1, 1, (3, 11, 4))
    c = rng.uniform(-1, 1, (3, 40, 4))
    w = np.asfortranarray(_weights(rng, (3, 40), np.float64))
    expected = infoflow.gaussian_lse(q, c, 0.3, weights=np.ascontiguousarray(w))
    assert relative_error(expected, weighted_lse_reference(q, c, 0.3, w)) <= DTYPE_TOL[np.float64]
    np.testing.assert_array_equal(infoflow.gaussian_lse(q, c, 0.3, weights=w), expected)
    strided = np.zeros((3, 80))
    strided[:, ::2] = w
    np.testing.assert_array_equal(infoflow.gaussian_lse(q, c, 0.3, weights=strided[:, ::2]), expected)
    reversed_ = np.ascontiguousarray(w[:, ::-1])[:, ::-1]
    np.testing.assert_array_equal(infoflow.gaussian_lse(q, c, 0.3, weights=reversed_), expected)


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_torch_cpu_weights(torch, rng, dtype_name):
    dtype = getattr(torch, dtype_name)
    np_dtype = np.dtype(dtype_name).type
    q = torch.from_numpy(rng.uniform(-1, 1, (2, 30, 6))).to(dtype)
    c = torch.from_numpy(rng.uniform(-1, 1, (2, 50, 6))).to(dtype).requires_grad_()
    w = torch.from_numpy(_weights(rng, (2, 50), np.float64)).to(dtype)
    for fn, ref in ((infoflow.gaussian_lse, weighted_lse_reference),
                    (infoflow.log_density, weighted_log_density_reference)):
        out = fn(q, c, 0.5, weights=w)
        assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.device.type == "cpu"
        assert out.shape == (2, 30) and out.requires_grad  # the centres require a gradient
        expected = ref(q.numpy(), c.detach().numpy(), 0.5, w.numpy())
        assert relative_error(out.detach().numpy(), expected) <= DTYPE_TOL[np_dtype]
    # Broadcast (n,) torch weights.
    w1 = w[1]
    out = infoflow.log_density(q, c, 0.5, weights=w1)
    expected = weighted_log_density_reference(q.numpy(), c.detach().numpy(), 0.5, w1.numpy())
    assert relative_error(out.detach().numpy(), expected) <= DTYPE_TOL[np_dtype]


# --------------------------------------------------------------------------- exact identities


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_integer_weights_equal_duplicated_centers(isa, rng, dtype):
    n, d, beta = 60, 3, 0.35
    q = rng.uniform(-1, 1, (25, d)).astype(dtype)
    c = rng.uniform(-1, 1, (n, d)).astype(dtype)
    counts = rng.integers(0, 6, n)
    counts[0] = 1
    duplicated = np.repeat(c, counts, axis=0)
    w = counts.astype(dtype)
    for fn in (infoflow.gaussian_lse, infoflow.log_density):
        weighted = fn(q, c, beta, weights=w)
        assert relative_error(weighted, fn(q, duplicated, beta)) <= ROUNDING_TOL[dtype]
    assert relative_error(infoflow.gaussian_lse(q, c, beta, weights=w), lse_reference(q, duplicated, beta)) \
        <= DTYPE_TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_weight_removes_the_center(isa, rng, dtype):
    n, d, beta = 70, 4, 0.05
    c = rng.uniform(-1, 1, (n, d)).astype(dtype)
    absent = np.zeros(n, dtype=bool)
    absent[[0, 5, 6, 33, 69]] = True
    w = _weights(rng, (n,), dtype, zeros=False)
    w[absent] = 0
    # Queries on, and next to, the absent centres (at small beta each one would dominate
    # the sum if it counted) and uniform queries.
    q = np.concatenate([c[absent], c[absent] + dtype(0.01), rng.uniform(-1, 1, (10, d))]).astype(dtype)
    for fn in (infoflow.gaussian_lse, infoflow.log_density):
        assert relative_error(fn(q, c, beta, weights=w), fn(q, c[~absent], beta, weights=w[~absent])) \
            <= ROUNDING_TOL[dtype]
    assert relative_error(infoflow.gaussian_lse(q, c, beta, weights=w),
                          weighted_lse_reference(q, c[~absent], beta, w[~absent])) <= DTYPE_TOL[dtype]
    # Only one centre left: the log-density is that Gaussian's.
    single = np.zeros(n, dtype=dtype)
    single[17] = 2.5
    diff = q.astype(np.float64) - c[17].astype(np.float64)
    gaussian = -(diff**2).sum(-1) / (2 * beta**2) - 0.5 * d * math.log(2 * math.pi * beta**2)
    assert relative_error(infoflow.log_density(q, c, beta, weights=single), gaussian) <= DTYPE_TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1e-20, 3.7, 1e20])
def test_scaling_the_weights(isa, rng, dtype, scale):
    q = rng.uniform(-1, 1, (30, 3)).astype(dtype)
    c = rng.uniform(-1, 1, (90, 3)).astype(dtype)
    w = _weights(rng, (90,), dtype)
    ws = (w.astype(np.float64) * scale).astype(dtype)
    shift = math.log(scale)
    lse, lse_scaled = infoflow.gaussian_lse(q, c, 0.2, weights=w), infoflow.gaussian_lse(q, c, 0.2, weights=ws)
    assert relative_error(lse_scaled, lse + shift) <= ROUNDING_TOL[dtype]
    assert relative_error(lse_scaled, weighted_lse_reference(q, c, 0.2, ws)) <= DTYPE_TOL[dtype]
    dens, dens_scaled = infoflow.log_density(q, c, 0.2, weights=w), infoflow.log_density(q, c, 0.2, weights=ws)
    assert relative_error(dens_scaled, weighted_log_density_reference(q, c, 0.2, ws)) <= DTYPE_TOL[dtype]
    # Unchanged up to a few roundings of the kernel's output, whose scale is |lse|
    # (~46 larger for scale 1e20): log_density is that output less log(sum w) + const.
    kernel_scale = np.maximum(1.0, np.maximum(np.abs(lse), np.abs(lse_scaled)))
    assert np.max(np.abs(dens_scaled.astype(np.float64) - dens) / kernel_scale) <= ROUNDING_TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weights_over_sixty_decades(isa, rng, dtype):
    n, d = 200, 3
    q = rng.uniform(-1, 1, (40, d)).astype(dtype)
    c = rng.uniform(-1, 1, (n, d)).astype(dtype)
    w = (10.0 ** rng.uniform(-30, 30, n)).astype(dtype)
    for beta in (0.02, 0.3, 3.0):
        assert relative_error(infoflow.gaussian_lse(q, c, beta, weights=w),
                              weighted_lse_reference(q, c, beta, w)) <= DTYPE_TOL[dtype]
        assert relative_error(infoflow.log_density(q, c, beta, weights=w),
                              weighted_log_density_reference(q, c, beta, w)) <= DTYPE_TOL[dtype]
    # A light centre on the query, a heavy one far away: the heavy one dominates,
    # 1e-30 * e^0 against 1e30 * e^-100 = 3.7e-14, though its own term e^-100 underflows
    # float32.  The result is about log(1e30) - 100 = -30.9, not log(1e-30) = -69.1.
    c2 = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 30.0]], dtype=dtype)
    w2 = np.array([1e-30, 1e30, 1e30], dtype=dtype)
    q2 = np.array([[0.0, 0.0], [0.5, 0.0], [-1.0, 1.0]], dtype=dtype)
    out = infoflow.gaussian_lse(q2, c2, math.sqrt(0.5), weights=w2)
    expected = weighted_lse_reference(q2, c2, math.sqrt(0.5), w2)
    assert expected[0] == pytest.approx(30 * math.log(10) - 100 + math.log1p(math.exp(-60 * math.log(10) + 100)))
    assert relative_error(out, expected) <= DTYPE_TOL[dtype]


# --------------------------------------------------------------------------- mixture_entropy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weighted_mixture_entropy_against_quadrature(dtype):
    gen = np.random.default_rng(11)
    n, beta = 40, 0.15
    c = gen.uniform(-1, 1, (2, n, 1)).astype(dtype)
    w = np.exp(gen.uniform(-3, 1, (2, n)))
    w[0, :10] = 0.0
    w[1, ::3] *= 50.0
    w = w.astype(dtype)
    exact = [weighted_entropy_quadrature_1d(c[b, :, 0], w[b], beta) for b in range(2)]
    unweighted = [entropy_quadrature_1d(c[b, :, 0], beta) for b in range(2)]
    # The weights matter: the weighted entropies are far from the unweighted ones.
    assert min(abs(e - u) for e, u in zip(exact, unweighted)) > 0.05
    for kwargs in ({"mc_queries": 100_000}, {}, {"mc_samples": 2000}):
        est = infoflow.mixture_entropy(c, beta, weights=w, rng=3, **kwargs)
        assert est.value.shape == (2,) and est.stderr.shape == (2,)
        for b in range(2):
            assert 0 < est.stderr[b] < 0.01, kwargs
            assert abs(est.value[b] - exact[b]) <= 4 * est.stderr[b], (kwargs, b, est.value[b], exact[b])
    # (n,) weights broadcast over the batch.
    est = infoflow.mixture_entropy(c, beta, weights=w[1], mc_queries=100_000, rng=4)
    for b in range(2):
        exact_b = weighted_entropy_quadrature_1d(c[b, :, 0], w[1], beta)
        assert abs(est.value[b] - exact_b) <= 4 * est.stderr[b]


def test_weighted_mixture_entropy_2d_input_and_base(rng):
    c = rng.uniform(-1, 1, (30, 1))
    w = rng.uniform(0.1, 2.0, 30)
    exact = weighted_entropy_quadrature_1d(c[:, 0], w, 0.2)
    est = infoflow.mixture_entropy(c, 0.2, weights=w, mc_queries=50_000, rng=1)
    assert isinstance(est.value, float) and isinstance(est.stderr, float)
    assert abs(est.value - exact) <= 4 * est.stderr
    bits = infoflow.mixture_entropy(c, 0.2, weights=w, mc_queries=50_000, rng=1, base=2)
    assert bits.value == pytest.approx(est.value / math.log(2), rel=1e-12)


def test_all_weight_on_one_center_is_the_noise_entropy():
    # The other centres are far away: counting them (or drawing queries around them)
    # would change the estimate by up to log n.
    d, beta = 3, 0.5
    c = np.arange(20 * d, dtype=np.float64).reshape(20, d) * 10.0
    w = np.zeros(20)
    w[7] = 1.0
    est = infoflow.mixture_entropy(c, beta, weights=w, mc_queries=20_000, rng=2)
    assert abs(est.value - infoflow.noise_entropy(d, beta)) <= 4 * est.stderr
    assert est.stderr < 0.02


def test_integer_weights_entropy_equals_duplicated_centers():
    gen = np.random.default_rng(8)
    c = gen.uniform(-1, 1, (25, 2))
    counts = gen.integers(1, 5, 25)
    weighted = infoflow.mixture_entropy(c, 0.2, weights=counts.astype(np.float64), mc_queries=40_000, rng=5)
    duplicated = infoflow.mixture_entropy(np.repeat(c, counts, axis=0), 0.2, mc_queries=40_000, rng=6)
    assert abs(weighted.value - duplicated.value) <= 4 * math.hypot(weighted.stderr, duplicated.stderr)


def test_mc_queries_sets_the_precision():
    c = np.random.default_rng(9).uniform(-1, 1, (300, 2))
    w = np.random.default_rng(10).uniform(0.0, 1.0, 300)
    for weights in (None, w):
        small = infoflow.mixture_entropy(c, 0.1, weights=weights, mc_queries=1000, rng=1)
        large = infoflow.mixture_entropy(c, 0.1, weights=weights, mc_queries=16_000, rng=2)
        # stderr ~ sigma / sqrt(queries): 16x the queries, a quarter of the error.
        assert 3.2 <= small.stderr / large.stderr <= 5.0
        assert abs(small.value - large.value) <= 4 * math.hypot(small.stderr, large.stderr)
    # Unweighted, mc_queries = n * K gives the precision of mc_samples = K.
    by_queries = infoflow.mixture_entropy(c, 0.1, mc_queries=300 * 20, rng=3)
    by_samples = infoflow.mixture_entropy(c, 0.1, mc_samples=20, rng=3)
    assert 0.8 <= by_queries.stderr / by_samples.stderr <= 1.25
    # A count that is not a multiple of n.
    odd = infoflow.mixture_entropy(c, 0.1, weights=w, mc_queries=1001, rng=4)
    assert math.isfinite(odd.value) and 0 < odd.stderr < 0.1


@pytest.mark.parametrize("weighted", [False, True])
def test_mc_queries_is_reproducible(rng, weighted):
    c = rng.uniform(-1, 1, (2, 100, 3)).astype(np.float32)
    w = _weights(rng, (2, 100), np.float32) if weighted else None
    first = infoflow.mixture_entropy(c, 0.1, weights=w, mc_queries=3000, rng=42)
    second = infoflow.mixture_entropy(c, 0.1, weights=w, mc_queries=3000, rng=42)
    np.testing.assert_array_equal(first.value, second.value)
    np.testing.assert_array_equal(first.stderr, second.stderr)
    third = infoflow.mixture_entropy(c, 0.1, weights=w, mc_queries=3000, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(third.value, first.value)
    other = infoflow.mixture_entropy(c, 0.1, weights=w, mc_queries=3000, rng=43)
    assert np.all(other.value != first.value)


# --------------------------------------------------------------------------- bad input


def _call(fn_name, c, w, **kwargs):
    """One call of fn_name on centres c with weights w (queries: the centres themselves)."""
    if fn_name == "mixture_entropy":
        return infoflow.mixture_entropy(c, 0.5, weights=w, mc_queries=64, rng=0, **kwargs)
    return getattr(infoflow, fn_name)(c, c, 0.5, weights=w, **kwargs)


FUNCTIONS = ["gaussian_lse", "log_density", "mixture_entropy"]


@pytest.mark.parametrize("fn_name", FUNCTIONS)
def test_weights_of_the_wrong_shape(rng, fn_name):
    c = rng.normal(size=(2, 6, 3))
    for shape in [(5,), (7,), (6, 1), (1, 6), (3, 6), (2, 5), (2, 6, 1), (), (12,), (1, 2, 6)]:
        with pytest.raises(ValueError, match="weights"):
            _call(fn_name, c, np.ones(shape))
    c2 = rng.normal(size=(6, 3))
    for shape in [(5,), (6, 1), (1, 6), ()]:
        with pytest.raises(ValueError, match="weights"):
            _call(fn_name, c2, np.ones(shape))


@pytest.mark.parametrize("fn_name", FUNCTIONS)
@pytest.mark.parametrize("bad", ["negative", "nan", "inf", "all_zero", "all_zero_in_one_batch"])
def test_bad_weight_values(rng, fn_name, bad):
    c = rng.normal(size=(3, 6, 2))
    w = np.ones((3, 6))
    if bad == "negative":
        w[1, 2] = -1e-3
    elif bad == "nan":
        w[2, 5] = np.nan
    elif bad == "inf":
        w[0, 0] = np.inf
    elif bad == "all_zero":
        w[:] = 0.0
    else:
        w[1] = 0.0
    with pytest.raises(ValueError, match="weights"):
        _call(fn_name, c, w)
    if bad != "all_zero_in_one_batch":  # the same values in a broadcast (n,) vector
        w1 = np.ones(6)
        w1[3] = {"negative": -1e-3, "nan": np.nan, "inf": np.inf, "all_zero": 0.0}[bad]
        if bad == "all_zero":
            w1[:] = 0.0
        with pytest.raises(ValueError, match="weights"):
            _call(fn_name, c, w1)
        with pytest.raises(ValueError, match="weights"):
            _call(fn_name, c[0], w1)


@pytest.mark.parametrize("fn_name", FUNCTIONS)
def test_weights_of_the_wrong_type(rng, fn_name):
    c = rng.normal(size=(4, 2))
    with pytest.raises(TypeError, match="weights"):
        _call(fn_name, c, [1.0, 1.0, 1.0, 1.0])
    with pytest.raises(TypeError, match="weights"):
        _call(fn_name, c, (1.0, 1.0, 1.0, 1.0))
    for dtype in (np.int64, np.int32, np.uint8, np.bool_):
        with pytest.raises(TypeError, match="weights"):
            _call(fn_name, c, np.ones(4, dtype=dtype))


@pytest.mark.parametrize("fn_name", FUNCTIONS)
def test_weights_and_centers_of_different_families(torch, rng, fn_name):
    c = rng.normal(size=(4, 2))
    with pytest.raises(TypeError):
        _call(fn_name, torch.from_numpy(c), np.ones(4))
    with pytest.raises(TypeError):
        _call(fn_name, c, torch.ones(4, dtype=torch.float64))
    with pytest.raises(TypeError, match="weights"):
        _call(fn_name, torch.from_numpy(c), torch.ones(4, dtype=torch.int64))


@pytest.mark.parametrize("fn_name", FUNCTIONS)
def test_weight_dtype_conversions(rng, fn_name):
    def assert_same_call(c, weights, converted):
        """The call with ``weights`` is the call with them ``converted`` to c's dtype, to the bit."""
        out = _call(fn_name, c, weights)
        expected = _call(fn_name, c, converted)
        if fn_name == "mixture_entropy":
            assert out.value == expected.value and out.stderr == expected.stderr
        else:
            assert out.dtype == c.dtype
            np.testing.assert_array_equal(out, expected)

    c32 = rng.normal(size=(3, 2)).astype(np.float32)
    exact = np.array([1.0, 2.0, 0.5])  # float64 values that float32 holds exactly
    assert_same_call(c32, exact, exact.astype(np.float32))
    with pytest.raises(TypeError, match="weights"):
        _call(fn_name, c32, np.array([0.1, 1.0, 1.0]))  # 0.1 is not a float32
    with pytest.raises(TypeError, match="weights"):
        _call(fn_name, c32, np.array([1.0, 1e300, 1.0]))  # overflows float32
    # float32 weights with float64 centres: every float32 is a float64.
    c64 = c32.astype(np.float64)
    w32 = np.array([0.1, 3.0, 0.7], dtype=np.float32)
    assert_same_call(c64, w32, w32.astype(np.float64))


def test_mc_queries_and_mc_samples_are_exclusive(rng):
    c = rng.normal(size=(10, 2))
    with pytest.raises(ValueError):
        infoflow.mixture_entropy(c, 0.5, mc_samples=4, mc_queries=40, rng=0)
    with pytest.raises(ValueError):
        infoflow.mixture_entropy(c, 0.5, weights=np.ones(10), mc_samples=4, mc_queries=40, rng=0)
    with pytest.raises(ValueError, match="mc_queries"):
        infoflow.mixture_entropy(c, 0.5, mc_queries=0, rng=0)
