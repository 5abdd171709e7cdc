r"""Noisy neural networks in PyTorch: the channel X -> T_l of Goldfeld et al. (ICML 2019).

A noisy layer computes :math:`S_\ell = f_\ell(T_{\ell-1})` and outputs
:math:`T_\ell = S_\ell + Z_\ell`, :math:`Z_\ell \sim \mathcal N(0, \beta^2 I)`.
:class:`GaussianNoise` is the ":math:`+ Z_\ell`" step; it takes :math:`S_\ell` as its
input, so placing it after any layer of any model makes that layer noisy, and
:func:`infoflow.sampling.sample_layers` samples :math:`S_\ell` by capturing the inputs of
every ``GaussianNoise`` in a model.  :class:`NoisyMLP` builds the fully connected networks
of the paper.

Unlike dropout, the noise is part of the model: it is on in both ``train()`` and
``eval()`` mode, and is switched off only explicitly (``module.enabled = False`` or the
:func:`noise_disabled` context manager), e.g. to measure the accuracy of the noiseless net.

This module imports torch; ``import infoflow`` itself does not.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ._intake import positive_real, torch_missing_error

try:
    import torch
    from torch import nn
except ModuleNotFoundError as _exc:
    raise torch_missing_error("infoflow.nn", _exc) from None

__all__ = ["GaussianNoise", "NoisyMLP", "noise_disabled", "named_noise_modules", "common_beta"]

#: The activations :class:`NoisyMLP` knows by name.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


class GaussianNoise(nn.Module):
    r"""Additive isotropic Gaussian noise: ``T = S + Z``, ``Z ~ N(0, beta^2 I)``.

    Parameters
    ----------
    beta : float
        Noise standard deviation, finite and > 0, in the units of the input.
    enabled : bool, keyword-only
        Whether the noise is added (default True).  Can be changed later through the
        ``enabled`` attribute or :func:`noise_disabled`.

    Attributes
    ----------
    beta : float
        The noise standard deviation (settable; validated).
    enabled : bool
        When False the module is the identity.  Independent of ``train()``/``eval()``:
        the noise is on in both modes.
    generator : torch.Generator or None
        Source of the noise; None (default) uses torch's global RNG.  Must live on the
        device of the input.  :func:`infoflow.sampling.sample_layers` sets it for the
        duration of a call to make sampling reproducible.

    Notes
    -----
    The input of this module is :math:`S_\ell` (noiseless) and its output is
    :math:`T_\ell`.  The noise is drawn as
    ``torch.randn(x.shape, generator=self.generator, device=x.device, dtype=torch.float32)``
    and cast to ``x.dtype``, one independent draw per element and per call, so that a
    float32 and a float64 copy of a network get the same noise from the same generator
    state (torch draws float64 normals with another algorithm, 8 times slower on the
    CPU); gradients flow through the input unchanged (the noise is a constant shift).
    """

    def __init__(self, beta: float, *, enabled: bool = True):
        super().__init__()
        self.beta = beta
        self.enabled = enabled
        self.generator = None

    # Validated attributes.  nn.Module.__setattr__ falls back to object.__setattr__ for
    # plain values, so these properties see every assignment.
    @property
    def beta(self) -> float:
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta = positive_real(value, "beta")

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"enabled: expected a bool, got {type(value).__name__}")
        self._enabled = bool(value)

    @property
    def generator(self) -> torch.Generator | None:
        return self._generator

    @generator.setter
    def generator(self, value: torch.Generator | None) -> None:
        if value is not None and not isinstance(value, torch.Generator):
            raise TypeError(f"generator: expected None or a torch.Generator, got {type(value).__name__}")
        self._generator = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._enabled:
            return x
        if not x.is_floating_point():
            raise TypeError(f"GaussianNoise: expected a floating-point input, got {x.dtype}")
        # Drawn in float32 whatever x's dtype (see Notes): the same seed, the same noise.
        noise = torch.randn(x.shape, generator=self._generator, device=x.device, dtype=torch.float32)
        return x + self._beta * noise.to(x.dtype)

    def extra_repr(self) -> str:
        return f"beta={self._beta:g}" + ("" if self._enabled else ", enabled=False")


def named_noise_modules(model: nn.Module) -> list[tuple[str, GaussianNoise]]:
    """The ``(name, module)`` pairs of every :class:`GaussianNoise` in ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        Any model; may itself be a ``GaussianNoise`` (its name is then ``""``).

    Returns
    -------
    list of (str, GaussianNoise)
        In registration order (the order of ``model.named_modules()``), which for
        :class:`NoisyMLP` and ``nn.Sequential`` models is also the forward order.  A module
        registered twice appears once.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return [(name, m) for name, m in model.named_modules() if isinstance(m, GaussianNoise)]


def common_beta(modules: Sequence[tuple[str, GaussianNoise]], *, arg: str, advice: str) -> float:
    """The one noise standard deviation shared by some :class:`GaussianNoise` modules.

    The check behind :attr:`NoisyMLP.beta` and :func:`infoflow.information_flow`, which
    both need a single noise level.

    Parameters
    ----------
    modules : sequence of (str, GaussianNoise)
        At least one ``(name, module)`` pair, as :func:`named_noise_modules` gives them.
    arg : str
        The name the error message starts with (the argument or attribute at fault).
    advice : str
        What the error message says to do about it.

    Returns
    -------
    float
        The modules' common ``beta``.

    Raises
    ------
    ValueError
        ``modules`` is empty, or the modules have different ``beta`` (the message names
        each module's).

    Examples
    --------
    >>> common_beta([("a", GaussianNoise(0.1)), ("b", GaussianNoise(0.1))], arg="beta", advice="")
    0.1
    """
    if not modules:
        raise ValueError(f"{arg}: no GaussianNoise layers, so there is no noise level; {advice}")
    betas = {module.beta for _, module in modules}
    if len(betas) > 1:
        per_layer = {name or "<model>": module.beta for name, module in modules}
        raise ValueError(f"{arg}: the GaussianNoise layers have different beta {per_layer}; {advice}")
    return betas.pop()


@contextlib.contextmanager
def noise_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager switching off every :class:`GaussianNoise` in ``model``.

    Each module's previous ``enabled`` state is restored on exit, also when the body
    raises.  A model without noise layers is left as it is.

    Parameters
    ----------
    model : torch.nn.Module
        Any model (or a single ``GaussianNoise``).

    Yields
    ------
    torch.nn.Module
        ``model`` itself.

    Examples
    --------
    >>> net = NoisyMLP([4, 3, 2])
    >>> x = torch.zeros(5, 4)
    >>> with noise_disabled(net):
    ...     bool((net(x) == net(x)).all())  # deterministic: the same logits twice
    True
    >>> net.noise1.enabled
    True
    """
    modules = [m for _, m in named_noise_modules(model)]
    previous = [m.enabled for m in modules]
    try:
        for m in modules:
            m.enabled = False
        yield model
    finally:
        for m, state in zip(modules, previous):
            m.enabled = state


def _check_widths(widths) -> tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, (Sequence, np.ndarray)):
        raise TypeError(f"widths: expected a sequence of ints such as [12, 10, 7, 2], got {type(widths).__name__}")
    values = list(widths)
    if len(values) < 2:
        raise ValueError(f"widths: need at least 2 entries (input and output width), got {values}")
    for i, w in enumerate(values):
        if isinstance(w, (bool, np.bool_)) or not isinstance(w, numbers.Integral):
            raise TypeError(f"widths[{i}]: expected an int, got {type(w).__name__}")
        if w < 1:
            raise ValueError(f"widths[{i}]: layer widths must be >= 1, got {int(w)}")
    return tuple(int(w) for w in values)


def _activation_factory(activation) -> tuple[str, Callable[[], nn.Module]]:
    if isinstance(activation, str):
        key = activation.lower()
        if key not in ACTIVATIONS:
            raise ValueError(
                f"activation: unknown name {activation!r}; expected one of {sorted(ACTIVATIONS)} "
                "or a zero-argument callable returning a torch.nn.Module"
            )
        return key, ACTIVATIONS[key]
    if isinstance(activation, nn.Module):
        raise TypeError(
            f"activation: got a module instance ({type(activation).__name__}); pass the class "
            f"(e.g. torch.nn.{type(activation).__name__}) or a zero-argument factory, so that each "
            "layer gets its own module"
        )
    if not callable(activation):
        raise TypeError(f"activation: expected a name or a callable, got {type(activation).__name__}")
    return getattr(activation, "__name__", type(activation).__name__), activation


class NoisyMLP(nn.Module):
    r"""Fully connected noisy network: noise after every hidden layer, noiseless logits.

    For widths :math:`(d_0, d_1, \dots, d_L)`, hidden layer :math:`\ell = 1..L-1` computes

    .. math:: S_\ell = \sigma(W_\ell T_{\ell-1} + b_\ell), \qquad T_\ell = S_\ell + Z_\ell,
              \qquad Z_\ell \sim \mathcal N(0, \beta^2 I_{d_\ell}),

    with :math:`T_0 = x`, and the output layer computes the logits
    :math:`W_L T_{L-1} + b_L` (no activation, no noise).

    Parameters
    ----------
    widths : sequence of int
        Layer widths including input and output, at least 2 entries, each >= 1; e.g. the
        paper's ``[12, 10, 7, 5, 4, 3, 2]`` (5 noisy hidden layers).
    activation : str or callable
        ``"tanh"`` (default), ``"relu"``, ``"sigmoid"``, ``"identity"``, or a
        zero-argument callable returning a fresh ``torch.nn.Module`` (e.g.
        ``torch.nn.ELU`` or ``lambda: torch.nn.LeakyReLU(0.1)``), called once per layer.
    beta : float
        Noise standard deviation of every hidden layer, > 0, in activation units.
        Default 0.005, the paper's value for the 12-bit task.
    bias : bool, keyword-only
        Whether the linear layers have biases (default True).

    Attributes
    ----------
    widths : tuple of int
        The layer widths.
    activation : str
        The activation's name (or the factory's ``__name__``).

    Notes
    -----
    The submodules are registered directly on the model, in forward order, under the
    names ``linear1, act1, noise1, linear2, act2, noise2, ..., output``; so
    ``model.noise1`` is the first noise layer, and ``model.named_modules()`` and
    :func:`infoflow.sampling.sample_layers` name the noisy layers ``"noise1"``,
    ``"noise2"``, ....  Weights use PyTorch's default initialisation of ``nn.Linear``.
    The noise is on in ``train()`` and ``eval()`` mode alike; use :func:`noise_disabled`
    for the deterministic network.
    """

    def __init__(self, widths, activation="tanh", beta: float = 0.005, *, bias: bool = True):
        super().__init__()
        self.widths = _check_widths(widths)
        self.activation, factory = _activation_factory(activation)
        beta = positive_real(beta, "beta")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias: expected a bool, got {type(bias).__name__}")
        w = self.widths
        for layer in range(1, len(w) - 1):
            self.add_module(f"linear{layer}", nn.Linear(w[layer - 1], w[layer], bias=bool(bias)))
            act = factory()
            if not isinstance(act, nn.Module):
                raise TypeError(
                    f"activation: the factory returned {type(act).__name__}, expected a torch.nn.Module"
                )
            self.add_module(f"act{layer}", act)
            self.add_module(f"noise{layer}", GaussianNoise(beta))
        self.add_module("output", nn.Linear(w[-2], w[-1], bias=bool(bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self._modules.values():
            x = module(x)
        return x

    def named_noise_layers(self) -> list[tuple[str, GaussianNoise]]:
        """``(name, module)`` of the noise layers in forward order: ``("noise1", ...), ...``."""
        return [(name, m) for name, m in self._modules.items() if isinstance(m, GaussianNoise)]

    @property
    def noise_layers(self) -> tuple[GaussianNoise, ...]:
        """The :class:`GaussianNoise` modules in forward order (one per hidden layer)."""
        return tuple(m for _, m in self.named_noise_layers())

    @property
    def linear_layers(self) -> tuple[nn.Linear, ...]:
        """The ``nn.Linear`` modules in forward order, the output layer last."""
        return tuple(m for m in self._modules.values() if isinstance(m, nn.Linear))

    @property
    def beta(self) -> float:
        """The common noise standard deviation of the hidden layers.

        Raises ValueError if the layers' ``beta`` were changed to different values or the
        network has no hidden (noisy) layer.
        """
        layers = self.named_noise_layers()
        if not layers:
            raise ValueError("beta: this NoisyMLP has no hidden (noisy) layers")
        return common_beta(layers, arg="beta", advice="read each layer's .beta")
