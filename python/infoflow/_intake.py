"""Validation and intake of user arrays.

Every public function passes its inputs through here before any compiled code runs, so
that bad input gets a precise error naming the argument (TypeError for types and dtypes,
ValueError for shapes and values) and good input reaches the kernels without copies.
"""

from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class FloatArray:
    """A validated float32/float64 array and where it lives.

    ``data`` is a numpy array for numpy input and for torch CPU tensors (a view sharing
    memory), and the (detached) tensor itself for torch CUDA tensors.
    """

    data: Any
    kind: str  # "numpy" or "torch"
    device: str  # "cpu" or e.g. "cuda:0"
    dtype: np.dtype
    shape: tuple
    magnitude: float | None = None  # max |x| when known (the kernel range check needs it)

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")


def torch_module():
    """The torch module if the caller has imported it, else None (never imported here:
    a tensor can only exist if the caller already did)."""
    return sys.modules.get("torch")


#: What to install for the parts of infoflow that need PyTorch (the ``experiments`` extra
#: of pyproject.toml: torch and scikit-learn).
INSTALL_EXPERIMENTS = 'pip install "infoflow[experiments]"'


def torch_missing_error(what: str, exc: ModuleNotFoundError) -> ModuleNotFoundError:
    """The error to raise when importing torch for ``what`` failed with ``exc``.

    When torch itself is missing: a ModuleNotFoundError (``name="torch"``, a subclass of
    ImportError) whose one-line message says what to install.  Any other missing module
    (say, one that a broken torch install needs) is returned unchanged, so that its own
    name is not hidden behind a wrong hint.
    """
    if (exc.name or "").split(".")[0] != "torch":
        return exc
    return ModuleNotFoundError(f"{what} needs PyTorch (torch), which is not installed; install it with: "
                               f"{INSTALL_EXPERIMENTS}", name="torch")


def host_array(x: Any, name: str) -> np.ndarray | None:
    """``x`` as a plain numpy.ndarray when it is a numpy array, else None.

    ``numpy.matrix`` and ``numpy.memmap`` are viewed as plain arrays (no copy): their
    values are the data.  A masked array is a TypeError, because its mask would be
    ignored (masked entries would still count as data, and their values used); so is any
    other ndarray subclass, whose extra meaning (units, say) would be dropped silently.
    """
    if not isinstance(x, np.ndarray):
        return None
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name}: numpy masked arrays are not supported: the mask would be ignored, and masked "
            "entries would still count as data. Drop the masked rows (e.g. "
            f"{name}[~numpy.ma.getmaskarray({name}).any(axis=-1)].data, or {name}.compressed() for 1-D data) "
            f"or fill them explicitly ({name}.filled(value)), and pass a plain numpy.ndarray"
        )
    if type(x) is np.ndarray:
        return x
    if isinstance(x, (np.matrix, np.memmap)):
        return x.view(np.ndarray)
    raise TypeError(
        f"{name}: got a {type(x).__module__}.{type(x).__name__}, a subclass of numpy.ndarray whose extra "
        f"meaning infoflow would ignore; pass numpy.asarray({name}) if its plain values are what you mean"
    )


def float_array(x: Any, name: str, *, min_ndim: int = 2) -> FloatArray:
    """Validate a float array argument; see the module docstring for the rules."""
    torch = torch_module()
    host = host_array(x, name)
    if host is not None:
        x = host
        dtype = x.dtype
        if dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{name}: expected dtype float32 or float64, got {dtype}; convert explicitly, "
                f"e.g. {name}.astype(numpy.float64)"
            )
        data, kind, device = x, "numpy", "cpu"
    elif torch is not None and isinstance(x, torch.Tensor):
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(
                f"{name}: expected dtype torch.float32 or torch.float64, got {x.dtype}; "
                f"convert explicitly, e.g. {name}.double()"
            )
        dtype = np.dtype(np.float32 if x.dtype == torch.float32 else np.float64)
        t = x.detach()
        if t.device.type == "cpu":
            data, device = t.resolve_conj().resolve_neg().numpy(), "cpu"
        elif t.device.type == "cuda":
            data, device = t, str(t.device)
        else:
            raise ValueError(f"{name}: tensors on device '{t.device}' are not supported (cpu or cuda)")
        kind = "torch"
    else:
        raise TypeError(f"{name}: expected a numpy.ndarray or torch.Tensor, got {type(x).__name__}")

    shape = tuple(x.shape)
    if len(shape) < min_ndim:
        hint = f" (for 1-D samples use {name}.reshape(-1, 1))" if len(shape) == 1 else ""
        raise ValueError(
            f"{name}: expected at least {min_ndim} dimensions (..., rows, dim), got shape {shape}{hint}"
        )
    if any(s == 0 for s in shape):
        raise ValueError(f"{name}: empty input, shape {shape}")
    magnitude = largest_magnitude(data)
    if not math.isfinite(magnitude):
        raise ValueError(f"{name}: contains NaN or infinity")
    return FloatArray(data, kind, device, dtype, shape, magnitude)


# Elements per step of a host scan: a few milliseconds, so that Ctrl-C (which Python
# handles between steps) stops a check of millions of rows at once.
_SCAN_CHUNK = 1 << 22


def _scan_chunks(a: np.ndarray):
    """Views of ``a`` of at most ~_SCAN_CHUNK elements that together cover it, without copies."""
    if a.size <= _SCAN_CHUNK:
        yield a
    elif a.flags.c_contiguous:
        flat = a.reshape(-1)
        for start in range(0, flat.size, _SCAN_CHUNK):
            yield flat[start:start + _SCAN_CHUNK]
    elif a.shape[0] == 1:
        yield from _scan_chunks(a[0])
    else:
        step = max(1, _SCAN_CHUNK * a.shape[0] // a.size)
        for start in range(0, a.shape[0], step):
            yield from _scan_chunks(a[start:start + step])


def largest_magnitude(data: Any) -> float:
    """max |x| of a float array (host numpy or torch tensor); NaN when it holds a NaN, inf an infinity."""
    if not isinstance(data, np.ndarray):  # a torch tensor on its device: one reduction there
        low, high = (float(v) for v in torch_module().aminmax(data))
        return max(-low, high) if not (math.isnan(low) or math.isnan(high)) else math.nan
    largest = 0.0
    for chunk in _scan_chunks(data):
        low, high = float(chunk.min()), float(chunk.max())  # min and max propagate NaN
        if math.isnan(low) or math.isnan(high):
            return math.nan
        largest = max(largest, -low, high)
    return largest


def same_family(first: FloatArray, second: FloatArray, first_name: str, second_name: str) -> None:
    """Require two arrays of one type, dtype and device (no silent casts or copies)."""
    if first.kind != second.kind:
        raise TypeError(
            f"{first_name} is a {first.kind} array but {second_name} is a {second.kind} array; "
            "pass both as the same type"
        )
    if first.dtype != second.dtype:
        raise TypeError(
            f"{first_name} has dtype {first.dtype} but {second_name} has dtype {second.dtype}; "
            "convert one explicitly"
        )
    if first.device != second.device:
        raise ValueError(
            f"{first_name} is on {first.device} but {second_name} is on {second.device}; "
            "move them to one device"
        )


def center_weights(weights: Any, centers: FloatArray, name: str = "weights") -> FloatArray | None:
    """Validate optional mixture weights against validated ``centers`` of shape (..., n, d).

    Returns None for None, else the weights as a C-contiguous array of the centres'
    array type, dtype and device with shape ``centers.shape[:-1]`` (a (n,) array is
    broadcast over the batch axes).  Weights are finite and >= 0 with a positive one in
    every mixture.  A dtype other than the centres' is a TypeError, except a float array
    whose values convert to the centres' dtype exactly.
    """
    if weights is None:
        return None
    torch = torch_module()
    host = host_array(weights, name)
    if host is not None:
        weights = host
        kind = "numpy"
    elif torch is not None and isinstance(weights, torch.Tensor):
        kind = "torch"
    else:
        raise TypeError(f"{name}: expected None, a numpy.ndarray or a torch.Tensor, got {type(weights).__name__}")
    if kind != centers.kind:
        raise TypeError(f"{name} is a {kind} array but centers is a {centers.kind} array; pass both as the same type")
    if kind == "torch":
        if not (weights.dtype.is_floating_point and weights.dtype in (torch.float32, torch.float64)):
            raise TypeError(f"{name}: expected a float32 or float64 tensor, got {weights.dtype}")
        if str(weights.device) != centers.device:
            raise ValueError(f"{name} is on {weights.device} but centers is on {centers.device}; "
                             "move them to one device")
        data = weights.detach()
        host = data.cpu().numpy() if data.device.type == "cpu" else None
        dtype = np.dtype(np.float32 if data.dtype == torch.float32 else np.float64)
    else:
        data = host = weights
        dtype = weights.dtype
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: expected dtype float32 or float64, got {dtype}; integer counts "
                            f"are not cast silently, convert explicitly, e.g. {name}.astype(numpy.float64)")
    n = centers.shape[-2]
    batch_shape = centers.shape[:-2]
    shape = tuple(weights.shape)
    if shape not in (tuple(centers.shape[:-1]), (n,)):
        raise ValueError(f"{name}: expected shape {tuple(centers.shape[:-1])} (one weight per centre) "
                         f"or ({n},), got {shape}")

    # The same checks for host arrays and for CUDA tensors (on their device).
    values, isfinite = (host, np.isfinite) if host is not None else (data, torch.isfinite)
    if not bool(isfinite(values).all()):
        raise ValueError(f"{name}: contains NaN or infinity")
    if bool((values < 0).any()):
        raise ValueError(f"{name}: must be >= 0 (got a negative weight)")
    if not bool((values > 0).any(-1).all()):
        raise ValueError(f"{name}: every mixture needs a positive weight (got all zeros)")
    if dtype != centers.dtype:
        if kind == "torch":
            torch_dtype = torch.float32 if centers.dtype == np.float32 else torch.float64
            converted = data.to(torch_dtype)
            exact = bool((converted.to(data.dtype) == data).all())
        else:
            with np.errstate(over="ignore"):  # an overflow is caught as inexact below
                converted = data.astype(centers.dtype)
            exact = bool((converted.astype(dtype) == data).all())
        if not exact:
            raise TypeError(f"{name}: has dtype {dtype} but centers has dtype {centers.dtype}, and its values "
                            "do not convert exactly; convert one explicitly")
        data = converted
    if kind == "torch":
        data = data.expand(*batch_shape, n).contiguous()
        if data.device.type == "cpu":
            data = data.numpy()
    else:
        data = np.ascontiguousarray(np.broadcast_to(data, (*batch_shape, n)))
    return FloatArray(data, kind, centers.device, centers.dtype, (*batch_shape, n))


def positive_real(x: Any, name: str) -> float:
    """A finite real number > 0 (beta, a bandwidth); a one-element float tensor counts."""
    torch = torch_module()
    if torch is not None and isinstance(x, torch.Tensor):
        if x.numel() != 1 or not x.dtype.is_floating_point:
            raise TypeError(f"{name}: expected a real number or a one-element float tensor, got a {x.dtype} "
                            f"tensor of shape {tuple(x.shape)}")
        x = float(x.detach())
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(x).__name__}")
    value = float(x)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: must be finite and > 0, got {value!r}")
    return value


def beta_range(dtype: np.dtype, *, noisy: bool = False) -> tuple[float, float]:
    """The betas supported in ``dtype`` arithmetic: from its smallest normal number to its
    largest, or to 1/64 of it for estimators that draw noisy points x + beta z (which
    must stay finite)."""
    info = np.finfo(dtype)
    return float(info.tiny), float(info.max) / (64.0 if noisy else 1.0)


def beta_for_dtype(beta: Any, dtype: np.dtype, name: str = "beta", *, noisy: bool = False) -> float:
    """Validate beta against :func:`beta_range` of the working dtype."""
    value = positive_real(beta, name)
    low, high = beta_range(dtype, noisy=noisy)
    if not low <= value <= high:
        hint = " or use float64" if dtype == np.float32 else ""
        raise ValueError(f"{name}: {value!r} is outside the range supported in {np.dtype(dtype)} arithmetic, "
                         f"[{low:.3g}, {high:.3g}]; rescale the data{hint}")
    return value


# The most threads one call may use: GNU OpenMP fails to create tens of thousands of
# threads (and crashes beyond); the compiled core refuses more as well.
MAX_THREADS = 1024


def thread_count(x: Any, name: str = "num_threads") -> int | None:
    """None (all cores) or an integer in [1, MAX_THREADS]."""
    threads = positive_int(x, name)
    if threads is not None and threads > MAX_THREADS:
        raise ValueError(f"{name}: must be at most {MAX_THREADS}, got {threads}")
    return threads


def positive_int(x: Any, name: str, *, allow_none: bool = True) -> int | None:
    """An integer >= 1, or None where allowed."""
    if x is None and allow_none:
        return None
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(x).__name__}")
    if x < 1:
        raise ValueError(f"{name}: must be >= 1, got {x}")
    return int(x)


def monte_carlo_budget(mc_samples: Any, mc_queries: Any) -> tuple[int | None, int | None]:
    """Validated ``(mc_samples, mc_queries)``: draws per centre or queries per mixture, at most one given."""
    k = positive_int(mc_samples, "mc_samples")
    queries = positive_int(mc_queries, "mc_queries")
    if k is not None and queries is not None:
        raise ValueError("mc_samples and mc_queries: give at most one (draws per centre, or queries per mixture)")
    return k, queries


def log_of_base(base: Any) -> float:
    """ln(base) for converting nats; 1.0 for base=None (nats)."""
    if base is None:
        return 1.0
    value = positive_real(base, "base")
    if value == 1.0:
        raise ValueError("base: must not be 1")
    return math.log(value)


def unit_name(base: Any) -> str:
    if base is None or base == math.e:
        return "nats"
    if base == 2:
        return "bits"
    if base == 10:
        return "hartleys"
    return f"log-base-{base:g} units"


def class_labels(labels: Any, m: int, *, name: str = "labels", rows: str = "samples",
                 expr: str | None = None) -> np.ndarray:
    """Integer (or bool) class labels of shape (m,) as a host numpy array.

    ``name`` is the argument's name in messages, ``rows`` the argument whose m rows the
    labels must match, and ``expr`` the expression the hints apply methods to (default
    ``name``).  A 2-D array of shape (m, classes), one-hot or class probabilities, is a
    ValueError that suggests ``argmax(1)``, whatever its dtype.
    """
    expr = expr or name
    torch = torch_module()
    host = host_array(labels, name)
    if host is not None:
        values = host
    elif torch is not None and isinstance(labels, torch.Tensor):
        values = labels
    else:
        raise TypeError(f"{name}: expected a numpy.ndarray or torch.Tensor, got {type(labels).__name__}")
    shape = tuple(values.shape)
    if len(shape) == 2 and shape[0] == m and shape[1] > 1:
        # Checked before the dtype: one-hot rows are often float, and the fix is the same.
        raise ValueError(f"{name}: expected one class index per row of {rows}, shape ({m},), got shape {shape}: "
                         f"one-hot or probability rows? pass the class indices, e.g. {expr}.argmax(1)")
    if host is None:
        if labels.dtype.is_floating_point or labels.dtype.is_complex:
            raise TypeError(f"{name}: expected an integer dtype, got {labels.dtype}; class labels must be "
                            f"integers (convert explicitly, e.g. {expr}.long())")
        values = labels.detach().cpu().numpy()
    if values.dtype.kind not in "iub":
        raise TypeError(f"{name}: expected an integer dtype, got {values.dtype}; class labels must be "
                        f"integers (convert explicitly, e.g. {expr}.astype(numpy.int64))")
    if values.ndim != 1:
        hint = f" (use {expr}.ravel())" if values.ndim == 2 and 1 in values.shape else ""
        raise ValueError(f"{name}: expected shape ({m},), one label per row of {rows}, "
                         f"got shape {values.shape}{hint}")
    if values.shape[0] != m:
        raise ValueError(f"{name}: has {values.shape[0]} entries but {rows} has {m} rows; they must match")
    return values
