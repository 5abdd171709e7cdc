"""Figures of the information flow: the information plane and its per-layer panels, with matplotlib.

:func:`plot_information_plane` draws a history (rows as
:attr:`~infoflow.InformationPlane.history` holds them); :func:`layer_style`,
:func:`epoch_axis`, :func:`finish_epoch_panel` and :func:`finish_plane` give every figure
of the package (and of :mod:`infoflow.experiments`) the same look.  matplotlib is
imported when a figure is drawn; this module needs only numpy to import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._output import new_figure, save_figure
from .results import row_convergence

__all__ = ["plot_information_plane", "layer_style", "epoch_axis", "finish_epoch_panel", "finish_plane", "MARKERS",
           "LINESTYLES"]

#: The markers of the layers, in order (see :func:`layer_style`).
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
#: The line styles of the layers, in order.
LINESTYLES = ("-", "--", "-.", ":")


def _by_layer(history: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """{layer: {"epoch", "ixt", "ixt_stderr", "iyt", "iyt_stderr", "width"}}, epochs sorted,
    layers in order of first appearance."""
    layers: dict[str, list] = {}
    for row in history:
        layers.setdefault(str(row["layer"]), []).append(row)
    result = {}
    for name, rows in layers.items():
        rows = sorted(rows, key=lambda r: r["epoch"])
        result[name] = {key: np.array([float(r[key]) for r in rows])
                        for key in ("epoch", "ixt", "ixt_stderr", "iyt", "iyt_stderr")}
        result[name]["width"] = int(rows[0]["width"])
    return result


def layer_style(index: int) -> dict:
    """Colour, marker, marker size and line style of the index-th layer in every figure.

    Layers that coincide (the first two layers both at H(X), say) stay visible: each
    later layer has a smaller marker drawn over the earlier one's, and its own dashes."""
    from matplotlib import colormaps

    return {"color": colormaps["tab10"](index % 10), "marker": MARKERS[index % len(MARKERS)],
            "markersize": max(3.0, 7.5 - 1.0 * index), "linestyle": LINESTYLES[index % len(LINESTYLES)]}


def epoch_axis(ax, max_epoch: float) -> None:
    """An epoch axis that reads well at any length: linear with integer ticks up to 30
    epochs; beyond, logarithmic above epoch 1 and linear below (symlog, so that epoch 0,
    the initial weights, has a place), with labels at 0, 1, 2, 5, 10, 20, 50, ... up to
    300 epochs and at 0, 1, 10, 100, ... beyond."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullFormatter, ScalarFormatter

    if max_epoch <= 30:
        ax.set_xlim(-0.5, max(1.0, max_epoch) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
    else:
        ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
        ax.set_xlim(0, max_epoch * 1.15)
        # Labels at 1-2-5 steps while they fit (up to a few hundred epochs), at the powers
        # of ten beyond, where the 1-2-5 steps stay as unlabelled minor ticks.
        decades = range(int(math.log10(max_epoch)) + 1)
        steps = [m * 10.0**p for p in decades for m in (1, 2, 5)]
        major = [0.0] + (steps if max_epoch <= 300 else [10.0**p for p in decades])
        ax.xaxis.set_major_locator(FixedLocator([t for t in major if t <= max_epoch * 1.15]))
        ax.xaxis.set_minor_locator(FixedLocator([t for t in steps if t <= max_epoch * 1.15]))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("epoch (log scale above 1)")
    ax.grid(True, which="major", alpha=0.3)


def finish_epoch_panel(ax, max_epoch: float, symbol: str, unit: str, bound: float | None, bound_name: str,
                       title: str, fontsize: float = 10) -> None:
    """The common finish of a panel of ``symbol`` against epoch: the bound dashed (when
    given), the epoch axis, 0 shown, labels, title and legend."""
    if bound is not None:
        ax.axhline(bound, color="0.3", linestyle="--", linewidth=1, label=f"{bound_name} = {bound:.3f}")
    epoch_axis(ax, max_epoch)
    # Mutual information is >= 0: showing 0 keeps magnitudes honest and leaves room below
    # the curves for the legend.
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    ax.set_ylim(top=ax.get_ylim()[1] * 1.02)
    ax.set_ylabel(f"{symbol} [{unit}]")
    ax.set_title(title, fontsize=fontsize)
    ax.legend(fontsize=fontsize - 2, loc="best")


def finish_plane(ax, unit: str, ixt_max: float | None, iyt_max: float | None, title: str,
                 fontsize: float = 10) -> None:
    """The common finish of an information plane: the H(X) and H(Y) bounds dashed (when
    given), axis labels, title and grid."""
    if ixt_max is not None:
        ax.axvline(ixt_max, color="0.3", linestyle="--", linewidth=1)
    if iyt_max is not None:
        ax.axhline(iyt_max, color="0.3", linestyle="--", linewidth=1)
    ax.set_xlabel(f"I(X;T) [{unit}]")
    ax.set_ylabel(f"I(Y;T) [{unit}]")
    ax.set_title(title, fontsize=fontsize)
    ax.grid(True, alpha=0.3)


def _convergence_panels(axes, layers: dict, history: Sequence[Mapping[str, Any]], unit: str) -> None:
    """For I(X;T) and I(Y;T): the estimates at R/4 and R/2 minus the one at R, against R,
    at the last recorded epoch, one line per layer (±1 stderr of the difference).  A line
    that still falls towards R says the plug-in bias has not settled."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    last = max(int(row["epoch"]) for row in history)
    rows = {row["layer"]: row for row in history if int(row["epoch"]) == last}
    for ax, (key, symbol) in zip(axes, (("ixt", "I(X;T)"), ("iyt", "I(Y;T)"))):
        levels_seen = set()
        for index, name in enumerate(layers):
            sequence = None if name not in rows else row_convergence(rows[name], key)
            if sequence is None:
                continue  # deterministic given X, or no sequence recorded
            levels_seen.update(sequence.repeats)
            at_r, se_r = sequence.values[-1], sequence.stderrs[-1]
            shift = [value - at_r for value in sequence.values]
            err = [math.hypot(se, se_r) for se in sequence.stderrs[:-1]] + [se_r]
            ax.errorbar(sequence.repeats, shift, yerr=err, capsize=2, label=name, **layer_style(index))
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(sorted(levels_seen)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("R, samples per input (nested subsets of the same samples)")
        ax.set_ylabel(f"{symbol} at R' minus at R [{unit}]")
        ax.set_title(f"R-convergence of {symbol} at epoch {last} (deterministic layers omitted)", fontsize=9)
        ax.grid(True, alpha=0.3)
        if levels_seen:
            ax.legend(fontsize=7, loc="best")


def plot_information_plane(history, path, *, title=None, ixt_max=None, iyt_max=None) -> Path:
    """Draw an information-plane history as a PNG.

    Top row: :math:`I(X;T_\\ell)` and :math:`I(Y;T_\\ell)` against epoch, one line per
    layer with a ±1 standard-error band.  Middle: the information plane, I(X;T) on x and
    I(Y;T) on y, one trajectory per layer (colour, marker and dashes identify the layer,
    error bars ±1 stderr) with the points coloured by epoch (colour bar).  Bottom, when
    the rows carry R-convergence columns: how much the estimates at R/4 and R/2 exceed
    the one at R, at the last epoch.  Layers that coincide stay visible (:func:`layer_style`).

    Parameters
    ----------
    history : sequence of dict
        Rows with ``epoch, layer, width, ixt, ixt_stderr, iyt, iyt_stderr, unit`` (as in
        :attr:`~infoflow.InformationPlane.history` or
        :meth:`~infoflow.InformationPlane.load_history`), all
        in one unit, optionally with the :data:`~infoflow.results.CONVERGENCE_FIELDS`.
    path : str or path
        The PNG to write.
    title : str, optional
        Figure title (say protocol, R, seeds and beta).
    ixt_max, iyt_max : float, optional
        Upper bounds to draw as dashed lines, in the history's unit: H(X) (ln m for m
        distinct inputs) for I(X;T) and H(Y) for I(Y;T).

    Returns
    -------
    Path
        ``path``.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import SymLogNorm
    from matplotlib.lines import Line2D

    history = list(history)
    if not history:
        raise ValueError("history: no rows to plot")
    units = {str(row["unit"]) for row in history}
    if len(units) != 1:
        raise ValueError(f"history: rows in different units {sorted(units)}")
    unit = units.pop()
    layers = _by_layer(history)
    max_epoch = max(float(row["epoch"]) for row in history)
    with_convergence = any(row.get("r_half") is not None for row in history)

    fig, axes = new_figure(ncols=2, nrows=3 if with_convergence else 2, width=6.4, height=4.4)
    grid = axes[1, 0].get_gridspec()
    for ax in axes[1:].ravel():
        ax.remove()
    plane = fig.add_subplot(grid[1, :])

    for column, (key, symbol, bound, bound_name) in enumerate(
            (("ixt", "I(X;T)", ixt_max, "H(X)"), ("iyt", "I(Y;T)", iyt_max, "H(Y)"))):
        ax = axes[0, column]
        for index, (name, data) in enumerate(layers.items()):
            style = layer_style(index)
            value, err = data[key], data[key + "_stderr"]
            ax.plot(data["epoch"], value, label=f"{name} (d={data['width']})", **style)
            ax.fill_between(data["epoch"], value - err, value + err, color=style["color"], alpha=0.25, linewidth=0)
        finish_epoch_panel(ax, max_epoch, symbol, unit, bound, bound_name,
                           f"{symbol} per layer over training (band: ±1 std. error)")

    norm = SymLogNorm(linthresh=1.0, linscale=0.5, vmin=0.0, vmax=max(1.0, max_epoch))
    cmap = colormaps["viridis"]
    handles = []
    for index, (name, data) in enumerate(layers.items()):
        style = layer_style(index)
        plane.errorbar(data["ixt"], data["iyt"], xerr=data["ixt_stderr"], yerr=data["iyt_stderr"],
                       color=style["color"], linestyle=style["linestyle"], linewidth=1, alpha=0.7,
                       elinewidth=0.8, zorder=1)
        plane.scatter(data["ixt"], data["iyt"], c=data["epoch"], cmap=cmap, norm=norm, marker=style["marker"],
                      s=style["markersize"] ** 2 * 1.6, edgecolors=style["color"], linewidths=1.0, zorder=2 + index)
        handles.append(Line2D([], [], color=style["color"], marker=style["marker"], linestyle=style["linestyle"],
                              markerfacecolor="white", label=f"{name} (d={data['width']})"))
    if ixt_max is not None or iyt_max is not None:
        handles.append(Line2D([], [], color="0.3", linestyle="--", label="H(X) / H(Y) bounds"))
    finish_plane(plane, unit, ixt_max, iyt_max,
                 "Information plane: one trajectory per layer, colour = epoch, bars ±1 std. error")
    plane.legend(handles=handles, fontsize=8, loc="best")
    colorbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=plane)
    colorbar.set_label("epoch")
    if with_convergence:
        _convergence_panels([fig.add_subplot(grid[2, 0]), fig.add_subplot(grid[2, 1])], layers, history, unit)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
