"""The one place that knows which compiled extension runs a kernel.

Estimators call :func:`log_density_3d` with validated (batch, rows, dim) arrays; it runs
the CPU core for numpy arrays and torch CPU tensors, the CUDA module for torch CUDA
tensors, and returns the caller's array type on the caller's device.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from . import _core
from ._intake import FloatArray

try:  # _cuda exists only where nvcc was found at build time
    from . import _cuda
except ImportError as _exc:  # pragma: no cover - depends on the build
    _cuda = None
    _CUDA_IMPORT_ERROR: str | None = str(_exc)
else:
    _CUDA_IMPORT_ERROR = None

CUDA_BUILT = _cuda is not None
HAS_CUDA = CUDA_BUILT and _cuda.device_count() > 0

_SIMD_CHOICES = ("auto", "generic", "avx2", "avx512")


def _env_choice(variable: str, choices: tuple[str, ...]) -> str:
    """The value of a run-time switch, or ``"auto"`` (with a warning) when it is unknown."""
    wanted = os.environ.get(variable, "auto").strip().lower() or "auto"
    if wanted not in choices:
        warnings.warn(f"{variable}={wanted!r} is not one of {choices}; using 'auto'", stacklevel=4)
        return "auto"
    return wanted


def simd_level() -> str:
    """The CPU kernel to use: ``INFOFLOW_SIMD`` when set (for testing), else the best."""
    wanted = _env_choice("INFOFLOW_SIMD", _SIMD_CHOICES)
    if wanted != "auto" and not _core.isa_supported(wanted):
        warnings.warn(f"INFOFLOW_SIMD={wanted!r} is not supported on this CPU; using 'auto'", stacklevel=3)
        return "auto"
    return wanted


_SCREEN_CHOICES = ("auto", "off", "always")


def gemm_screen() -> str:
    """The CPU kernel's GEMM-form screen: ``INFOFLOW_GEMM_SCREEN`` when set (for tests and
    benchmarks: ``off`` or ``always``), else ``auto``."""
    return _env_choice("INFOFLOW_GEMM_SCREEN", _SCREEN_CHOICES)


_PRUNE_CHOICES = ("auto", "off", "always")


def pruning() -> str:
    """The CPU kernel's exact block pruning: ``INFOFLOW_PRUNE`` when set (for tests and
    benchmarks: ``off`` runs the brute path, ``always`` prunes even small problems), else
    ``auto``."""
    return _env_choice("INFOFLOW_PRUNE", _PRUNE_CHOICES)


def build_info() -> dict[str, Any]:
    """How the compiled extensions were built and what this machine offers.

    Returns
    -------
    dict
        ``version``, ``compiler``, ``openmp`` (bool), ``openmp_version``,
        ``simd_compiled`` (kernels in the build), ``simd_supported`` (those this CPU
        runs), ``simd_runtime`` (the one used), ``max_threads``, ``cuda_built`` and,
        when built, the CUDA compiler version, architectures, runtime and driver
        versions and the visible devices.
    """
    info = dict(_core.build_info())
    info["simd_runtime"] = simd_level() if simd_level() != "auto" else info["simd_runtime"]
    info["cuda_built"] = CUDA_BUILT
    info["has_cuda"] = HAS_CUDA
    if CUDA_BUILT:
        info.update(_cuda.build_info())
    else:
        info["cuda_import_error"] = _CUDA_IMPORT_ERROR
    return info


def spatial_order(rows: np.ndarray) -> np.ndarray:
    """The k-d order (int64, one per row) in which the CPU kernel's pruned path takes the
    rows of a host (n, d) array; reordering once lets several calls on subsets of the same
    centres pass ``centres_ordered=True`` instead of each ordering them again."""
    return _core.spatial_order(np.ascontiguousarray(rows), simd_level())


def log_density_3d(queries: FloatArray, centers: FloatArray, beta: float, num_threads: int | None,
                   *, near_centre: np.ndarray | None = None, weights: FloatArray | None = None,
                   centres_ordered: bool = False):
    """Kernel call on validated 3-D arrays of one type, dtype and device.

    ``near_centre`` (int64, one per query row, optional) names a centre likely to be near
    each query, such as the centre a Monte Carlo query was drawn around.  It changes only
    the speed of the brute path: the CPU kernel uses it to bound each query's nearest
    distance early.  ``weights`` (validated, shape (batch, n), optional) makes the result
    log sum_j w_j exp(-|q - c_j|^2 / (2 beta^2)).  ``centres_ordered`` says that the
    centres are in :func:`spatial_order` (or a subsequence of it): a speed hint.
    """
    if queries.on_cuda:
        if weights is not None:
            raise NotImplementedError(
                "weights: weighted mixtures run on the CPU kernel only for now; pass CPU tensors "
                "or numpy arrays (or repeat each centre by its integer weight)")
        return _log_density_cuda(queries.data, centers.data, beta)
    out = _core.log_density(queries.data, centers.data, beta, num_threads or 0, simd_level(), gemm_screen(),
                            near_centre, False, pruning(), None if weights is None else weights.data,
                            centres_ordered)
    if queries.kind == "torch":
        import torch

        return torch.from_numpy(out)
    return out


def _log_density_cuda(queries, centers, beta: float):
    import torch

    if not CUDA_BUILT:
        raise RuntimeError(
            "queries: a CUDA tensor was given but infoflow was built without CUDA "
            f"({_CUDA_IMPORT_ERROR}); reinstall on a machine with nvcc, or pass CPU tensors"
        )
    if not HAS_CUDA:
        raise RuntimeError("queries: a CUDA tensor was given but infoflow's CUDA module sees no GPU")
    device = queries.device
    out = torch.empty(queries.shape[:2], dtype=queries.dtype, device=device)
    with torch.cuda.device(device):
        stream = torch.cuda.current_stream(device).cuda_stream
        _cuda.log_density(
            "float32" if queries.dtype == torch.float32 else "float64",
            queries.data_ptr(), tuple(queries.shape), tuple(queries.stride()),
            centers.data_ptr(), tuple(centers.shape), tuple(centers.stride()),
            out.data_ptr(), beta, stream, device.index,
        )
    return out


def reshape_3d(array: FloatArray, batch: int, rows: int, dim: int) -> FloatArray:
    """View (..., rows, dim) as (batch, rows, dim); copies only when numpy must."""
    data = array.data.reshape(batch, rows, dim)
    return FloatArray(data, array.kind, array.device, array.dtype, (batch, rows, dim))


def to_numpy(values) -> np.ndarray:
    """Host copy of a kernel result, for estimator arithmetic in float64."""
    if isinstance(values, np.ndarray):
        return values
    return values.detach().cpu().numpy()
