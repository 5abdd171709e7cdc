r"""Sampling the hidden layers of a noisy network: :math:`S_\ell` given each input.

The sample-propagation estimators need, for every noisy layer :math:`\ell`, samples of
:math:`S_\ell` (the noiseless input of the layer's noise, :math:`T_\ell = S_\ell + Z_\ell`):
one per input for the marginal :math:`P_{S_\ell}` and several per input for the
conditionals :math:`P_{S_\ell | X = x_i}`.  :func:`sample_layers` gets both from forward
passes of any PyTorch model that contains :class:`infoflow.nn.GaussianNoise` modules.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._intake import host_array, positive_int, torch_missing_error
from ._random import make_rng

try:
    import torch
    from torch import nn
except ModuleNotFoundError as _exc:
    raise torch_missing_error("infoflow.sampling (sample_layers)", _exc) from None

from .nn import named_noise_modules

__all__ = ["sample_layers", "dataset_arrays"]

#: The most rows of samples per layer (m inputs times R repeats) that one call may ask for, 2**31.
MAX_SAMPLE_ROWS = 1 << 31

# Rows per batch when iterating a Dataset (a DataLoader is iterated as it is).
_DATASET_BATCH = 4096


def is_dataset(x) -> bool:
    """Whether ``x`` is a torch DataLoader or Dataset (iterated in batches, not validated as an array)."""
    from torch.utils.data import DataLoader, Dataset

    return isinstance(x, (DataLoader, Dataset))


def dataset_arrays(data, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The inputs and labels of a torch ``Dataset`` or ``DataLoader``, iterated once.

    A ``Dataset`` is read in order (a ``DataLoader`` without shuffling, batches of
    4096); a ``DataLoader`` is iterated as it is, so a shuffling or sampling loader gives
    its inputs in its own order (with their labels: they stay paired), and ``drop_last``
    drops what it drops.  Each batch is a tensor of inputs, or a tuple or list whose
    first entry holds the inputs and second (when there is one) the labels; further
    entries are ignored.  Returns the concatenated inputs and labels (None when the
    batches carry none).
    """
    from torch.utils.data import DataLoader

    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=_DATASET_BATCH, shuffle=False)
    unbatched = isinstance(data, DataLoader) and data.batch_size is None and data.batch_sampler is None
    inputs, labels = [], []
    for index, batch in enumerate(loader):
        if isinstance(batch, Mapping):
            raise TypeError(f"{name}: its batches are dicts (keys {sorted(batch)[:5]}); pass the inputs as an array "
                            "or tensor instead (and the labels as y)")
        if isinstance(batch, (tuple, list)):
            if not batch:
                raise ValueError(f"{name}: batch {index} is empty")
            features, label = batch[0], batch[1] if len(batch) > 1 else None
        else:
            features, label = batch, None
        if (label is None) != (not labels) and index > 0:
            raise ValueError(f"{name}: some batches carry labels and some do not")
        inputs.append(torch.as_tensor(features))
        if label is not None:
            labels.append(torch.as_tensor(label))
    if not inputs:
        raise ValueError(f"{name}: the {type(data).__name__} yielded no data")
    join = torch.stack if unbatched else torch.cat
    try:
        x = join(inputs)
        y = join(labels) if labels else None
    except RuntimeError as exc:
        raise ValueError(f"{name}: its batches do not stack into one array ({exc})") from None
    return x, y


def check_inputs(inputs, name: str = "inputs"):
    """Validate ``inputs``: a float numpy array or tensor of shape (m, ...), m >= 1, finite.

    ``name`` is the argument's name in messages (``x`` for :func:`~infoflow.information_flow`).
    """
    host = host_array(inputs, name)
    if host is not None:
        inputs = host
        if inputs.dtype.kind != "f":
            raise TypeError(
                f"{name}: expected a floating-point array, got dtype {inputs.dtype}; integer and "
                f"boolean inputs are not cast silently, convert explicitly, e.g. {name}.astype(numpy.float32)"
                + (f" (or {name}.astype(numpy.float32) / 255 for 8-bit images, if the model expects [0, 1])"
                   if inputs.dtype == np.uint8 else "")
            )
        if not inputs.dtype.isnative:
            inputs = inputs.astype(inputs.dtype.newbyteorder("="))
    elif isinstance(inputs, torch.Tensor):
        if not inputs.is_floating_point():
            raise TypeError(
                f"{name}: expected a floating-point tensor, got {inputs.dtype}; integer and boolean "
                f"inputs are not cast silently, convert explicitly, e.g. {name}.float()"
                + (f" (or {name}.float() / 255 for 8-bit images, if the model expects [0, 1])"
                   if inputs.dtype == torch.uint8 else "")
            )
        inputs = inputs.detach()
    else:
        raise TypeError(f"{name}: expected a numpy.ndarray or torch.Tensor, got {type(inputs).__name__} "
                        "(a torch Dataset or DataLoader of the inputs works too)")
    shape = tuple(inputs.shape)
    if len(shape) == 0:
        raise ValueError(f"{name}: expected shape (m, ...) with one row per input, got a 0-d array")
    if shape[0] == 0:
        raise ValueError(f"{name}: no inputs (the leading dimension is 0), shape {shape}")
    if any(s == 0 for s in shape):
        raise ValueError(f"{name}: empty input, shape {shape}")
    finite = bool(np.isfinite(inputs).all()) if isinstance(inputs, np.ndarray) else bool(torch.isfinite(inputs).all())
    if not finite:
        raise ValueError(f"{name}: contains NaN or infinity")
    return inputs


def check_sample_rows(m: int, repeats: int) -> None:
    """ValueError naming ``repeats`` when m * R exceeds :data:`MAX_SAMPLE_ROWS`."""
    if m * repeats > MAX_SAMPLE_ROWS:
        raise ValueError(f"repeats: {m} inputs x {repeats} repeats = {m * repeats} rows of samples per layer, "
                         f"more than the maximum of 2**31 = {MAX_SAMPLE_ROWS}; lower repeats")


def _model_device_dtype(model: nn.Module, inputs) -> tuple[torch.device, torch.dtype]:
    """The device of the first parameter (or buffer) and the first floating dtype among them;
    for a model without either, the device and float dtype of the inputs."""
    device = dtype = None
    for tensor in (*model.parameters(), *model.buffers()):
        if device is None:
            device = tensor.device
        if tensor.is_floating_point():
            dtype = tensor.dtype
            break
    if device is None:
        device = inputs.device if isinstance(inputs, torch.Tensor) else torch.device("cpu")
    if dtype is None:
        if isinstance(inputs, torch.Tensor) and inputs.dtype in (torch.float32, torch.float64):
            dtype = inputs.dtype
        elif isinstance(inputs, np.ndarray) and inputs.dtype in (np.float32, np.float64):
            dtype = torch.float64 if inputs.dtype == np.float64 else torch.float32
        else:
            dtype = torch.get_default_dtype()
    return device, dtype


def _chunks(m: int, repeats: int, batch_size: int):
    """(i0, i1, r0, r1): inputs i0..i1-1, repeats r0..r1-1, at most batch_size rows each."""
    if repeats <= batch_size:
        step = batch_size // repeats
        for i0 in range(0, m, step):
            yield i0, min(m, i0 + step), 0, repeats
    else:
        for i in range(m):
            for r0 in range(0, repeats, batch_size):
                yield i, i + 1, r0, min(repeats, r0 + batch_size)


def _input_block(inputs, i0: int, i1: int, device, dtype) -> torch.Tensor:
    block = inputs[i0:i1]
    if isinstance(block, np.ndarray):
        block = torch.from_numpy(np.ascontiguousarray(block))
    return block.to(device=device, dtype=dtype)


def sample_layers(model, inputs, *, repeats=1, batch_size=4096, rng=None) -> dict[str, np.ndarray]:
    r"""Samples of :math:`S_\ell` at every :class:`~infoflow.nn.GaussianNoise` of a model.

    For each input :math:`x_i` the model is run ``repeats`` times with all noise active;
    at every noise module the module's *input* :math:`S_\ell` (before its own noise is
    added) is recorded.  Layer :math:`\ell` then holds ``repeats`` independent draws from
    :math:`P_{S_\ell | X = x_i}`: random for later layers because of the noise upstream,
    and identical across repeats for the first noisy layer, which is a deterministic
    function of :math:`x`.

    Parameters
    ----------
    model : torch.nn.Module
        Any model containing at least one ``GaussianNoise`` module (found with
        ``model.named_modules()``), e.g. a :class:`~infoflow.nn.NoisyMLP`.  Each noise
        module must run at most once per forward pass, on a tensor whose first dimension
        is the batch; its other dimensions are flattened (C order) into :math:`d_\ell`.
        The model must live on one device.
    inputs : numpy.ndarray, torch.Tensor, shape (m, ...), or torch Dataset or DataLoader
        The m inputs, one per row, of any floating dtype; they are cast to the dtype of the
        model's parameters and moved to their device (a chunk at a time).  Integer or
        boolean inputs raise TypeError rather than being cast.  A ``Dataset`` or
        ``DataLoader`` is iterated once and its inputs concatenated (see
        :func:`dataset_arrays`; labels in its batches are not needed here and are dropped).
    repeats : int, keyword-only
        R >= 1, forward passes per input (default 1: one draw of :math:`S_\ell` per input,
        samples of the marginal :math:`P_{S_\ell}` when the inputs are the dataset).  At
        most 2**31 rows of samples per layer in all (m R <= :data:`MAX_SAMPLE_ROWS`).
    batch_size : int, keyword-only
        The most rows per forward pass (default 4096).  A chunk of k inputs is run as
        k*R rows (each input repeated R times); when R > batch_size the repeats of one
        input are split over several passes.  Bounds the memory on the device.
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence, keyword-only
        Source of the noise (Scientific Python SPEC 7,
        https://scientific-python.org/specs/spec-0007/).  A seed drawn from it seeds a
        ``torch.Generator`` on the model's device, set on every noise module for the
        duration of the call (their own ``generator`` attributes are restored afterwards);
        torch's global RNG is neither used nor advanced.  None gives fresh, unpredictable
        noise.

    Returns
    -------
    dict of str to numpy.ndarray
        ``{name: samples}``, one entry per noise module that ran, in the order they ran in
        the forward pass, keyed by their name in ``model.named_modules()`` (``"noise1"``,
        ``"noise2"``, ... for a ``NoisyMLP``).  ``samples`` has shape (m, R, d_l) and lives
        in host memory: float64 for float64 models, float32 otherwise, in the units of
        the layer's activations.  ``samples[i, r]`` is the r-th draw of :math:`S_\ell`
        given ``inputs[i]``.

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``; ``inputs`` is not an array, tensor, Dataset or
        DataLoader, is a masked array, or is not floating point; ``repeats``/``batch_size``
        are not ints; ``rng`` has a wrong type.
    MemoryError
        The samples do not fit in host memory (the message says how much they need).
    ValueError
        No ``GaussianNoise`` in ``model``; ``repeats`` or ``batch_size`` < 1; m R > 2**31; ``inputs``
        empty or containing NaN/infinity; a noise module that runs more than once per
        forward pass or whose input does not have the batch as its first dimension.

    Notes
    -----
    Reproducibility: the same ``rng`` seed, ``batch_size`` and device give identical
    samples.  Each forward pass draws each layer's noise for all of its rows in one call,
    so a different ``batch_size`` (which changes the chunks) or device gives different,
    equally distributed draws; the first noisy layer, being deterministic, agrees up to
    floating-point rounding.

    The model's ``train()``/``eval()`` mode is left as it is (``GaussianNoise`` adds
    noise in both) and gradients are not tracked.  Modules whose ``enabled`` is False
    add no noise but are still sampled.  Memory: the result takes m*R*sum(d_l) floats on
    the host; the device holds one batch of at most ``batch_size`` rows at a time.

    Examples
    --------
    Four draws of each of two hidden layers (widths 4 and 3) for each of 5 inputs:

    >>> import numpy as np, infoflow
    >>> from infoflow.nn import NoisyMLP
    >>> model = NoisyMLP([2, 4, 3, 2], beta=0.1)
    >>> samples = infoflow.sample_layers(model, np.zeros((5, 2)), repeats=4, rng=0)
    >>> {name: s.shape for name, s in samples.items()}
    {'noise1': (5, 4, 4), 'noise2': (5, 4, 3)}
    >>> bool((samples["noise1"] == samples["noise1"][:, :1]).all())  # the first layer: a function of x
    True
    """
    if is_dataset(inputs):
        inputs = dataset_arrays(inputs, "inputs")[0]
    return sample_named_layers(model, inputs, "inputs", repeats=repeats, batch_size=batch_size, rng=rng)


def sample_named_layers(model, inputs, name: str, *, repeats, batch_size, rng) -> dict[str, np.ndarray]:
    """:func:`sample_layers` with ``name`` for the inputs in messages."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    noise_modules = named_noise_modules(model)
    if not noise_modules:
        raise ValueError(
            "model: contains no infoflow.nn.GaussianNoise layers, so there is nothing to sample; "
            "add GaussianNoise(beta) after each layer whose information you want to measure"
        )
    n_rep = positive_int(repeats, "repeats", allow_none=False)
    rows_max = positive_int(batch_size, "batch_size", allow_none=False)
    inputs = check_inputs(inputs, name)
    check_sample_rows(int(inputs.shape[0]), n_rep)
    np_rng = make_rng(rng)
    device, dtype = _model_device_dtype(model, inputs)
    out_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    m = int(inputs.shape[0])

    generator = torch.Generator(device=device)
    generator.manual_seed(int(np_rng.integers(0, 2**63 - 1)))

    captured: list[tuple[str, torch.Tensor]] = []

    def make_hook(name: str):
        def hook(module, args, kwargs, output):
            s = args[0] if args else kwargs["x"]
            # Copy to the host at once: nothing later in the pass can alter the record.
            captured.append((name, s.detach().to(device="cpu", dtype=out_dtype, copy=True)))

        return hook

    results: dict[str, np.ndarray] = {}
    saved_generators = [(module, module.generator) for _, module in noise_modules]
    handles = []
    try:
        for name, module in noise_modules:
            handles.append(module.register_forward_hook(make_hook(name), with_kwargs=True))
            module.generator = generator
        with torch.no_grad():
            for i0, i1, r0, r1 in _chunks(m, n_rep, rows_max):
                k, r = i1 - i0, r1 - r0
                batch = _input_block(inputs, i0, i1, device, dtype).repeat_interleave(r, dim=0)
                captured.clear()
                model(batch)
                _store(captured, results, m, n_rep, k * r, (i0, i1, r0, r1))
    finally:
        for handle in handles:
            handle.remove()
        for module, previous in saved_generators:
            module.generator = previous
    return results


def _store(captured, results, m, n_rep, rows, chunk) -> None:
    """Check one forward pass's records and copy them into the (m, R, d) result arrays."""
    i0, i1, r0, r1 = chunk
    first = not results
    names = [name for name, _ in captured]
    if not names:
        raise ValueError("model: none of its GaussianNoise modules ran in the forward pass")
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(
            f"model: the GaussianNoise module(s) {repeated} ran more than once in one forward pass; "
            "use a separate GaussianNoise instance for each noisy layer"
        )
    if not first and set(names) != set(results):
        raise ValueError(
            "model: different GaussianNoise modules ran in different forward passes "
            f"({sorted(results)} then {sorted(names)}); sample_layers needs a fixed computation"
        )
    for name, s in captured:
        if s.ndim == 0 or s.shape[0] != rows:
            raise ValueError(
                f"model: the input of GaussianNoise {name!r} has shape {tuple(s.shape)}, but the forward "
                f"batch has {rows} rows; sample_layers needs the batch as the first dimension"
            )
        flat = s.reshape(rows, -1).numpy()
        if first:
            results[name] = _result_array(m, n_rep, flat.shape[1], flat.dtype, captured)
        target = results[name]
        if flat.shape[1] != target.shape[2]:
            raise ValueError(
                f"model: GaussianNoise {name!r} got {flat.shape[1]} features per row, earlier {target.shape[2]}"
            )
        target[i0:i1, r0:r1] = flat.reshape(i1 - i0, r1 - r0, -1)



def _result_array(m: int, n_rep: int, width: int, dtype, captured) -> np.ndarray:
    """The (m, R, width) host array of one layer; a MemoryError says how much all layers need."""
    try:
        return np.empty((m, n_rep, width), dtype=dtype)
    except MemoryError as exc:
        units = sum(int(np.prod(s.shape[1:])) for _, s in captured)
        gib = m * n_rep * units * np.dtype(dtype).itemsize / 2**30
        raise MemoryError(f"repeats: the samples of all layers need {gib:.3g} GiB of host memory ({m} inputs x "
                          f"{n_rep} repeats x {units} units x {np.dtype(dtype).itemsize} bytes); lower repeats or "
                          "pass fewer inputs") from exc
