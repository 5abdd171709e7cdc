"""Command line: ``infoflow entropy FILE --beta B``, ``infoflow reproduce NAME`` and ``infoflow info``."""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import _backend
from ._intake import log_of_base, unit_name
from ._output import to_json
from .datasets import szt_bits
from .entropy import mixture_entropy, mixture_entropy_bounds, noise_entropy
from .experiments import EXPERIMENTS
from .queries import monte_carlo_queries

#: The exit status of an interrupted command (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

# The parser's description: the module docstring without reST markup, which --help prints verbatim.
DESCRIPTION = __doc__.replace("``", "")


class UsageError(ValueError):
    """A command-line mistake: reported as one line, exit status 2, no traceback."""


def demo_samples() -> tuple[np.ndarray, str]:
    """The built-in data: the 4096 corners of {-1, 1}^12 (the 12-bit patterns of
    Shwartz-Ziv & Tishby as +-1 vectors).  Corners are 2 apart, so for beta well below 1
    the entropy approaches its ceiling h_Z + ln 4096, which the output also prints."""
    return 2.0 * szt_bits() - 1.0, "built-in demo: the 4096 corners of {-1,1}^12"


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"  # a member's header (PK 3 4), or the end record (PK 5 6) of an empty archive


def _magic(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(6)


def _load_npy(path: Path) -> np.ndarray:
    head = _magic(path)
    if head != _NPY_MAGIC:
        # np.load would take any other content for a pickle and advise allow_pickle.
        hint = " (it is a zip archive: name it .npz)" if head.startswith(_ZIP_MAGIC) else ""
        raise UsageError(f"{path}: not a .npy file, no NumPy header{hint}")
    try:
        return np.load(path, allow_pickle=False)
    except (EOFError, ValueError) as exc:  # numpy's messages say what is wrong (truncation, object arrays)
        raise UsageError(f"{path}: cannot read the array: {exc}") from None


def _load_npz(path: Path, key: str | None) -> np.ndarray:
    if not _magic(path).startswith(_ZIP_MAGIC):
        raise UsageError(f"{path}: not a .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.keys())
            if not names:
                raise UsageError(f"{path}: the archive holds no arrays")
            if key is not None and key not in names:
                raise UsageError(f"{path}: no array named {key!r}; it has {names}")
            return archive[key or names[0]]
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise UsageError(f"{path}: cannot read the archive (truncated or corrupt file?): {exc}") from None
    except UsageError:
        raise
    except ValueError as exc:  # a member that is no array, or an object array
        raise UsageError(f"{path}: cannot read the array: {exc}") from None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _csv_lines(text: str):
    """(line number, stripped fields) of each row, blank and ``#`` comment lines skipped."""
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            # csv.reader handles quoted names ("col a", "a,b") in a header.
            yield number, [field.strip() for field in next(csv.reader([line]))]


def _load_csv(path: Path) -> np.ndarray:
    """Rows of comma-separated numbers; the first row is a header if none of its fields is a number.

    Blank lines and lines starting with ``#`` (as numpy.savetxt writes a header) are
    skipped.  Every other row must hold as many numbers as the first: a ragged or
    non-numeric row is an error naming its line, never a silently dropped row.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark (Excel) is not part of a name
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from None
    rows: list[list[float]] = []
    first = width = None
    header = False
    for number, fields in _csv_lines(text):
        values = [_number(field) for field in fields]
        if first is None:
            first, width = number, len(fields)
            # A header is a row of names; a row mixing numbers and text is a broken first sample.
            header = all(value is None for value in values)
            if header:
                continue
        if len(fields) != width:
            raise UsageError(f"{path}: line {number} has {len(fields)} values, line {first} has {width}")
        bad = [(column, field) for column, (field, value) in enumerate(zip(fields, values), 1) if value is None]
        if bad:
            column, field = bad[0]
            what = "is empty" if not field else f"{field!r} is not a number"
            raise UsageError(f"{path}: line {number}, value {column}: {what}")
        rows.append(values)
    if not rows:
        raise UsageError(f"{path}: no samples ({'a header only' if header else 'empty file'})")
    return np.array(rows, dtype=np.float64)


def _as_samples(data: np.ndarray, path: Path) -> np.ndarray:
    """A 2-D table of float32/float64 samples from a loaded array, as the estimators take them.

    Integers and booleans become float64, float16 and other precisions float64 (exact),
    and byte-swapped (big-endian) float32/float64 the native type of the same precision.
    """
    if data.dtype.kind not in "fiub":
        raise UsageError(f"{path}: holds {data.dtype} values, expected real numbers")
    if data.ndim == 1:
        data = data[:, None]  # one value per sample
    if data.ndim != 2:
        raise UsageError(f"{path}: expected a 2-D table of samples (rows = samples) or a 1-D array, "
                         f"got shape {data.shape}")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise UsageError(f"{path}: no samples (shape {data.shape})")
    finite = np.isfinite(data).all(axis=1)
    if not finite.all():
        raise UsageError(f"{path}: sample {int(np.argmin(finite)) + 1} of {len(data)} holds NaN or infinity")
    if data.dtype.kind == "f" and data.dtype.itemsize in (4, 8):
        return data.astype(data.dtype.newbyteorder("="), copy=False)
    return data.astype(np.float64)


def load_samples(path: Path, key: str | None) -> np.ndarray:
    """Samples as rows, float32 or float64, from .npy, .npz (first array, or ``key``) or
    .csv/.txt (comma-separated; a header row of names is skipped).

    Raises :class:`UsageError` (a ValueError) for a file that cannot serve: unreadable,
    truncated, ragged, non-numeric, or not a 1-D or 2-D array.
    """
    suffix = path.suffix.lower()
    if key is not None and suffix != ".npz":
        raise UsageError(f"--key applies to .npz files only, not {path.name}")
    if suffix == ".npy":
        data = _load_npy(path)
    elif suffix == ".npz":
        data = _load_npz(path, key)
    elif suffix in (".csv", ".txt"):
        data = _load_csv(path)
    else:
        raise UsageError(f"{path}: unsupported file type {suffix!r} (use .npy, .npz or .csv)")
    return _as_samples(data, path)


def _ceiling_label(base: float | None) -> str:
    """How the output names h_Z + log n in the unit of ``base``."""
    if base is None or base == math.e:
        return "h_Z + ln n"
    if base in (2, 10):
        return f"h_Z + log{base:g} n"
    return f"h_Z + log_{base:g} n"


def _entropy(args: argparse.Namespace) -> int:
    if args.mc_samples is not None and args.mc_samples < 1:
        raise UsageError(f"--mc-samples: must be >= 1, got {args.mc_samples}")
    if args.demo and args.file is not None:
        raise UsageError(f"give a FILE of samples or --demo, not both (got {args.file})")
    if args.demo:
        if args.key is not None:
            raise UsageError("--key applies to .npz files only, not --demo")
        samples, source = demo_samples()
    elif args.file is None:
        raise UsageError("give a FILE of samples or --demo")
    else:
        samples, source = load_samples(Path(args.file), args.key), str(args.file)
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
        # Strict JSON: a value that is not a finite number (a standard error from one
        # draw, an overflow) is null, never NaN or Infinity, which JSON does not have.
        print(to_json(result, indent=2))
        return 0
    print(f"{source}: n = {n} samples, d = {d}, beta = {args.beta:g}")
    print(f"  h(P_S * N(0, beta^2 I)) = {estimate.value:.6f} ± {estimate.stderr:.6f} {unit}"
          f"  (Monte Carlo, {queries} queries, seed = {args.seed})")
    print(f"  Kolchinsky-Tracey bounds: {bounds.lower:.6f} <= h <= {bounds.upper:.6f} {unit}")
    print(f"  limits: h_Z = {h_z:.6f} <= h <= {_ceiling_label(args.base)} = {ceiling:.6f} {unit}")
    print(f"  time: {seconds:.3f} s on {result['threads']} CPU thread(s), {info['simd_runtime']} kernel")
    return 0


def _info(args: argparse.Namespace) -> int:
    print(to_json(_backend.build_info(), indent=2))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    experiment = EXPERIMENTS[args.experiment]
    out = args.out or f"infoflow-{args.experiment}"
    options = {k: v for k, v in vars(args).items()
               if k not in ("command", "experiment", "out", "run", "scheduler", "workers")}
    scheduler, workers = getattr(args, "scheduler", None), getattr(args, "workers", None)
    if scheduler is not None or workers is not None:
        try:
            from .distributed import sweep
        except ImportError as exc:  # dask is an optional extra
            raise UsageError(str(exc)) from None
        result = sweep(args.experiment, out, scheduler=scheduler, workers=workers, **options)
    else:
        result = experiment.run(out, **options)
    if result.get("interrupted"):
        # Ctrl-C stopped the run and what was done is written; the exit status still says
        # it did not finish, so that scripts and make do not take it for a full run.
        print(f"infoflow reproduce {args.experiment}: interrupted; partial results in {Path(out).resolve()}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"infoflow reproduce {args.experiment}: results in {Path(out).resolve()}")
    return 0


def _add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """--scheduler and --workers: run the seeds as Dask tasks (infoflow.distributed.sweep)."""
    group = parser.add_argument_group(
        "on a Dask cluster (pip install \"infoflow[distributed]\")",
        "Run the seeds as Dask tasks, as many at once on a worker as it has threads (each run's kernel on its "
        "share); each run's files are written as soon as it finishes.")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="address of a running Dask scheduler, e.g. tcp://host:8786")
    where.add_argument("--workers", metavar="K", type=int, default=None,
                       help="start a local Dask cluster of K worker processes sharing this machine's cores")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; an experiment's own options are added only when it is the one named
    in ``argv`` (adding them imports the experiment, and with it torch and matplotlib)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="infoflow", description=DESCRIPTION)
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
                         help="noise draws per sample, >= 1 (default: 65536 queries in all, a random subset of "
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
                    "Ctrl-C stops it, writes what is done and exits with status 130.")
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
            if hasattr(experiment.load(), "seed_plan"):
                _add_sweep_arguments(sub)
    reproduce.set_defaults(run=_reproduce)

    info = commands.add_parser("info", help="how infoflow was built (compiler, OpenMP, SIMD, CUDA)")
    info.set_defaults(run=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    command = f"infoflow {args.command}"
    try:
        if args.command == "entropy" and args.beta is None:
            if not args.demo:
                raise UsageError("--beta is required (the noise standard deviation), or use --demo")
            args.beta = 0.5
        return args.run(args)
    except (TypeError, ValueError, OSError, ImportError) as exc:
        # User errors: validation (TypeError/ValueError naming the argument), unreadable
        # files and refused overwrites (OSError), a missing optional dependency
        # (ImportError: the message says what to install).  One line, no usage dump: the
        # message says what to change.
        print(f"{command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
