"""The CUDA kernel on torch CUDA tensors: the CPU test grid, streams and devices.
Skipped, with the reason, where there is no GPU."""

import math

import numpy as np
import pytest
from reference import DTYPE_TOL, log_density_reference, lse_reference, relative_error

import infoflow

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not infoflow.HAS_CUDA,
                       reason="no CUDA GPU visible to infoflow (or built without CUDA)"),
]

@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("d", [1, 2, 7, 16, 33, 100, 128])
@pytest.mark.parametrize("n", [1, 31, 32, 33, 1000, 5000])
def test_grid_against_reference(rng, dtype_name, d, n):
    dtype = getattr(torch, dtype_name)
    q = rng.uniform(-1, 1, (2, 129, d))
    c = rng.uniform(-1, 1, (2, n, d))
    beta = 0.3 * math.sqrt(d)
    out = infoflow.log_density(torch.from_numpy(q).to("cuda", dtype), torch.from_numpy(c).to("cuda", dtype), beta)
    assert out.device.type == "cuda" and out.dtype == dtype and out.shape == (2, 129)
    expected = log_density_reference(q.astype(dtype_name), c.astype(dtype_name), beta)
    assert relative_error(out.cpu().numpy(), expected) <= DTYPE_TOL[np.dtype(dtype_name).type]


def test_non_contiguous_and_grad_tensors(rng):
    q = torch.from_numpy(rng.uniform(-1, 1, (3, 40, 5))).cuda()
    c = torch.from_numpy(rng.uniform(-1, 1, (5, 60, 3))).cuda().transpose(0, 2).requires_grad_()
    out = infoflow.gaussian_lse(q, c.transpose(1, 2).transpose(1, 2), 0.4)
    expected = lse_reference(q.cpu().numpy(), c.detach().cpu().numpy(), 0.4)
    assert relative_error(out.cpu().numpy(), expected) <= DTYPE_TOL[np.float64]


def test_float32_accuracy_at_small_beta(rng):
    beta = 1e-3
    for d in (1, 10, 100):
        centers = np.tanh(rng.normal(size=(600, d)) * 2).astype(np.float32)
        near = (centers[:200] + beta * rng.normal(size=(200, d))).astype(np.float32)
        out = infoflow.gaussian_lse(torch.from_numpy(near).cuda(), torch.from_numpy(centers).cuda(), beta)
        assert relative_error(out.cpu().numpy(), lse_reference(near, centers, beta)) <= DTYPE_TOL[np.float32]


def test_runs_on_the_current_stream(rng):
    q = torch.from_numpy(rng.uniform(-1, 1, (4000, 8))).cuda()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out = infoflow.gaussian_lse(q, q, 0.2)
        total = out.sum()  # ordered after the kernel on the same stream
    stream.synchronize()
    expected = lse_reference(q.cpu().numpy(), q.cpu().numpy(), 0.2)
    assert float(total) == pytest.approx(expected.sum(), rel=1e-12)


def test_estimators_on_gpu_match_cpu(rng):
    centers = rng.uniform(-1, 1, (500, 3))
    cpu = infoflow.mixture_entropy(centers, 0.1, rng=7)
    gpu = infoflow.mixture_entropy(torch.from_numpy(centers).cuda(), 0.1, rng=7)
    assert gpu.value == pytest.approx(cpu.value, rel=1e-12)  # same draws, float64 kernels
    b_cpu = infoflow.mixture_entropy_bounds(centers, 0.1)
    b_gpu = infoflow.mixture_entropy_bounds(torch.from_numpy(centers).cuda(), 0.1)
    np.testing.assert_allclose(b_gpu, b_cpu, rtol=1e-12)


def test_device_mismatch_is_an_error():
    with pytest.raises(ValueError, match="queries is on cuda:0 but centers is on cpu"):
        infoflow.log_density(torch.zeros(3, 2, device="cuda", dtype=torch.float64),
                             torch.zeros(3, 2, dtype=torch.float64), 1.0)
