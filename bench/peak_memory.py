"""Peak memory of one log_density call beyond its inputs.

Usage: python bench/peak_memory.py [--m 100000] [--n 100000] [--d 10] [--dtype float32]
                                   [--threads N] [--json]

Resets the process's peak resident set (VmHWM, Linux) once the inputs exist, runs the
call, and prints the peak minus the resident set before the call, in MB.  The kernel packs
one copy of the centres (n*d values) and per-thread tiles of a few KB; it never forms
an m x n matrix.  ``--json`` prints one JSON object instead (``bench/scaling.py`` runs
this script in a fresh subprocess per case, so one case's heap cannot hide another's).
"""

import argparse
import ctypes
import json
import time

import numpy as np

import infoflow


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not found in /proc/self/status (Linux only)")


def reset_peak() -> None:
    """Return free heap pages to the OS (so the call cannot reuse them unseen), then
    reset VmHWM to the current resident set (Linux >= 4.0)."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def measure(m, n, d, dtype="float32", threads=None):
    """Peak resident memory of one ``infoflow.log_density`` call beyond its inputs.

    Parameters
    ----------
    m, n, d : int
        Queries, centres, dimension.
    dtype : {"float32", "float64"}
    threads : int, optional
        ``num_threads`` of the call (default: all).

    Returns
    -------
    dict
        ``m, n, d, dtype, threads``, ``inputs_mb`` (queries + centres),
        ``packed_centres_mb`` (n*d values: what the kernel is expected to copy),
        ``peak_beyond_inputs_mb`` and ``seconds``.
    """
    rng = np.random.default_rng(0)
    queries = rng.uniform(-1, 1, (m, d)).astype(dtype)
    centers = rng.uniform(-1, 1, (n, d)).astype(dtype)
    # Load the extension and start OpenMP's threads first: their stacks are not the call's.
    infoflow.log_density(queries[:10], centers[:10], 0.5, num_threads=threads)
    reset_peak()
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    infoflow.log_density(queries, centers, 0.5, num_threads=threads)
    seconds = time.perf_counter() - start
    after = _status_mb("VmHWM")
    return {
        "m": m, "n": n, "d": d, "dtype": dtype, "threads": threads,
        "inputs_mb": (queries.nbytes + centers.nbytes) / 2**20,
        "packed_centres_mb": centers.nbytes / 2**20,
        "peak_beyond_inputs_mb": after - before,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=100_000)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    r = measure(args.m, args.n, args.d, args.dtype, args.threads)
    if args.json:
        print(json.dumps(r))
        return
    print(f"m = {r['m']}, n = {r['n']}, d = {r['d']}, {r['dtype']}: inputs {r['inputs_mb']:.1f} MB, "
          f"peak memory beyond inputs {r['peak_beyond_inputs_mb']:.1f} MB, {r['seconds']:.2f} s")


if __name__ == "__main__":
    main()
