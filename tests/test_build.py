"""What was built, and that the package works on a machine without a GPU."""

import numpy as np
import pytest

import infoflow


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

    count = _cuda.device_count()  # must not raise on a machine without a driver
    assert count >= 0 and infoflow.HAS_CUDA == (count > 0)


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
