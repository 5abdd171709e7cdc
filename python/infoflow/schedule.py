"""Epoch schedules of an information-plane recording: which epochs to measure.

:func:`log_spaced_epochs` spreads a number of epochs log-uniformly from 0 to the last
(the default schedule of :class:`~infoflow.InformationPlane`);
:func:`explicit_epochs` validates a schedule given as a list.  This module needs only numpy.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np

from ._intake import positive_int

__all__ = ["log_spaced_epochs", "explicit_epochs", "non_negative_int", "MAX_POINTS"]

#: The most epochs a log-spaced schedule may have (``n_points``), 2**16: each is a full
#: :func:`~infoflow.information_flow`, and a schedule is built as a list.
MAX_POINTS = 1 << 16


def non_negative_int(value, name: str) -> int:
    """``value`` as an int, checked to be an integer (not a bool) >= 0; errors name ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name}: must be >= 0, got {value}")
    return int(value)


def log_spaced_epochs(max_epoch: int, n_points: int = 20) -> list[int]:
    """``n_points`` distinct integer epochs from 0 to ``max_epoch``, log-spaced.

    Always contains 0 (the initial weights) and ``max_epoch``, and 1 when there are at
    least 3 points.  Epochs after 1 follow
    a geometric progression; where it would repeat an integer (at the start), the next
    epoch is the previous one plus 1 and the ratio is recomputed for the points left, so
    the result has exactly ``n_points`` entries.

    Parameters
    ----------
    max_epoch : int
        The last epoch, >= 0.
    n_points : int
        The number of epochs, >= 2 (>= 1 when ``max_epoch`` is 0) and at most 2**16
        (:data:`MAX_POINTS`).  When it exceeds ``max_epoch + 1``, every epoch
        0..max_epoch is returned.

    Returns
    -------
    list of int
        Sorted, distinct epochs.

    Examples
    --------
    >>> log_spaced_epochs(10000, 6)
    [0, 1, 10, 100, 1000, 10000]
    >>> log_spaced_epochs(3, 10)
    [0, 1, 2, 3]
    """
    max_epoch = non_negative_int(max_epoch, "max_epoch")
    n_points = positive_int(n_points, "n_points", allow_none=False)
    if n_points > MAX_POINTS:
        raise ValueError(f"n_points: {n_points} is more than the maximum of 2**16 = {MAX_POINTS} epochs to record "
                         "(each record is a full information_flow)")
    if max_epoch == 0:
        return [0]
    if n_points < 2:
        raise ValueError(f"n_points: must be >= 2 to include epoch 0 and max_epoch={max_epoch}, got {n_points}")
    if n_points >= max_epoch + 1:
        return list(range(max_epoch + 1))
    if n_points == 2:
        return [0, max_epoch]
    epochs = [0, 1]
    for left in range(n_points - 2, 0, -1):  # `left` points still to place in (current, max]
        current = epochs[-1]
        ratio = (max_epoch / current) ** (1.0 / left)
        # Ties (integers that round to the current one) step by one; never pass the end
        # before the last point, so there is room for every remaining epoch.
        step = max(current + 1, int(round(current * ratio)))
        epochs.append(min(step, max_epoch - left + 1))
    return epochs


def explicit_epochs(epochs) -> list[int]:
    """A schedule given as epochs: each an integer >= 0, returned sorted and deduplicated.

    >>> explicit_epochs([10, 0, 10, 3])
    [0, 3, 10]
    """
    if isinstance(epochs, (str, bytes)) or not isinstance(epochs, Iterable):
        raise TypeError(f"epochs: expected a sequence of ints, got {type(epochs).__name__}")
    values = [non_negative_int(e, f"epochs[{i}]") for i, e in enumerate(epochs)]
    if not values:
        raise ValueError("epochs: empty schedule")
    return sorted(set(values))
