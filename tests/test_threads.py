"""Threading: serial and OpenMP paths agree, concurrent Python callers get correct
results, Ctrl-C interrupts a long call, and PyTorch's OpenMP runtime coexists with ours."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import relative_error
from reference import lse_reference

import infoflow


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_and_parallel_are_identical(isa, rng, dtype):
    # Each query's sum runs over the centres in the same order whatever the threads,
    # so the results are bitwise equal, not merely close.
    q = rng.uniform(-1, 1, (3, 301, 9)).astype(dtype)
    c = rng.uniform(-1, 1, (3, 777, 9)).astype(dtype)
    serial = infoflow.gaussian_lse(q, c, 0.2, num_threads=1)
    for threads in (2, 3, 8):
        np.testing.assert_array_equal(infoflow.gaussian_lse(q, c, 0.2, num_threads=threads), serial)
    assert relative_error(serial, lse_reference(q, c, 0.2)) <= (2e-5 if dtype == np.float32 else 1e-12)


def test_concurrent_python_threads(rng):
    problems = [
        (rng.uniform(-1, 1, (200, d)), rng.uniform(-1, 1, (700, d)), 0.1 * (1 + i))
        for i, d in enumerate([1, 3, 8, 20, 50, 2, 5, 13])
    ]
    expected = [lse_reference(q, c, b) for q, c, b in problems]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            results = list(pool.map(lambda p: infoflow.gaussian_lse(*p), problems))
            for got, want in zip(results, expected):
                assert relative_error(got, want) <= 1e-12


INTERRUPT_SCRIPT = textwrap.dedent(
    """
    import signal
    import sys
    import numpy as np
    import infoflow
    # Python installs its Ctrl-C handler only if SIGINT is not ignored at startup, and a
    # job started in the background (``cmd &`` in a script) inherits SIGINT ignored: make
    # this child behave as an interactive Python does, whatever launched the tests.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    x = np.random.default_rng(0).uniform(-1, 1, (200_000, 64)).astype(np.float32)
    print("started", flush=True)
    infoflow.gaussian_lse(x, x, 1.0, num_threads=int(sys.argv[1]))  # ~20 s of work
    print("finished", flush=True)
    """
)


@pytest.mark.parametrize("threads", [1, 2])
def test_ctrl_c_interrupts_a_long_call(threads):
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPT_SCRIPT, str(threads)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "started"
        time.sleep(0.5)  # let the kernel start
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=30)
        latency = time.monotonic() - sent
    finally:
        proc.kill()
    assert "finished" not in out
    assert "KeyboardInterrupt" in err
    # The kernel polls for signals every 50 ms; the bound is generous for a loaded machine.
    assert latency < 3.0, f"took {latency:.2f} s to stop after Ctrl-C"


COEXIST_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    order = sys.argv[1]
    if order == "torch-first":
        import torch, infoflow
    else:
        import infoflow, torch
    import numpy as np
    from scipy.special import logsumexp

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    q = rng.uniform(-1, 1, (300, 16)); c = rng.uniform(-1, 1, (2000, 16))
    d2 = ((q[:, None, :] - c[None]) ** 2).sum(-1)
    expected = logsumexp(-d2 / (2 * 0.3**2), axis=1)
    a = torch.randn(600, 600, dtype=torch.float64)
    errors = []

    def torch_work():
        for _ in range(20):
            b = a @ a                     # torch's own OpenMP pool
            torch.logsumexp(b, dim=1)

    def infoflow_work():
        for _ in range(20):
            got = infoflow.gaussian_lse(q, c, 0.3, num_threads=2)   # ours
            errors.append(np.max(np.abs(got - expected) / np.maximum(1, np.abs(expected))))
        t = infoflow.gaussian_lse(torch.from_numpy(q), torch.from_numpy(c), 0.3)
        errors.append(float((t.numpy() - expected).__abs__().max()))

    threads = [threading.Thread(target=torch_work), threading.Thread(target=infoflow_work)]
    [t.start() for t in threads]; [t.join() for t in threads]
    torch_work(); infoflow_work()  # and one after the other, on the main thread
    print(max(errors))
    """
)


@pytest.mark.parametrize("order", ["torch-first", "infoflow-first"])
def test_torch_and_infoflow_openmp_runtimes_coexist(torch, order):
    env = dict(os.environ, OMP_NUM_THREADS="2")
    result = subprocess.run([sys.executable, "-c", COEXIST_SCRIPT, order], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip().splitlines()[-1]) <= 1e-12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_few_queries_split_the_centres_across_threads(isa, rng, dtype):
    # One or two queries against many centres: the kernel splits the centres into
    # segments (one per thread or more) and merges the partial log-sum-exp states.
    # (Large enough, m * n * d > 1e7, that the kernel does not run it serially.)
    c = rng.uniform(-1, 1, (400_000, 20)).astype(dtype)
    for m in (1, 2):
        q = rng.uniform(-1, 1, (m, 20)).astype(dtype)
        expected = lse_reference(q, c, 0.3)
        for threads in (1, 2, 3, 8):
            got = infoflow.gaussian_lse(q, c, 0.3, num_threads=threads)
            assert relative_error(got, expected) <= (2e-5 if dtype == np.float32 else 1e-12)
