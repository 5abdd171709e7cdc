r"""Information flow through a noisy network: :math:`I(X;T_\ell)` and :math:`I(Y;T_\ell)` per layer.

:func:`information_flow` measures one trained (or untrained) model: it samples every
:class:`~infoflow.nn.GaussianNoise` layer with :func:`~infoflow.sampling.sample_layers`
and estimates both mutual informations with the sample-propagation estimators
:func:`~infoflow.mi_xt` and :func:`~infoflow.mi_yt`.
Its result types are in :mod:`infoflow.results`; :class:`~infoflow.InformationPlane`
calls it at chosen epochs of a training loop (:mod:`infoflow.schedule`) and keeps the
history, which :func:`~infoflow.plot_information_plane` draws.

X is uniform over the m given inputs and Y their labels, so every value lies between 0
and :math:`\ln m` (for I(X;T)) or :math:`H(Y)` (for I(Y;T)), up to estimation error.
Results are in nats unless ``base=`` says otherwise.

This module imports torch (through :mod:`infoflow.sampling`); ``import infoflow`` does not.

References
----------
Z. Goldfeld, E. van den Berg, K. Greenewald, I. Melnyk, N. Nguyen, B. Kingsbury and
Y. Polyanskiy, "Estimating Information Flow in Deep Neural Networks", ICML 2019.
"""

from __future__ import annotations

import importlib
import math
import numbers
from typing import Any

import numpy as np

from ._intake import (
    class_labels,
    log_of_base,
    monte_carlo_budget,
    positive_int,
    thread_count,
    torch_missing_error,
    unit_name,
)
from ._random import make_rng

try:
    import torch  # noqa: F401  (the models measured here are torch models)
except ModuleNotFoundError as _exc:
    raise torch_missing_error("infoflow.flow (information_flow, InformationPlane)", _exc) from None

from .convergence_in_r import warn_if_unconverged
from .layer_terms import check_layer_budget
from .mutual_information import layer_information
from .nn import common_beta, named_noise_modules
from .results import InformationFlow, LayerInformation
from .sampling import check_inputs, check_sample_rows, dataset_arrays, is_dataset, sample_layers

__all__ = ["information_flow"]

# Where the public names that this module held before it was split now live; they stay
# importable from here (``from infoflow.flow import InformationPlane``), loaded on first use.
_MOVED = {
    "LayerInformation": "results",
    "InformationFlow": "results",
    "row_convergence": "results",
    "HISTORY_FIELDS": "results",
    "CONVERGENCE_FIELDS": "results",
    "log_spaced_epochs": "schedule",
    "MAX_POINTS": "schedule",
    "InformationPlane": "recorder",
    "plot_information_plane": "plots",
    "layer_style": "plots",
}

# Relative tolerance when comparing an explicit beta with the modules' beta: a beta that
# went through float32 or a text file should still count as the same noise level.
_BETA_RTOL = 1e-6


def model_beta(model, beta=None) -> float:
    """The noise std the estimates of ``model`` are for: its noise modules' common beta,
    checked against ``beta`` when given.

    Used by :func:`information_flow` and :class:`~infoflow.InformationPlane`
    (which checks at once, not at the first record).  ValueError when the model has no
    :class:`~infoflow.nn.GaussianNoise` module, a disabled one, modules with different
    beta, or when ``beta`` differs from theirs (relative tolerance 1e-6); TypeError when
    ``beta`` is neither None nor a real number.
    """
    modules = named_noise_modules(model)
    if not modules:
        raise ValueError(
            "model: contains no infoflow.nn.GaussianNoise layers, so I(X;T) is not defined "
            "(infinite or H(X) for a deterministic net); add GaussianNoise(beta) after each "
            "layer to measure, or use infoflow.binning for deterministic nets"
        )
    disabled = [name or "<model>" for name, module in modules if not module.enabled]
    if disabled:
        # A disabled module adds no noise, so the channel X -> T is not the one estimated.
        raise ValueError(
            f"model: GaussianNoise layer(s) {disabled} are disabled (enabled=False), so the "
            "network is not the noisy channel being estimated; enable them first"
        )
    common = common_beta(modules, arg="model", advice="information_flow needs one noise level for all layers")
    if beta is None:
        return common
    if isinstance(beta, (bool, np.bool_)) or not isinstance(beta, numbers.Real):
        raise TypeError(f"beta: expected None or a real number, got {type(beta).__name__}")
    if not math.isclose(float(beta), common, rel_tol=_BETA_RTOL):
        raise ValueError(
            f"beta: {float(beta)!r} differs from the noise of the model's GaussianNoise layers "
            f"({common!r}); the estimates are only meaningful for the noise the network "
            "actually adds. Pass beta=None, or set the layers' .beta to study another noise level"
        )
    return common


def inputs_and_labels(x, y) -> tuple[Any, np.ndarray]:
    """The inputs of :func:`information_flow` and :class:`~infoflow.InformationPlane`,
    validated as :func:`~infoflow.sampling.sample_layers` does (errors name ``x``), and
    the integer labels (errors name ``y``).  A torch ``Dataset`` or
    ``DataLoader`` ``x`` is iterated once for both (see
    :func:`~infoflow.sampling.dataset_arrays`)."""
    from_batches = None
    if is_dataset(x):
        kind = type(x).__name__
        x, from_batches = dataset_arrays(x, "x")
        if from_batches is not None and y is not None:
            # A shuffling loader would give its inputs in another order than a separate y.
            raise ValueError(f"y: x is a {kind} whose batches carry labels; pass y=None to use them")
    x = check_inputs(x, "x")
    m = int(x.shape[0])
    if from_batches is not None:
        return x, class_labels(from_batches, m, name="y (the labels in x's batches)", rows="x", expr="y")
    if y is None:
        raise TypeError("y: expected the labels, an integer array with one entry per row of x (y may be omitted "
                        "only when x is a torch Dataset or DataLoader whose batches carry the labels)")
    return x, class_labels(y, m, name="y", rows="x")


def _eval_mode(model):
    """Put ``model`` in eval mode; return a function restoring every submodule's mode."""
    previous = [(module, module.training) for module in model.modules()]
    model.eval()

    def restore() -> None:
        for module, training in previous:
            module.training = training

    return restore


# Repeats that agree to within this fraction of beta count as one point: the first noisy
# layer is deterministic given X, but a batched matrix product need not give bit-identical
# rows for repeated inputs (differences of a few float32 ulps).  Merging centres that are
# delta apart changes the entropy by O((delta / beta)^2), about 1e-6 nats here.
_DETERMINISTIC_RTOL = 1e-3


def _collapse_deterministic(samples: np.ndarray, beta: float) -> np.ndarray:
    """``samples[:, :1]`` when every input's R samples agree to 1e-3 beta, else ``samples``.

    A layer with no noise upstream (the first noisy layer) is a deterministic function of
    X: its R repeats are copies.  Keeping one makes h(T | X = x) = h_Z exact instead of a
    Monte Carlo estimate, and makes h(T) R times cheaper for the same mixture.
    """
    if samples.shape[1] > 1:
        tolerance = _DETERMINISTIC_RTOL * beta
        # Two repeats tell a noisy layer at once; only a deterministic one needs all.
        if np.max(np.abs(samples[:, 1] - samples[:, 0])) > tolerance:
            return samples
        if np.max(np.abs(samples - samples[:, :1])) <= tolerance:
            return samples[:, :1]
    return samples


def information_flow(model, x, y=None, beta=None, *, repeats=8, mc_samples=None, mc_queries=None, max_centers=None,
                     batch_size=65536, base=None, rng=None, num_threads=None, convergence=True,
                     progress=False) -> InformationFlow:
    r""":math:`I(X;T_\ell)` and :math:`I(Y;T_\ell)` for every noisy layer of a model.

    X is uniform over the m rows of ``x`` and Y is their label.  Every
    :class:`~infoflow.nn.GaussianNoise` module of ``model`` defines a layer
    :math:`T_\ell = S_\ell + Z_\ell`; its samples come from
    :func:`~infoflow.sampling.sample_layers` (R forward passes per input, all noise on),
    and the two mutual informations from the sample-propagation estimators of
    :func:`~infoflow.mi_xt` and :func:`~infoflow.mi_yt`,
    which share one estimate of h(T) per layer
    (:func:`~infoflow.mutual_information.layer_information`).

    Parameters
    ----------
    model : torch.nn.Module
        A model with at least one enabled ``GaussianNoise`` module, all with the same
        ``beta`` (e.g. a :class:`~infoflow.nn.NoisyMLP`).  It is run in ``eval()`` mode
        (each submodule's mode is restored afterwards), so that dropout or batch norm
        behave as at test time; ``GaussianNoise`` adds its noise in both modes.
    x : numpy.ndarray or torch.Tensor, shape (m, ...), or torch Dataset or DataLoader
        The inputs, floating point (see ``sample_layers``).  Use the whole dataset: X is
        uniform over these rows, so I(X;T) <= ln m.  A ``Dataset`` or ``DataLoader`` is
        iterated once (:func:`~infoflow.sampling.dataset_arrays`): its batches' first
        entries are the inputs and their second entries, when present, the labels.
    y : numpy.ndarray or torch.Tensor of integers, shape (m,), optional
        The class index of each input (for one-hot rows pass ``y.argmax(1)``).  Required
        unless ``x`` is a Dataset or DataLoader whose batches carry the labels (then it
        must be None).
    beta : float, optional
        Noise standard deviation, in activation units.  None (default) reads it from the
        model's ``GaussianNoise`` modules.  An explicit value must equal theirs (relative
        tolerance 1e-6): the estimators assume that the noise in :math:`T = S + Z` is the
        noise the network adds and propagates, so estimating with another beta would
        mix two channels.  To study another noise level, set the modules' ``beta``.
    repeats : int, keyword-only
        R >= 1, samples of :math:`S_\ell` per input for the conditional entropies
        :math:`h(T_\ell | X = x_i)` (default 8), with m R <= 2**31.  More repeats reduce the (downward)
        plug-in bias of the conditional entropies, which biases I(X;T) upward in layers
        after the first.  At small beta the kernel's pruning makes the cost grow about
        linearly with m R (the paper's R = 1000 on 4096 inputs takes seconds per layer).
    mc_samples : int, optional
        K, Monte Carlo draws per mixture centre for every entropy (default: the query
        budget ``mc_queries`` instead, see ``mi_xt``).
    mc_queries : int, optional
        Monte Carlo queries for h(T), and in total for the conditional terms (default
        65536).  A budget (``mc_samples`` or ``mc_queries``) that asks for more than 2**31
        queries for any term is a ValueError, raised before sampling.
    max_centers : int, optional
        Estimate h(T) (and each class's entropy for I(Y;T)) from a random subset of at
        most this many of the m R samples (default: all).  Faster, but a subset of a
        well-separated mixture has a lower entropy, a bias that ``stderr`` does not include.
    batch_size : int, keyword-only
        The most rows per forward pass while sampling (default 65536: at large R, fewer
        and larger passes sample faster; lower it for a large model on a small GPU).
    base : float, optional
        Logarithm base of the results: None (default) for nats, 2 for bits.
    rng : None, int, numpy.random.Generator or numpy.random.SeedSequence
        The one source of randomness (Scientific Python SPEC 7,
        https://scientific-python.org/specs/spec-0007/): it seeds the network's noise during sampling
        and then drives every estimator call, in layer order.  The same seed reproduces
        the result exactly.
    num_threads : int, optional
        CPU threads for the estimation kernels (default: all).
    convergence : bool
        Also estimate every layer from the first R/2 and R/4 samples of each input
        (default True; no new forward passes, but 1.7 to 3 times the estimation time)
        and report the sequences (``LayerInformation.ixt_convergence``, the ``*_r_half``
        and ``*_r_quarter`` columns of the CSV).  A layer whose estimate moved by more
        than 3 standard errors at the last halving of R gets an
        :class:`~infoflow.RConvergenceWarning` naming it.  The values at R are
        the same either way.
    progress : bool
        Show a tqdm progress bar over the layers.

    Returns
    -------
    InformationFlow
        One :class:`~infoflow.results.LayerInformation` per noisy layer, in forward order, with values and
        Monte Carlo standard errors in nats (or ``base`` units) and, with
        ``convergence``, their R-convergence sequences.

    Raises
    ------
    TypeError
        ``model`` is not a ``torch.nn.Module``; ``x`` or ``y`` of a wrong type or dtype;
        ``beta`` not a real number.
    ValueError
        The model has no ``GaussianNoise`` layer, a disabled one, or layers with
        different beta; an explicit ``beta`` differs from the model's; ``y`` does not
        have one label per row of ``x``; or any error of ``sample_layers``, ``mi_xt``
        and ``mi_yt`` (each names its argument).

    Notes
    -----
    A layer whose R samples agree for every input to within 1e-3 beta (no noise
    upstream, e.g. the first noisy layer, equal up to floating-point rounding) is
    deterministic given X; it is estimated from one sample per input, so that
    :math:`h(T|X=x) = h_Z = \frac d2 \ln(2\pi e\beta^2)` exactly (its R-convergence
    sequence has the single level R = 1).  The standard errors are Monte Carlo errors
    only; the plug-in error of finite samples (in m R for h(T), in R for the
    conditionals) is not included: the R-convergence sequence shows how much of the
    latter is left.

    Examples
    --------
    An untrained network of the 12-bit task, on 256 of its 4096 inputs:

    >>> import torch
    >>> from infoflow.datasets import szt
    >>> from infoflow.nn import NoisyMLP
    >>> x, y = szt()
    >>> _ = torch.manual_seed(0)
    >>> net = NoisyMLP([12, 10, 7, 5, 4, 3, 2])
    >>> flow = information_flow(net, x[:256], y[:256], repeats=4, rng=0, convergence=False)
    >>> [(layer.name, layer.width, layer.repeats) for layer in flow]
    [('noise1', 10, 1), ('noise2', 7, 4), ('noise3', 5, 4), ('noise4', 4, 4), ('noise5', 3, 4)]
    >>> print(str(flow).splitlines()[0])
    Information flow over m = 256 inputs, R = 4 repeats, beta = 0.005 (values in nats, ± 1 Monte Carlo standard error)

    On all 4096 inputs, with the default R = 8 and R-convergence sequences, ``print(flow)``
    reads (the values depend on the weights)::

        Information flow over m = 4096 inputs, R = 8 repeats, beta = 0.005 (values in nats, ...)
        layer        width               I(X;T)               I(Y;T)   I(X;T) at smaller R
        noise1          10      8.3178 ± 0.0000      0.6926 ± 0.0000   (deterministic given X: exact in R)
        noise2           7      8.3137 ± 0.0054      0.6897 ± 0.0049   8.3189 (R=2), 8.3210 (R=4)
        noise3           5      7.8800 ± 0.0051      0.5135 ± 0.0049   7.9623 (R=2), 7.9128 (R=4)  (still moving with R)
        ...
    """
    import torch.nn as nn

    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    beta = model_beta(model, beta)
    x, labels = inputs_and_labels(x, y)
    m = int(x.shape[0])
    n_rep = positive_int(repeats, "repeats", allow_none=False)
    # Validate the estimator options now, before the sampling pass spends any time.
    check_sample_rows(m, n_rep)
    k, queries = monte_carlo_budget(mc_samples, mc_queries)
    check_layer_budget(m, n_rep, k, queries)
    positive_int(max_centers, "max_centers")
    thread_count(num_threads)
    log_of_base(base)
    generator = make_rng(rng)

    restore = _eval_mode(model)
    try:
        # x is validated (errors name it), so sample_layers's own checks of it pass.
        samples = sample_layers(model, x, repeats=n_rep, batch_size=batch_size, rng=generator)
    finally:
        restore()

    options = dict(mc_samples=mc_samples, mc_queries=mc_queries, max_centers=max_centers, base=base,
                   rng=generator, num_threads=num_threads, convergence=bool(convergence), warn=False)
    items = samples.items()
    if progress:
        from tqdm import tqdm

        items = tqdm(items, total=len(samples), desc="information flow", unit="layer")
    rows = []
    for name, layer_samples in items:
        s = _collapse_deterministic(layer_samples, beta)
        ixt, iyt = layer_information(s, labels, beta, **options)  # one h(T) for both
        for key, estimate in (("ixt", ixt), ("iyt", iyt)):
            if estimate.convergence is not None:
                warn_if_unconverged(key, estimate.convergence, where=f"{name}: ", stacklevel=2)
        rows.append(LayerInformation(name, int(s.shape[2]), float(ixt.value), float(ixt.stderr),
                                     float(iyt.value), float(iyt.stderr), ixt.unit, int(s.shape[1]),
                                     ixt.convergence, iyt.convergence))
    return InformationFlow(rows, beta=beta, repeats=n_rep, n_inputs=m, unit=unit_name(base))


def __dir__():
    return sorted(set(globals()) | set(_MOVED))


def __getattr__(name):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MOVED[name]}", __package__), name)
