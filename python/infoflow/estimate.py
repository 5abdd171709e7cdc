"""Result types: a Monte Carlo :class:`Estimate` with its standard error, the
:class:`RConvergence` of a mutual information in the number of samples per input, and
:class:`Bounds`."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import NamedTuple, Union

import numpy as np

ArrayOrFloat = Union[float, np.ndarray]

__all__ = ["Estimate", "RConvergence", "RConvergenceWarning", "Bounds", "R_SHIFT_TOLERANCE"]

#: How many standard errors the last halving of R may move an estimate before
#: :class:`RConvergence` calls it unconverged (and a :class:`RConvergenceWarning` is issued).
R_SHIFT_TOLERANCE = 3.0


class RConvergenceWarning(UserWarning):
    """An estimate of I(X;T) or I(Y;T) still moves with R, the samples per input.

    Raised (as a warning) when the value at R differs from the value at R/2 by more
    than :data:`R_SHIFT_TOLERANCE` standard errors of the difference: the plug-in bias of
    the conditional entropies has not settled, and more samples per input would change
    the result.  Filter it with ``warnings.simplefilter("ignore", RConvergenceWarning)``.
    """


@dataclass(frozen=True)
class RConvergence:
    """An estimate recomputed from nested subsets of the R samples of every input.

    The estimate at R uses all samples; the one at R/2 the first half of each input's
    samples, and so on (``repeats`` ascending, the last one R).  No forward pass is added,
    only the entropy estimates, with independent Monte Carlo draws.  The sequence shows the
    plug-in bias at work: h(T | X = x) estimated from R points is biased low, so I(X;T)
    falls towards its limit as R grows.  A sequence that still moves at the last halving
    by more than its Monte Carlo error has not converged, and the value at R is then an
    upper estimate rather than the limit.  No extrapolation is made.

    Attributes
    ----------
    repeats : tuple of int
        The numbers of samples per input, ascending (e.g. ``(2, 4, 8)``).
    values, stderrs : tuple of float
        The estimate at each, and its Monte Carlo standard error, in ``unit``.
    unit : str
        ``"nats"``, ``"bits"``, ...

    Examples
    --------
    A sequence that still falls by 0.2 nats from R = 4 to R = 8, 7 standard errors of the
    shift:

    >>> from infoflow import RConvergence
    >>> seq = RConvergence(repeats=(2, 4, 8), values=(3.1, 2.9, 2.7), stderrs=(0.02, 0.02, 0.02))
    >>> round(seq.shift, 3), round(seq.shift_stderr, 4), seq.converged()
    (-0.2, 0.0283, False)
    """

    repeats: tuple
    values: tuple
    stderrs: tuple
    unit: str = "nats"

    @property
    def shift(self) -> float:
        """Value at R minus value at the previous level (NaN with a single level)."""
        if len(self.values) < 2:
            return float("nan")
        return float(self.values[-1] - self.values[-2])

    @property
    def shift_stderr(self) -> float:
        """Monte Carlo standard error of :attr:`shift` (the levels' draws are independent)."""
        if len(self.values) < 2:
            return float("nan")
        return float(np.hypot(self.stderrs[-1], self.stderrs[-2]))

    def converged(self, tolerance: float = R_SHIFT_TOLERANCE) -> bool:
        """Whether the last halving of R moved the value by at most ``tolerance`` standard
        errors of the shift (True with a single level: nothing to compare).  A zero
        standard error (exact terms) with a zero shift counts as converged."""
        if len(self.values) < 2:
            return True
        return bool(abs(self.shift) <= tolerance * self.shift_stderr)

    def to_dict(self) -> dict:
        """JSON-ready dict of the fields."""
        return {"repeats": [int(r) for r in self.repeats], "values": [float(v) for v in self.values],
                "stderrs": [float(e) for e in self.stderrs], "unit": self.unit}


@dataclass(frozen=True)
class Estimate:
    """A value with its standard error, in stated units.

    Behaves as a float where one is expected (``float(est)``, ``f"{est:.3f}"``,
    ``numpy.asarray(est)``).  Sums and differences of estimates combine the standard
    errors in quadrature, which assumes the estimates are independent (true for
    separate Monte Carlo runs).

    Attributes
    ----------
    value : float, numpy.ndarray or torch.Tensor
        The estimate; an array of the batch shape for batched input; a tensor carrying
        the autograd graph when the estimator was given tensors that require a gradient.
    stderr : float or numpy.ndarray
        Its standard error (one standard deviation of the Monte Carlo error), same units.
    unit : str
        ``"nats"`` (natural log), ``"bits"`` (base 2), ...
    convergence : RConvergence or None
        For a mutual information estimated from R samples per input: the same estimate
        at R/4, R/2 and R (see :class:`RConvergence`); None otherwise.  Arithmetic on
        estimates drops it.

    Examples
    --------
    >>> from infoflow import Estimate
    >>> a = Estimate(1.25, 0.03)
    >>> b = Estimate(0.5, 0.04)
    >>> print(a - b)  # independent errors add in quadrature
    0.75 ± 0.05 nats
    >>> f"{2 * a:.3f}", float(a)
    ('2.500 ± 0.060 nats', 1.25)
    """

    value: ArrayOrFloat
    stderr: ArrayOrFloat
    unit: str = "nats"
    convergence: RConvergence | None = None

    def __float__(self) -> float:
        if _ndim(self.value) != 0:
            raise TypeError(f"a batched Estimate of shape {tuple(self.value.shape)} is not a float; use .value")
        return float(_detached(self.value))

    def __array__(self, dtype=None, copy=None):
        return np.asarray(_detached(self.value), dtype=dtype)

    def __format__(self, spec: str) -> str:
        if _ndim(self.value) != 0:
            return str(self)
        spec = spec or ".6g"
        return f"{format(float(_detached(self.value)), spec)} ± {format(float(self.stderr), spec)} {self.unit}"

    def __str__(self) -> str:
        if _ndim(self.value) == 0:
            return format(self)
        return f"Estimate(value={self.value!r}, stderr={self.stderr!r}, unit={self.unit!r})"

    def _check_unit(self, other: Estimate) -> None:
        if other.unit != self.unit:
            raise ValueError(f"cannot combine estimates in {self.unit} and {other.unit}")

    def __add__(self, other):
        if isinstance(other, Estimate):
            self._check_unit(other)
            return Estimate(self.value + other.value, np.hypot(self.stderr, other.stderr), self.unit)
        if isinstance(other, (numbers.Real, np.ndarray)):
            return Estimate(self.value + other, self.stderr, self.unit)
        return NotImplemented

    __radd__ = __add__

    def __neg__(self):
        return Estimate(-self.value, self.stderr, self.unit)

    def __sub__(self, other):
        if isinstance(other, (Estimate, numbers.Real, np.ndarray)):
            return self + (-other)
        return NotImplemented

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, factor):
        if isinstance(factor, (numbers.Real, np.ndarray)):
            return Estimate(self.value * factor, self.stderr * np.abs(factor), self.unit)
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, divisor):
        if isinstance(divisor, (numbers.Real, np.ndarray)):
            return Estimate(self.value / divisor, self.stderr / np.abs(divisor), self.unit)
        return NotImplemented

    def to_dict(self) -> dict:
        """JSON-ready dict: ``{"value", "stderr", "unit"}`` (arrays become lists), and
        ``"convergence"`` when there is one."""
        as_py = lambda x: np.asarray(_detached(x)).tolist()  # noqa: E731
        result = {"value": as_py(self.value), "stderr": as_py(self.stderr), "unit": self.unit}
        if self.convergence is not None:
            result["convergence"] = self.convergence.to_dict()
        return result


class Bounds(NamedTuple):
    """Deterministic lower and upper bounds, in the units of the call that made them.

    Examples
    --------
    >>> from infoflow import Bounds
    >>> bounds = Bounds(lower=1.0, upper=2.0)
    >>> bool(bounds.contains(1.5)), bounds.upper - bounds.lower
    (True, 1.0)
    """

    lower: ArrayOrFloat
    upper: ArrayOrFloat

    def contains(self, value) -> ArrayOrFloat:
        """Whether ``lower <= value <= upper`` (elementwise for batches)."""
        value = np.asarray(value)
        return (self.lower <= value) & (value <= self.upper)


def _detached(x):
    """A torch tensor (a differentiable value) as a host numpy array; anything else as is."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


def _ndim(x) -> int:
    return x.ndim if hasattr(x, "detach") else np.ndim(x)


def as_result(x: np.ndarray) -> ArrayOrFloat:
    """A 0-d result as a Python float, anything else as an array."""
    return float(x) if np.ndim(x) == 0 else x
