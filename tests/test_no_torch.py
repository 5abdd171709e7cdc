"""Without PyTorch: the estimators work, and what needs torch says what to install.

Each check runs in a fresh interpreter where ``sys.modules["torch"] = None``, which makes
``import torch`` raise ModuleNotFoundError as on a machine without it.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

HINT = 'install it with: pip install "infoflow[experiments]"'


def run_without_torch(code: str) -> dict:
    """Run ``code`` (which fills the dict ``result``) without torch; return ``result``."""
    script = textwrap.dedent("""
        import json, sys
        sys.modules["torch"] = None
        result = {}
    """) + textwrap.dedent(code) + "\nprint(json.dumps(result))\n"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_estimators_work_without_torch():
    result = run_without_torch("""
        import numpy as np
        import infoflow
        x = np.linspace(-1, 1, 20)[:, None]
        result["entropy"] = float(infoflow.mixture_entropy(x, 0.5, rng=0).value)
        result["torch"] = "torch" in sys.modules and sys.modules["torch"] is not None
    """)
    assert result == {"entropy": pytest.approx(result["entropy"]), "torch": False}


@pytest.mark.parametrize("statement, what", [
    ("import infoflow.nn", "infoflow.nn"),
    ("import infoflow.sampling", "infoflow.sampling (sample_layers)"),
    ("import infoflow.flow", "infoflow.flow (information_flow, InformationPlane)"),
    ("infoflow.nn", "infoflow.nn"),
    ("infoflow.sample_layers", "infoflow.sampling (sample_layers)"),
    ("infoflow.information_flow", "infoflow.flow (information_flow, InformationPlane)"),
    ("infoflow.InformationPlane", "infoflow.flow (information_flow, InformationPlane)"),
])
def test_torch_modules_say_what_to_install(statement, what):
    result = run_without_torch(f"""
        import infoflow
        try:
            {statement}
        except ImportError as exc:
            result.update(type=type(exc).__name__, message=str(exc), name=exc.name,
                          chained=exc.__cause__ is not None or exc.__suppress_context__ is False)
    """)
    assert result == {"type": "ModuleNotFoundError", "name": "torch", "chained": False,
                      "message": f"{what} needs PyTorch (torch), which is not installed; {HINT}"}


def test_experiments_that_need_torch_fail_in_one_line_before_writing_anything(tmp_path):
    """``infoflow reproduce szt`` without torch: a ModuleNotFoundError (an ImportError) with
    a one-line message from ``Experiment.run``, raised before the output folder exists;
    its options still load (``--help``), and the experiments without torch are untouched."""
    out = tmp_path / "out"
    result = run_without_torch(f"""
        import argparse
        from infoflow.experiments import EXPERIMENTS
        result["requires"] = {{name: list(e.requires) for name, e in EXPERIMENTS.items()}}
        for name in ("szt", "binning", "ib-tradeoff"):
            EXPERIMENTS[name].add_arguments(argparse.ArgumentParser())  # --help works
            try:
                EXPERIMENTS[name].run({str(out)!r})
            except ImportError as exc:
                result[name] = [type(exc).__name__, str(exc), exc.name]
        EXPERIMENTS["single-neuron"].check_requirements()
    """)
    assert result["requires"] == {"szt": ["torch"], "binning": ["torch"], "single-neuron": [], "convergence": [],
                                  "ib-tradeoff": ["torch", "sklearn"]}
    for name in ("szt", "binning", "ib-tradeoff"):
        kind, message, missing = result[name]
        assert kind == "ModuleNotFoundError" and missing == "torch" and "\n" not in message
        assert message == f"the {name!r} experiment needs PyTorch (torch), which is not installed; {HINT}"
    assert not out.exists()


def test_a_module_missing_inside_torch_keeps_its_own_message():
    from infoflow._intake import torch_missing_error

    inner = ModuleNotFoundError("No module named 'typing_extensions'", name="typing_extensions")
    assert torch_missing_error("infoflow.nn", inner) is inner
    outer = torch_missing_error("infoflow.nn", ModuleNotFoundError("No module named 'torch'", name="torch"))
    assert isinstance(outer, ImportError) and outer.name == "torch" and HINT in str(outer)
