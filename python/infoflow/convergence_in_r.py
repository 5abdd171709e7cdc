"""The R-convergence sequence of I(X;T) and I(Y;T): the estimates from the first R/4, R/2 and R samples per input.

:func:`estimates` gives the estimates of a :class:`~infoflow.layer_terms.Layer` at R
and, on request, at the smaller nested levels of :func:`repeat_levels`, as an
:class:`~infoflow.RConvergence`; :func:`warn_if_unconverged` says when the last
halving of R still moved the value.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ._intake import log_of_base, unit_name
from ._random import child_streams
from .estimate import R_SHIFT_TOLERANCE, Estimate, RConvergence, RConvergenceWarning
from .layer_terms import Layer, information

__all__ = ["repeat_levels", "warn_if_unconverged", "estimates"]


def repeat_levels(r: int) -> tuple[int, ...]:
    """The nested numbers of samples per input at which an estimate is reported:
    R/4, R/2 and R, rounded down, at least 1, without repeats (``(2, 4, 8)`` for R = 8,
    ``(1,)`` for R = 1)."""
    return tuple(sorted({max(1, r // 4), max(1, r // 2), r}))


_SYMBOLS = {"ixt": "I(X;T)", "iyt": "I(Y;T)"}


def warn_if_unconverged(quantity: str, sequence: RConvergence, where: str = "", stacklevel: int = 2) -> None:
    """Issue an :class:`~infoflow.RConvergenceWarning` when ``sequence`` has not
    converged; ``quantity`` is ``"ixt"`` or ``"iyt"``, ``where`` a prefix such as a layer name."""
    if sequence.converged():
        return
    (r_prev, r), (prev, last) = sequence.repeats[-2:], sequence.values[-2:]
    multiple = abs(sequence.shift) / sequence.shift_stderr if sequence.shift_stderr > 0 else math.inf
    warnings.warn(f"{where}{_SYMBOLS[quantity]} still moves with R (samples per input): {prev:.4f} at R = "
                  f"{r_prev}, {last:.4f} at R = {r} {sequence.unit}, a shift of {multiple:.1f} standard errors "
                  f"(> {R_SHIFT_TOLERANCE:g}); the plug-in bias of the conditional entropies has not "
                  f"settled, and more samples per input would likely {'lower' if last < prev else 'raise'} "
                  "the value further", RConvergenceWarning, stacklevel=stacklevel + 1)


def estimates(layer: Layer, labels: np.ndarray, which: tuple[str, ...], base, convergence: bool,
               warn: bool) -> dict[str, Estimate]:
    """The estimates of ``which`` at R and, with ``convergence``, their R-convergence
    sequences from the nested first R/2 and R/4 samples of every input (estimated after
    the full-R values, so that those do not depend on ``convergence``)."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    levels = repeat_levels(layer.r) if convergence else (layer.r,)
    by_level = {layer.r: information(layer, inverse, counts, which)}
    # Each smaller level draws from its own child stream: ``rng`` advances exactly as
    # without them (the values at R, and whatever the caller draws next, do not depend on
    # ``convergence``), and a level's I(X;T) is draw for draw the same whether or not
    # I(Y;T) is estimated with it.
    for r, stream in zip(levels[:-1], child_streams(layer.generator, len(levels) - 1)):
        by_level[r] = information(layer.first_repeats(r, stream), inverse, counts, which)
    log_base, unit = log_of_base(base), unit_name(base)
    results = {}
    for q in which:
        sequence = None
        if convergence:
            sequence = RConvergence(levels, tuple(by_level[r][q][0] / log_base for r in levels),
                                    tuple(by_level[r][q][1] / log_base for r in levels), unit)
            if warn:
                warn_if_unconverged(q, sequence, stacklevel=3)
        value, stderr = by_level[layer.r][q]
        results[q] = Estimate(value / log_base, stderr / log_base, unit, sequence)
    return results
