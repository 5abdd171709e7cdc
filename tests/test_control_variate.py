"""The cross-fitted control variate of mixture_entropy (control_variate=True, the default).

C_r = |z_r|^2/2 - d/2 - ln(w_J/W) - H_w has mean 0; each half of the queries (even and
odd index) is corrected with the coefficient fitted on the other half.  Checked against
independent values only: 1-D quadrature (tests/reference.py), the closed form h_Z + H_w
of separated components, a numpy re-computation of the estimator from the same draws, and
the spread of independent replicates (batch rows are independent mixtures' draws).
"""

import math

import numpy as np
import pytest
from reference import DTYPE_TOL, weighted_entropy_quadrature_1d, weighted_log_density_reference

import infoflow
from infoflow import control_variate, queries


def _replicates(centers_1d, weights, beta, rows, **kwargs):
    """``rows`` independent estimates of one 1-D mixture, as one batched call."""
    n = len(centers_1d)
    c = np.ascontiguousarray(np.broadcast_to(np.reshape(centers_1d, (1, n, 1)), (rows, n, 1)))
    w = None if weights is None else np.ascontiguousarray(np.broadcast_to(weights, (rows, n)))
    return infoflow.mixture_entropy(c, beta, weights=w, **kwargs)


def _normalised_entropy(w):
    p = np.asarray(w, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


CASES = {
    "overlapping": (np.arange(8.0), None),
    "partially overlapping": (3.0 * np.arange(8.0), None),
    "nearly separated": (5.0 * np.arange(6.0), None),
    "weighted": (np.array([0.0, 1.0, 5.0]), np.array([1.0, 5.0, 0.3])),
    "weighted, a zero weight": (np.array([0.0, 1.0, 2.5, 3.0, 7.0]), np.array([2.0, 0.0, 0.5, 1.0, 4.0])),
}


# --------------------------------------------------------------------------- unbiased


@pytest.mark.parametrize("name", list(CASES))
def test_mean_of_many_estimates_is_the_quadrature_value(name):
    centers, weights = CASES[name]
    beta, rows = 1.0, 400
    exact = weighted_entropy_quadrature_1d(centers, np.ones(len(centers)) if weights is None else weights, beta)
    est = _replicates(centers, weights, beta, rows, mc_samples=16, rng=1)
    values = est.value
    # The spread of the replicates, not the reported stderr: this tests the value alone.
    assert abs(values.mean() - exact) <= 4 * values.std(ddof=1) / math.sqrt(rows)


def _in_sample_estimates(centers, weights, beta, n_queries, rows, rng):
    """The control variate with its coefficient fitted on the same queries (numpy, float64)."""
    p = weights / weights.sum()
    owner = rng.choice(len(centers), size=(rows, n_queries), p=p)
    z = rng.standard_normal((rows, n_queries))
    q = (centers[owner] + beta * z).reshape(-1, 1)
    t = -weighted_log_density_reference(q, centers.reshape(-1, 1), beta, weights).reshape(rows, n_queries)
    c = 0.5 * z**2 - 0.5 - np.log(p[owner]) - _normalised_entropy(weights)
    dt, dc = t - t.mean(1, keepdims=True), c - c.mean(1, keepdims=True)
    b = (dt * dc).sum(1) / (dc * dc).sum(1)
    return t.mean(1) - b * c.mean(1)


def test_cross_fit_is_unbiased_with_16_queries_where_an_in_sample_fit_is_not(monkeypatch):
    """N = 16 (8 per half, the fewest that use the control variate in d >= 4; forced in
    d = 1 here): the in-sample coefficient is biased, the cross-fitted one is not."""
    monkeypatch.setattr(control_variate, "_MIN_HALF_TIMES_D", 0)
    centers, weights, beta, n_queries = np.array([0.0, 4.0]), np.array([1.0, 9.0]), 1.0, 16
    exact = weighted_entropy_quadrature_1d(centers, weights, beta)
    in_sample = _in_sample_estimates(centers, weights, beta, n_queries, 20_000, np.random.default_rng(0))
    assert abs(in_sample.mean() - exact) > 8 * in_sample.std(ddof=1) / math.sqrt(in_sample.size)
    rows = 4000
    values = _replicates(centers, weights, beta, rows, mc_queries=n_queries, rng=2).value
    assert abs(values.mean() - exact) <= 4 * values.std(ddof=1) / math.sqrt(rows)
    # ... and the test can tell: the in-sample bias is many standard errors of this mean.
    assert abs(in_sample.mean() - exact) > 6 * values.std(ddof=1) / math.sqrt(rows)


@pytest.mark.parametrize("d, spread, n_queries", [(1, 5.0, 64), (2, 5.0, 32), (10, 1.0, 16)])
def test_small_budgets_are_no_worse_than_the_plain_estimator(d, spread, n_queries):
    """At the smallest budgets that use the control variate (per dimension), the spread of
    4000 independent estimates is at most 1.1x that of the plain estimator (16 Gaussian
    centres, partly overlapping), and the two agree in mean."""
    c = np.random.default_rng(0).normal(0.0, spread, (16, d))
    stack = np.ascontiguousarray(np.broadcast_to(c, (4000, 16, d)))
    with_cv = infoflow.mixture_entropy(stack, 1.0, mc_queries=n_queries, rng=1)
    plain = infoflow.mixture_entropy(stack, 1.0, mc_queries=n_queries, rng=2, control_variate=False)
    assert with_cv.value.std() <= 1.1 * plain.value.std()
    # The two means are independent: 4 standard errors of their difference.
    se_difference = math.hypot(with_cv.value.std(), plain.value.std()) / math.sqrt(4000)
    assert abs(with_cv.value.mean() - plain.value.mean()) <= 4 * se_difference


@pytest.mark.parametrize("n_queries", [1, 2, 3, 7, 15, 19])
@pytest.mark.parametrize("weighted", [False, True])
def test_fewer_queries_than_the_threshold_give_the_plain_estimator(n_queries, weighted):
    c = np.random.default_rng(3).uniform(-1, 1, (3, 20, 2))
    w = np.random.default_rng(4).uniform(0.1, 1.0, (3, 20)) if weighted else None
    with_cv = infoflow.mixture_entropy(c, 0.3, weights=w, mc_queries=n_queries, rng=5)
    plain = infoflow.mixture_entropy(c, 0.3, weights=w, mc_queries=n_queries, rng=5, control_variate=False)
    np.testing.assert_array_equal(with_cv.value, plain.value)
    np.testing.assert_array_equal(with_cv.stderr, plain.stderr)  # NaN for N = 1
    assert np.all(np.isnan(with_cv.stderr)) == (n_queries == 1)


# --------------------------------------------------------------------------- calibration

COVERAGE_CASES = [
    pytest.param(np.random.default_rng(3).uniform(-0.05, 0.05, 8), None, id="dense"),
    pytest.param(np.arange(8.0), None, id="overlapping"),
    pytest.param(4.0 * np.arange(8.0), None, id="partially overlapping"),
    pytest.param(np.array([0.0, 1.0, 5.0]), np.array([1.0, 5.0, 0.3]), id="weighted"),
]

# Components 6 to 12 beta apart: the residual ln P(J | q) is 0 but for rare queries between
# components, which most runs never see.  The stderr counts one such event more than seen
# (see control_variate._cross_fitted), so it covers at least nominally; without that it covered
# 0.07 to 0.35 of the runs here.
RARE_EVENT_CASES = [pytest.param(spacing * np.arange(8.0), n_queries, id=f"{spacing:g} beta apart, N={n_queries}")
                    for spacing, n_queries in ((6.0, 64), (8.0, 64), (8.0, 2048), (12.0, 64), (12.0, 2048))]
# At 6 beta and N = 2048 the residual's tail is too heavy for the correction: the variance
# comes from queries 3.5 to 4.5 beta out, seen a few times per run (coverage 0.86 measured,
# documented in the Notes of mixture_entropy).
RARE_EVENT_CASES.append(pytest.param(6.0 * np.arange(8.0), 2048, id="6 beta apart, N=2048",
                                     marks=pytest.mark.xfail(strict=True, reason="known under-coverage at 6 beta")))


@pytest.mark.parametrize("centers, n_queries", RARE_EVENT_CASES)
def test_stderr_covers_rare_events(centers, n_queries):
    beta, rows = 1.0, 400
    unit = np.ones(len(centers))
    exact = weighted_entropy_quadrature_1d(centers, unit, beta)
    est = _replicates(centers, unit, beta, rows, mc_queries=n_queries, rng=11)
    covered = np.mean(np.abs(est.value - exact) <= 1.96 * est.stderr)
    assert covered >= 0.93, covered
    if n_queries >= 2048:
        plain = _replicates(centers, unit, beta, rows, mc_queries=n_queries, rng=11, control_variate=False)
        assert np.median(est.stderr) < 0.1 * np.median(plain.stderr)


@pytest.mark.parametrize("centers, weights", COVERAGE_CASES)
def test_stderr_coverage(centers, weights):
    """Two-sided for independent draws (weights, here all 1 when not given: the iid
    design); one-sided for the default stratified design, whose stderr overstates the
    error where the centres' mean terms differ (documented)."""
    beta, rows = 1.0, 400
    unit = np.ones(len(centers))
    exact = weighted_entropy_quadrature_1d(centers, unit if weights is None else weights, beta)
    est = _replicates(centers, unit if weights is None else weights, beta, rows, mc_samples=256, rng=7)
    z = (est.value - exact) / est.stderr
    covered = np.mean(np.abs(z) <= 1.96)
    assert 0.91 <= covered <= 0.98, covered  # binomial(400, 0.95): 0.95 +- 0.011 sd
    assert 0.85 <= z.std(ddof=1) <= 1.15
    if weights is None:
        stratified = _replicates(centers, None, beta, rows, mc_samples=256, rng=8)
        z = (stratified.value - exact) / stratified.stderr
        assert np.mean(np.abs(z) <= 1.96) >= 0.91
        assert 0.75 <= z.std(ddof=1) <= 1.15


# --------------------------------------------------------------------------- variance reduction


def _grid_10d(beta):
    """4096 centres on a 4^6 grid spaced 20 beta, in d = 10: overlaps of order exp(-50)."""
    grid = np.indices((4,) * 6).reshape(6, -1).T
    centers = np.zeros((4096, 10))
    centers[:, :6] = 20.0 * beta * grid
    return centers


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_separated_stderr_collapses_and_value_is_exact(dtype):
    beta = 0.05
    centers = _grid_10d(beta).astype(dtype)
    exact = math.log(4096) + infoflow.noise_entropy(10, beta)
    with_cv = infoflow.mixture_entropy(centers, beta, rng=0)
    plain = infoflow.mixture_entropy(centers, beta, rng=0, control_variate=False)
    assert 0 < with_cv.stderr and 100 * with_cv.stderr <= plain.stderr
    assert abs(plain.value - exact) <= 4 * plain.stderr
    # The kernel's float contract on top of the 8 ulps of the value that the stderr allows for.
    assert abs(with_cv.value - exact) <= 4 * with_cv.stderr + DTYPE_TOL[dtype] * abs(exact)


def test_dense_stderr_is_no_worse():
    beta = 0.05
    centers = np.random.default_rng(8).uniform(-0.05 * beta, 0.05 * beta, (4096, 10))  # all within 0.1 beta
    with_cv = infoflow.mixture_entropy(centers, beta, rng=1)
    plain = infoflow.mixture_entropy(centers, beta, rng=1, control_variate=False)
    assert with_cv.stderr <= 1.1 * plain.stderr
    assert abs(with_cv.value - plain.value) <= 4 * plain.stderr


def _grid_weights(seed):
    w = np.exp(np.random.default_rng(seed).uniform(-3, 3, 4096))
    w[::10] = 0.0
    return w


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_separated_value_is_noise_plus_weight_entropy(dtype):
    beta = 0.05
    centers, w = _grid_10d(beta).astype(dtype), _grid_weights(9).astype(dtype)
    exact = infoflow.noise_entropy(10, beta) + _normalised_entropy(w)
    assert exact < math.log(4096) + infoflow.noise_entropy(10, beta) - 0.3  # the weights matter
    with_cv = infoflow.mixture_entropy(centers, beta, weights=w, rng=2)
    plain = infoflow.mixture_entropy(centers, beta, weights=w, rng=2, control_variate=False)
    assert 0 < with_cv.stderr and 100 * with_cv.stderr <= plain.stderr
    assert abs(plain.value - exact) <= 4 * plain.stderr
    assert abs(with_cv.value - exact) <= 4 * with_cv.stderr + DTYPE_TOL[dtype] * abs(exact)


def test_weighted_dense_stderr_is_no_worse():
    beta = 0.05
    centers = np.random.default_rng(10).uniform(-0.05 * beta, 0.05 * beta, (4096, 10))
    w = _grid_weights(11)
    with_cv = infoflow.mixture_entropy(centers, beta, weights=w, rng=3)
    plain = infoflow.mixture_entropy(centers, beta, weights=w, rng=3, control_variate=False)
    assert with_cv.stderr <= 1.1 * plain.stderr


# --------------------------------------------------------------------------- the estimator itself


def _draws(seed, centers, beta, weights, k, n_queries):
    """Queries, owners and noise exactly as mixture_entropy draws them for one chunk:
    weighted, the owners (inverse CDF of uniforms), then the noise, batch-major."""
    gen = np.random.default_rng(seed)
    batch, n, d = centers.shape
    if weights is None:
        owner = np.broadcast_to(np.arange(n * k) // k, (batch, n * k))
    else:
        cdf = np.cumsum(weights, axis=-1)
        u = gen.random((batch, n_queries)) * cdf[:, -1:]
        owner = np.stack([np.searchsorted(cdf[b], u[b], side="right") for b in range(batch)])
    z = gen.standard_normal((batch, owner.shape[1], d))
    q = np.take_along_axis(centers, owner[..., None], axis=1) + beta * z
    return q, owner, z


def _reference_estimate(t, c, baseline):
    """The documented cross-fitted estimator, written out per batch row, with the
    continuity correction of the variance: k queries of a half with
    |T - C - baseline| = |ln P(J | q)| > 0.35 scale its variance by (k + 1) / k, and none
    adds one residual of ln 2."""
    values, errors = [], []
    for t_row, c_row, base in zip(t, c, baseline):
        halves = [(t_row[0::2], c_row[0::2]), (t_row[1::2], c_row[1::2])]
        slopes = [np.clip(np.cov(th, ch)[0, 1] / np.var(ch, ddof=1), 0.0, 1.5) for th, ch in halves]
        total, spread = 0.0, 0.0
        for (th, ch), b in zip(halves, slopes[::-1]):
            adjusted = th - b * ch
            total += adjusted.sum()
            events = np.sum(np.abs(th - ch - base) > 0.35)
            residual_ss = adjusted.var(ddof=0) * len(th)
            residual_ss = residual_ss * (events + 1) / events if events else residual_ss + math.log(2) ** 2
            spread += len(th) * residual_ss / (len(th) - 1)
        values.append(total / t_row.size)
        errors.append(math.sqrt(spread) / t_row.size)
    return np.array(values), np.array(errors)


@pytest.mark.parametrize("weighted", [False, True])
def test_matches_a_numpy_recomputation_from_the_same_draws(weighted):
    gen = np.random.default_rng(12)
    batch, n, d, beta = 2, 7, 3, 0.4
    centers = gen.uniform(-1, 1, (batch, n, d))
    w = gen.uniform(0.0, 2.0, (batch, n)) if weighted else None
    if weighted:
        w[:, 2] = 0.0
    k, n_queries = (None, 45) if weighted else (6, None)  # 45: odd, halves of 23 and 22
    q, owner, z = _draws(21, centers, beta, w, k, n_queries)
    unit = np.ones((batch, n)) if w is None else w
    t = -weighted_log_density_reference(q, centers, beta, unit)
    c = 0.5 * (z**2).sum(-1) - 0.5 * d
    if weighted:
        p = w / w.sum(-1, keepdims=True)
        c -= np.log(np.take_along_axis(p, owner, axis=1))
        c -= np.array([_normalised_entropy(row) for row in w])[:, None]
    h_z = 0.5 * d * math.log(2 * math.pi * math.e * beta**2)
    baseline = h_z + (np.array([_normalised_entropy(row) for row in w]) if weighted else np.full(batch, math.log(n)))
    expected_value, expected_stderr = _reference_estimate(t, c, baseline)
    est = infoflow.mixture_entropy(centers, beta, weights=w, mc_samples=k, mc_queries=n_queries,
                                   rng=np.random.default_rng(21))
    np.testing.assert_allclose(est.value, expected_value, rtol=1e-10)
    np.testing.assert_allclose(est.stderr, expected_stderr, rtol=1e-8)
    # control_variate=False is the plain mean and sd / sqrt(N) of the same terms.
    plain = infoflow.mixture_entropy(centers, beta, weights=w, mc_samples=k, mc_queries=n_queries,
                                     rng=np.random.default_rng(21), control_variate=False)
    np.testing.assert_allclose(plain.value, t.mean(-1), rtol=1e-10)
    np.testing.assert_allclose(plain.stderr, t.std(-1, ddof=1) / math.sqrt(t.shape[1]), rtol=1e-8)


def test_weighted_same_value_whatever_the_chunking(monkeypatch):
    gen = np.random.default_rng(13)
    centers = gen.uniform(-1, 1, (3, 40, 4))
    w = gen.uniform(0.0, 1.0, (3, 40))
    whole = infoflow.mixture_entropy(centers, 0.3, weights=w, mc_queries=301, rng=1)
    monkeypatch.setattr(queries, "QUERY_CHUNK_ELEMENTS", 37)  # chunks of 9 queries: odd offsets r0
    chunked = infoflow.mixture_entropy(centers, 0.3, weights=w, mc_queries=301, rng=1)
    np.testing.assert_allclose(chunked.value, whole.value, rtol=1e-13)
    np.testing.assert_allclose(chunked.stderr, whole.stderr, rtol=1e-10)


# --------------------------------------------------------------------------- the SZT network's first layer


@pytest.mark.slow
@pytest.mark.parametrize("beta, dtype", [(0.005, np.float32), (0.005, np.float64), (0.03, np.float64)])
def test_szt_first_layer_stderr_is_small_and_covers(beta, dtype):
    """The first noisy layer of the SZT network (4096 distinct 12-bit inputs through a
    12 -> 10 tanh layer, the package's default initialisation with seed 0): at the default
    budget the stderr of h(T) (that of I(X;T), whose conditional term is exact) is over 10x
    smaller than without the control variate, and 20 independent estimates scatter around
    a reference from 8x the queries within their stderr.  At beta = 0.005 (the paper's)
    the images are fully separated; at 0.03 some overlap.  In float32, as the network
    gives them, the rounding allowance sets the stderr's floor (about 3e-5)."""
    torch = pytest.importorskip("torch")
    from infoflow.datasets import szt
    from infoflow.nn import NoisyMLP

    x, _ = szt()
    torch.manual_seed(0)
    net = NoisyMLP([12, 10, 7, 5, 4, 3, 2])
    with torch.no_grad():
        s = torch.tanh(net.linear1(torch.from_numpy(x))).numpy().astype(dtype)  # float32: the pipeline's
    plain = infoflow.mixture_entropy(s, beta, rng=0, control_variate=False)
    reference = infoflow.mixture_entropy(s, beta, mc_queries=8 * 65536, rng=999)
    runs = [infoflow.mixture_entropy(s, beta, rng=seed) for seed in range(20)]
    values = np.array([run.value for run in runs])
    stderrs = np.array([run.stderr for run in runs])
    assert np.median(stderrs) * 10 <= plain.stderr
    z = (values - reference.value) / np.hypot(stderrs, reference.stderr)
    assert np.sum(np.abs(z) > 1.96) <= 2, z
    assert values.std(ddof=1) <= 2 * np.median(stderrs)
    # Nearly all the mass is one component per query: h is h_Z + ln 4096 to within the stderr.
    h_top = infoflow.noise_entropy(10, beta) + np.log(4096)
    assert reference.value <= h_top + 4 * reference.stderr
