"""Writing results: every file atomically (old or complete new, never a mixture), strict JSON."""

import json
import math
import os

import numpy as np
import pytest

from infoflow import _output

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
