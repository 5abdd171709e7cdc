"""The information-bottleneck experiment (``infoflow reproduce ib-tradeoff``): a tiny run,
the penalty's gradient, lambda = 0 against plain training, refusal to overwrite, the CLI."""

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from infoflow.datasets import digits  # noqa: E402
from infoflow.experiments import EXPERIMENTS  # noqa: E402
from infoflow.experiments import ib_tradeoff as ib  # noqa: E402
from infoflow.experiments.penalty import PenalisedTrainer, batch_information  # noqa: E402
from infoflow.experiments.training import Trainer, seed_streams, split_dataset  # noqa: E402
from infoflow.nn import NoisyMLP  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Seconds: 2 epochs of 6 minibatches per network, small estimates.  lambda = 1 is past the
# collapse, so its bottleneck keeps almost nothing of X even after 12 steps.
TINY = dict(lambdas=(1.0, 0.0), seeds=1, epochs=2, warmup=0, repeats=2, mc_queries=256, estimate_queries=1024,
            convergence=False, progress=False)


def read_csv(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ib")
    return out, ib.run(out, **TINY)


def test_tiny_run_files_are_consistent(tiny_run):
    out, result = tiny_run
    assert sorted(p.name for p in out.iterdir()) == sorted(ib.FILES)
    assert (out / "ib_tradeoff.png").read_bytes()[:8] == PNG_SIGNATURE

    fields, rows = read_csv(out / "ib_tradeoff.csv")
    for column in ("lambda", "n_seeds", "test_accuracy", "train_accuracy", "ixt", "ixt_stderr", "iyt", "iyt_stderr",
                   "ixt_batch", "train_seconds"):
        assert column in fields, column
    assert [float(r["lambda"]) for r in rows] == [0.0, 1.0]  # increasing, whatever the order given
    _, runs = read_csv(out / "ib_tradeoff_runs.csv")
    assert [(float(r["lambda"]), int(r["seed"])) for r in runs] == [(0.0, 0), (1.0, 0)]
    for row, run in zip(rows, runs):  # one seed: the table is the run
        assert float(row["ixt"]) == pytest.approx(float(run["ixt"]))
        assert float(row["ixt_stderr"]) == pytest.approx(float(run["ixt_stderr"]))
        assert row["ixt_sd"] == ""  # no spread from one seed (NaN is an empty cell)
        assert 0 <= float(row["test_accuracy"]) <= 1 and float(row["ixt_stderr"]) > 0

    saved = json.loads((out / "ib_tradeoff.json").read_text(),
                       parse_constant=lambda name: pytest.fail(f"not strict JSON: {name}"))
    assert set(saved) == {"config", "table", "runs", "interrupted", "files"} and saved["interrupted"] is False
    config = saved["config"]
    assert config["lambdas"] == [0.0, 1.0] and config["widths"] == [64, 32, 8, 10]
    assert config["penalised_layer_name"] == "noise2" and config["ln_m"] == pytest.approx(math.log(1797))
    for run in saved["runs"]:
        assert [layer["name"] for layer in run["layers"]] == ["noise1", "noise2"]
        assert [h["epoch"] for h in run["history"]] == [1, 2]
        assert [h["lambda"] for h in run["history"]] == [run["lambda"]] * 2  # warmup=0: lambda from the start
        noise2 = run["layers"][1]
        assert noise2["ixt"] == pytest.approx(run["ixt"]) and noise2["iyt"] == pytest.approx(run["iyt"])
        assert run["converged"] is None  # convergence=False: nothing checked
        # The first layer is deterministic given X: one sample per input, I(X;T) <= ln m.
        assert run["layers"][0]["repeats"] == 1 and run["layers"][0]["ixt"] <= math.log(1797) + 0.01


def test_tiny_run_penalty_compresses(tiny_run):
    """lambda = 1 against 0, same seed: the bottleneck keeps nats less of X (the margin is
    several nats against Monte Carlo errors of ~0.05), in the minibatch penalty as in the
    estimate on all 1797 images."""
    _, result = tiny_run
    free, penalised = result["runs"]
    assert (free["lambda"], penalised["lambda"]) == (0.0, 1.0)
    assert penalised["ixt"] + 2.0 < free["ixt"]
    assert penalised["ixt_batch"] + 2.0 < free["ixt_batch"]


def test_refuses_to_overwrite_before_training(tiny_run, monkeypatch):
    out, _ = tiny_run
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def no_training(*args, **kwargs):
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(ib, "_train_one", no_training)
    with pytest.raises(FileExistsError, match="ib_tradeoff.csv.*--overwrite"):
        ib.run(out, **TINY)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _batch_penalty(model, x, noise_seed, rng=0):
    """The minibatch penalty of the bottleneck for inputs ``x``, with the network's noise
    fixed by ``noise_seed`` and the Monte Carlo draws by ``rng``."""
    captured = []
    handle = model.noise2.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        torch.manual_seed(noise_seed)
        model(x)
    finally:
        handle.remove()
    value, stderr = batch_information(captured[0], model.noise2.beta, mc_queries=1024, rng=rng)
    return value, stderr


def test_penalty_gradient_reaches_the_first_layer():
    x, _ = digits()
    torch.manual_seed(3)
    model = NoisyMLP([64, 32, 8, 10], beta=0.1)
    batch = torch.from_numpy(x[:256])
    value, stderr = _batch_penalty(model, batch, noise_seed=5)
    assert value.dtype == torch.float64 and value.requires_grad and 0 < stderr < 0.05
    assert 0 < value.item() <= math.log(256) + 0.1
    value.backward()
    grad = model.linear1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 0
    assert model.output.weight.grad is None  # the logits play no part in I(X;T_2)
    # A small step against the gradient lowers the penalty (same noise, same draws).
    with torch.no_grad():
        norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in model.parameters() if p.grad is not None))
        for p in model.parameters():
            if p.grad is not None:
                p -= 1e-2 * p.grad / norm
    lowered, _ = _batch_penalty(model, batch, noise_seed=5)
    assert lowered.item() < value.item()


def test_detached_penalty_is_a_plain_tensor():
    s = torch.tanh(torch.randn(64, 3, generator=torch.Generator().manual_seed(0)))
    value, _ = batch_information(s, 0.1, mc_queries=256, rng=0)
    again, _ = batch_information(s.detach(), 0.1, mc_queries=256, rng=0)
    assert isinstance(value, torch.Tensor) and not value.requires_grad
    assert value.item() == again.item()  # the same draws from the same seed


def test_warmup_ramps_lambda_per_epoch():
    x, y = digits()
    streams = seed_streams(np.random.SeedSequence(1))
    split = split_dataset(x[:300], y[:300], streams["split"])
    model = NoisyMLP([64, 4, 10], beta=0.1)
    trainer = PenalisedTrainer(model, split, lr=1e-3, batch_size=256, streams=streams, lam=0.2, layer=model.noise1,
                               mc_queries=128, penalty_rng=np.random.default_rng(0), warmup=4)
    for _ in range(6):
        trainer.train_epoch()
    assert [h["lambda"] for h in trainer.history] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    assert all(math.isfinite(h["loss"]) and h["loss"] == pytest.approx(h["cross_entropy"] + h["lambda"]
                                                                         * h["ixt_batch"])
               for h in trainer.history)


def test_lambda_zero_is_plain_cross_entropy_training():
    """With lambda = 0 the penalty is computed for the record only: the weights follow the
    12-bit experiment's Trainer exactly (same seed, minibatches and noise)."""
    x, y = digits()
    root = np.random.SeedSequence(7)
    streams = seed_streams(root)
    split = split_dataset(x, y, streams["split"])
    weights = []
    for penalised in (False, True):
        torch.manual_seed(11)
        model = NoisyMLP([64, 32, 8, 10], beta=0.1)
        if penalised:
            trainer = PenalisedTrainer(model, split, lr=3e-3, batch_size=256, streams=streams, lam=0.0,
                                       layer=model.noise2, mc_queries=256, penalty_rng=np.random.default_rng(0))
        else:
            trainer = Trainer(model, split, lr=3e-3, batch_size=256, streams=streams)
        for _ in range(2):
            trainer.train_epoch()
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    assert len(trainer.history) == 2 and all(h["ixt_batch"] > 0 for h in trainer.history)


@pytest.mark.parametrize("options, message", [
    (dict(lambdas=()), "lambdas"), (dict(lambdas=(0.1, -1)), "lambdas"), (dict(lambdas=(0.1, 0.1)), "distinct"),
    (dict(penalised_layer=3), "penalised_layer"), (dict(hidden=()), "hidden"), (dict(seeds=0), "seeds"),
    (dict(warmup=-1), "warmup"),
])
def test_bad_options_fail_before_writing(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        ib.run(tmp_path / "out", **{**TINY, **options})
    assert not (tmp_path / "out").exists()


def test_arguments_match_run(options_match_run):
    parser = options_match_run(ib.add_arguments, ib.run)
    parsed = vars(parser.parse_args(["--lambdas", "0", "0.5", "--hidden", "16", "4", "--penalised-layer", "1",
                                     "--no-convergence", "--threads", "1", "--warmup", "0"]))
    assert parsed["warmup"] == 0
    assert parsed["lambdas"] == [0.0, 0.5] and parsed["hidden"] == [16, 4] and parsed["penalised_layer"] == 1
    assert parsed["convergence"] is False and parsed["num_threads"] == 1


def test_registered_in_the_cli():
    assert "ib-tradeoff" in EXPERIMENTS
    result = subprocess.run([sys.executable, "-m", "infoflow", "reproduce", "--help"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "ib-tradeoff" in result.stdout
    result = subprocess.run([sys.executable, "-m", "infoflow", "reproduce", "ib-tradeoff", "--help"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "--lambdas" in result.stdout and "``" not in result.stdout


def test_interrupted_run_keeps_the_networks_done(tmp_path, interrupt_at_call):
    interrupt_at_call(ib, "_train_one", 2)
    result = ib.run(tmp_path, **TINY)
    assert result["interrupted"] is True and [r["lambda"] for r in result["runs"]] == [0.0]
    _, rows = read_csv(tmp_path / "ib_tradeoff.csv")
    assert [float(r["lambda"]) for r in rows] == [0.0]
    saved = json.loads((tmp_path / "ib_tradeoff.json").read_text())
    assert saved["config"]["interrupted"] is True and (tmp_path / "ib_tradeoff.png").exists()
