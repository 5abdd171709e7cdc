"""The exact pruned CPU kernel (INFOFLOW_PRUNE = auto | off | always).

Pruning may skip a block of centres only when it is provably negligible, so the pruned
result must agree with the brute path (INFOFLOW_PRUNE=off) to a few units of rounding
and with the float64 reference to the float contract, on layouts chosen to break
bounds: duplicated centres, clusters at scales 1e-6..1e3 (also far from the origin),
queries far from every centre, queries exactly on centres, zero and extreme weights,
batches whose elements differ.  The kernel's statistics show that it really ran the
pruned path and skipped work where it can.
"""

import math

import numpy as np
import pytest
from reference import DTYPE_TOL, ROUNDING_TOL, lse_reference, relative_error, weighted_lse_reference

import infoflow
from infoflow import _core


def _kernel(q, c, beta, prune, weights=None, screen="auto", num_threads=0):
    """(out, stats) of one direct _core call; 2-D inputs are a batch of one."""
    two_d = q.ndim == 2
    q3, c3 = (q[None], c[None]) if two_d else (q, c)
    w2 = None if weights is None else np.ascontiguousarray(np.broadcast_to(weights, c3.shape[:2]))
    out, stats = _core.log_density(q3, c3, beta, num_threads, infoflow._backend.simd_level(), screen, None, True,
                                   prune, w2)
    return (out[0] if two_d else out), stats


def _check(q, c, beta, weights=None, *, forced=True, what=""):
    """Pruned (forced) against brute against the reference; returns the pruned call's stats."""
    dtype = q.dtype.type
    batch = 1 if q.ndim == 2 else q.shape[0]
    brute, brute_stats = _kernel(q, c, beta, "off", weights)
    pruned, stats = _kernel(q, c, beta, "always" if forced else "auto", weights)
    expected = lse_reference(q, c, beta) if weights is None else weighted_lse_reference(q, c, beta, weights)
    assert brute_stats["pruned"] == 0, what
    if forced:
        assert stats["pruned"] == batch, (what, stats)
    assert 0 <= stats["blocks_computed"] <= stats["block_visits"], (what, stats)
    assert pruned.shape == expected.shape and pruned.dtype == dtype
    err_brute = relative_error(pruned, brute)
    err_ref = relative_error(pruned, expected)
    assert err_brute <= ROUNDING_TOL[dtype], (what, "pruned vs brute", err_brute, stats)
    assert err_ref <= DTYPE_TOL[dtype], (what, "pruned vs reference", err_ref, stats)
    assert relative_error(brute, expected) <= DTYPE_TOL[dtype], (what, "brute vs reference")
    return stats


def _random_weights(rng, n, decades):
    """Positive weights spread over `decades` decades, with about a tenth exact zeros."""
    w = 10.0 ** rng.uniform(-decades / 2, decades / 2, n)
    w[rng.uniform(size=n) < 0.1] = 0.0
    w[0] = 1.0
    return w


def _unit_vectors(rng, k, d):
    u = rng.normal(size=(k, d))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


# --------------------------------------------------------------------------- layouts


def _clusters(rng, m, n, d, spread, offset=0.0):
    """Six clusters of points at `spread` around cluster centres at 0, 5, 20, 100, 1e3 and
    1e4 spreads from the first; queries drawn inside the clusters, on the cluster
    centres, between clusters and exactly on data points."""
    radii = spread * np.array([0.0, 5.0, 20.0, 100.0, 1e3, 1e4])
    heads = offset + radii[:, None] * _unit_vectors(rng, 6, d)
    c = heads[rng.integers(0, 6, n)] + spread * rng.normal(size=(n, d))
    k = m // 4
    q = np.concatenate([
        c[rng.integers(0, n, k)] + spread * rng.normal(size=(k, d)),
        heads[rng.integers(0, 6, k)],
        0.5 * (heads[rng.integers(0, 6, k)] + heads[rng.integers(0, 6, k)]),
        c[rng.integers(0, n, m - 3 * k)],
    ])
    return q, c


def _duplicates(rng, m, n, d, scale):
    """Many identical rows: seven distinct points, each repeated ~n/7 times; queries on
    them, near them and between them."""
    points = scale * rng.uniform(-1, 1, (7, d))
    c = points[rng.integers(0, 7, n)]
    k = m // 3
    q = np.concatenate([
        points[rng.integers(0, 7, k)],
        points[rng.integers(0, 7, k)] + 0.3 * scale * rng.normal(size=(k, d)),
        scale * rng.uniform(-1.5, 1.5, (m - 2 * k, d)),
    ])
    return q, c


def _far(rng, m, n, d, scale):
    """Centres in [-scale, scale]^d, queries ~45 scales away: with beta = scale every term
    is below exp(-800) (zero in float32, and in float64 without the running maximum),
    and several are within a few units of the largest.  For d >= 2 the second half of
    the centres mirrors the first (coordinate 0 negated), and the first quarter of the
    queries lies on the mirror plane: every term there is an exact tie of two."""
    c = scale * rng.uniform(-1, 1, (n, d))
    u = rng.normal(size=(m, d))
    if d >= 2:
        c[n // 2:] = c[: n // 2]
        c[n // 2:, 0] *= -1.0
        u[: m // 4, 0] = 0.0
    return 45.0 * scale * u / np.linalg.norm(u, axis=1, keepdims=True), c


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [1e-4, 1e-2, 1.0, 1e2])
@pytest.mark.parametrize("spread", [1e-6, 1e-3, 1.0, 1e3])
def test_clusters_at_every_scale(rng, dtype, spread, beta):
    for d, offset in ((1, 0.0), (2, 10.0), (5, 0.0), (17, 10.0)):
        q, c = _clusters(rng, 160, 700, d, spread, offset)
        q, c = q.astype(dtype), c.astype(dtype)
        what = f"spread={spread} beta={beta} d={d} offset={offset}"
        _check(q, c, beta, what=what)
        w = _random_weights(rng, 700, 20).astype(dtype)
        _check(q, c, beta, w, what=what + " weighted")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 2, 5, 17])
@pytest.mark.parametrize("beta", [1e-4, 1e-2, 1.0, 1e2])
def test_duplicated_centers(rng, dtype, d, beta):
    for scale in (0.3 * beta, 3.0 * beta, 30.0 * beta):
        q, c = _duplicates(rng, 120, 900, d, scale)
        q, c = q.astype(dtype), c.astype(dtype)
        _check(q, c, beta, what=f"scale={scale}")
        _check(q, c, beta, _random_weights(rng, 900, 6).astype(dtype), what=f"scale={scale} weighted")
    # Every centre the same point.
    c = np.broadcast_to(rng.uniform(-beta, beta, d), (900, d)).astype(dtype)
    q = np.concatenate([c[:3], c[:50] + dtype(beta) * rng.normal(size=(50, d)).astype(dtype)])
    _check(q, c, beta, what="one point")
    _check(q, c, beta, _random_weights(rng, 900, 6).astype(dtype), what="one point weighted")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 2, 5, 17])
@pytest.mark.parametrize("beta", [1e-4, 1e-2, 1.0, 1e2])
def test_queries_far_from_every_center(rng, dtype, d, beta):
    q, c = _far(rng, 100, 800, d, beta)
    q, c = q.astype(dtype), c.astype(dtype)
    expected = lse_reference(q, c, beta)
    assert np.all(expected < -800)  # every term underflows float64's exp on its own
    _check(q, c, beta, what="far")
    _check(q, c, beta, _random_weights(rng, 800, 8).astype(dtype), what="far weighted")
    if d >= 2:
        # On the mirror plane every term comes twice: log 2 above the half mixture, a
        # difference the float contract resolves at this exponent scale.
        ties = slice(0, 25)
        assert np.all(DTYPE_TOL[dtype] * np.abs(expected[ties]) < 0.1 * math.log(2))
        pruned, _ = _kernel(q[ties], c, beta, "always")
        half = lse_reference(q[ties], c[: 400], beta) + math.log(2)
        assert relative_error(pruned, half) <= DTYPE_TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 2, 5, 17])
def test_queries_exactly_on_centers(rng, dtype, d):
    n = 1000
    c = rng.uniform(-1, 1, (n, d)).astype(dtype)
    c[500:520] = c[0]  # and some duplicates of one of them
    q = c[np.concatenate([[0, 1, 2], rng.integers(0, n, 97)])]
    for beta in (1e-4, 1e-2, 1.0, 1e2):
        _check(q, c, beta, what=f"beta={beta}")
        w = _random_weights(rng, n, 10).astype(dtype)
        _check(q, c, beta, w, what=f"beta={beta} weighted")
    if d >= 2:  # at tiny beta only the centre itself counts: log(1 + 20 duplicates) for query 0
        pruned, _ = _kernel(q, c, 1e-4, "always")
        assert pruned[0] == pytest.approx(math.log(21), rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 2, 5, 17])
@pytest.mark.parametrize("weighted", [False, True])
def test_monte_carlo_queries_at_small_beta(isa, rng, dtype, d, weighted):
    n, m, beta = 1000, 400, 1e-3
    c = np.tanh(rng.normal(size=(n, d))).astype(dtype)
    q = (c[rng.integers(0, n, m)] + beta * rng.normal(size=(m, d))).astype(dtype)
    w = _random_weights(rng, n, 12).astype(dtype) if weighted else None
    _check(q, c, beta, w, what="monte carlo")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_batch_elements_with_different_layouts(isa, rng, dtype, weighted):
    m, n, d = 120, 900, 5
    beta = 1e-2
    parts = [_duplicates(rng, m, n, d, 3 * beta), _clusters(rng, m, n, d, beta, offset=2.0), _far(rng, m, n, d, beta)]
    q = np.stack([p[0] for p in parts]).astype(dtype)
    c = np.stack([p[1] for p in parts]).astype(dtype)
    w = np.stack([_random_weights(rng, n, 10) for _ in range(3)]).astype(dtype) if weighted else None
    _check(q, c, beta, w, what="batch")
    # Each element alone gives the same values as in the batch.
    batched, _ = _kernel(q, c, beta, "always", w)
    for b in range(3):
        alone, _ = _kernel(q[b], c[b], beta, "always", None if w is None else w[b])
        assert relative_error(alone, batched[b]) <= ROUNDING_TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_and_extreme_weights_are_respected(isa, rng, dtype):
    """Bounds must include the log-weights: a zero-weight centre on the query is absent,
    and a 1e-30 centre on the query loses to 1e30 centres 10 beta away."""
    d, beta, half = 3, 0.0707, 1200
    near = 0.01 * rng.normal(size=(half, d))
    far = np.array([1.0] + [0.0] * (d - 1)) + 0.01 * rng.normal(size=(half, d))
    c = np.concatenate([near, far]).astype(dtype)
    q = np.concatenate([near[:100], near[100:200] + 0.005 * rng.normal(size=(100, d))]).astype(dtype)
    w = np.concatenate([np.zeros(half), np.ones(half)]).astype(dtype)
    _check(q, c, beta, w, what="zero near, one far")
    expected = weighted_lse_reference(q, c, beta, w)
    assert np.all(expected < -50)  # the far cluster, not log 1 = 0 of a near centre
    w = np.concatenate([np.full(half, 1e-30), np.full(half, 1e30)]).astype(dtype)
    _check(q, c, beta, w, what="1e-30 near, 1e30 far")
    expected = weighted_lse_reference(q, c, beta, w)
    no_far = weighted_lse_reference(q, c[:half], beta, w[:half])
    assert np.all(expected > no_far + 5)  # the far cluster dominates
    # Also the heavy centres first in memory, the light ones last.
    _check(q, c[::-1].copy(), beta, w[::-1].copy(), what="reversed")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("weighting", ["none", "light", "heavy"])
def test_many_small_terms_add_up(rng, dtype, d, weighting):
    """One centre on the queries and 37 tight clusters of 120 centres each, cluster k's
    terms worth 10^-k of it (k = 4..40): each block of a cluster alone may look
    negligible, but 120 terms are not until k ~ 16 in float64, so a skip test that
    budgets per block rather than for all it skips drifts off.  The smallness comes from
    the distance alone, or partly from light weights (1e-3), or despite heavy ones (1e10).

    float32 is held to the float contract against the reference only: thousands of
    equal-sized terms summed into the lanes that hold the dominant term carry a
    systematic rounding of ~1e-6 in either path (the brute path is 1.6e-6 off on the
    generic kernel with one far cluster, whatever pruning does), so pruned-vs-brute
    agreement to 1e-6 is not a property of this layout in float32."""
    per_shell, ks = 120, np.arange(4, 41)
    log_w = {"none": 0.0, "light": -3.0, "heavy": 10.0}[weighting] * math.log(10)
    radii = np.sqrt(2.0 * (ks * math.log(10) + log_w))  # w e^{-r^2/2} = 10^-k with beta = 1
    # Directions in a cone around the first axis, so that k-d boxes of far clusters stay
    # far from the queries (random directions give boxes that straddle them).
    directions = np.eye(d)[0] + 0.3 * rng.normal(size=(ks.size, d))
    heads = radii[:, None] * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    c = np.concatenate([np.zeros((1, d)),
                        np.repeat(heads, per_shell, axis=0) + 1e-4 * rng.normal(size=(per_shell * ks.size, d))])
    w = np.concatenate([[1.0], np.full(per_shell * ks.size, math.exp(log_w))])
    q = np.concatenate([np.zeros((1, d)), 0.01 * rng.normal(size=(299, d))])
    order = rng.permutation(c.shape[0])
    c, w = c[order].astype(dtype), w[order].astype(dtype)
    q = q.astype(dtype)
    weights = None if weighting == "none" else w
    expected = weighted_lse_reference(q, c, 1.0, w)
    assert expected[0] == pytest.approx(math.log1p(per_shell * np.sum(10.0 ** -ks)), rel=1e-3)
    if dtype is np.float64:
        stats = _check(q, c, 1.0, weights, what=weighting)
        assert stats["blocks_computed"] < stats["block_visits"]  # the far clusters are skipped
    else:
        pruned, stats = _kernel(q, c, 1.0, "always", weights)
        assert stats["pruned"] == 1
        assert relative_error(pruned, expected) <= DTYPE_TOL[dtype]


@pytest.mark.parametrize("screen", ["off", "auto", "always"])
def test_pruning_with_every_screen_setting(rng, screen):
    q, c = _clusters(rng, 200, 1200, 4, 1e-3, offset=5.0)
    q, c = q.astype(np.float32), c.astype(np.float32)
    beta = 1e-3
    brute, _ = _kernel(q, c, beta, "off", screen=screen)
    pruned, stats = _kernel(q, c, beta, "always", screen=screen)
    assert stats["pruned"] == 1
    assert relative_error(pruned, brute) <= ROUNDING_TOL[np.float32]
    assert relative_error(pruned, lse_reference(q, c, beta)) <= DTYPE_TOL[np.float32]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [2, 5])
def test_pruning_skips_most_blocks_of_separated_clusters(rng, dtype, d):
    n, m, beta = 2000, 400, 1e-3
    heads = 10.0 * rng.uniform(-1, 1, (12, d))
    c = (heads[np.repeat(np.arange(12), n // 12 + 1)[:n]] + 2 * beta * rng.normal(size=(n, d))).astype(dtype)
    order = rng.permutation(n)
    c = c[order]  # the kernel cannot rely on the input order
    q = (c[rng.integers(0, n, m)] + beta * rng.normal(size=(m, d))).astype(dtype)
    for w in (None, _random_weights(rng, n, 6).astype(dtype)):
        stats = _check(q, c, beta, w, what="separated clusters")
        assert stats["block_visits"] > 0
        assert stats["blocks_computed"] <= 0.5 * stats["block_visits"], stats


def test_auto_mode_prunes_large_small_beta_problems(monkeypatch, rng):
    # Clustered centres at small beta, as in a trained layer: most leaves are far from
    # most queries, so the automatic mode prunes.  (Spread-out data of this size go to
    # the brute path, which is faster there.)
    n, d, beta = 12000, 3, 1e-3
    heads = rng.uniform(-1, 1, (12, d))
    c = (heads[rng.integers(0, 12, n)] + 3 * beta * rng.normal(size=(n, d))).astype(np.float32)
    q = (c[rng.permutation(n)[:3000]] + beta * rng.normal(size=(3000, d))).astype(np.float32)
    stats = _check(q, c, beta, forced=False, what="auto")
    assert stats["pruned"] >= 1, stats
    assert stats["blocks_computed"] < stats["block_visits"], stats
    # The public API in its default (auto) mode gives the same result as the kernel.
    monkeypatch.delenv("INFOFLOW_PRUNE", raising=False)
    auto, _ = _kernel(q, c, beta, "auto")
    np.testing.assert_array_equal(infoflow.gaussian_lse(q, c, beta), auto)
    monkeypatch.setenv("INFOFLOW_PRUNE", "auto")
    np.testing.assert_array_equal(infoflow.gaussian_lse(q, c, beta), auto)
    # Weighted, batched: every element is large enough.
    w = rng.uniform(0.5, 2.0, (2, n)).astype(np.float32)
    qb, cb = np.stack([q, q[::-1]]), np.stack([c, c[::-1]])
    out, stats = _kernel(qb, cb, beta, "auto", w)
    assert stats["pruned"] == 2, stats
    assert relative_error(out, weighted_lse_reference(qb, cb, beta, w)) <= DTYPE_TOL[np.float32]


def test_auto_mode_leaves_small_problems_to_the_brute_path(rng):
    beta = 1e-3
    c = np.tanh(rng.normal(size=(3000, 3)))
    q = c[:100] + beta * rng.normal(size=(100, 3))  # m < 256
    _, stats = _kernel(q, c, beta, "auto")
    assert stats["pruned"] == 0
    _, stats = _kernel(c[:2000] + beta, c[:1000], beta, "auto")  # n < 2048
    assert stats["pruned"] == 0


def test_environment_switch_reaches_the_kernel(monkeypatch, rng):
    q, c = _clusters(rng, 300, 1000, 3, 1e-2)
    beta = 1e-2
    w = _random_weights(rng, 1000, 6)
    for prune in ("off", "always"):
        monkeypatch.setenv("INFOFLOW_PRUNE", prune)
        expected, _ = _kernel(q, c, beta, prune)
        np.testing.assert_array_equal(infoflow.gaussian_lse(q, c, beta), expected)
        expected_w, _ = _kernel(q, c, beta, prune, w)
        np.testing.assert_array_equal(infoflow.gaussian_lse(q, c, beta, weights=w), expected_w)
        for threads in (1, 2):
            out = infoflow.gaussian_lse(q, c, beta, weights=w, num_threads=threads)
            assert relative_error(out, expected_w) <= ROUNDING_TOL[np.float64]


def test_prune_argument_is_checked(rng):
    q = rng.normal(size=(1, 5, 3))
    c = rng.normal(size=(1, 7, 3))
    with pytest.raises(ValueError, match="prune"):
        _core.log_density(q, c, 0.5, 0, "auto", "auto", None, False, "sometimes", None)


@pytest.mark.parametrize("beta", [1e-3, 0.3])
def test_mixture_entropy_is_unchanged_by_pruning(monkeypatch, rng, beta):
    c = np.tanh(rng.normal(size=(1000, 4))).astype(np.float32)
    w = rng.uniform(0.0, 1.0, 1000).astype(np.float32)
    for weights in (None, w):
        estimates = {}
        for prune in ("off", "always"):
            monkeypatch.setenv("INFOFLOW_PRUNE", prune)
            estimates[prune] = infoflow.mixture_entropy(c, beta, weights=weights, mc_queries=4000, rng=7)
        off, always = estimates["off"], estimates["always"]
        assert abs(always.value - off.value) <= 1e-6 * max(1.0, abs(off.value))
        assert abs(always.stderr - off.stderr) <= 1e-4 * off.stderr
