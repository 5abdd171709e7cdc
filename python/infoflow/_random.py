"""Randomness: a user's ``rng=`` as a numpy Generator, and independent child streams."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["make_rng", "child_streams"]


def make_rng(rng: Any) -> np.random.Generator:
    """A numpy Generator from an int seed, a SeedSequence, a Generator, a BitGenerator, or
    None (fresh entropy), as Scientific Python SPEC 7 recommends
    (https://scientific-python.org/specs/spec-0007/)."""
    if isinstance(rng, np.random.RandomState):
        raise TypeError("rng: numpy.random.RandomState is not supported; pass a numpy.random.Generator or an int seed")
    if rng is not None and not isinstance(
        rng, (numbers.Integral, np.random.Generator, np.random.SeedSequence, np.random.BitGenerator)
    ):
        raise TypeError(f"rng: expected None, an int seed or a numpy.random.Generator, got {type(rng).__name__}")
    if isinstance(rng, (bool, np.bool_)):
        raise TypeError("rng: expected None, an int seed or a numpy.random.Generator, got bool")
    if isinstance(rng, np.random.SeedSequence):
        # A copy: spawning child streams (as the R-convergence levels do) advances a
        # SeedSequence's counter, and the caller's must give the same result next time.
        rng = np.random.SeedSequence(rng.entropy, spawn_key=rng.spawn_key, pool_size=rng.pool_size,
                                     n_children_spawned=rng.n_children_spawned)
    try:
        return np.random.default_rng(rng)
    except ValueError as exc:  # e.g. a negative seed
        raise ValueError(f"rng: {exc}") from None


def child_streams(generator: np.random.Generator, count: int) -> list[np.random.Generator]:
    """``count`` independent generators derived from ``generator`` without advancing it
    (``Generator.spawn``; a generator built without a SeedSequence gives seeds instead)."""
    if count == 0:
        return []
    try:
        return generator.spawn(count)
    except (AttributeError, TypeError):
        return [np.random.default_rng(seed) for seed in generator.integers(2**63, size=count)]
