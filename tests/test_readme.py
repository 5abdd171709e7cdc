"""The README's Python example runs as written (on a small slice of the data), prints
what its comments say, and records each epoch of the training loop before training it."""

import re
from pathlib import Path

import numpy as np
import pytest

import infoflow

README = Path(__file__).resolve().parents[1] / "README.md"
TRAINING = re.compile(r"^(\s*)\.\.\.\s+# one epoch of training$", re.M)  # the loop's placeholder


def use_example() -> str:
    """The first ```python block of the README's "## Use" section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Use\n"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs_and_records_every_epoch_before_it_is_trained(tmp_path, monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    from infoflow.flow import InformationPlane

    code = use_example()
    code, found = TRAINING.subn(r"\1train_one_epoch()", code)
    assert found == 1, "the README's training placeholder changed: update this test"

    # A random 64 of the 4096 inputs keep the 20 records of the plane quick.
    x, y = infoflow.datasets.szt()
    rows = np.random.default_rng(0).choice(len(x), 64, replace=False)
    monkeypatch.setattr(infoflow.datasets, "szt", lambda: (x[rows], y[rows]))

    trained = []  # epochs of training done, one entry per call

    def train_one_epoch():
        trained.append(len(trained) + 1)

    recorded = {}  # epoch -> epochs of training done when it was recorded
    original_record = InformationPlane.record

    def record(self, epoch):
        recorded[epoch] = len(trained)
        return original_record(self, epoch)

    monkeypatch.setattr(InformationPlane, "record", record)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace = {"__name__": "readme_example", "train_one_epoch": train_one_epoch}
    exec(compile(code, str(README), "exec"), namespace)

    # The recorder's contract: epoch e is the network after e epochs of training (0: initial weights).
    plane = namespace["plane"]
    assert len(trained) == 1000
    assert sorted(recorded) == plane.schedule and plane.schedule[0] == 0 and plane.schedule[-1] == 1000
    assert all(done == epoch for epoch, done in recorded.items())
    assert (tmp_path / "run.csv").is_file() and (tmp_path / "run.png").is_file() and (tmp_path / "flow.csv").is_file()

    # What the comments say the first lines print.
    printed = capsys.readouterr().out.splitlines()[0]
    comment = re.search(r'print\(f"\{est:\.4f\}"\)\s+# (.*?);', code).group(1)
    assert printed == comment
    bounds = re.search(r"mixture_entropy_bounds\(.*\)\s+# (.*)", code).group(1)
    assert bounds == f"{namespace['lower']:.4f}, {namespace['upper']:.4f}"
