"""mixture_entropy and mixture_entropy_bounds against quadrature, closed forms and limits."""

import math

import numpy as np
import pytest
from reference import entropy_quadrature_1d, kt_bounds_reference

import infoflow
from infoflow import control_variate, queries


@pytest.mark.parametrize(
    "centers, beta",
    [
        (np.array([0.0]), 0.3),
        (np.array([-1.0, 1.0]), 0.5),
        (np.array([-3.0, -1.0, 1.0, 3.0]), 0.4),
        (np.tanh(np.random.default_rng(5).normal(size=40)), 0.05),
        (np.random.default_rng(6).uniform(-1, 1, 300), 0.02),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_1d_entropy_matches_quadrature(centers, beta, dtype):
    exact = entropy_quadrature_1d(centers, beta)
    est = infoflow.mixture_entropy(centers.reshape(-1, 1).astype(dtype), beta, mc_samples=2000, rng=1)
    assert est.unit == "nats" and 0 < est.stderr < 0.05
    assert abs(est.value - exact) <= 4 * est.stderr


def test_stderr_is_calibrated():
    """The spread of independent estimates matches the reported standard error."""
    centers = np.random.default_rng(7).uniform(-1, 1, (200, 2))
    runs = [infoflow.mixture_entropy(centers, 0.1, mc_samples=10, rng=seed) for seed in range(40)]
    values = np.array([r.value for r in runs])
    reported = np.mean([r.stderr for r in runs])
    # Sample std of 40 draws: within ~30% of the truth with high probability; the reported
    # stderr may overstate (never understate) the error, see the docstring.
    assert 0.6 * reported <= values.std(ddof=1) <= 1.3 * reported


def test_single_center_and_identical_centers_give_noise_entropy():
    beta, d = 0.2, 3
    h_z = 0.5 * d * math.log(2 * math.pi * math.e * beta**2)
    assert infoflow.noise_entropy(d, beta) == pytest.approx(h_z, rel=1e-15)
    for centers in (np.ones((1, d)), np.full((50, d), 0.3)):
        est = infoflow.mixture_entropy(centers, beta, rng=0)
        assert abs(est.value - h_z) <= 4 * est.stderr
        lower, upper = infoflow.mixture_entropy_bounds(centers, beta)
        assert lower == pytest.approx(h_z, abs=1e-12) and upper == pytest.approx(h_z, abs=1e-12)


def test_separated_points_reach_log_n():
    # beta -> 0 with distinct points: h -> h_Z + ln n (each bump carries 1/n of the mass).
    centers = np.arange(64, dtype=np.float64).reshape(-1, 2)  # 32 points >= 1 apart
    beta = 0.01
    ceiling = infoflow.noise_entropy(2, beta) + math.log(32)
    lower, upper = infoflow.mixture_entropy_bounds(centers, beta)
    assert lower == pytest.approx(ceiling, abs=1e-9) and upper == pytest.approx(ceiling, abs=1e-9)
    est = infoflow.mixture_entropy(centers, beta, rng=3)
    assert abs(est.value - ceiling) <= 4 * est.stderr


@pytest.mark.parametrize("beta", [0.02, 0.1, 0.5, 2.0])
def test_bounds_match_reference_and_bracket_the_estimate(beta):
    rng = np.random.default_rng(11)
    centers = np.tanh(rng.normal(size=(400, 3)))
    lower, upper = infoflow.mixture_entropy_bounds(centers, beta)
    ref_lower, ref_upper = kt_bounds_reference(centers, beta)
    assert lower == pytest.approx(ref_lower, rel=1e-12, abs=1e-12)
    assert upper == pytest.approx(ref_upper, rel=1e-12, abs=1e-12)
    h_z = infoflow.noise_entropy(3, beta)
    assert h_z - 1e-12 <= lower <= upper <= h_z + math.log(400) + 1e-12
    est = infoflow.mixture_entropy(centers, beta, rng=4)
    assert lower - 4 * est.stderr <= est.value <= upper + 4 * est.stderr


def test_bounds_float32_close_to_float64():
    centers = np.tanh(np.random.default_rng(12).normal(size=(300, 10)))
    b64 = infoflow.mixture_entropy_bounds(centers, 0.05)
    b32 = infoflow.mixture_entropy_bounds(centers.astype(np.float32), 0.05)
    np.testing.assert_allclose(b32, b64, rtol=1e-5)


def test_base_converts_units():
    centers = np.random.default_rng(8).uniform(-1, 1, (100, 2))
    nats = infoflow.mixture_entropy(centers, 0.1, rng=5)
    bits = infoflow.mixture_entropy(centers, 0.1, rng=5, base=2)
    assert bits.unit == "bits"
    assert bits.value == pytest.approx(nats.value / math.log(2), rel=1e-14)
    assert bits.stderr == pytest.approx(nats.stderr / math.log(2), rel=1e-14)
    b_nats = infoflow.mixture_entropy_bounds(centers, 0.1)
    b_bits = infoflow.mixture_entropy_bounds(centers, 0.1, base=2)
    np.testing.assert_allclose(np.array(b_bits) * math.log(2), b_nats, rtol=1e-14)
    assert infoflow.noise_entropy(2, 0.1, base=2) == pytest.approx(infoflow.noise_entropy(2, 0.1) / math.log(2))


def test_rng_reproducible():
    centers = np.random.default_rng(9).uniform(-1, 1, (100, 3))
    a = infoflow.mixture_entropy(centers, 0.2, rng=123)
    b = infoflow.mixture_entropy(centers, 0.2, rng=np.random.default_rng(123))
    c = infoflow.mixture_entropy(centers, 0.2, rng=124)
    assert a == b
    assert a.value != c.value


@pytest.mark.parametrize("weighted", [False, True])
def test_same_seed_same_value_whatever_the_chunking(monkeypatch, weighted):
    centers = np.random.default_rng(10).uniform(-1, 1, (3, 50, 4))
    weights = np.random.default_rng(11).integers(0, 4, (3, 50)).astype(float) + np.eye(50)[0] if weighted else None
    whole = infoflow.mixture_entropy(centers, 0.3, weights=weights, mc_samples=8, rng=1)
    monkeypatch.setattr(queries, "QUERY_CHUNK_ELEMENTS", 37)  # many small chunks
    chunked = infoflow.mixture_entropy(centers, 0.3, weights=weights, mc_samples=8, rng=1)
    np.testing.assert_allclose(chunked.value, whole.value, rtol=1e-13)
    np.testing.assert_allclose(chunked.stderr, whole.stderr, rtol=1e-10)


@pytest.mark.parametrize("options", [{}, {"control_variate": False}, {"mc_samples": 3}, {"mc_queries": 300},
                                     {"weights": True}, {"batch": 3}],
                         ids=["default", "plain", "mc_samples", "subset", "weighted", "batched"])
def test_float32_and_float64_data_give_the_same_estimate_for_the_same_seed(options):
    """The Monte Carlo draws do not depend on the dtype: float32 data and the same values
    in float64 give the same estimate up to float32 rounding, which the estimate allows
    for as 8 units in the last place of float32 (``control_variate.ROUNDING_ULPS``).  Before,
    float32 drew its normals with another algorithm: -0.5234 against -0.5111 nats for
    the README's samples without the control variate, 1e5 float32 ulps apart."""
    options = dict(options)
    rng = np.random.default_rng(0)
    batch = options.pop("batch", None)
    shape = (600, 4) if batch is None else (batch, 200, 4)  # overlapping at beta = 0.3: every draw counts
    centers = np.tanh(rng.normal(size=shape)).astype(np.float32)  # float64 below holds these values exactly
    if options.pop("weights", False):
        options["weights"] = rng.integers(1, 4, shape[:-1]).astype(np.float32)
    single = infoflow.mixture_entropy(centers, 0.3, rng=0, **options)
    if "weights" in options:
        options["weights"] = options["weights"].astype(np.float64)
    double = infoflow.mixture_entropy(centers.astype(np.float64), 0.3, rng=0, **options)
    tolerance = control_variate.ROUNDING_ULPS * np.finfo(np.float32).eps * np.maximum(1.0, np.abs(double.value))
    assert np.all(np.abs(single.value - double.value) <= tolerance)


def test_weighted_centers_are_picked_as_by_one_draw_ahead_of_the_noise(monkeypatch):
    """The weighted design picks each query's centre with uniforms drawn as one (batch,
    N) array before any noise; they are drawn chunk by chunk (a budget of 2**31 queries
    would need 16 GiB at once), and the stream goes on after them exactly as before."""
    batch, n, count = 3, 40, 500
    weights = np.random.default_rng(12).integers(0, 5, (batch, n)).astype(float)
    weights[:, 7] = 1.0
    monkeypatch.setattr(queries, "QUERY_CHUNK_ELEMENTS", 97)  # pieces of 97 rows (d = 1)
    generator = np.random.default_rng(4)
    plan = queries.query_plan(n, weights, None, count, generator, batch)
    owners = np.empty((batch, count), dtype=np.int64)
    for b0, b1, r0, r1 in queries.chunks(batch, count, 1):
        owners[b0:b1, r0:r1] = plan.owners(b0, b1, r0, r1)

    reference = np.random.default_rng(4)
    cdf = np.cumsum(weights, axis=-1)
    u = reference.random((batch, count)) * cdf[:, -1:]
    expected = np.stack([np.searchsorted(cdf[b], u[b], side="right") for b in range(batch)])
    np.testing.assert_array_equal(owners, expected)
    assert generator.standard_normal() == reference.standard_normal()


def test_batched_estimates(rng):
    centers = rng.uniform(-1, 1, (2, 3, 60, 2))
    est = infoflow.mixture_entropy(centers, 0.15, mc_samples=50, rng=2)
    assert np.shape(est.value) == (2, 3) and np.shape(est.stderr) == (2, 3)
    bounds = infoflow.mixture_entropy_bounds(centers, 0.15)
    assert np.shape(bounds.lower) == (2, 3)
    for idx in np.ndindex(2, 3):
        single = infoflow.mixture_entropy_bounds(centers[idx], 0.15)
        assert bounds.lower[idx] == pytest.approx(single.lower, rel=1e-13)
        assert bounds.upper[idx] == pytest.approx(single.upper, rel=1e-13)
        assert bounds.lower[idx] - 4 * est.stderr[idx] <= est.value[idx] <= bounds.upper[idx] + 4 * est.stderr[idx]
    with pytest.raises(TypeError, match="batched"):
        float(est)


def test_torch_input(torch):
    centers = torch.from_numpy(np.random.default_rng(13).uniform(-1, 1, (80, 2)))
    est_t = infoflow.mixture_entropy(centers, 0.1, rng=6)
    est_n = infoflow.mixture_entropy(centers.numpy(), 0.1, rng=6)
    assert est_t == est_n  # same seed, same draws, same kernel
    bounds = infoflow.mixture_entropy_bounds(centers.float(), 0.1)
    assert isinstance(bounds.lower, float)


def test_default_mc_samples_and_progress(capsys):
    assert infoflow.default_mc_samples(4096) == 16
    assert infoflow.default_mc_samples(10**6) == 1
    centers = np.random.default_rng(14).uniform(-1, 1, (4096, 2))
    est = infoflow.mixture_entropy(centers, 0.05, rng=0, progress=True)
    assert np.isfinite(est.value) and est.stderr < 0.02


def test_estimate_behaves_like_a_float():
    a = infoflow.Estimate(2.0, 0.3)
    b = infoflow.Estimate(0.5, 0.4)
    assert float(a) == 2.0 and f"{a:.2f}" == "2.00 ± 0.30 nats"
    diff = a - b
    assert diff.value == 1.5 and diff.stderr == pytest.approx(0.5)
    assert (a + 1).value == 3.0 and (2 * a).stderr == pytest.approx(0.6)
    assert math.isclose(a, 2.0) and np.asarray(a) == 2.0
    with pytest.raises(ValueError, match="bits"):
        _ = a + infoflow.Estimate(1.0, 0.1, "bits")
    assert a.to_dict() == {"value": 2.0, "stderr": 0.3, "unit": "nats"}
