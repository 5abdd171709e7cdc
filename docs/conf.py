"""Sphinx configuration of infoflow's API reference (built from the docstrings).

Build it with the package installed (the docstrings are read from ``import infoflow``,
which needs the compiled core)::

    pip install -r docs/requirements.txt
    sphinx-build -W --keep-going -b html docs build/docs

No network is needed: no intersphinx, no remote theme.
"""

from __future__ import annotations

import os
import subprocess
import sys

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

import infoflow

project = "infoflow"
author = "infoflow contributors"
copyright = "infoflow contributors, BSD-3-Clause"
release = infoflow.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]

# docs/figures holds the README's committed figures and data, not Sphinx sources.
exclude_patterns = ["figures", "_build"]
templates_path: list[str] = []

html_theme = "alabaster"
html_static_path: list[str] = []
html_title = f"infoflow {release}"

# Signatures as written (no evaluated defaults), members in source order.
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc "Parameters" sections carry the types
autodoc_preserve_defaults = True
autosummary_generate = False  # the summary tables link to entries on the same page

# numpydoc: no autosummary tables of every class member (they would need generated
# pages); the members that matter are documented explicitly with :members:.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

logger = logging.getLogger(__name__)


class InfoflowHelp(SphinxDirective):
    """``.. infoflow-help:: reproduce szt``: the output of ``infoflow reproduce szt --help``,
    run at build time, so the CLI page always shows the installed command's options."""

    required_arguments = 0
    optional_arguments = 8
    has_content = False

    def run(self):
        argv = [sys.executable, "-m", "infoflow", *self.arguments, "--help"]
        env = {**os.environ, "COLUMNS": "88"}
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            logger.warning("%s failed (exit %d): %s", " ".join(argv[2:]), result.returncode,
                           result.stderr.strip(), location=self.get_location())
            return []
        block = nodes.literal_block(result.stdout, result.stdout)
        block["language"] = "text"
        return [block]


def _check_public_names_documented(app, env):
    """Every name in ``__all__`` of the documented public modules has an entry (a name
    missing from the pages is a warning, an error under -W)."""
    import importlib

    py = env.get_domain("py")
    documented = set(py.objects)
    top = importlib.import_module("infoflow")
    for module_name in ("infoflow", "infoflow.nn", "infoflow.sampling", "infoflow.datasets",
                        "infoflow.distributed"):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            logger.warning("cannot import %s to check its reference: %s", module_name, exc)
            continue
        for name in module.__all__:
            # A name re-exported by infoflow (infoflow.sampling.sample_layers) may be documented there.
            alias = f"infoflow.{name}" if getattr(top, name, None) is getattr(module, name) else None
            if f"{module_name}.{name}" not in documented and alias not in documented:
                logger.warning("%s.%s is public (in __all__) but not in the API reference", module_name, name)


def setup(app):
    app.add_directive("infoflow-help", InfoflowHelp)
    app.connect("env-check-consistency", _check_public_names_documented)
