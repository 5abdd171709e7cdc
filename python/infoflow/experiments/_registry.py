"""The table of experiments behind ``infoflow reproduce``."""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass

from .._intake import INSTALL_EXPERIMENTS

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
    requires : tuple of str
        Optional dependencies the experiment needs to run (``"torch"``); checked by
        :meth:`check_requirements` before it starts.
    """

    name: str
    summary: str
    module: str
    requires: tuple = ()

    def _missing(self, module: str) -> ModuleNotFoundError:
        # One line, for the command line to print as it is.
        package = _PACKAGES.get(module, module)
        return ModuleNotFoundError(f"the {self.name!r} experiment needs {package}, which is not installed; "
                                   f"install it with: {INSTALL_EXPERIMENTS}", name=module)

    def check_requirements(self) -> None:
        """Raise ModuleNotFoundError (an ImportError) with a one-line message saying what to
        install when a module in :attr:`requires` cannot be imported."""
        for module in self.requires:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if (exc.name or "").split(".")[0] != module:
                    raise  # something inside it is missing: its own message says what
                raise self._missing(module) from None

    def load(self):
        """The experiment's module (importing it needs none of :attr:`requires`)."""
        try:
            return importlib.import_module(f"{__package__}.{self.module}")
        except ModuleNotFoundError as exc:
            root = (exc.name or "").split(".")[0]
            if root in self.requires:
                raise self._missing(root) from None
            raise

    def run(self, out_dir, **options):
        """Run the experiment, writing CSV/JSON/PNG into ``out_dir``; returns its result
        (a dict whose ``"interrupted"`` is True after Ctrl-C).

        Raises ModuleNotFoundError, before anything is written, when a required optional
        dependency is missing (see :meth:`check_requirements`)."""
        self.check_requirements()
        return self.load().run(out_dir, **options)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        self.load().add_arguments(parser)


EXPERIMENTS: dict[str, Experiment] = {}

# How the optional dependencies are called in messages.
_PACKAGES = {"torch": "PyTorch (torch)", "sklearn": "scikit-learn"}


def register(name: str, summary: str, module: str, requires: tuple = ()) -> Experiment:
    experiment = Experiment(name, summary, module, tuple(requires))
    EXPERIMENTS[name] = experiment
    return experiment


register("szt", "the 12-bit network of Shwartz-Ziv & Tishby with noise: I(X;T), I(Y;T) per layer over training",
         "szt", requires=("torch",))
register("binning", "the same network without noise: binned I(X;Bin T) against bin size and epochs", "binning",
         requires=("torch",))
register("single-neuron", "T = tanh(w(X-2)) + Z: I(X;T) against w, sampled and exact", "single_neuron")
register("ib-tradeoff", "train with loss CE + lambda * I(X;T) (the differentiable SP estimate): I(X;T) against "
         "accuracy", "ib_tradeoff", requires=("torch", "sklearn"))
register("convergence", "estimator error against n, next to the Kozachenko-Leonenko kNN estimator", "convergence")
