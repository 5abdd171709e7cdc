"""Command line: ``infoflow entropy FILE --beta B``, ``infoflow reproduce NAME`` and ``infoflow info``."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import _backend
from .entropy import mixture_entropy, mixture_entropy_bounds, monte_carlo_queries, noise_entropy
from ._intake import log_of_base, unit_name
from .experiments import EXPERIMENTS


def demo_samples() -> tuple[np.ndarray, str]:
    """The built-in data: the 4096 corners of {-1, 1}^12 (the 12-bit patterns of
    Shwartz-Ziv & Tishby as +-1 vectors).  Corners are 2 apart, so for beta well below 1
    the entropy approaches its ceiling h_Z + ln 4096, which the output also prints."""
    patterns = (np.arange(4096)[:, None] >> np.arange(11, -1, -1)) & 1
    return (2.0 * patterns - 1.0), "built-in demo: the 4096 corners of {-1,1}^12"


def load_samples(path: Path, key: str | None) -> np.ndarray:
    """Samples as rows from .npy, .npz (first array, or ``key``) or .csv (a header row is skipped)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        data = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.keys())
            if not names:
                raise ValueError(f"{path}: the archive holds no arrays")
            if key is not None and key not in names:
                raise ValueError(f"{path}: no array named {key!r}; it has {names}")
            data = archive[key or names[0]]
    elif suffix in (".csv", ".txt"):
        try:
            data = np.loadtxt(path, delimiter=",", ndmin=2)
        except ValueError:
            data = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1)
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r} (use .npy, .npz or .csv)")
    if data.ndim == 1:
        data = data[:, None]
    if data.dtype.kind in "iub":  # files of integers are samples too: read them as float64
        data = data.astype(np.float64)
    return data


def _entropy(args: argparse.Namespace) -> int:
    if args.demo:
        samples, source = demo_samples()
    elif args.file is None:
        raise SystemExit("infoflow entropy: give a FILE of samples or --demo")
    else:
        samples, source = load_samples(Path(args.file), args.key), str(args.file)
    if samples.ndim != 2:
        raise SystemExit("infoflow entropy: expected a 2-D table of samples (rows = samples), "
                         f"got shape {samples.shape}")
    n, d = samples.shape
    k = args.mc_samples  # None: the default budget of queries
    queries = monte_carlo_queries(n, k)
    start = time.perf_counter()
    estimate = mixture_entropy(samples, args.beta, mc_samples=k, base=args.base, rng=args.seed,
                               num_threads=args.threads, progress=not args.json)
    bounds = mixture_entropy_bounds(samples, args.beta, base=args.base, num_threads=args.threads)
    seconds = time.perf_counter() - start
    h_z = noise_entropy(d, args.beta, base=args.base)
    ceiling = h_z + math.log(n) / log_of_base(args.base)
    unit = unit_name(args.base)
    info = _backend.build_info()
    result = {
        "source": source, "n": n, "d": d, "beta": args.beta, "mc_samples": k, "mc_queries": queries,
        "seed": args.seed,
        "unit": unit, "entropy": estimate.value, "stderr": estimate.stderr,
        "lower_bound": bounds.lower, "upper_bound": bounds.upper,
        "noise_entropy": h_z, "noise_entropy_plus_log_n": ceiling,
        "seconds": seconds, "simd": info["simd_runtime"], "threads": args.threads or info["max_threads"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{source}: n = {n} samples, d = {d}, beta = {args.beta:g}")
    print(f"  h(P_S * N(0, beta^2 I)) = {estimate.value:.6f} ± {estimate.stderr:.6f} {unit}"
          f"  (Monte Carlo, {queries} queries, seed = {args.seed})")
    print(f"  Kolchinsky-Tracey bounds: {bounds.lower:.6f} <= h <= {bounds.upper:.6f} {unit}")
    print(f"  limits: h_Z = {h_z:.6f} <= h <= h_Z + ln n = {ceiling:.6f} {unit}")
    print(f"  time: {seconds:.3f} s on {result['threads']} CPU thread(s), {info['simd_runtime']} kernel")
    return 0


def _info(args: argparse.Namespace) -> int:
    print(json.dumps(_backend.build_info(), indent=2))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    experiment = EXPERIMENTS[args.experiment]
    out = args.out or f"infoflow-{args.experiment}"
    options = {k: v for k, v in vars(args).items() if k not in ("command", "experiment", "out", "run")}
    experiment.run(out, **options)
    print(f"infoflow reproduce {args.experiment}: results in {Path(out).resolve()}")
    return 0


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; an experiment's own options are added only when it is the one named
    in ``argv`` (adding them imports the experiment, and with it torch and matplotlib)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="infoflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    entropy = commands.add_parser(
        "entropy", help="entropy of samples smoothed by Gaussian noise, h(P_S * N(0, beta^2 I))",
        description="Estimate h(P_S * N(0, beta^2 I)) from samples (rows of FILE) by Monte Carlo, "
                    "with its standard error and the Kolchinsky-Tracey bounds.")
    entropy.add_argument("file", nargs="?", help=".npy, .npz or .csv file, one sample per row")
    entropy.add_argument("--demo", action="store_true", help="use the built-in data instead of FILE")
    entropy.add_argument("--beta", type=float, default=None,
                         help="noise standard deviation (required, or 0.5 with --demo)")
    entropy.add_argument("--mc-samples", type=int, default=None,
                         help="noise draws per sample (default: 65536 queries in all, a random subset of "
                              "the samples when there are more)")
    entropy.add_argument("--base", type=float, default=None, help="logarithm base (default: e, nats; 2 for bits)")
    entropy.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    entropy.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    entropy.add_argument("--key", default=None, help="array name inside a .npz file")
    entropy.add_argument("--json", action="store_true", help="print the result as JSON")
    entropy.set_defaults(run=_entropy)

    reproduce = commands.add_parser(
        "reproduce", help="run an experiment of Goldfeld et al. (ICML 2019): CSV/JSON data and PNG figures",
        description="Reproduce an experiment; results go to --out (default ./infoflow-NAME). "
                    "Ctrl-C stops it and keeps what is done.")
    names = reproduce.add_subparsers(dest="experiment", required=True, metavar="NAME")
    selected = argv[1] if len(argv) > 1 and argv[0] == "reproduce" else None
    for name, experiment in EXPERIMENTS.items():
        sub = names.add_parser(name, help=experiment.summary, description=experiment.summary)
        sub.add_argument("--out", default=None, help=f"output folder (default: ./infoflow-{name})")
        sub.add_argument("--overwrite", action="store_true",
                         help="replace the files of an earlier run in the output folder (default: refuse, "
                              "before any computation)")
        if name == selected:
            experiment.add_arguments(sub)
    reproduce.set_defaults(run=_reproduce)

    info = commands.add_parser("info", help="how infoflow was built (compiler, OpenMP, SIMD, CUDA)")
    info.set_defaults(run=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command == "entropy" and args.beta is None:
        if not args.demo:
            parser.error("entropy: --beta is required")
        args.beta = 0.5
    try:
        return args.run(args)
    except (TypeError, ValueError, OSError) as exc:
        print(f"infoflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("infoflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
