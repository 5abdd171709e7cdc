"""Many seeds of one experiment: the spread across runs, as data and as a banded figure.

A single training run's information curve is an anecdote: independent seeds of the same
setup put the peak of I(X;T) of a layer at quite different epochs.  This module
takes the histories of independent runs (rows ``epoch, layer, ixt, iyt, ...`` as written
by :class:`infoflow.InformationPlane`) and writes, per layer and epoch, the mean,
the standard deviation and the range across the runs, with a figure that draws every run
thinly, the mean thickly and a ±1 sd band.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._output import new_figure, remove_files, save_figure, write_csv, write_json
from .output import prepare_output, report_written

__all__ = ["SeedPlan", "run_plan", "run_each", "aggregate_files", "aggregate_histories", "peaks_by_seed",
           "plot_seed_bands", "plot_grouped_bands", "write_seed_aggregate"]

_QUANTITIES = ("ixt", "iyt")


def aggregate_files(name: str) -> tuple[str, ...]:
    """The files :func:`write_seed_aggregate` writes for experiment ``name``."""
    return (f"{name}_seeds.csv", f"{name}_seeds.json", f"{name}_seeds.png")


@dataclass(frozen=True)
class SeedPlan:
    """One experiment's runs over seeds as plain, picklable data: what a run needs wherever it runs.

    Made by an experiment's ``seed_plan(**options)``, which validates the options first;
    :func:`run_plan` runs it here, :func:`infoflow.distributed.sweep` on a Dask cluster.

    Attributes
    ----------
    name : str
        The experiment (``"szt"``), which names the aggregate's files.
    module : str
        The module of :mod:`infoflow.experiments` whose ``run_one(folder, *, root, torch_seed,
        seed_label, kernel_threads, **options)`` makes one run and whose
        ``aggregate(out, results, *, seed, runs)`` writes the aggregate.
    files : tuple of str
        The files one run writes into its folder.
    options : dict
        The validated keyword arguments of ``run_one`` other than the seed and threads.
    num_threads : int or None
        The user's thread count (None: the default of :func:`run_each`).
    """

    name: str
    module: str
    files: tuple
    options: dict
    num_threads: int | None = None

    def _module(self):
        return importlib.import_module(f"{__package__}.{self.module}")

    def run_one(self, folder, root, torch_seed: int, label: str, kernel_threads: int | None) -> dict:
        """One run into ``folder``: its result dict (``history``, ``config``, ``files``, ``interrupted``, ...)."""
        return self._module().run_one(folder, root=root, torch_seed=torch_seed, seed_label=label,
                                   kernel_threads=kernel_threads, **self.options)

    def aggregate(self, out: Path, results: Sequence[dict], *, seed: int, runs: Sequence[str] | None = None) -> dict:
        """Write the aggregate of ``results`` (runs named ``runs``, default ``seed_<i>``) into ``out``."""
        return self._module().aggregate(out, results, seed=seed, runs=runs)


def run_plan(plan: SeedPlan, out_dir, *, seed: int, seeds: int, overwrite: bool = False) -> dict:
    """Run ``plan`` once per seed here (:func:`run_each`); with several seeds, write the
    aggregate.  Returns the single run's result, or the aggregate's."""
    out, results = run_each(out_dir, seed, seeds, plan.num_threads, plan.run_one, name=plan.name, files=plan.files,
                            overwrite=overwrite)
    if seeds == 1:
        return results[0]
    return plan.aggregate(out, results, seed=seed)


def run_each(out_dir, seed: int, seeds: int, num_threads: int | None, run_one, *, name: str,
             files: Sequence[str], overwrite: bool = False) -> tuple[Path, list[dict]]:
    """Run an experiment once per seed: the loop shared by ``szt`` and ``binning``.

    Validates ``seed``, ``seeds`` and ``num_threads``, and refuses (FileExistsError) to
    replace any file the runs would write (``files`` of each run, and with several runs
    the aggregate's :func:`aggregate_files` of ``name``) unless ``overwrite``, all before
    anything is written or trained.  Then it creates ``out_dir`` and, with torch's
    threads set by :func:`~infoflow.experiments.training.torch_threads`, calls
    ``run_one(folder, root, torch_seed, label, kernel_threads)`` for each run of
    :func:`~infoflow.experiments.training.run_seeds`: into ``out_dir`` itself for a single run,
    else into ``out_dir/seed_<i>``.  Stops after a run that was interrupted (Ctrl-C).
    Returns the output folder and the results so far."""
    from .._intake import positive_int, thread_count
    from .._output import output_dir
    from .training import run_seeds, torch_threads

    count = positive_int(seeds, "seeds", allow_none=False)
    if num_threads is not None:
        thread_count(num_threads)
    runs = run_seeds(seed, count)
    if count > 1:
        files = [f"seed_{i}/{file}" for i in range(count) for file in files] + list(aggregate_files(name))
    out, _ = prepare_output(out_dir, files, overwrite=overwrite)
    results = []
    with torch_threads(num_threads) as kernel_threads:
        for i, (root, torch_seed) in enumerate(runs):
            folder, label = (out, str(seed)) if count == 1 else (output_dir(out / f"seed_{i}"), f"{seed} run {i}")
            results.append(run_one(folder, root, torch_seed, label, kernel_threads))
            if results[-1]["interrupted"]:
                break
    return out, results


def aggregate_histories(histories: Sequence[Sequence[dict]], by: tuple[str, ...] = ("layer",)) -> list[dict]:
    """One row per (``by`` fields, epoch) present in any run: ``n_seeds`` and, for ``ixt``
    and ``iyt``, the mean, the sample standard deviation across runs (NaN for one run),
    the minimum and maximum, and the mean Monte Carlo standard error of the runs (NaN
    where the rows have none, e.g. binned estimates)."""
    cells: dict[tuple, list[dict]] = {}
    order: dict[tuple, int] = {}
    for history in histories:
        for row in history:
            group = tuple(row[key] for key in by)
            order.setdefault(group, len(order))
            cells.setdefault((group, int(row["epoch"])), []).append(row)
    rows = []
    for (group, epoch), members in sorted(cells.items(), key=lambda item: (order[item[0][0]], item[0][1])):
        row = {**dict(zip(by, group)), "epoch": epoch, "width": members[0]["width"], "n_seeds": len(members),
               "unit": members[0].get("unit", "nats")}
        for key in _QUANTITIES:
            values = np.array([float(m[key]) for m in members])
            row[f"{key}_mean"] = float(values.mean())
            row[f"{key}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            row[f"{key}_min"], row[f"{key}_max"] = float(values.min()), float(values.max())
            row[f"{key}_mc_stderr"] = float(np.mean([_number(m.get(f"{key}_stderr")) for m in members]))
        rows.append(row)
    return rows


def _number(value) -> float:
    return math.nan if value is None or value == "" else float(value)


def peaks_by_seed(histories: Sequence[Sequence[dict]], by: tuple[str, ...] = ("layer",)) -> list[dict]:
    """Per run and group (layer): the epoch and value of the largest I(X;T), and the last value."""
    summary = []
    for run, history in enumerate(histories):
        groups: dict[tuple, list[dict]] = {}
        for row in history:
            groups.setdefault(tuple(row[key] for key in by), []).append(row)
        for group, rows in groups.items():
            rows = sorted(rows, key=lambda r: r["epoch"])
            peak = max(rows, key=lambda r: r["ixt"])
            summary.append({"run": run, **dict(zip(by, group)), "peak_epoch": int(peak["epoch"]),
                            "peak_ixt": float(peak["ixt"]), "last_epoch": int(rows[-1]["epoch"]),
                            "last_ixt": float(rows[-1]["ixt"]), "last_iyt": float(rows[-1]["iyt"])})
    return summary


def _runs_and_band(ax, histories, aggregate, key: str, index: int, label: str, **select) -> None:
    """For the rows matching ``select`` (e.g. ``layer="noise5"``): each run's ``key``
    against epoch thin, the mean across runs thick and a ±1 sd band, in the style of the
    index-th layer."""
    from ..plots import layer_style

    def matches(row):
        return all(row[field] == value for field, value in select.items())

    style = layer_style(index)
    for history in histories:
        rows = sorted(filter(matches, history), key=lambda r: r["epoch"])
        ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], color=style["color"], linewidth=0.6, alpha=0.45)
    rows = [r for r in aggregate if matches(r)]
    if not rows:
        return
    epoch = np.array([r["epoch"] for r in rows], dtype=float)
    mean = np.array([r[f"{key}_mean"] for r in rows])
    sd = np.nan_to_num(np.array([r[f"{key}_sd"] for r in rows]))
    ax.plot(epoch, mean, linewidth=2, label=label, **style)
    ax.fill_between(epoch, mean - sd, mean + sd, color=style["color"], alpha=0.2, linewidth=0)


def plot_seed_bands(histories: Sequence[Sequence[dict]], aggregate: Sequence[dict], path, *, title: str,
                    ixt_max: float | None = None, iyt_max: float | None = None) -> Path:
    """Draw I(X;T) and I(Y;T) against epoch: each run thin, the mean thick, ±1 sd band.

    Bottom: the information plane of the means, with ±1 sd across runs as error bars on
    both axes.  Bounds (H(X), H(Y)) are drawn dashed when given.
    """
    from ..plots import finish_epoch_panel, finish_plane, layer_style

    layers = list(dict.fromkeys(row["layer"] for row in aggregate))
    widths = {row["layer"]: row["width"] for row in aggregate}
    unit = aggregate[0]["unit"]
    max_epoch = max(row["epoch"] for row in aggregate)
    fig, axes = new_figure(ncols=2, nrows=2, width=6.4, height=4.4)
    grid = axes[1, 0].get_gridspec()
    axes[1, 0].remove()
    axes[1, 1].remove()
    plane = fig.add_subplot(grid[1, :])
    for column, (key, symbol, bound, bound_name) in enumerate(
            (("ixt", "I(X;T)", ixt_max, "H(X)"), ("iyt", "I(Y;T)", iyt_max, "H(Y)"))):
        ax = axes[0, column]
        for index, layer in enumerate(layers):
            _runs_and_band(ax, histories, aggregate, key, index, f"{layer} (d={widths[layer]})", layer=layer)
        finish_epoch_panel(ax, max_epoch, symbol, unit, bound, bound_name,
                           f"{symbol}: mean of {len(histories)} runs (thick), each run (thin), band ±1 sd", 9)
    for index, layer in enumerate(layers):
        rows = [r for r in aggregate if r["layer"] == layer]
        plane.errorbar([r["ixt_mean"] for r in rows], [r["iyt_mean"] for r in rows],
                       xerr=np.nan_to_num([r["ixt_sd"] for r in rows]),
                       yerr=np.nan_to_num([r["iyt_sd"] for r in rows]), linewidth=1, elinewidth=0.6, capsize=0,
                       label=layer, **layer_style(index))
    finish_plane(plane, unit, ixt_max, iyt_max, "Information plane of the mean over runs (bars: ±1 sd across runs)",
                 9)
    plane.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_grouped_bands(histories: Sequence[Sequence[dict]], aggregate: Sequence[dict], path, *, group: str,
                       title: str, ixt_max: float | None = None) -> Path:
    """I(X;T) against epoch, one panel per value of ``group`` (e.g. the estimator): per
    layer each run thin, the mean thick and a ±1 sd band across runs."""
    from ..plots import finish_epoch_panel

    panels = list(dict.fromkeys(row[group] for row in aggregate))
    layers = list(dict.fromkeys(row["layer"] for row in aggregate))
    unit = aggregate[0]["unit"]
    max_epoch = max(row["epoch"] for row in aggregate)
    fig, axes = new_figure(ncols=len(panels), nrows=1, width=5.2, height=4.2)
    for ax, panel in zip(axes[0], panels):
        for index, layer in enumerate(layers):
            _runs_and_band(ax, histories, aggregate, "ixt", index, layer, **{group: panel, "layer": layer})
        finish_epoch_panel(ax, max_epoch, "I(X;T)", unit, ixt_max, "ln m", str(panel), 9)
    fig.suptitle(f"{title}\nmean of {len(histories)} runs (thick), each run (thin), band ±1 sd across runs",
                 fontsize=10)
    return save_figure(fig, path)


def write_seed_aggregate(out: Path, name: str, results: Sequence[dict], *, title: str,
                         by: tuple[str, ...] = ("layer",), ixt_max: float | None = None,
                         iyt_max: float | None = None, runs: Sequence[str] | None = None) -> dict:
    """Write ``<name>_seeds.csv``/``.json``/``.png`` for the runs' results (each a dict
    with ``history``, ``config`` and ``interrupted``) and print a summary; returns
    ``{"runs", "history" (the aggregate rows), "peaks", "files", "interrupted"}``.
    ``runs`` names the runs' folders in the JSON (default ``seed_0``, ``seed_1``, ...;
    a sweep stopped early names those that finished).

    The rows are grouped by ``by`` and epoch; with the default (per layer) the figure is
    :func:`plot_seed_bands`, otherwise :func:`plot_grouped_bands` with a panel per value
    of ``by[0]``.  ``ixt_max``/``iyt_max`` default to the runs' mean H(X) and H(Y)."""
    histories = [result["history"] for result in results if result["history"]]
    aggregate = aggregate_histories(histories, by)
    peaks = peaks_by_seed(histories, by)

    def mean_of(key):  # H(X) differs between runs when each draws its own inputs
        values = [r["config"][key] for r in results if r["config"].get(key) is not None]
        return float(np.mean(values)) if values else None

    ixt_max = mean_of("input_entropy") if ixt_max is None else ixt_max
    iyt_max = mean_of("label_entropy") if iyt_max is None else iyt_max
    remove_files(out / file for file in aggregate_files(name))  # no earlier aggregate beside this one
    files = [write_csv(out / f"{name}_seeds.csv", aggregate)] if aggregate else []
    files.append(write_json(out / f"{name}_seeds.json", {
        "experiment": name, "n_runs": len(results),
        "runs": list(runs) if runs is not None else [f"seed_{i}" for i in range(len(results))],
        "seed_entropy": [r["config"]["seed_entropy"] for r in results],
        "seed_spawn_key": [r["config"]["seed_spawn_key"] for r in results],
        "band": "mean ± 1 sample standard deviation across runs; min/max also given",
        "unit": "nats", "peaks": peaks, "aggregate": aggregate}))
    if aggregate:
        path = out / f"{name}_seeds.png"
        if by == ("layer",):
            files.append(plot_seed_bands(histories, aggregate, path, title=title, ixt_max=ixt_max, iyt_max=iyt_max))
        else:
            files.append(plot_grouped_bands(histories, aggregate, path, group=by[0], title=title, ixt_max=ixt_max))
    print(f"{name}: {len(results)} runs; peak of I(X;T) across runs (epoch: min .. max; value: min .. max nats)")
    for group in dict.fromkeys(tuple(p[key] for key in by) for p in peaks):
        mine = [p for p in peaks if tuple(p[key] for key in by) == group]
        epochs = [p["peak_epoch"] for p in mine]
        values = [p["peak_ixt"] for p in mine]
        last = [p["last_ixt"] for p in mine]
        label = ", ".join(str(g) for g in group)
        print(f"  {label:<30} peak epoch {min(epochs):>5} .. {max(epochs):<5}  peak {min(values):.3f} .. "
              f"{max(values):.3f}  last {min(last):.3f} .. {max(last):.3f}")
    report_written(files, out)
    return {"runs": list(results), "history": aggregate, "peaks": peaks, "files": files,
            "interrupted": any(result["interrupted"] for result in results)}
