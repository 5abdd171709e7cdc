"""The R-convergence sequences of mi_xt, mi_yt and information_flow, on cases with a known answer."""

import math
import warnings

import numpy as np
import pytest
from reference import entropy_quadrature_1d

from infoflow import RConvergence, RConvergenceWarning, mi_xt, mi_yt
from infoflow.mutual_information import layer_information, repeat_levels

# X uniform on 4 inputs; S | X = x ~ N(mu_x, SIGMA^2) in 1-D; T = S + Z, Z ~ N(0, BETA^2).
# Then T | X = x ~ N(mu_x, SIGMA^2 + BETA^2) exactly, so I(X;T) = h(mixture of the four
# Gaussians of variance SIGMA^2 + BETA^2) - h(one of them), by quadrature.  With
# SIGMA >> BETA, h(T | X = x) estimated from R samples is biased low at small R, and
# I(X;T) high: the sequence must come down towards the truth.
MU = np.array([-1.5, -0.5, 0.5, 1.5])
SIGMA, BETA = 0.3, 0.05
WIDTH = math.hypot(SIGMA, BETA)
TRUTH = entropy_quadrature_1d(MU, WIDTH) - 0.5 * math.log(2 * math.pi * math.e * WIDTH**2)


def gaussian_samples(r: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (MU[:, None] + SIGMA * rng.standard_normal((len(MU), r)))[..., None]


def test_repeat_levels():
    assert repeat_levels(1) == (1,)
    assert repeat_levels(2) == (1, 2)
    assert repeat_levels(3) == (1, 3)
    assert repeat_levels(8) == (2, 4, 8)
    assert repeat_levels(1000) == (250, 500, 1000)


def test_sequence_approaches_the_known_answer():
    """Averaged over 8 independent sample sets (R = 256: levels 64, 128, 256), the error
    of I(X;T) shrinks along the sequence, and at R it is small."""
    sequences = []
    for seed in range(8):
        estimate = mi_xt(gaussian_samples(256, seed), BETA, rng=100 + seed)
        assert estimate.convergence.repeats == (64, 128, 256)
        assert estimate.convergence.values[-1] == estimate.value
        assert estimate.convergence.stderrs[-1] == estimate.stderr
        sequences.append(estimate.convergence.values)
    error = np.mean(sequences, axis=0) - TRUTH
    assert error[0] > error[1] > error[2] > -0.005, error
    # 0.036, 0.021, 0.014 measured, each +- 0.006 to 0.009 across the 8 sets.
    assert error[0] > 2 * abs(error[2]) and abs(error[2]) < 0.025, error


def test_unconverged_sequence_warns_and_converged_one_does_not():
    """At R = 16 the plug-in bias is large (the sequence moves by many stderr); a
    deterministic layer (R = 1) has nothing to compare and is silent."""
    samples = gaussian_samples(16, 0)
    with pytest.warns(RConvergenceWarning, match=r"I\(X;T\) still moves with R.*R = 8.*R = 16"):
        estimate = mi_xt(samples, BETA, rng=1)
    assert not estimate.convergence.converged()
    assert estimate.convergence.shift < -3 * estimate.convergence.shift_stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mi_xt(samples, BETA, rng=1, convergence=False)
        deterministic = mi_xt(MU.reshape(4, 1, 1), BETA, rng=1)
    assert deterministic.convergence.repeats == (1,) and deterministic.convergence.converged()


def test_values_at_r_do_not_depend_on_the_sequence():
    """The smaller levels draw from child streams: the value at R, and the stream the
    caller keeps using, are the same with and without the sequence."""
    samples = gaussian_samples(12, 3)
    labels = np.array([0, 0, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RConvergenceWarning)
        for with_sequence in (True, False):
            generator = np.random.default_rng(5)
            ixt, iyt = layer_information(samples, labels, BETA, rng=generator, convergence=with_sequence)
            after = generator.random()
            if with_sequence:
                reference = (ixt.value, ixt.stderr, iyt.value, iyt.stderr, after)
                assert ixt.convergence.repeats == (3, 6, 12)
            else:
                assert (ixt.value, ixt.stderr, iyt.value, iyt.stderr, after) == reference
                assert ixt.convergence is None
        # mi_yt's level-by-level draws match layer_information's I(X;T) for labels = inputs.
        assert mi_yt(samples, np.arange(4), BETA, rng=9).convergence == mi_xt(samples, BETA, rng=9).convergence


def test_information_flow_values_at_r_do_not_depend_on_the_sequence():
    """Across layers too: every layer's value at R is the same with and without the
    sequences, since each level draws from its own child stream."""
    torch = pytest.importorskip("torch")
    from infoflow.flow import information_flow
    from infoflow.nn import NoisyMLP

    torch.manual_seed(1)
    net = NoisyMLP([6, 5, 4, 3], beta=0.05)
    x = np.random.default_rng(1).uniform(-1, 1, (48, 6)).astype(np.float32)
    y = np.arange(48) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RConvergenceWarning)
        flows = [information_flow(net, x, y, repeats=6, mc_queries=2048, rng=3, convergence=c) for c in (True, False)]
    for with_sequence, without in zip(*flows):
        assert (with_sequence.ixt, with_sequence.ixt_stderr, with_sequence.iyt, with_sequence.iyt_stderr) == (
            without.ixt, without.ixt_stderr, without.iyt, without.iyt_stderr)
        assert without.ixt_convergence is None and with_sequence.ixt_convergence is not None


def test_the_same_seed_sequence_twice_gives_the_same_sequence():
    samples = gaussian_samples(8, 1)
    seed = np.random.SeedSequence(42)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RConvergenceWarning)
        assert mi_xt(samples, BETA, rng=seed) == mi_xt(samples, BETA, rng=seed)


def test_rconvergence_type():
    seq = RConvergence((2, 4, 8), (3.0, 2.5, 2.45), (0.01, 0.01, 0.01))
    assert seq.shift == pytest.approx(-0.05) and seq.shift_stderr == pytest.approx(math.hypot(0.01, 0.01))
    assert not seq.converged() and seq.converged(tolerance=4.0)
    assert seq.to_dict() == {"repeats": [2, 4, 8], "values": [3.0, 2.5, 2.45], "stderrs": [0.01, 0.01, 0.01],
                             "unit": "nats"}
    single = RConvergence((1,), (1.0,), (0.0,))
    assert math.isnan(single.shift) and single.converged()


def test_information_flow_carries_the_sequence_into_csv_and_json(tmp_path):
    torch = pytest.importorskip("torch")
    import csv
    import json

    from infoflow.flow import information_flow
    from infoflow.nn import NoisyMLP

    torch.manual_seed(0)
    net = NoisyMLP([6, 5, 4, 3], beta=0.05)
    x = np.random.default_rng(0).uniform(-1, 1, (64, 6)).astype(np.float32)
    y = np.arange(64) % 2
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        flow = information_flow(net, x, y, repeats=8, mc_queries=4096, rng=0)
    first, second = flow[0], flow[1]
    assert first.repeats == 1 and first.ixt_convergence.repeats == (1,)  # deterministic given X
    assert second.repeats == 8 and second.ixt_convergence.repeats == (2, 4, 8)
    flow.to_csv(tmp_path / "flow.csv")
    flow.to_json(tmp_path / "flow.json")
    with open(tmp_path / "flow.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["r_half"] == "" and rows[0]["converged"] == "True"
    assert int(rows[1]["r_half"]) == 4 and int(rows[1]["r_quarter"]) == 2
    assert float(rows[1]["ixt_r_half"]) == second.ixt_convergence.values[1]
    assert float(rows[1]["iyt_r_quarter_stderr"]) == second.iyt_convergence.stderrs[0]
    saved = json.loads((tmp_path / "flow.json").read_text())
    assert saved["layers"][1]["ixt_convergence"] == second.ixt_convergence.to_dict()
