"""Short runs of the ``szt`` and ``binning`` experiments (tiny settings, into tmp_path)."""

import csv
import json
import math

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from infoflow.experiments import EXPERIMENTS  # noqa: E402
from infoflow.experiments import binning as binning_experiment  # noqa: E402
from infoflow.experiments import szt as szt_experiment  # noqa: E402
from infoflow.recorder import InformationPlane  # noqa: E402
from infoflow.results import HISTORY_FIELDS  # noqa: E402

LN_4096 = math.log(4096)
LAYERS = ["noise1", "noise2", "noise3", "noise4", "noise5"]
# Tiny estimator settings: the point is the plumbing, not the numbers.
TINY = dict(epochs=3, n_points=3, repeats=2, max_centers=2000, mc_samples=4, progress=False)


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def szt_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("szt")
    return out, EXPERIMENTS["szt"].run(out, **TINY)


def test_szt_files_and_columns(szt_run):
    out, result = szt_run
    names = ["szt_information.csv", "szt_information.json", "szt_training.csv", "szt_config.json",
             "szt_information_plane.png"]
    assert all((out / name).is_file() for name in names)
    assert (out / "szt_information_plane.png").stat().st_size > 20_000

    info = read_csv(out / "szt_information.csv")
    assert tuple(info[0]) == HISTORY_FIELDS
    assert [(int(r["epoch"]), r["layer"]) for r in info] == [(e, n) for e in (0, 1, 3) for n in LAYERS]
    assert [int(r["width"]) for r in info[:5]] == [10, 7, 5, 4, 3]
    assert InformationPlane.load_history(out / "szt_information.csv") == result["history"]

    training = read_csv(out / "szt_training.csv")
    assert list(training[0]) == ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy"]
    assert [int(r["epoch"]) for r in training] == [0, 1, 3]
    assert all(0.0 <= float(r["test_accuracy"]) <= 1.0 for r in training)

    config = json.loads((out / "szt_config.json").read_text())
    assert config["widths"] == [12, 10, 7, 5, 4, 3, 2] and config["beta"] == 0.005
    assert (config["n_train"], config["n_test"]) == (3277, 819)
    assert config["schedule"] == [0, 1, 3] and config["epochs_completed"] == 3
    assert config["interrupted"] is False and not result["interrupted"]


def test_szt_first_layer_at_its_ceiling(szt_run):
    """beta = 0.005 is tiny against the distances of the tanh activations of the first
    layer, so the mixture of its centres has entropy h_Z + ln n: with h(T) estimated from
    max_centers = 2000 of the 4096 points, I(X;T_1) sits at ln 2000, not ln 4096 (the
    downward bias of subsetting that the docs warn about)."""
    _, result = szt_run
    first = [row for row in result["history"] if row["layer"] == "noise1"]
    assert len(first) == 3
    for row in first:
        assert abs(row["ixt"] - math.log(2000)) < 0.1


def test_szt_interrupt_writes_partial_results(tmp_path, interrupt_at_call, capsys):
    interrupt_at_call(szt_experiment.Trainer, "train_epoch", 2)  # Ctrl-C during the second epoch of training
    result = szt_experiment.run(tmp_path, **{**TINY, "epochs": 5, "n_points": 6})
    assert result["interrupted"]
    assert "interrupted" in capsys.readouterr().err
    config = json.loads((tmp_path / "szt_config.json").read_text())
    assert config["interrupted"] is True and config["epochs_completed"] == 1
    assert config["recorded_epochs"] == [0, 1]
    assert sorted({int(r["epoch"]) for r in read_csv(tmp_path / "szt_information.csv")}) == [0, 1]
    assert [int(r["epoch"]) for r in read_csv(tmp_path / "szt_training.csv")] == [0, 1]
    assert (tmp_path / "szt_information_plane.png").is_file()


def test_binning_files_and_limits(tmp_path):
    result = EXPERIMENTS["binning"].run(tmp_path, **TINY)
    for name in ("binning_vs_bin_size.csv", "binning_over_epochs.csv", "binning.json", "binning.png"):
        assert (tmp_path / name).is_file()
    assert (tmp_path / "binning.png").stat().st_size > 20_000

    rows = read_csv(tmp_path / "binning_vs_bin_size.csv")
    assert list(rows[0]) == ["epoch", "layer", "width", "bin_size", "n_bins", "ixt", "iyt"]
    for layer in LAYERS:
        mine = sorted((r for r in rows if r["layer"] == layer), key=lambda r: float(r["bin_size"]))
        ixt = np.array([float(r["ixt"]) for r in mine])
        iyt = np.array([float(r["iyt"]) for r in mine])
        assert np.all(ixt <= LN_4096 + 1e-12)
        # The dyadic bins are nested partitions: a coarser one merges bins of a finer one,
        # so H(Bin T) can only fall as the bin grows.  Equal partitions give bit-identical
        # values and unequal ones differ by >= 2 ln 2 / 4096, so the check is exact.
        assert np.all(np.diff(ixt) <= 0), layer
        # I(Y; Bin T) too (data processing); it is computed as H(T) + H(Y) - H(T, Y), so
        # equal values may differ by rounding.
        assert np.all(np.diff(iyt) <= 1e-12), layer
    first = [r for r in rows if r["layer"] == "noise1"]
    smallest = min(first, key=lambda r: float(r["bin_size"]))
    assert float(smallest["bin_size"]) == 2.0**-24
    # tanh(W x + b) with 10 units is injective on the 4096 inputs: every input has its own bin.
    assert float(smallest["ixt"]) == pytest.approx(LN_4096, abs=1e-12)

    # The bin-size sweep ends at the zero-bin limit, the entropy of the distinct rows.
    limits = result["zero_bin_limits"]
    assert limits["noise1"] == {"distinct_rows": 4096, "limit_nats": pytest.approx(LN_4096), "dtype": "float32"}
    for layer in LAYERS:
        finest = min((r for r in rows if r["layer"] == layer), key=lambda r: float(r["bin_size"]))
        assert float(finest["ixt"]) <= limits[layer]["limit_nats"] + 1e-9

    over = read_csv(tmp_path / "binning_over_epochs.csv")
    assert list(over[0]) == ["epoch", "layer", "width", "estimator", "bin_size", "ixt", "ixt_stderr", "iyt",
                             "iyt_stderr"]
    estimators = list(dict.fromkeys(r["estimator"] for r in over))
    assert estimators == ["binned, 30 bins", "binned, bin size 0.0001", "I(X;T), beta = 0.005, R = 2"]
    for estimator in estimators:
        mine = [r for r in over if r["estimator"] == estimator]
        assert sorted({int(r["epoch"]) for r in mine}) == [0, 1, 3]
        assert {r["layer"] for r in mine} == set(LAYERS)
    config = json.loads((tmp_path / "binning.json").read_text())["config"]
    assert config["epochs_completed"] == 3 and config["interrupted"] is False
    assert not result["interrupted"]


def test_binning_reads_noisy_csv(tmp_path, szt_run):
    szt_out, szt_result = szt_run
    result = binning_experiment.run(tmp_path, **{**TINY, "noisy_csv": szt_out / "szt_information.csv"})
    noisy = [r for r in result["over_epochs"] if r["estimator"].startswith("I(X;T) from")]
    assert [(r["epoch"], r["layer"], r["ixt"]) for r in noisy] == \
        [(r["epoch"], r["layer"], r["ixt"]) for r in szt_result["history"]]


def test_binning_interrupt_writes_partial_results(tmp_path, interrupt_at_call):
    interrupt_at_call(szt_experiment.Trainer, "train_epoch", 3)  # the twins train in turn: the 3rd call is epoch 2
    result = binning_experiment.run(tmp_path, **{**TINY, "epochs": 4, "n_points": 5})
    assert result["interrupted"]
    config = json.loads((tmp_path / "binning.json").read_text())["config"]
    assert config["interrupted"] is True and config["epochs_completed"] == 1
    over = read_csv(tmp_path / "binning_over_epochs.csv")
    assert sorted({int(r["epoch"]) for r in over}) == [0, 1]
    assert {int(r["epoch"]) for r in read_csv(tmp_path / "binning_vs_bin_size.csv")} == {1}
    assert (tmp_path / "binning.png").is_file()


def test_torch_threads_restored(tmp_path):
    """The experiments run torch single-threaded by default and restore the setting."""
    import torch

    before = torch.get_num_threads()
    result = szt_experiment.run(tmp_path, **{**TINY, "epochs": 1, "n_points": 2})
    assert torch.get_num_threads() == before
    assert result["config"]["torch_threads"] == 1 and result["config"]["estimator_threads"] == before


def test_binning_missing_noisy_csv_fails_fast(tmp_path):
    with pytest.raises(FileNotFoundError):
        binning_experiment.run(tmp_path, **{**TINY, "noisy_csv": tmp_path / "missing.csv"})


@pytest.mark.parametrize("name", ["szt", "binning"])
def test_arguments_match_run(name, options_match_run):
    """Every command-line option lands on a keyword of run(), with its default."""
    module = EXPERIMENTS[name].load()
    parser = options_match_run(module.add_arguments, module.run)
    parsed = vars(parser.parse_args(["--epochs", "7", "--points", "4", "--repeats", "3", "--threads", "1",
                                     "--activation", "relu", "--max-centers", "100", "--seed", "2"]))
    assert (parsed["epochs"], parsed["n_points"], parsed["repeats"], parsed["num_threads"]) == (7, 4, 3, 1)
    assert (parsed["activation"], parsed["max_centers"], parsed["seed"]) == ("relu", 100, 2)


# ---------------------------------------------------------------------------------------
# Protocols and seeds
# ---------------------------------------------------------------------------------------

def test_official_schedule_and_inputs():
    """The paper's code: unique(round(logspace(0, log10(9999), 100))) and 4096 draws with
    replacement from the 4096 patterns (1 - 1/e of them distinct, about 2590)."""
    schedule = szt_experiment.official_schedule()
    assert len(schedule) == 84 and schedule[:3] == [1, 2, 3] and schedule[-1] == 9999
    assert schedule == sorted(set(schedule))
    assert szt_experiment.official_schedule(10) == [e for e in schedule if e <= 10]
    streams = szt_experiment.seed_streams(0)
    inputs = szt_experiment.official_inputs(4096, streams["inputs"])
    assert np.array_equal(inputs, szt_experiment.official_inputs(4096, szt_experiment.seed_streams(0)["inputs"]))
    assert inputs.min() >= 0 and inputs.max() < 4096
    distinct = len(np.unique(inputs))
    assert abs(distinct - 4096 * (1 - math.exp(-1))) < 4 * math.sqrt(4096 * 0.1)  # sd of the count ~ 20


def test_official_protocol_small_run(tmp_path):
    """The official protocol end to end on its first 3 epochs: X uniform over 4096 draws
    with repeats, so I(X;T_1) of the separated first layer sits at H(X) < ln 4096."""
    result = szt_experiment.run(tmp_path, protocol="official", epochs=3, repeats=2, mc_queries=2048,
                                progress=False)
    config = result["config"]
    assert config["protocol"] == "official" and config["schedule"] == [1, 2, 3]
    assert config["n_inputs"] == 4096 and config["n_distinct_inputs"] < 2700
    assert config["input_entropy"] == pytest.approx(math.log(config["n_distinct_inputs"]), abs=0.4)
    assert config["input_entropy"] < LN_4096 - 0.5
    first = [row for row in result["history"] if row["layer"] == "noise1"]
    assert [row["epoch"] for row in first] == [1, 2, 3]
    for row in first:
        assert abs(row["ixt"] - config["input_entropy"]) < 0.01
    with pytest.raises(ValueError, match="n_points: the official protocol"):
        szt_experiment.run(tmp_path, protocol="official", n_points=5, progress=False)
    with pytest.raises(ValueError, match="protocol: expected one of"):
        szt_experiment.run(tmp_path, protocol="paper", progress=False)


def test_seeds_write_each_run_and_the_aggregate(tmp_path, szt_run):
    """Run 0 of several seeds is the single run of that seed; the aggregate is the mean
    and sample sd across the runs, per layer and epoch."""
    _, single = szt_run
    result = szt_experiment.run(tmp_path, seeds=2, **TINY)
    assert [run["history"] for run in result["runs"]][0] == single["history"]
    for i in (0, 1):
        assert (tmp_path / f"seed_{i}" / "szt_information.csv").is_file()
    for name in ("szt_seeds.csv", "szt_seeds.json", "szt_seeds.png"):
        assert (tmp_path / name).is_file()
    runs = [run["history"] for run in result["runs"]]
    assert runs[0] != runs[1]  # independent streams
    rows = read_csv(tmp_path / "szt_seeds.csv")
    assert len(rows) == len(runs[0])
    for row in rows:
        values = [r["ixt"] for history in runs for r in history
                  if r["layer"] == row["layer"] and r["epoch"] == int(row["epoch"])]
        assert int(row["n_seeds"]) == 2
        assert float(row["ixt_mean"]) == pytest.approx(np.mean(values), abs=1e-12)
        assert float(row["ixt_sd"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    saved = json.loads((tmp_path / "szt_seeds.json").read_text())
    assert saved["n_runs"] == 2 and len(saved["peaks"]) == 2 * len(LAYERS)
    assert saved["seed_spawn_key"] == [[], [0x5EED, 1]] and saved["seed_entropy"] == ["0", "0"]


def test_binning_seeds_aggregate_every_estimator(tmp_path):
    result = binning_experiment.run(tmp_path, seeds=2, max_halvings=4, **TINY)
    assert (tmp_path / "seed_1" / "binning_over_epochs.csv").is_file()
    for name in ("binning_seeds.csv", "binning_seeds.json", "binning_seeds.png"):
        assert (tmp_path / name).is_file()
    rows = read_csv(tmp_path / "binning_seeds.csv")
    estimators = {row["estimator"] for row in rows}
    assert len(estimators) == 3 and all(int(row["n_seeds"]) == 2 for row in rows)
    runs = [run["over_epochs"] for run in result["runs"]]
    for row in rows[:10]:
        values = [r["ixt"] for history in runs for r in history if r["estimator"] == row["estimator"]
                  and r["layer"] == row["layer"] and r["epoch"] == int(row["epoch"])]
        assert float(row["ixt_mean"]) == pytest.approx(np.mean(values), abs=1e-12)
    with pytest.raises(ValueError, match="seeds: a noisy_csv"):
        binning_experiment.run(tmp_path, seeds=2, noisy_csv=tmp_path / "x.csv", **TINY)
