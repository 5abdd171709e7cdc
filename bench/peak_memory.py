"""Peak memory of one log_density call beyond its inputs.

Usage: python bench/peak_memory.py [--m 100000] [--n 100000] [--d 10] [--dtype float32]

Resets the process's peak resident set (VmHWM, Linux) once the inputs exist, runs the
call, and prints the peak minus the resident set before the call, in MB.  The kernel packs
one copy of the centres (n*d values) and per-thread tiles of a few KB; it never forms
an m x n matrix.
"""

import argparse
import ctypes
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=100_000)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    queries = rng.uniform(-1, 1, (args.m, args.d)).astype(args.dtype)
    centres = rng.uniform(-1, 1, (args.n, args.d)).astype(args.dtype)
    infoflow.log_density(queries[:10], centres[:10], 0.5)  # load the extension and OpenMP first
    reset_peak()
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    infoflow.log_density(queries, centres, 0.5)
    seconds = time.perf_counter() - start
    after = _status_mb("VmHWM")
    inputs = (queries.nbytes + centres.nbytes) / 2**20
    print(f"m = {args.m}, n = {args.n}, d = {args.d}, {args.dtype}: inputs {inputs:.1f} MB, "
          f"peak memory beyond inputs {after - before:.1f} MB, {seconds:.2f} s")


if __name__ == "__main__":
    main()
