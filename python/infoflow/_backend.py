"""The one place that knows which compiled extension runs a kernel.

Estimators call :func:`log_density_3d` with validated (batch, rows, dim) arrays; it runs
the CPU core for numpy arrays and torch CPU tensors, the CUDA module for torch CUDA
tensors, and returns the caller's array type on the caller's device.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np

from . import _core
from ._intake import FloatArray, largest_magnitude

try:  # _cuda exists only where nvcc was found at build time
    from . import _cuda
except ImportError as _exc:  # pragma: no cover - depends on the build
    _cuda = None
    _CUDA_IMPORT_ERROR: str | None = str(_exc)
else:
    _CUDA_IMPORT_ERROR = None

CUDA_BUILT = _cuda is not None


def cuda_devices() -> tuple[int, str | None]:
    """(number of GPUs infoflow's CUDA module sees, None or why it sees none).

    Asked of the CUDA runtime at each call, never at import: initialising CUDA at import
    would break CUDA in children forked afterwards and fix the count for the process."""
    if not CUDA_BUILT:
        return 0, f"built without CUDA ({_CUDA_IMPORT_ERROR})"
    count, error = _cuda.device_count()
    return count, error


def has_cuda() -> bool:
    """Whether a CUDA GPU is usable now (built with CUDA, a driver, a visible device).

    Examples
    --------
    >>> import infoflow
    >>> infoflow.has_cuda() in (True, False)  # False on a CPU-only build or machine
    True
    """
    return cuda_devices()[0] > 0


def __getattr__(name: str):
    if name == "HAS_CUDA":  # the old constant, now asked when read
        return has_cuda()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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
        versions, the visible devices and ``cuda_device_error`` (None, or the CUDA error
        that explains why no device is visible, e.g. a driver older than the runtime).

    Examples
    --------
    >>> import infoflow
    >>> info = infoflow.build_info()
    >>> info["version"] == infoflow.__version__
    True
    >>> info["simd_runtime"] in info["simd_supported"]
    True
    """
    info = dict(_core.build_info())
    info["simd_runtime"] = simd_level() if simd_level() != "auto" else info["simd_runtime"]
    info["cuda_built"] = CUDA_BUILT
    if CUDA_BUILT:
        info.update(_cuda.build_info())
        info["has_cuda"] = info["cuda_device_count"] > 0
    else:
        info["has_cuda"] = False
        info["cuda_import_error"] = _CUDA_IMPORT_ERROR
    return info


def spatial_order(rows: np.ndarray) -> np.ndarray:
    """The k-d order (int64, one per row) in which the CPU kernel's pruned path takes the
    rows of a host (n, d) array; reordering once lets several calls on subsets of the same
    centres pass ``centers_ordered=True`` instead of each ordering them again."""
    return _core.spatial_order(np.ascontiguousarray(rows), simd_level())


def log_density_3d(queries: FloatArray, centers: FloatArray, beta: float, num_threads: int | None,
                   *, near_center: np.ndarray | None = None, weights: FloatArray | None = None,
                   centers_ordered: bool = False, shift: np.ndarray | None = None):
    """Kernel call on validated 3-D arrays of one type, dtype and device.

    ``near_center`` (int64, one per query row, optional) names a centre likely to be near
    each query, such as the centre a Monte Carlo query was drawn around.  It changes only
    the speed of the brute path: the CPU kernel uses it to bound each query's nearest
    distance early.  ``weights`` (validated, shape (batch, n), optional) makes the result
    log sum_j w_j exp(-|q - c_j|^2 / (2 beta^2)).  ``centers_ordered`` says that the
    centres are in :func:`spatial_order` (or a subsequence of it): a speed hint.
    ``shift`` (float64, one per batch row, optional) is added to each mixture's results
    in double precision before they are rounded to the dtype.

    Betas far from 1 (whose square, or whose squared distances, would leave the dtype's
    range) are handled by scaling the points and beta by one power of two, which changes
    no rounding; a ValueError says when the data themselves are out of range (see
    :func:`power_of_two_scale`).
    """
    scale = power_of_two_scale(queries, centers, beta)
    q, c = (queries.data, centers.data) if scale == 1.0 else (queries.data * scale, centers.data * scale)
    beta *= scale
    if queries.on_cuda:
        if weights is not None:
            raise NotImplementedError(
                "weights: weighted mixtures run on the CPU kernel only for now; pass CPU tensors "
                "or numpy arrays (or repeat each centre by its integer weight)")
        out = _log_density_cuda(q, c, beta)
        if shift is not None:
            out += torch_tensor(np.asarray(shift, dtype=np.float64)[:, None], out)
        return out
    if shift is not None:
        shift = np.ascontiguousarray(shift, dtype=np.float64)
    out = _core.log_density(q, c, beta, num_threads or 0, simd_level(), gemm_screen(),
                            near_center, False, pruning(), None if weights is None else weights.data,
                            centers_ordered, shift)
    if queries.kind == "torch":
        import torch

        return torch.from_numpy(out)
    return out


def torch_tensor(values: np.ndarray, like):
    """``values`` as a tensor of ``like``'s dtype and device."""
    import torch

    return torch.from_numpy(values).to(device=like.device, dtype=like.dtype)


# The kernels run unscaled while beta lies in [2^-16, 2^16]: there 1/(2 beta^2), squared
# distances of data of a sensible size and weight offsets all fit float32 comfortably.
_UNSCALED_BETA_EXPONENT = 16


def power_of_two_scale(queries: FloatArray, centers: FloatArray, beta: float) -> float:
    """The power of two s by which the kernel scales points and beta (1.0: none).

    exp(-|q - c|^2 / (2 beta^2)) is unchanged by scaling q, c and beta alike, and scaling
    by a power of two rounds nothing, so the result is the same bit for bit; only the
    intermediate squared distances and 1/(2 beta^2) move into range.  What no scaling
    can fix is data so spread out in units of beta that the exponents themselves leave
    the dtype: d ((max|q| + max|c|) / beta)^2 must stay below 1/64 of the dtype's largest
    number (about 5e36 in float32, 3e306 in float64), else this raises a ValueError.
    """
    d = queries.shape[-1]
    largest = float(np.finfo(queries.dtype).max) / 64.0
    reach = math.sqrt(largest / d)  # the largest |q - c| whose square d-fold stays in range
    extent = _magnitude(queries) + _magnitude(centers)
    if extent / beta > reach:
        hint = ", or use float64" if queries.dtype == np.float32 else ""
        raise ValueError(
            f"beta: {beta:.3g} is too small for points of magnitude up to {extent:.3g} in d = {d} in "
            f"{queries.dtype} arithmetic: the squared distances in units of beta would overflow (the kernel needs "
            f"d (extent / beta)^2 <= {largest:.3g}, so beta >= {extent / reach:.3g}); rescale the data{hint}")
    _, exponent = math.frexp(beta)  # beta = f 2^exponent, 0.5 <= f < 1
    if abs(exponent) <= _UNSCALED_BETA_EXPONENT and extent <= reach:
        return 1.0
    return math.ldexp(1.0, -exponent)


def _magnitude(array: FloatArray) -> float:
    """max |x| of a validated array (computed here for arrays made internally)."""
    return array.magnitude if array.magnitude is not None else largest_magnitude(array.data)


def _log_density_cuda(queries, centers, beta: float):
    import torch

    if not CUDA_BUILT:
        raise RuntimeError(
            "queries: a CUDA tensor was given but infoflow was built without CUDA "
            f"({_CUDA_IMPORT_ERROR}); reinstall on a machine with nvcc, or pass CPU tensors"
        )
    count, error = cuda_devices()
    if count == 0:
        raise RuntimeError(f"queries: a CUDA tensor was given but infoflow's CUDA module sees no GPU ({error})")
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
