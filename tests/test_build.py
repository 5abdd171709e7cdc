"""What was built, and that the package works on a machine without a GPU."""

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import in_ci

import infoflow

REPO = Path(__file__).resolve().parents[1]


def test_build_info_reports_the_build():
    info = infoflow.build_info()
    assert info["version"] == infoflow.__version__
    assert isinstance(info["openmp"], bool) and info["max_threads"] >= 1
    assert "generic" in info["simd_compiled"] and info["simd_runtime"] in info["simd_supported"]
    assert set(info["simd_supported"]) <= set(info["simd_compiled"])
    assert info["compiler"] and isinstance(info["cuda_built"], bool)
    assert info["has_cuda"] is infoflow.HAS_CUDA
    if info["cuda_built"]:
        assert info["cuda_architectures"] and info["cuda_runtime_version"] > 0
        assert info["cuda_device_count"] == len(info["cuda_devices"])
    else:
        assert "cuda_import_error" in info


def test_cuda_module_imports_without_a_gpu():
    if not infoflow.CUDA_BUILT:
        pytest.skip("this build has no CUDA extension (nvcc was not found or INFOFLOW_CUDA=off)")
    from infoflow import _cuda

    count, error = _cuda.device_count()  # must not raise on a machine without a driver
    assert count >= 0 and infoflow.HAS_CUDA == (count > 0) == infoflow.has_cuda()
    # A count of 0 comes with CUDA's reason (no driver, a driver older than the runtime,
    # no device), which build_info keeps: before, an old driver read as plain "no GPU".
    assert (error is None) == (count > 0)
    info = infoflow.build_info()
    assert info["cuda_device_count"] == count and info["cuda_device_error"] == error
    if count == 0:
        assert error.startswith("cudaError"), error


def test_import_does_not_initialise_cuda():
    # Initialising CUDA at import breaks CUDA in children forked later and fixes the
    # device count for the process: nothing may call into _cuda until CUDA is needed.
    code = textwrap.dedent("""
        import sys
        calls = []
        def profile(frame, event, arg):
            if event == "c_call" and getattr(arg, "__module__", None) == "infoflow._cuda":
                calls.append(arg.__name__)
        sys.setprofile(profile)
        import infoflow
        sys.setprofile(None)
        print(infoflow.CUDA_BUILT, calls)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(maxsplit=1)[1].strip() == "[]", result.stdout


def test_simd_override_selects_the_kernel(monkeypatch):
    x = np.random.default_rng(0).uniform(-1, 1, (50, 5))
    results = {}
    for isa in infoflow.build_info()["simd_supported"]:
        monkeypatch.setenv("INFOFLOW_SIMD", isa)
        assert infoflow.build_info()["simd_runtime"] == isa
        results[isa] = infoflow.gaussian_lse(x, x, 0.3)
    for isa, values in results.items():
        np.testing.assert_allclose(values, results["generic"], rtol=1e-13, atol=1e-13, err_msg=isa)
    monkeypatch.setenv("INFOFLOW_SIMD", "sse9")
    with pytest.warns(UserWarning, match="INFOFLOW_SIMD='sse9'"):
        infoflow.gaussian_lse(x, x, 0.3)


def test_import_does_not_pull_in_torch():
    import subprocess
    import sys

    code = "import sys, infoflow; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.skipif(shutil.which("clang++") is None, reason="clang++ is not installed (CI installs it)")
@pytest.mark.skipif(not (REPO / "CMakeLists.txt").exists(), reason="needs the source tree")
def test_the_extension_builds_and_runs_with_clang(tmp_path):
    # The AVX-512 kernel once used GCC's __builtin_shuffle, which Clang lacks: an x86
    # Clang build failed.  Build a wheel with Clang (the CPU core only), then check it.
    env = dict(os.environ, CC="clang", CXX="clang++", INFOFLOW_CUDA="off")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "wheel"),
         f"-Cbuild-dir={tmp_path / 'build'}", str(REPO)],
        capture_output=True, text=True, env=env, timeout=1500)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("infoflow-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    code = textwrap.dedent("""
        import sys
        # A development (editable) install redirects imports of infoflow ahead of PYTHONPATH.
        sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable")]
        import numpy as np, infoflow
        from scipy.special import logsumexp
        info = infoflow.build_info()
        x = np.random.default_rng(0).uniform(-1, 1, (300, 7))
        d2 = ((x[:, None, :] - x[None]) ** 2).sum(-1)
        error = np.abs(infoflow.gaussian_lse(x, x, 0.3) - logsumexp(-d2 / (2 * 0.3**2), axis=1)).max()
        print(infoflow.__file__, info["compiler"], info["simd_compiled"], error)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(tmp_path / "site")))
    assert run.returncode == 0, run.stderr
    where, compiler, *rest = run.stdout.split(maxsplit=2)
    assert where.startswith(str(tmp_path / "site")) and compiler == "clang", run.stdout
    assert float(run.stdout.split()[-1]) < 1e-12, run.stdout


def test_requirements_pin_the_cpu_build_of_torch():
    # A bare torch==2.13.0 resolves to PyPI's CUDA build on an ordinary Linux machine.
    from packaging.requirements import Requirement

    lines = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    assert "--find-links https://download.pytorch.org/whl/cpu/torch/" in lines
    torch_pins = {}
    for line in lines:
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            if requirement.name == "torch":
                for platform in ("linux", "win32", "darwin"):
                    if requirement.marker is None or requirement.marker.evaluate({"sys_platform": platform}):
                        torch_pins.setdefault(platform, []).append(str(requirement.specifier))
    assert torch_pins == {"linux": ["==2.13.0+cpu"], "win32": ["==2.13.0+cpu"], "darwin": ["==2.13.0"]}
    if in_ci():  # and what CI installed from it is that build
        import torch

        assert torch.version.cuda is None and torch.__version__.endswith("+cpu"), torch.__version__
