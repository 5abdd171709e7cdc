"""Writing results: every file atomically (old or complete new, never a mixture), strict JSON,
and no silent overwriting of a user's files by ``InformationPlane.save`` or the experiments."""

import json
import math
import os

import numpy as np
import pytest

from infoflow import _output
from infoflow.experiments import convergence as cv
from infoflow.experiments import single_neuron as sn

OLD = "old,contents\n1,2\n"


def strict_json(text):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def listing(folder):
    return sorted(os.listdir(folder))  # hidden temporary files included


def umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------

class Interrupt:
    """A CSV cell whose text raises Ctrl-C: an interruption in the middle of a write."""

    def __str__(self):
        raise KeyboardInterrupt


@pytest.mark.parametrize("bad_row, error", [({"a": 3, "extra": 4}, ValueError),
                                            ({"a": Interrupt()}, KeyboardInterrupt)])
def test_write_csv_interrupted_mid_file_keeps_the_old_file(tmp_path, bad_row, error):
    path = tmp_path / "results.csv"
    path.write_text(OLD)
    # The first rows are written before the bad one raises.
    with pytest.raises(error):
        _output.write_csv(path, [{"a": 1}, {"a": 2}, bad_row])
    assert path.read_text() == OLD
    assert listing(tmp_path) == ["results.csv"]


def test_write_csv_replaces_with_the_complete_file_and_usual_permissions(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(OLD)
    _output.write_csv(path, [{"a": 1, "b": math.nan}, {"a": 2.5, "b": "x"}])
    assert path.read_text().splitlines() == ["a,b", "1,", "2.5,x"]
    fresh = _output.write_csv(tmp_path / "new.csv", [{"a": 1}])
    # A new file gets the mode any other program would give it (0666 less the umask).
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask()
    assert listing(tmp_path) == ["new.csv", "results.csv"]


def test_atomic_write_leaves_no_temporary_file_on_error(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with _output.atomic_write(path, "wb") as handle:
            handle.write(b"new, but only half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old" and listing(tmp_path) == ["data.bin"]
    with _output.atomic_write(path, "wb") as handle:
        handle.write(b"new")
    assert path.read_bytes() == b"new" and listing(tmp_path) == ["data.bin"]


class HalfFigure:
    """A figure whose drawing is interrupted after part of the PNG is written."""

    def savefig(self, target, **options):
        data = b"\x89PNG\r\n\x1a\n half a figure"
        if hasattr(target, "write"):
            target.write(data)
        else:
            with open(target, "wb") as handle:
                handle.write(data)
        raise KeyboardInterrupt


def test_save_figure_interrupted_keeps_the_old_png(tmp_path):
    path = tmp_path / "plane.png"
    path.write_bytes(b"old png")
    with pytest.raises(KeyboardInterrupt):
        _output.save_figure(HalfFigure(), path)
    assert path.read_bytes() == b"old png" and listing(tmp_path) == ["plane.png"]


def test_save_figure_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    fig, axes = _output.new_figure()
    axes[0, 0].plot([0, 1], [1, 0])
    path = _output.save_figure(fig, tmp_path / "line.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and listing(tmp_path) == ["line.png"]


def test_write_json_is_strict_json_with_null_for_non_finite(tmp_path):
    path = _output.write_json(tmp_path / "r.json", {"inf": math.inf, "ninf": -np.inf, "nan": np.float32("nan"),
                                                    "x": np.float64(1.5), "list": np.array([1.0, np.inf])})
    assert strict_json(path.read_text()) == {"inf": None, "ninf": None, "nan": None, "x": 1.5, "list": [1.0, None]}


# ---------------------------------------------------------------------------------------
# Overwriting: refused unless asked, checked before any computation
# ---------------------------------------------------------------------------------------

def test_check_new_files_names_the_existing_ones(tmp_path):
    (tmp_path / "b.csv").write_text(OLD)
    with pytest.raises(FileExistsError, match=r"would overwrite b\.csv; pass --overwrite \(overwrite=True"):
        _output.check_new_files(tmp_path, ["a.csv", "b.csv"], overwrite=False)
    paths = _output.check_new_files(tmp_path, ["a.csv", "b.csv"], overwrite=True)
    assert paths == [tmp_path / "a.csv", tmp_path / "b.csv"] and (tmp_path / "b.csv").read_text() == OLD


def never(*args, **kwargs):
    raise AssertionError("computed before refusing to overwrite")


def test_single_neuron_refuses_existing_files_before_computing(tmp_path, monkeypatch):
    (tmp_path / "single_neuron.json").write_text('{"mine": 1}')
    monkeypatch.setattr(sn, "_row", never)
    with pytest.raises(FileExistsError, match="single_neuron.json"):
        sn.run(tmp_path, n_w=2, n_samples=8, progress=False)
    assert (tmp_path / "single_neuron.json").read_text() == '{"mine": 1}'
    assert listing(tmp_path) == ["single_neuron.json"]


def test_convergence_refuses_existing_files_before_computing(tmp_path, monkeypatch):
    (tmp_path / "convergence.png").write_bytes(b"mine")
    monkeypatch.setattr(cv, "_trial", never)
    with pytest.raises(FileExistsError, match="convergence.png"):
        cv.run(tmp_path, dims=(2,), n_min=16, n_max=16, repeats=1, progress=False)
    assert (tmp_path / "convergence.png").read_bytes() == b"mine"


def test_overwrite_interrupted_while_saving_leaves_no_file_of_the_old_run(tmp_path, monkeypatch):
    """A second Ctrl-C while saving: the old run's PNG must not stay beside the new CSV."""
    for name in ("convergence.csv", "convergence.json", "convergence.png"):
        (tmp_path / name).write_text("old run")
    monkeypatch.setattr(cv, "_plot", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        cv.run(tmp_path, dims=(1,), n_min=2, n_max=4, repeats=1, mc_samples=2, progress=False, overwrite=True)
    assert listing(tmp_path) == ["convergence.csv"]
    assert (tmp_path / "convergence.csv").read_text().startswith("d,n,")


def test_convergence_overwrite_replaces_every_file(tmp_path):
    for name in ("convergence.csv", "convergence.json", "convergence.png"):
        (tmp_path / name).write_text("old run")
    result = cv.run(tmp_path, dims=(1,), n_min=2, n_max=4, repeats=1, mc_samples=2, progress=False, overwrite=True)
    saved = strict_json((tmp_path / "convergence.json").read_text())
    assert [(row["d"], row["n"]) for row in saved["rows"]] == [(row["d"], row["n"]) for row in result["rows"]]
    assert [row["n"] for row in result["rows"]] == [2, 4]
    assert (tmp_path / "convergence.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "convergence.csv").read_text().startswith("d,n,")
    assert listing(tmp_path) == ["convergence.csv", "convergence.json", "convergence.png"]


# ---------------------------------------------------------------------------------------
# InformationPlane.save
# ---------------------------------------------------------------------------------------

@pytest.fixture
def plane():
    torch = pytest.importorskip("torch")
    from infoflow.flow import InformationPlane
    from infoflow.nn import NoisyMLP

    torch.manual_seed(0)
    x = ((np.arange(16)[:, None] >> np.arange(3, -1, -1)) & 1).astype(np.float32)
    return InformationPlane(NoisyMLP([4, 3, 2], beta=0.1), x, np.arange(16) % 2, epochs=[0])


def test_plane_save_refuses_to_overwrite(tmp_path, plane):
    (tmp_path / "results.csv").write_text(OLD)
    with pytest.raises(FileExistsError, match=r"results\.csv.*overwrite=True"):
        plane.save(tmp_path / "results")
    assert (tmp_path / "results.csv").read_text() == OLD
    assert listing(tmp_path) == ["results.csv"]  # nothing written, not even the JSON
    csv_path, json_path = plane.save(tmp_path / "results", overwrite=True)
    assert csv_path.read_text().startswith("epoch,layer,") and strict_json(json_path.read_text())["history"] == []


def test_plane_save_trailing_slash_is_a_folder(tmp_path, plane):
    csv_path, json_path = plane.save(str(tmp_path / "newdir") + "/")
    assert (csv_path, json_path) == (tmp_path / "newdir" / "information_plane.csv",
                                     tmp_path / "newdir" / "information_plane.json")
    assert csv_path.is_file() and json_path.is_file()
    assert listing(tmp_path) == ["newdir"]


# ---------------------------------------------------------------------------------------
# The szt and binning experiments (torch): refused before any training
# ---------------------------------------------------------------------------------------

TINY = dict(epochs=1, n_points=2, repeats=2, max_centers=100, mc_samples=2, progress=False)


@pytest.mark.parametrize("name, existing, options", [
    ("szt", "szt_training.csv", {}),
    ("szt", "szt_config.json", {}),
    ("szt", "seed_1/szt_config.json", {"seeds": 2}),
    ("szt", "szt_seeds.png", {"seeds": 2}),
    ("binning", "binning.png", {}),
    ("binning", "seed_0/binning_over_epochs.csv", {"seeds": 2}),
])
def test_szt_and_binning_refuse_existing_files_before_training(tmp_path, monkeypatch, name, existing, options):
    pytest.importorskip("torch")
    from infoflow.experiments import EXPERIMENTS, szt

    monkeypatch.setattr(szt.Trainer, "__init__", never)
    path = tmp_path / existing
    path.parent.mkdir(exist_ok=True)
    path.write_text("mine")
    with pytest.raises(FileExistsError, match=existing.replace(".", r"\.")):
        EXPERIMENTS[name].run(tmp_path, **TINY, **options)
    assert path.read_text() == "mine"


def test_plane_plot_into_a_folder(tmp_path, plane):
    pytest.importorskip("matplotlib")
    plane.options.update(repeats=2, mc_samples=2, mc_queries=None)  # tiny: the point is the file name
    plane.record(0)
    png = plane.plot(str(tmp_path / "figures") + "/")
    assert png == tmp_path / "figures" / "information_plane.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and listing(tmp_path) == ["figures"]
    assert plane.plot(tmp_path / "figures") == png  # an existing folder: the same
