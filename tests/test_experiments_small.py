"""Small, fast runs of the single-neuron and convergence experiments, and their helpers.

Exact values come from closed forms (Gaussian entropy, separated mixtures, ln 2, H(1/4))
or from tests/reference.py's independent quadrature; the estimators are checked within a
few of their own standard errors.
"""

import csv
import json
import math

import numpy as np
import pytest
from reference import entropy_quadrature_1d

import infoflow
from infoflow.experiments import EXPERIMENTS
from infoflow.experiments import convergence as cv
from infoflow.experiments import single_neuron as sn

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def h_z(beta, d=1):
    return 0.5 * d * math.log(2 * math.pi * math.e * beta**2)


def read_csv(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        # write_csv leaves NaN cells empty (e.g. a spread over a single repetition).
        return reader.fieldnames, [{k: float(v) if v else math.nan for k, v in row.items()} for row in reader]


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 20_000  # axes, curves and text, not an empty canvas


# ---------------------------------------------------------------------------------------
# 1-D quadrature
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [0.01, 0.3, 2.0])
def test_quadrature_single_gaussian_is_closed_form(beta):
    assert sn.mixture_entropy_1d([0.7], beta) == pytest.approx(h_z(beta), abs=1e-12)
    assert sn.mixture_entropy_1d([0.7, 0.7, 0.7], beta) == pytest.approx(h_z(beta), abs=1e-12)
    # Distinct but nearly equal centres go through the quadrature, and still give h_Z.
    assert sn.mixture_entropy_1d([0.7, 0.7 + 1e-9 * beta], beta) == pytest.approx(h_z(beta), abs=1e-8)


@pytest.mark.parametrize("beta", [0.01, 0.05])
def test_quadrature_far_apart_components(beta):
    # Components 40 beta or more apart do not overlap: h = h_Z + H(weights).
    assert sn.mixture_entropy_1d([-1.0, 1.0], beta) == pytest.approx(h_z(beta) + math.log(2), abs=1e-9)
    assert sn.mixture_entropy_1d([-1.0, 1.0], beta, [1, 3]) == pytest.approx(h_z(beta) + sn.H_QUARTER, abs=1e-9)


@pytest.mark.parametrize("w", [0.1, 0.5, 1.3, 7.0])
def test_exact_mi_matches_reference_quadrature(w):
    beta = 0.05
    expected = entropy_quadrature_1d(np.tanh(w * (sn.X_VALUES - 2)), beta) - h_z(beta)
    assert sn.exact_mi(w, beta) == pytest.approx(expected, abs=1e-8)


def test_exact_mi_limits():
    assert sn.exact_mi(0.0, 0.05) == 0.0  # all four images at tanh(0) = 0
    assert sn.exact_mi(20.0, 0.02) == pytest.approx(sn.H_QUARTER, abs=1e-8)  # 3:1 split
    assert sn.exact_mi(0.3, 0.001) == pytest.approx(sn.LN4, abs=1e-8)  # four separated images


# ---------------------------------------------------------------------------------------
# Single neuron
# ---------------------------------------------------------------------------------------

def test_single_neuron_small_run(tmp_path):
    result = sn.run(tmp_path, w_max=8.0, n_w=5, beta=0.02, n_samples=200, balanced=True, rng=1, progress=False)
    for name in ("single_neuron.csv", "single_neuron.json", "single_neuron.png"):
        assert (tmp_path / name).is_file()
    assert_png(tmp_path / "single_neuron.png")
    columns, rows = read_csv(tmp_path / "single_neuron.csv")
    assert columns == ["w", "estimate", "stderr", "exact", "exact_sample"]
    assert [r["w"] for r in rows] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert rows[0]["exact"] == 0.0
    assert rows[-1]["exact"] == pytest.approx(sn.H_QUARTER, abs=1e-4)
    for row in rows:
        # Balanced draws: the empirical law of X is exactly uniform, so only MC error is left.
        assert row["exact_sample"] == pytest.approx(row["exact"], abs=1e-9)
        assert 0 < row["stderr"] < 0.01
        assert abs(row["estimate"] - row["exact"]) < 5 * row["stderr"]
    saved = json.loads((tmp_path / "single_neuron.json").read_text())
    assert saved["config"]["units"] == "nats" and saved["interrupted"] is False
    assert len(saved["rows"]) == 5 and saved["x_counts"] == {"-3": 50, "-1": 50, "1": 50, "3": 50}
    assert len(saved["exact_curve"]["w"]) == len(saved["exact_curve"]["exact"]) >= 401
    assert result["rows"] == saved["rows"]


def test_single_neuron_iid_estimate_tracks_empirical_law(tmp_path):
    result = sn.run(tmp_path, w_max=3.0, n_w=4, beta=0.05, n_samples=101, balanced=False, rng=2, progress=False)
    for row in result["rows"]:
        assert abs(row["estimate"] - row["exact_sample"]) < 5 * row["stderr"]


def test_single_neuron_interrupted_keeps_rows(tmp_path, interrupt_at_call):
    interrupt_at_call(sn, "sampled_mi", 3)
    result = sn.run(tmp_path, w_max=1.0, n_w=6, n_samples=40, progress=False)
    assert result["interrupted"] is True
    _, rows = read_csv(tmp_path / "single_neuron.csv")
    assert [r["w"] for r in rows] == [0.0, 0.2]
    assert json.loads((tmp_path / "single_neuron.json").read_text())["interrupted"] is True
    assert_png(tmp_path / "single_neuron.png")


# ---------------------------------------------------------------------------------------
# Kozachenko-Leonenko
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("d, k", [(1, 1), (2, 1), (3, 3)])
def test_knn_entropy_on_gaussian(d, k):
    # Each term behaves like -ln f(x_i) + ln Gamma(k, 1): standard deviation
    # sqrt((d/2 + psi'(k)) / n) for N(0, I); its bias at n = 20000 is below 0.01 nats.
    n = 20000
    sigma = math.sqrt((d / 2 + float(np.pi**2 / 6 - sum(1 / j**2 for j in range(1, k)))) / n)
    x = np.random.default_rng(d * 10 + k).standard_normal((n, d)) * 0.7
    assert cv.knn_entropy(x, k) == pytest.approx(h_z(0.7, d), abs=5 * sigma + 0.01)


def test_knn_entropy_rejects_bad_input():
    with pytest.raises(ValueError, match="distance 0"):
        cv.knn_entropy(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="k:"):
        cv.knn_entropy(np.random.default_rng(0).standard_normal((3, 2)), k=3)
    with pytest.raises(ValueError, match="2-D"):
        cv.knn_entropy(np.ones(4))


def test_log_unit_ball_volume():
    assert math.exp(cv.log_unit_ball_volume(1)) == pytest.approx(2.0)
    assert math.exp(cv.log_unit_ball_volume(2)) == pytest.approx(math.pi)
    assert math.exp(cv.log_unit_ball_volume(3)) == pytest.approx(4 * math.pi / 3)


# ---------------------------------------------------------------------------------------
# Convergence
# ---------------------------------------------------------------------------------------

def test_true_entropy_factorises():
    beta = 0.5
    assert cv.true_entropy(1, beta) == pytest.approx(entropy_quadrature_1d([-1.0, 1.0], beta), abs=1e-9)
    assert cv.true_entropy(7, beta) == pytest.approx(7 * cv.true_entropy(1, beta), rel=1e-14)
    # Against the Monte Carlo entropy of the exact 2^d-corner mixture (d = 3).
    corners = np.array(np.meshgrid(*[[-1.0, 1.0]] * 3)).reshape(3, -1).T
    estimate = infoflow.mixture_entropy(corners, beta, mc_samples=1 << 15, rng=0)
    assert abs(estimate.value - cv.true_entropy(3, beta)) < 5 * estimate.stderr


def test_n_grid():
    assert cv.n_grid(16, 256) == [16, 32, 64, 128, 256]
    assert cv.n_grid(10, 100) == [10, 16, 32, 64, 100]
    with pytest.raises(ValueError):
        cv.n_grid(64, 32)


def test_convergence_small_run(tmp_path):
    result = cv.run(tmp_path, dims=(2, 5), n_min=16, n_max=256, repeats=2, rng=3, progress=False)
    for name in ("convergence.csv", "convergence.json", "convergence.png"):
        assert (tmp_path / name).is_file()
    assert_png(tmp_path / "convergence.png")
    columns, rows = read_csv(tmp_path / "convergence.csv")
    for name in ("d", "n", "repeats", "true_entropy", "sp_mean_abs_error", "sp_std_abs_error",
                 "knn_mean_abs_error", "knn_std_abs_error", "sp_mean_error", "knn_mean_error", "sp_mc_stderr"):
        assert name in columns
    assert len(rows) == 2 * 5
    for d in (2, 5):
        mine = [r for r in rows if r["d"] == d]
        assert [r["n"] for r in mine] == [16, 32, 64, 128, 256]
        assert mine[0]["true_entropy"] == pytest.approx(d * cv.true_entropy(1, 0.5))
        assert mine[-1]["sp_mean_abs_error"] < mine[0]["sp_mean_abs_error"]
        assert all(r["sp_min_abs_error"] <= r["sp_mean_abs_error"] <= r["sp_max_abs_error"] for r in mine)
    saved = json.loads((tmp_path / "convergence.json").read_text())
    assert len(saved["trials"]) == 2 * 5 * 2 and saved["interrupted"] is False
    assert saved["config"]["units"] == "nats" and result["rows"] == saved["rows"]


def test_convergence_interrupted_keeps_rows(tmp_path, interrupt_at_call):
    interrupt_at_call(cv, "_trial", 3)
    result = cv.run(tmp_path, dims=(2,), n_min=16, n_max=128, repeats=1, progress=False)
    assert result["interrupted"] is True
    _, rows = read_csv(tmp_path / "convergence.csv")
    assert [r["n"] for r in rows] == [16, 32]
    assert_png(tmp_path / "convergence.png")


# ---------------------------------------------------------------------------------------
# Command-line options
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["single-neuron", "convergence"])
def test_add_arguments_match_run_keywords(name, options_match_run):
    experiment = EXPERIMENTS[name]
    options_match_run(experiment.add_arguments, experiment.load().run)
