"""The table of experiments behind ``infoflow reproduce``."""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass

__all__ = ["Experiment", "EXPERIMENTS", "register"]


@dataclass(frozen=True)
class Experiment:
    """One reproducible experiment.

    Attributes
    ----------
    name : str
        The command-line name, e.g. ``"single-neuron"``.
    summary : str
        One line for ``infoflow reproduce --help``.
    module : str
        Module (relative to this package) defining ``run(out_dir, **options)`` and
        ``add_arguments(parser)``; imported only when the experiment runs, so that
        ``import infoflow`` never imports torch or matplotlib.  Every ``run`` takes
        ``overwrite=False`` (``infoflow reproduce NAME --overwrite``): without it, a run
        refuses to replace files of an earlier one, before computing anything.
    """

    name: str
    summary: str
    module: str

    def load(self):
        return importlib.import_module(f"{__package__}.{self.module}")

    def run(self, out_dir, **options):
        """Run the experiment, writing CSV/JSON/PNG into ``out_dir``; returns its result
        (a dict whose ``"interrupted"`` is True after Ctrl-C)."""
        return self.load().run(out_dir, **options)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        self.load().add_arguments(parser)


EXPERIMENTS: dict[str, Experiment] = {}


def register(name: str, summary: str, module: str) -> Experiment:
    experiment = Experiment(name, summary, module)
    EXPERIMENTS[name] = experiment
    return experiment


register("szt", "the 12-bit network of Shwartz-Ziv & Tishby with noise: I(X;T), I(Y;T) per layer over training",
         "szt")
register("binning", "the same network without noise: binned I(X;Bin T) against bin size and epochs", "binning")
register("single-neuron", "T = tanh(w(X-2)) + Z: I(X;T) against w, sampled and exact", "single_neuron")
register("ib-tradeoff", "train with loss CE + lambda * I(X;T) (the differentiable SP estimate): I(X;T) against "
         "accuracy", "ib_tradeoff")
register("convergence", "estimator error against n, next to the Kozachenko-Leonenko kNN estimator", "convergence")
