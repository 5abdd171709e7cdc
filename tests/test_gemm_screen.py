"""The CPU kernel's GEMM-form screen and nearest-centre hint.

The screen computes ||q||^2 + ||c||^2 - 2 q.c, which cancels catastrophically at small
beta, but only to prove that a block of centres is negligible; every term in the sum is
still a direct-difference value.  So skipping must never change a bit of the result,
and the float32 accuracy contract must hold at beta = 1e-3 with the screen forced on.
"""

import math

import numpy as np
import pytest
from reference import DTYPE_TOL, lse_reference, relative_error

import infoflow
from infoflow import _core


def _kernel(q, c, beta, screen, near_center=None):
    """(out, stats) of one direct _core call on 2-D inputs, with the SIMD level INFOFLOW_SIMD picks,
    on the brute path (the screen is part of it; the pruned path has its own tests)."""
    out, stats = _core.log_density(q[None], c[None], beta, 0, infoflow._backend.simd_level(), screen,
                                   near_center, True, "off")
    return out[0], stats


def _monte_carlo(rng, n, d, beta, dtype, offset=0.0):
    """Centres on tanh-range data of norm ~sqrt(d) and queries drawn around them, as the
    Monte Carlo entropy estimate makes them."""
    c = (offset + np.tanh(rng.normal(size=(n, d)))).astype(dtype)
    q = (c + beta * rng.normal(size=(n, d))).astype(dtype)
    return q, c


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [2, 10, 100, 784])
@pytest.mark.parametrize("beta", [1e-3, 0.05, 3.0])
def test_screen_changes_no_bit_and_keeps_the_contract(isa, rng, dtype, d, beta):
    n = 3000 if d < 784 else 800
    q, c = _monte_carlo(rng, n, d, beta, dtype)
    off, off_stats = _kernel(q, c, beta, "off")
    always, always_stats = _kernel(q, c, beta, "always")
    auto, _ = _kernel(q, c, beta, "auto")
    assert off_stats["screened"] == 0 and always_stats["screened"] == always_stats["tile_blocks"] > 0
    np.testing.assert_array_equal(always, off)
    np.testing.assert_array_equal(auto, off)
    # Against float64 on the same (rounded) inputs: the accuracy of the direct form.
    assert relative_error(always, lse_reference(q, c, beta)) <= DTYPE_TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_screen_skips_almost_everything_at_small_beta(isa, rng, dtype):
    # Each query's own centre dominates; every other block is provably negligible.
    q, c = _monte_carlo(rng, 4000, 64, 1e-3, dtype)
    _, stats = _kernel(q, c, 1e-3, "always")
    assert stats["skipped"] >= 0.9 * stats["screened"]
    _, stats = _kernel(q, c, 1e-3, "auto")
    assert stats["skipped"] >= 0.8 * stats["tile_blocks"]


def test_auto_screen_stands_down_when_nothing_is_negligible(rng):
    # beta ~ the data's spread: every block matters and screening would only cost.
    q, c = _monte_carlo(rng, 4000, 64, 3.0, np.float32)
    _, stats = _kernel(q, c, 3.0, "auto")
    assert stats["screened"] <= 0.05 * stats["tile_blocks"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_screen_far_from_the_origin(isa, rng, dtype):
    # Data at norm ~3000 with spread ~0.1: the expanded form's rounding error dwarfs
    # every distance, so a bound that were too small would skip blocks that matter.
    d, beta = 100, 0.02
    q, c = _monte_carlo(rng, 2000, d, beta, dtype, offset=300.0)
    c[::7] -= dtype(0.05)  # spread the distances over many scales of exp
    off, _ = _kernel(q, c, beta, "off")
    always, stats = _kernel(q, c, beta, "always")
    np.testing.assert_array_equal(always, off)
    assert relative_error(always, lse_reference(q, c, beta)) <= DTYPE_TOL[dtype]
    if dtype is np.float32:
        assert stats["skipped"] == 0  # nothing here can be proven negligible in float32


def test_screen_with_distant_clusters(isa, rng):
    # Two clusters far apart: blocks of the other cluster are skipped, blocks of the
    # query's own cluster are summed (beta comparable to the cluster's spread).
    d, beta = 32, 0.3
    c = rng.normal(size=(3000, d)).astype(np.float32)
    c[1500:] += 40.0
    q = c[rng.permutation(3000)] + np.float32(beta) * rng.normal(size=(3000, d)).astype(np.float32)
    off, _ = _kernel(q, c, beta, "off")
    always, stats = _kernel(q, c, beta, "always")
    np.testing.assert_array_equal(always, off)
    assert relative_error(always, lse_reference(q, c, beta)) <= DTYPE_TOL[np.float32]
    assert 0 < stats["skipped"] < stats["screened"]


@pytest.mark.parametrize("screen", ["off", "always"])
def test_near_center_hint_changes_no_bit(isa, rng, screen):
    q, c = _monte_carlo(rng, 2000, 20, 0.01, np.float32)
    expected, _ = _kernel(q, c, 0.01, screen)
    for hint in (np.arange(2000), np.arange(2000)[::-1].copy(), rng.integers(0, 2000, 2000), np.zeros(2000)):
        out, _ = _kernel(q, c, 0.01, screen, hint.astype(np.int64))
        np.testing.assert_array_equal(out, expected)


def test_near_center_hint_is_checked(rng):
    q = rng.normal(size=(1, 5, 3))
    c = rng.normal(size=(1, 7, 3))
    with pytest.raises(ValueError, match="near_centre"):
        _core.log_density(q, c, 0.5, 0, "auto", "auto", np.array([0, 1, 2, 3, 7]))
    with pytest.raises(ValueError, match="near_centre"):
        _core.log_density(q, c, 0.5, 0, "auto", "auto", np.array([0, 1, 2, -1, 6]))
    with pytest.raises(ValueError, match="near_centre"):
        _core.log_density(q, c, 0.5, 0, "auto", "auto", np.arange(4))
    with pytest.raises(ValueError, match="screen"):
        _core.log_density(q, c, 0.5, 0, "auto", "sometimes")


@pytest.mark.parametrize("beta", [1e-3, 0.5])
def test_mixture_entropy_is_unchanged_by_the_screen(monkeypatch, rng, beta):
    c = np.tanh(rng.normal(size=(3000, 40))).astype(np.float32)
    estimates = {}
    for screen in ("off", "auto", "always"):
        monkeypatch.setenv("INFOFLOW_GEMM_SCREEN", screen)
        estimates[screen] = infoflow.mixture_entropy(c, beta, rng=7)
    for screen in ("auto", "always"):
        assert estimates[screen].value == estimates["off"].value
        assert estimates[screen].stderr == estimates["off"].stderr


def test_unknown_screen_setting_warns(monkeypatch, rng):
    monkeypatch.setenv("INFOFLOW_GEMM_SCREEN", "sometimes")
    q = rng.normal(size=(4, 3))
    with pytest.warns(UserWarning, match="INFOFLOW_GEMM_SCREEN"):
        out = infoflow.gaussian_lse(q, q, 0.5)
    assert relative_error(out, lse_reference(q, q, 0.5)) <= DTYPE_TOL[np.float64]
    assert math.isfinite(float(out[0]))
