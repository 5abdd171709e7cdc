"""Run the docstring examples of ``python/infoflow`` against the *installed* infoflow.

``python -m pytest`` collects ``python/infoflow`` with ``--doctest-modules`` (see
``[tool.pytest.ini_options]`` in pyproject.toml).  pytest would import those files from the
source tree, which has no compiled ``_core`` unless built in place, and which is a second
copy of the package the tests use.  So for every file of the source package the doctest
collector here imports the module *by name* (``infoflow.density`` for
``python/infoflow/density.py``): the examples run against whatever ``import infoflow``
gives, the installed wheel in CI, exactly like the tests.

The optional dependencies may be missing: a module that cannot be imported without one
(``infoflow.nn`` without torch, ``infoflow.distributed`` without dask) has its doctests
skipped, as has any example that imports a missing one.  Every other import error fails.

This file sits at the root, not in ``tests/``, because a conftest only hooks the
collection of files below it.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest
from _pytest.doctest import DoctestModule  # pytest >= 8.1, whose DoctestModule imports through _getobj()

SOURCE_PACKAGE = Path(__file__).resolve().parent / "python" / "infoflow"

# Importable top-level names of the optional dependencies (pyproject's extras and matplotlib).
OPTIONAL = ("torch", "dask", "distributed", "matplotlib", "sklearn", "pykeops")
_IMPORT_OF_OPTIONAL = re.compile(r"^\s*(?:import|from)\s+(" + "|".join(OPTIONAL) + r")\b", re.MULTILINE)


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def _module_name(path: Path) -> str:
    """``infoflow.distributed._arrays`` for ``python/infoflow/distributed/_arrays.py``."""
    parts = path.relative_to(SOURCE_PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class InstalledDoctestModule(DoctestModule):
    """The doctests of one module of the package, imported by name rather than by path."""

    def _getobj(self):
        name = _module_name(self.path)
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            said = f"{exc.name} {exc}"
            missing = [dep for dep in OPTIONAL if _missing(dep) and re.search(rf"(?<![\w.]){dep}\b", said)]
            if not missing:
                raise
            pytest.skip(f"{name} needs {', '.join(missing)}, which is not installed")

    def collect(self):
        for item in super().collect():
            source = "".join(example.source for example in item.dtest.examples)
            missing = sorted({dep for dep in _IMPORT_OF_OPTIONAL.findall(source) if _missing(dep)})
            if missing:
                item.add_marker(pytest.mark.skip(reason=f"the example needs {', '.join(missing)}"))
            yield item


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent):
    """Swap pytest's doctest collector of each file of python/infoflow for the one above."""
    collectors = yield
    if SOURCE_PACKAGE not in file_path.resolve().parents:
        return collectors
    return [InstalledDoctestModule.from_parent(parent, path=file_path) if type(c) is DoctestModule else c
            for c in collectors]
