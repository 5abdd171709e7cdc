import argparse
import inspect
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # for `reference`

import infoflow  # noqa: E402
from infoflow import _core  # noqa: E402

SUPPORTED_ISAS = [isa for isa in ("generic", "avx2", "avx512") if _core.isa_supported(isa)]


@pytest.fixture(params=SUPPORTED_ISAS)
def isa(request, monkeypatch):
    """Run a test once per SIMD kernel this CPU supports (INFOFLOW_SIMD selects it)."""
    monkeypatch.setenv("INFOFLOW_SIMD", request.param)
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20190609)


def available_memory_gib() -> float:
    """Memory available to a new allocation now (Linux MemAvailable; else free pages)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return float("inf")  # unknown: try


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def needs_memory(gib: float):
    """Skip a test where less than ``gib`` GiB is available, so that ``python -m pytest``
    runs on an 8 GB laptop; never in CI (CI=true), which must run every test."""
    available = available_memory_gib()
    return pytest.mark.skipif(not in_ci() and available < gib,
                              reason=f"needs {gib:g} GiB of free memory, {available:.1f} GiB available "
                                     "(runs in CI; set CI=true to run it anyway)")


@pytest.fixture
def interrupt_at_call(monkeypatch):
    """``interrupt_at_call(owner, name, n)`` patches ``owner.name`` so that its n-th call
    raises KeyboardInterrupt (a Ctrl-C in mid-run); the other calls run the original."""

    def patch(owner, name, n):
        original = getattr(owner, name)
        calls = []

        def interrupting(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, interrupting)

    return patch


@pytest.fixture
def options_match_run():
    """``options_match_run(add_arguments, run)`` asserts that every option ``add_arguments``
    puts on a parser lands on a keyword of ``run`` with run's default (a tuple default as
    the list argparse gives), and returns the parser."""

    def check(add_arguments, run):
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        parameters = inspect.signature(run).parameters
        for dest, default in vars(parser.parse_args([])).items():
            assert dest in parameters, dest
            expected = parameters[dest].default
            assert default == (list(expected) if isinstance(expected, tuple) else expected), dest
        return parser

    return check


@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch")


def pytest_report_header(config):
    info = infoflow.build_info()
    return (f"infoflow {info['version']}: simd {info['simd_runtime']} (supported {info['simd_supported']}), "
            f"openmp {info['openmp']}, max_threads {info['max_threads']}, "
            f"cuda built {info['cuda_built']}, gpu {info['has_cuda']}")
