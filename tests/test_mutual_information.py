"""mi_xt and mi_yt against quadrature, exact limits and each other.

Every exact value here is computed independently of the package: 1-D mixture entropies
by adaptive quadrature (tests/reference.py), h_Z by its closed form, and limits (ln m,
0) from the construction of the data.
"""

import math

import numpy as np
import pytest
from reference import entropy_quadrature_1d

import infoflow
from infoflow import layer_terms
from infoflow.control_variate import ROUNDING_ULPS
from infoflow.mutual_information import mi_xt, mi_yt

X4 = np.array([-3.0, -1.0, 1.0, 3.0])  # X uniform on 4 inputs


def h_z(d, beta):
    return 0.5 * d * math.log(2 * math.pi * math.e * beta**2)


def quad_mi_xt(samples, beta):
    """Exact I(X;T) for 1-D samples of shape (m, R): quadrature of every mixture entropy."""
    s = np.asarray(samples, dtype=np.float64)
    if s.shape[1] == 1:
        return entropy_quadrature_1d(s.ravel(), beta) - h_z(1, beta)
    return entropy_quadrature_1d(s.ravel(), beta) - np.mean([entropy_quadrature_1d(row, beta) for row in s])


def quad_mi_yt(samples, labels, beta):
    """Exact I(Y;T) for 1-D samples of shape (m, R) with the empirical label law."""
    s = np.asarray(samples, dtype=np.float64)
    classes, counts = np.unique(labels, return_counts=True)
    conditional = sum(
        count / len(labels) * entropy_quadrature_1d(s[labels == c].ravel(), beta)
        for c, count in zip(classes, counts)
    )
    return entropy_quadrature_1d(s.ravel(), beta) - conditional


def within(est, exact, n_sigma=4.0):
    return abs(est.value - exact) <= n_sigma * est.stderr


# The R > 1 1-D example: S | X = x_i uniform over three points around tanh(x_i / 2),
# with spreads that differ between inputs so that neighbouring mixtures overlap.
OFFSETS = np.array([[-0.1, 0.0, 0.12], [-0.3, 0.05, 0.2], [-0.05, 0.0, 0.05], [-0.2, -0.1, 0.3]])
S_R3 = np.tanh(X4 / 2)[:, None] + OFFSETS  # (m=4, R=3)
BETA_R3 = 0.15


# ----------------------------------------------------------------------------- I(X;T)

@pytest.mark.parametrize(
    "w, beta, regime",
    [
        (0.05, 0.5, "nearly coinciding points: I near 0"),
        (3.0, 0.1, "two tight pairs: I near ln 2"),
        (0.5, 0.05, "separated: I near ln 4"),
        (0.5, 0.4, "overlapping"),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_deterministic_layer_matches_quadrature(w, beta, regime, dtype):
    s = np.tanh(w * X4)
    exact = quad_mi_xt(s[:, None], beta)
    assert -1e-9 <= exact <= math.log(4) + 1e-9
    est = mi_xt(s.reshape(4, 1, 1).astype(dtype), beta, rng=1)
    assert est.unit == "nats" and 0 < est.stderr < 0.006
    assert within(est, exact), (regime, est, exact)


def test_regimes_are_what_they_claim():
    """Guards the parametrisation above: the cases do span I ~ 0, ln 2 and ln 4."""
    assert quad_mi_xt(np.tanh(0.05 * X4)[:, None], 0.5) < 0.03
    assert quad_mi_xt(np.tanh(3.0 * X4)[:, None], 0.1) == pytest.approx(math.log(2), abs=2e-3)
    assert quad_mi_xt(np.tanh(0.5 * X4)[:, None], 0.05) == pytest.approx(math.log(4), abs=1e-4)


def test_deterministic_layer_uses_the_exact_noise_entropy(monkeypatch):
    """With R = 1 only h(T) is estimated: stderr is exactly h(T)'s and one call is made."""
    calls = []
    real = layer_terms.entropy_nats

    def spy(centers, *args, **kwargs):
        calls.append(centers.shape)
        return real(centers, *args, **kwargs)

    monkeypatch.setattr(layer_terms, "entropy_nats", spy)
    s = np.tanh(0.5 * X4).reshape(4, 1, 1)
    est = mi_xt(s, 0.3, rng=7)
    h_t = infoflow.mixture_entropy(s.reshape(1, 4, 1), 0.3, mc_samples=infoflow.default_mc_samples(4), rng=7)
    assert calls == [(1, 4, 1)]
    assert est.value == pytest.approx(h_t.value[0] - h_z(1, 0.3), abs=1e-12)
    assert est.stderr == pytest.approx(h_t.stderr[0], rel=1e-12)


@pytest.mark.parametrize("d", [2, 5])
def test_deterministic_layer_limits_in_higher_dimension(d):
    """R = 1 in d dimensions: separated points give ln m, coinciding points give 0."""
    m, beta = 6, 0.4
    separated = np.zeros((m, 1, d))
    separated[:, 0, 0] = 50.0 * np.arange(m)  # 50 apart along the first axis, beta = 0.4
    separated[:, 0, -1] = 3.0 * (np.arange(m) % 2)
    est = mi_xt(separated, beta, rng=30)
    assert 0 < est.stderr < 0.01 and within(est, math.log(m))
    # Coinciding points merge into one weighted centre: h(T) = h_Z exactly, so I = 0 exactly.
    est = mi_xt(np.full((m, 1, d), 0.7), beta, rng=31)
    assert est.value == pytest.approx(0.0, abs=1e-12) and est.stderr == 0.0


def test_repeated_samples_give_the_deterministic_value():
    """R identical samples per input: the conditional mixtures are single Gaussians, so
    I(X;T) equals the R = 1 value (here estimated, not shortcut)."""
    s = np.tanh(0.5 * X4)
    beta = 0.3
    exact = quad_mi_xt(s[:, None], beta)
    est = mi_xt(np.repeat(s.reshape(4, 1, 1), 5, axis=1), beta, rng=2)
    assert 0 < est.stderr < 0.01
    assert within(est, exact)


def test_random_layer_matches_quadrature():
    exact = quad_mi_xt(S_R3, BETA_R3)
    assert 0.3 < exact < math.log(4) - 0.3  # a genuinely partial value
    est = mi_xt(S_R3[:, :, None], BETA_R3, rng=3)
    assert 0 < est.stderr < 0.01
    assert within(est, exact)


def test_separated_clusters_give_log_m():
    """Inputs whose sample clouds are far apart (100 vs. spread 1 and beta 0.3) are
    perfectly distinguishable: I(X;T) = H(X) = ln m, up to exp(-10^4) terms."""
    rng = np.random.default_rng(4)
    m, r = 8, 16
    centers = 100.0 * np.stack([np.arange(m), np.arange(m) % 3], axis=1)
    samples = centers[:, None, :] + rng.uniform(-1, 1, (m, r, 2))
    est = mi_xt(samples, 0.3, rng=5)
    assert 0 < est.stderr < 0.01
    assert within(est, math.log(m))


def test_identical_sample_sets_give_zero():
    """Every input has the same R samples: T is independent of X."""
    rng = np.random.default_rng(6)
    shared = rng.normal(size=(12, 3))
    est = mi_xt(np.broadcast_to(shared, (10, 12, 3)).copy(), 0.4, rng=7)
    assert 0 < est.stderr < 0.01
    assert within(est, 0.0)


def test_single_input_is_exactly_zero():
    est = mi_xt(np.random.default_rng(8).normal(size=(1, 20, 2)), 0.5, rng=0)
    assert est.value == 0.0 and est.stderr == 0.0


def test_stderr_is_calibrated():
    """The spread of independent estimates matches the reported standard error (which
    combines h(T) and the m conditional terms), and their mean the exact value."""
    samples = S_R3[:, :, None]
    runs = [mi_xt(samples, BETA_R3, mc_samples=300, rng=seed) for seed in range(40)]
    values = np.array([r.value for r in runs])
    reported = np.mean([r.stderr for r in runs])
    assert 0.6 * reported <= values.std(ddof=1) <= 1.3 * reported
    assert abs(values.mean() - quad_mi_xt(S_R3, BETA_R3)) <= 4 * reported / math.sqrt(len(runs))


def test_stderr_combines_the_terms_in_quadrature(monkeypatch):
    """The documented formulas, checked on the estimates each term returned."""
    results = []
    real = layer_terms.entropy_nats

    def spy(*args, **kwargs):
        value, stderr = real(*args, **kwargs)
        results.append(infoflow.Estimate(value, stderr))
        return value, stderr

    monkeypatch.setattr(layer_terms, "entropy_nats", spy)
    est = mi_xt(S_R3[:, :, None], BETA_R3, mc_samples=50, rng=32, convergence=False)
    h_t, cond = results
    assert est.value == pytest.approx(h_t.value[0] - np.mean(cond.value), abs=1e-12)
    assert est.stderr == pytest.approx(math.hypot(h_t.stderr[0], math.sqrt(np.sum(cond.stderr**2)) / 4), rel=1e-12)
    results.clear()
    labels = np.array([0, 1, 1, 1])  # classes of 3 and 9 centres: two calls
    est = mi_yt(S_R3[:, :, None], labels, BETA_R3, mc_samples=50, rng=33, convergence=False)
    h_t, small, large = results
    assert est.value == pytest.approx(h_t.value[0] - 0.25 * small.value[0] - 0.75 * large.value[0], abs=1e-12)
    expected = math.hypot(h_t.stderr[0], 0.25 * small.stderr[0], 0.75 * large.stderr[0])
    assert est.stderr == pytest.approx(expected, rel=1e-12)


def test_the_query_budget_is_shared_by_every_term(monkeypatch):
    """h(T) gets the budget (65536 queries by default) and the conditional terms as many
    in total: ceil(65536 / m) per input, or per class in proportion to its frequency."""
    seen = []
    real = layer_terms.entropy_nats

    def spy(centers, beta, *, k, n_queries, **kwargs):
        seen.append((centers.shape, k, n_queries))
        return real(centers, beta, k=k, n_queries=n_queries, **kwargs)

    monkeypatch.setattr(layer_terms, "entropy_nats", spy)
    samples = np.random.default_rng(9).normal(size=(30, 7, 2))
    mi_xt(samples, 0.5, rng=0, convergence=False)
    assert seen == [((1, 210, 2), None, 65536), ((30, 7, 2), None, math.ceil(65536 / 30))]
    seen.clear()
    mi_xt(samples, 0.5, max_centers=100, rng=0, convergence=False)
    assert seen == [((1, 100, 2), None, 65536), ((30, 7, 2), None, math.ceil(65536 / 30))]
    seen.clear()
    mi_yt(samples, np.arange(30) % 2, 0.5, mc_queries=1000, rng=0, convergence=False)
    assert seen == [((1, 210, 2), None, 1000), ((2, 105, 2), None, 500)]  # two equal classes: one call
    seen.clear()
    mi_xt(samples, 0.5, mc_samples=3, rng=0, convergence=False)
    assert [call[1:] for call in seen] == [(3, None), (3, None)]
    seen.clear()
    # The R-convergence levels (R = 7: 1 and 3 samples per input) get the same budget.
    mi_xt(samples, 0.5, rng=0)
    assert seen[2:] == [((1, 30, 2), None, 65536), ((1, 90, 2), None, 65536), ((30, 3, 2), None, math.ceil(65536 / 30))]
    with pytest.raises(ValueError, match="mc_samples and mc_queries"):
        mi_xt(samples, 0.5, mc_samples=3, mc_queries=100)


def test_the_default_budget_matches_k_per_center_below_65536_centers():
    """For m*R <= 65536 the default is K = default_mc_samples(m*R) draws per centre for
    every term, the same draws as an explicit K."""
    samples = np.random.default_rng(9).normal(size=(30, 7, 2))
    k = infoflow.default_mc_samples(210)
    assert mi_xt(samples, 0.5, rng=4, convergence=False) == mi_xt(samples, 0.5, mc_samples=k, rng=4,
                                                                   convergence=False)


# ----------------------------------------------------------------------------- I(Y;T)

@pytest.mark.parametrize("r", [1, 3])
def test_identity_labels_reproduce_mi_xt(r):
    """Each input its own class: I(Y;T) = I(X;T).  Same seed: the same computation draw
    for draw; different seeds: agreement within the combined standard error."""
    samples = (S_R3[:, :r] if r > 1 else np.tanh(X4)[:, None])[:, :, None]
    labels = np.arange(4)
    x = mi_xt(samples, BETA_R3, rng=10)
    assert mi_yt(samples, labels, BETA_R3, rng=10) == x
    y = mi_yt(samples, labels, BETA_R3, rng=11)
    assert abs(y.value - x.value) <= 4 * math.hypot(x.stderr, y.stderr)
    assert within(y, quad_mi_xt(samples[:, :, 0], BETA_R3))


@pytest.mark.parametrize("labels", [np.zeros(4, dtype=np.int64), np.full(4, 7, dtype=np.int32)])
def test_constant_labels_give_exactly_zero(labels):
    est = mi_yt(S_R3[:, :, None], labels, BETA_R3, rng=0)
    assert est.value == 0.0 and est.stderr == 0.0 and est.unit == "nats"
    assert mi_yt(S_R3[:, :, None], labels, BETA_R3, base=2).unit == "bits"


@pytest.mark.parametrize(
    "labels",
    [np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), np.array([7, -1, 7, -1]), np.array([True, False, False, True])],
    ids=["balanced", "unbalanced-with-singleton", "arbitrary-values", "bool"],
)
@pytest.mark.parametrize("w, beta", [(0.5, 0.2), (3.0, 0.1)])
def test_binary_labels_match_quadrature_deterministic(labels, w, beta):
    s = np.tanh(w * X4)
    exact = quad_mi_yt(s[:, None], labels, beta)
    est = mi_yt(s.reshape(4, 1), labels, beta, rng=12)  # 2-D samples: R = 1
    assert 0 < est.stderr < 0.01
    assert within(est, exact)
    assert mi_yt(s.reshape(4, 1, 1), labels, beta, rng=12) == est  # (m, d) is (m, 1, d)


def test_binary_labels_match_quadrature_random_layer():
    labels = np.array([1, 0, 0, 1])
    exact = quad_mi_yt(S_R3, labels, BETA_R3)
    est = mi_yt(S_R3[:, :, None], labels, BETA_R3, rng=13)
    assert 0 < est.stderr < 0.01
    assert within(est, exact)


def test_tight_pairs_carry_the_label_information():
    """tanh(3x) maps {-3,-1} and {1,3} onto two tight pairs: with labels sign(x), T keeps
    all of H(Y) = ln 2; with labels that split each pair, almost none of it."""
    s = np.tanh(3.0 * X4).reshape(4, 1)
    by_sign = mi_yt(s, np.array([0, 0, 1, 1]), 0.1, rng=14)
    across = mi_yt(s, np.array([0, 1, 0, 1]), 0.1, rng=15)
    exact_by_sign = quad_mi_yt(s, np.array([0, 0, 1, 1]), 0.1)
    exact_across = quad_mi_yt(s, np.array([0, 1, 0, 1]), 0.1)
    assert exact_by_sign == pytest.approx(math.log(2), abs=2e-3) and exact_across < 0.01
    assert within(by_sign, exact_by_sign) and within(across, exact_across)


# ----------------------------------------------------------------------------- max_centers

def _ordered_clusters():
    """40 inputs whose clouds are ordered along a line: the first rows are not a fair sample."""
    rng = np.random.default_rng(16)
    centers = np.stack([np.linspace(-4, 4, 40), np.zeros(40)], axis=1)
    return centers[:, None, :] + 0.3 * rng.normal(size=(40, 25, 2))  # m*R = 1000


def test_max_centers_stays_within_stderr_of_full():
    samples = _ordered_clusters()
    full = mi_xt(samples, 0.5, rng=17)
    sub = mi_xt(samples, 0.5, max_centers=800, rng=18)
    assert abs(sub.value - full.value) <= 4 * math.hypot(full.stderr, sub.stderr)
    # The first 800 rows (inputs 0..31 only) would be far off: the subset must be random.
    first = infoflow.mixture_entropy(samples.reshape(1, 1000, 2)[:, :800], 0.5, rng=0).value[0]
    whole = infoflow.mixture_entropy(samples.reshape(1, 1000, 2), 0.5, rng=0).value[0]
    assert whole - first > 10 * full.stderr
    labels = (np.arange(40) >= 20).astype(np.int64)
    y_full = mi_yt(samples, labels, 0.5, rng=19)
    y_sub = mi_yt(samples, labels, 0.5, max_centers=450, rng=20)  # subsets h(T) and both classes
    assert abs(y_sub.value - y_full.value) <= 4 * math.hypot(y_full.stderr, y_sub.stderr)


def test_max_centers_draws_a_subset_without_replacement(monkeypatch):
    seen = []
    real = layer_terms.entropy_nats

    def spy(centers, *args, **kwargs):
        seen.append(np.array(centers.data))
        return real(centers, *args, **kwargs)

    monkeypatch.setattr(layer_terms, "entropy_nats", spy)
    samples = _ordered_clusters()
    pooled = {tuple(row) for row in samples.reshape(-1, 2)}
    subsets = []
    for seed in (0, 1):
        seen.clear()
        mi_xt(samples, 0.5, max_centers=500, rng=seed)
        rows = seen[0][0]
        assert rows.shape == (500, 2)
        assert len({tuple(row) for row in rows}) == 500  # no repeats
        assert {tuple(row) for row in rows} <= pooled
        subsets.append({tuple(row) for row in rows})
    assert subsets[0] != subsets[1]
    # max_centers >= m*R: no subset is drawn, the result is the full one draw for draw
    assert mi_xt(samples, 0.5, max_centers=1000, rng=3) == mi_xt(samples, 0.5, rng=3)


# ----------------------------------------------------------------------------- options

def test_seed_reproducibility():
    samples = S_R3[:, :, None]
    labels = np.array([0, 0, 1, 1])
    for f, args in ((mi_xt, (samples, BETA_R3)), (mi_yt, (samples, labels, BETA_R3))):
        a = f(*args, max_centers=10, rng=21)
        b = f(*args, max_centers=10, rng=np.random.default_rng(21))
        c = f(*args, max_centers=10, rng=22)
        assert a == b
        assert a.value != c.value


def test_float32_and_float64_samples_give_the_same_estimate_for_the_same_seed():
    """The Monte Carlo draws do not depend on the dtype, so float32 samples and the same
    values in float64 agree up to float32 rounding: each of the two entropies in the
    difference within the 8 float32 ulps that the estimator allows for rounding, the
    entropies being at most |h_Z| + ln(m R) in magnitude."""
    rng = np.random.default_rng(3)
    m, r, d, beta = 40, 6, 3, 0.2
    samples = np.tanh(rng.normal(size=(m, 1, d)) + 0.3 * rng.normal(size=(m, r, d))).astype(np.float32)
    labels = np.arange(m) % 3
    scale = abs(h_z(d, beta)) + math.log(m * r)
    tolerance = 2 * ROUNDING_ULPS * np.finfo(np.float32).eps * scale
    for f, args in ((mi_xt, (beta,)), (mi_yt, (labels, beta))):
        single = f(samples, *args, rng=5)
        double = f(samples.astype(np.float64), *args, rng=5)
        assert abs(single.value - double.value) <= tolerance, f.__name__
        for a, b in zip(single.convergence.values, double.convergence.values):
            assert abs(a - b) <= tolerance, f.__name__


def test_base_converts_units():
    samples = S_R3[:, :, None]
    nats = mi_xt(samples, BETA_R3, rng=23)
    bits = mi_xt(samples, BETA_R3, rng=23, base=2)
    assert bits.unit == "bits"
    assert bits.value == pytest.approx(nats.value / math.log(2), rel=1e-13)
    assert bits.stderr == pytest.approx(nats.stderr / math.log(2), rel=1e-13)
    labels = np.array([0, 1, 1, 0])
    y_nats = mi_yt(samples, labels, BETA_R3, rng=24)
    y_bits = mi_yt(samples, labels, BETA_R3, rng=24, base=2)
    assert y_bits.unit == "bits" and y_bits.value == pytest.approx(y_nats.value / math.log(2), rel=1e-13)


def test_torch_cpu_input(torch):
    samples = S_R3[:, :, None]
    labels = np.array([0, 1, 1, 0])
    t = torch.from_numpy(samples)
    assert mi_xt(t, BETA_R3, rng=25) == mi_xt(samples, BETA_R3, rng=25)
    assert mi_xt(t.float(), BETA_R3, rng=25) == mi_xt(samples.astype(np.float32), BETA_R3, rng=25)
    expected = mi_yt(samples, labels, BETA_R3, max_centers=5, rng=26)
    assert mi_yt(t, torch.from_numpy(labels), BETA_R3, max_centers=5, rng=26) == expected
    with torch.no_grad():  # no graph recorded: the default path, draw for draw
        assert mi_yt(t.requires_grad_(), torch.tensor([0, 1, 1, 0], dtype=torch.int32), BETA_R3,
                     max_centers=5, rng=26) == expected
    with pytest.raises(ValueError, match="max_centers: not supported for samples that require a gradient"):
        mi_yt(t, labels, BETA_R3, max_centers=5, rng=26)
    with pytest.raises(TypeError, match="labels: expected an integer"):
        mi_yt(t, torch.tensor([0.0, 1.0, 1.0, 0.0]), BETA_R3)


@pytest.mark.cuda
@pytest.mark.skipif(not infoflow.HAS_CUDA, reason="no CUDA GPU visible to infoflow (or built without CUDA)")
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_torch_cuda_input(torch, dtype_name):
    samples = _ordered_clusters().astype(dtype_name)
    labels = np.arange(40) % 3
    t = torch.from_numpy(samples).cuda()
    tol = 1e-4 if dtype_name == "float32" else 1e-9
    for kwargs in ({}, {"max_centers": 300}):  # subsets index CUDA tensors with CUDA indices
        cpu = mi_xt(samples, 0.5, rng=27, **kwargs)
        gpu = mi_xt(t, 0.5, rng=27, **kwargs)  # same draws; kernels differ by rounding only
        assert gpu.value == pytest.approx(cpu.value, abs=tol) and gpu.stderr == pytest.approx(cpu.stderr, rel=1e-3)
        cpu = mi_yt(samples, labels, 0.5, rng=28, **kwargs)
        gpu = mi_yt(t, torch.from_numpy(labels).cuda(), 0.5, rng=28, **kwargs)
        assert gpu.value == pytest.approx(cpu.value, abs=tol)


# ----------------------------------------------------------------------------- errors

GOOD3 = np.zeros((4, 2, 1))
LABELS = np.array([0, 1, 0, 1])


@pytest.mark.parametrize(
    "samples, exc, pattern",
    [
        (np.zeros((4, 1)), ValueError, r"samples: expected a 3-D array .*samples\[:, None, :\].*shape \(4, 1\)"),
        (np.zeros(4), ValueError, r"samples: expected a 3-D array"),
        (np.zeros((2, 4, 2, 1)), ValueError, r"samples: expected a 3-D array"),
        (np.zeros((4, 2, 1), dtype=np.int64), TypeError, "samples: expected dtype float32 or float64"),
        ([[[0.0]]], TypeError, "samples: expected a numpy.ndarray or torch.Tensor, got list"),
        (np.array([[[0.0]], [[np.nan]]]), ValueError, "samples: contains NaN or infinity"),
        (np.array([[[0.0]], [[np.inf]]]), ValueError, "samples: contains NaN or infinity"),
        (np.zeros((0, 2, 1)), ValueError, "samples: empty input"),
    ],
)
def test_mi_xt_bad_samples(samples, exc, pattern):
    with pytest.raises(exc, match=pattern):
        mi_xt(samples, 1.0, rng=0)


@pytest.mark.parametrize(
    "samples, exc, pattern",
    [
        (np.zeros(4), ValueError, r"samples: expected a 2-D or 3-D array"),
        (np.zeros((4, 2, 1, 1)), ValueError, r"samples: expected a 2-D or 3-D array"),
        (np.zeros((4, 2), dtype=np.float16), TypeError, "samples: expected dtype float32 or float64"),
        (np.array([[0.0], [np.nan], [1.0], [2.0]]), ValueError, "samples: contains NaN or infinity"),
    ],
)
def test_mi_yt_bad_samples(samples, exc, pattern):
    with pytest.raises(exc, match=pattern):
        mi_yt(samples, LABELS, 1.0, rng=0)


@pytest.mark.parametrize(
    "labels, exc, pattern",
    [
        (np.array([0, 1, 0]), ValueError, r"labels: has 3 entries but samples has 4 rows"),
        (np.array([0.0, 1.0, 0.0, 1.0]), TypeError, r"labels: expected an integer dtype, got float64"),
        (np.array([[0], [1], [0], [1]]), ValueError, r"labels: expected shape \(4,\).*labels.ravel\(\)"),
        ([0, 1, 0, 1], TypeError, "labels: expected a numpy.ndarray or torch.Tensor, got list"),
        (np.array(["a", "b", "a", "b"]), TypeError, "labels: expected an integer"),
    ],
)
def test_bad_labels(labels, exc, pattern):
    with pytest.raises(exc, match=pattern):
        mi_yt(GOOD3, labels, 1.0, rng=0)


def _both():
    yield "mi_xt", lambda **kw: mi_xt(GOOD3, **kw)
    yield "mi_yt", lambda **kw: mi_yt(GOOD3, LABELS, **kw)


BOTH = list(_both())


@pytest.mark.parametrize("name, call", BOTH, ids=[n for n, _ in BOTH])
@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        ({"beta": 0.0}, ValueError, "beta: must be finite and > 0"),
        ({"beta": -0.5}, ValueError, "beta: must be finite and > 0"),
        ({"beta": math.nan}, ValueError, "beta: must be finite and > 0"),
        ({"beta": "1"}, TypeError, "beta: expected a real number"),
        ({"beta": 1.0, "mc_samples": 0}, ValueError, "mc_samples: must be >= 1"),
        ({"beta": 1.0, "mc_samples": 2.5}, TypeError, "mc_samples: expected an integer"),
        ({"beta": 1.0, "max_centers": 0}, ValueError, "max_centers: must be >= 1"),
        ({"beta": 1.0, "max_centers": 10.0}, TypeError, "max_centers: expected an integer"),
        ({"beta": 1.0, "base": 1}, ValueError, "base: must not be 1"),
        ({"beta": 1.0, "base": -2}, ValueError, "base: must be finite and > 0"),
        ({"beta": 1.0, "num_threads": 0}, ValueError, "num_threads: must be >= 1"),
        ({"beta": 1.0, "rng": "seed"}, TypeError, "rng: expected None, an int seed"),
    ],
)
def test_bad_options(name, call, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(**kwargs)
