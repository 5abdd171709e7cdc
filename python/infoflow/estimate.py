"""Result types: a Monte Carlo :class:`Estimate` with its standard error, and :class:`Bounds`."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import NamedTuple, Union

import numpy as np

ArrayOrFloat = Union[float, np.ndarray]

__all__ = ["Estimate", "Bounds"]


@dataclass(frozen=True)
class Estimate:
    """A value with its standard error, in stated units.

    Behaves as a float where one is expected (``float(est)``, ``f"{est:.3f}"``,
    ``numpy.asarray(est)``).  Sums and differences of estimates combine the standard
    errors in quadrature, which assumes the estimates are independent (true for
    separate Monte Carlo runs).

    Attributes
    ----------
    value : float or numpy.ndarray
        The estimate; an array of the batch shape for batched input.
    stderr : float or numpy.ndarray
        Its standard error (one standard deviation of the Monte Carlo error), same units.
    unit : str
        ``"nats"`` (natural log), ``"bits"`` (base 2), ...
    """

    value: ArrayOrFloat
    stderr: ArrayOrFloat
    unit: str = "nats"

    def __float__(self) -> float:
        if np.ndim(self.value) != 0:
            raise TypeError(f"a batched Estimate of shape {np.shape(self.value)} is not a float; use .value")
        return float(self.value)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.value, dtype=dtype)

    def __format__(self, spec: str) -> str:
        if np.ndim(self.value) != 0:
            return str(self)
        spec = spec or ".6g"
        return f"{format(float(self.value), spec)} ± {format(float(self.stderr), spec)} {self.unit}"

    def __str__(self) -> str:
        if np.ndim(self.value) == 0:
            return format(self)
        return f"Estimate(value={self.value!r}, stderr={self.stderr!r}, unit={self.unit!r})"

    def _check_unit(self, other: "Estimate") -> None:
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
        """JSON-ready dict: ``{"value", "stderr", "unit"}`` (arrays become lists)."""
        as_py = lambda x: np.asarray(x).tolist()  # noqa: E731
        return {"value": as_py(self.value), "stderr": as_py(self.stderr), "unit": self.unit}


class Bounds(NamedTuple):
    """Deterministic lower and upper bounds, in the units of the call that made them."""

    lower: ArrayOrFloat
    upper: ArrayOrFloat

    def contains(self, value) -> ArrayOrFloat:
        """Whether ``lower <= value <= upper`` (elementwise for batches)."""
        value = np.asarray(value)
        return (self.lower <= value) & (value <= self.upper)


def as_result(x: np.ndarray) -> ArrayOrFloat:
    """A 0-d result as a Python float, anything else as an array."""
    return float(x) if np.ndim(x) == 0 else x
