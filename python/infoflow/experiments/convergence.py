r"""Estimator comparison of Goldfeld et al. (ICML 2019): error against the number of samples.

The task: estimate :math:`h(P * \mathcal N(0, \beta^2 I_d))` from n samples, with P
uniform on the :math:`2^d` corners of :math:`\{-1, 1\}^d`.  Two estimators:

* SP (the paper's, :func:`infoflow.mixture_entropy`): the entropy of the Gaussian
  mixture centred at n samples of S ~ P, :math:`h(\hat P_{S^n} * \varphi_\beta)`, which
  uses that the noise is known.  Its error is the plug-in error
  :math:`O((\log n)^{d/4}/\sqrt n)` plus the Monte Carlo error of computing the mixture
  entropy (reported as ``sp_mc_stderr``; the default about 65536 queries, with the
  control variate, put it at a few thousandths of a nat or far less where the mixture is
  separated: the floor the SP curve reaches at large n for small d);
* Kozachenko–Leonenko (:func:`knn_entropy`, k = 1): the generic nearest-neighbour
  estimator applied to n samples of T = S + Z, which does not know the noise.

The truth is known to high precision: P is a product of d independent fair signs and the
noise is isotropic, so :math:`P * \varphi_\beta` is the product of d one-dimensional
mixtures :math:`\tfrac12 \mathcal N(-1, \beta^2) + \tfrac12 \mathcal N(1, \beta^2)` and
:math:`h = d\, h_1`, with :math:`h_1` a 1-D quadrature (about 1e-9 nats).

Default beta = 0.5: the two 1-D components are 4 beta apart, so the 2^d mixture
components overlap but are distinct (:math:`h_1` = 1.359 nats, against 1.419 for fully
separated components and 0.726 for a single one).  The problem is then not trivial: at
n = 2^d the SP estimator still misses corners; kNN suffers from the multi-modal density in
d = 10.  With beta = 1 the components merge and both estimators become easy; with
beta = 0.25 the mixture is nearly a sum of separated bumps.

Samples are nested: for each dimension and repetition one draw of n_max points is made
and the estimate at n uses its first n points, so that each repetition is one path of
the estimator as data accumulate (the curves are smoother than with fresh draws, the
spread over repetitions stays honest).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma, gammaln

from .._output import new_figure, save_figure, stoppable
from .._random import make_rng
from ..entropy import mixture_entropy
from .output import prepare_output, save_result
from .single_neuron import mixture_entropy_1d

__all__ = ["corner_samples", "true_entropy", "log_unit_ball_volume", "knn_entropy", "n_grid", "run",
           "add_arguments"]

_ESTIMATORS = ("sp", "knn")
#: The files a run writes into its folder.
FILES = ("convergence.csv", "convergence.png", "convergence.json")


# ---------------------------------------------------------------------------------------
# The problem and its exact answer
# ---------------------------------------------------------------------------------------

def corner_samples(n: int, dim: int, rng) -> np.ndarray:
    """n samples of P, uniform on the corners {-1, 1}^dim; float64, shape (n, dim)."""
    return make_rng(rng).choice(np.array([-1.0, 1.0]), size=(n, dim))


def true_entropy(dim: int, beta: float) -> float:
    r"""Exact :math:`h(P * \mathcal N(0, \beta^2 I))` in nats, P uniform on {-1, 1}^dim.

    The mixture is the product of ``dim`` independent 1-D mixtures
    :math:`\tfrac12 \mathcal N(\pm 1, \beta^2)`, so its entropy is ``dim`` times the 1-D
    one, computed by quadrature (:func:`~infoflow.experiments.single_neuron.mixture_entropy_1d`).
    """
    return dim * mixture_entropy_1d([-1.0, 1.0], beta)


# ---------------------------------------------------------------------------------------
# The Kozachenko-Leonenko estimator
# ---------------------------------------------------------------------------------------

def log_unit_ball_volume(dim: int) -> float:
    r"""ln V_d, the log-volume of the unit Euclidean ball: :math:`\tfrac d2 \ln\pi - \ln\Gamma(\tfrac d2 + 1)`."""
    return 0.5 * dim * math.log(math.pi) - float(gammaln(0.5 * dim + 1.0))


def _knn_log_distances(x: np.ndarray, k: int) -> np.ndarray:
    """ln eps_i, the log-distance from each point to its k-th nearest other point."""
    # Each point is its own nearest neighbour (distance 0), so ask for k + 1.
    distances, _ = cKDTree(x).query(x, k=k + 1, workers=-1)
    eps = distances[:, k]
    if np.any(eps <= 0):
        raise ValueError(
            f"samples: {int(np.sum(eps <= 0))} points have a k-th neighbour at distance 0 (repeated "
            "points); the Kozachenko-Leonenko estimator needs samples of a continuous distribution"
        )
    return np.log(eps)


def knn_entropy(samples, k: int = 1) -> float:
    r"""Kozachenko–Leonenko k-nearest-neighbour estimate of the differential entropy, in nats.

    .. math:: \hat h = \psi(n) - \psi(k) + \ln V_d + \frac dn \sum_{i=1}^n \ln \varepsilon_i,

    with :math:`\varepsilon_i` the Euclidean distance from sample i to its k-th nearest
    other sample, :math:`V_d` the volume of the unit d-ball and :math:`\psi` the digamma
    function.

    Parameters
    ----------
    samples : array_like, shape (n, d)
        i.i.d. samples of a continuous distribution (no repeated points).
    k : int
        Neighbour order, 1 <= k < n (default 1).

    Returns
    -------
    float
        The estimate in nats.

    Notes
    -----
    Consistent for any d; the statistical error of each term is roughly that of
    :math:`-\ln f(x_i) + \ln E_i` with :math:`E_i \sim \mathrm{Gamma}(k, 1)`, so for a
    Gaussian the standard deviation is about :math:`\sqrt{(d/2 + \psi'(k))/n}`.  The bias
    decays slowly in high dimension and for multimodal densities (here it dominates
    at d = 10).  The k-d tree query uses all CPU cores.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"samples: expected a 2-D array of shape (n, d), got shape {x.shape}")
    n, d = x.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f"k: expected an integer with 1 <= k < n = {n}, got {k!r}")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples: contains NaN or infinity")
    log_eps = _knn_log_distances(x, int(k))
    return float(digamma(n) - digamma(k) + log_unit_ball_volume(d) + d * log_eps.mean())


# ---------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------

def n_grid(n_min: int, n_max: int) -> list[int]:
    """Powers of two from n_min to n_max (both included even when not powers of two)."""
    if not 2 <= n_min <= n_max:
        raise ValueError(f"n_min, n_max: expected 2 <= n_min <= n_max, got {n_min}, {n_max}")
    powers = [2**j for j in range(math.ceil(math.log2(n_min)), math.floor(math.log2(n_max)) + 1)]
    return sorted(set([n_min, *powers, n_max]))


def _trial(s: np.ndarray, z: np.ndarray, n: int, beta: float, mc_samples, k: int, generator) -> dict:
    """Both estimates from the first n of a nested draw: centres s, noise z (standard normal)."""
    t0 = time.perf_counter()
    sp = mixture_entropy(s[:n], beta, mc_samples=mc_samples, rng=generator)
    t1 = time.perf_counter()
    knn = knn_entropy(s[:n] + beta * z[:n], k)
    t2 = time.perf_counter()
    return {"sp": float(sp.value), "sp_stderr": float(sp.stderr), "knn": knn,
            "sp_seconds": t1 - t0, "knn_seconds": t2 - t1}


def _summary(dim: int, n: int, truth: float, trials: list[dict]) -> dict:
    """One CSV row: per estimator the mean |error| over the repetitions, its standard
    deviation, its range, and the mean signed error (the bias), all in nats."""
    row = {"d": dim, "n": n, "repeats": len(trials), "true_entropy": truth}
    for name in _ESTIMATORS:
        error = np.array([t[name] for t in trials]) - truth
        magnitude = np.abs(error)
        row.update({
            f"{name}_mean_abs_error": magnitude.mean(),
            f"{name}_std_abs_error": magnitude.std(ddof=1) if len(trials) > 1 else float("nan"),
            f"{name}_min_abs_error": magnitude.min(),
            f"{name}_max_abs_error": magnitude.max(),
            f"{name}_mean_error": error.mean(),
        })
    row["sp_mc_stderr"] = float(np.mean([t["sp_stderr"] for t in trials]))
    row["sp_seconds"] = float(np.mean([t["sp_seconds"] for t in trials]))
    row["knn_seconds"] = float(np.mean([t["knn_seconds"] for t in trials]))
    return row


def _plot(rows: list[dict], config: dict, truths: dict, path: Path) -> Path:
    dims = [d for d in config["dims"] if any(r["d"] == d for r in rows)] or config["dims"]
    fig, axes = new_figure(ncols=len(dims), width=4.6, height=4.4)
    styles = {"sp": ("C0", "o", "SP: h(P_n * N), infoflow.mixture_entropy"),
              "knn": ("C1", "s", f"Kozachenko-Leonenko kNN (k = {config['k']})")}
    for ax, dim in zip(axes[0], dims):
        mine = [r for r in rows if r["d"] == dim]
        n = np.array([r["n"] for r in mine], dtype=float)
        for name, (color, marker, label) in styles.items():
            if not mine:
                break
            mean = np.array([r[f"{name}_mean_abs_error"] for r in mine])
            # Bars span the smallest to the largest |error| over the repetitions: always
            # positive, so they stay drawable on log axes (mean +- std would not).
            bars = [mean - [r[f"{name}_min_abs_error"] for r in mine],
                    np.array([r[f"{name}_max_abs_error"] for r in mine]) - mean]
            ax.errorbar(n, mean, yerr=bars, fmt=marker + "-", ms=4, color=color, capsize=2, lw=1.2, label=label)
        if mine:
            ax.plot(n, [r["sp_mc_stderr"] for r in mine], color="C0", ls=":", lw=1.2,
                    label="SP Monte Carlo stderr (floor)")
            # A 1/sqrt(n) guide through the first SP point, to read slopes against.
            anchor = mine[0]["sp_mean_abs_error"]
            ax.plot(n, anchor * np.sqrt(n[0] / n), color="0.5", ls="--", lw=0.8, label="slope n^(-1/2)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("n (samples)")
        ax.set_ylabel("|estimate - h|  [nats]")
        ax.set_title(f"d = {dim} ({2**dim} corners), h = {truths[dim]:.3f} nats", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    # One legend for all panels, below them, where it cannot hide a curve.
    handles, labels = axes[0, 0].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: not labels[i].startswith(("SP:", "Kozachenko")))
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8, frameon=False)
    fig.suptitle(f"Entropy of P * N(0, beta^2 I), P uniform on {{-1,1}}^d, beta = {config['beta']:g}: "
                 f"mean |error| over {config['repeats']} repetitions (bars: min-max)", fontsize=10)
    return save_figure(fig, path)


def _seed_record(rng):
    """The seed as a JSON value: the int itself, else the type of the generator given."""
    return rng if rng is None or isinstance(rng, int) else f"<{type(rng).__name__}>"


def run(out_dir, *, dims=(2, 5, 10), beta: float = 0.5, n_min: int = 16, n_max: int = 16384,
        repeats: int = 5, mc_samples: int | None = None, k: int = 1, rng=0, progress: bool = True,
        overwrite: bool = False) -> dict:
    r"""Error of the SP and kNN entropy estimators against n, for P uniform on {-1, 1}^d.

    Writes into ``out_dir``: ``convergence.csv`` (one row per (d, n): the true entropy and,
    for ``sp`` and ``knn``, the mean, standard deviation, minimum and maximum of
    |error| over the repetitions and the mean signed error; the mean SP Monte Carlo
    stderr; the mean seconds per estimate — all entropies and errors in nats),
    ``convergence.json`` (configuration, rows, every trial) and ``convergence.png``
    (log-log |error| against n, one panel per d).  On Ctrl-C it stops and writes the
    (d, n) rows whose repetitions are all done.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        Output folder (created if needed).
    dims : sequence of int
        Dimensions d (default 2, 5, 10).
    beta : float
        Noise standard deviation, > 0 (default 0.5; see the module notes).
    n_min, n_max : int
        The sample sizes are the powers of two from n_min to n_max (default 16 .. 16384).
    repeats : int
        Independent repetitions (nested sample paths) per d.
    mc_samples : int, optional
        Monte Carlo draws per centre for the SP estimate (default: the package default,
        about 65536 queries per estimate).  Larger values lower the SP floor
        ``sp_mc_stderr`` at a cost proportional to n * mc_samples * n.
    k : int
        Neighbour order of the kNN estimator (default 1).
    rng : int, numpy.random.Generator or None
        Seed of all draws (Scientific Python SPEC 7,
        https://scientific-python.org/specs/spec-0007/).
    progress : bool
        Show a progress bar over the trials.
    overwrite : bool
        Replace the files of an earlier run in ``out_dir`` (default False:
        FileExistsError naming them, before any computation).

    Returns
    -------
    dict
        What ``convergence.json`` holds: ``config``, ``true_entropy`` (per d, nats),
        ``rows``, ``trials``, ``interrupted``, ``runtime_s``, ``files``.
    """
    dims = [int(d) for d in dims]
    if not dims or min(dims) < 1:
        raise ValueError(f"dims: expected dimensions >= 1, got {dims}")
    if repeats < 1:
        raise ValueError(f"repeats: expected at least 1, got {repeats}")
    grid = n_grid(n_min, n_max)
    out, paths = prepare_output(out_dir, FILES, overwrite=overwrite)
    config = {"dims": dims, "beta": float(beta), "n_min": int(n_min), "n_max": int(n_max), "n": grid,
              "repeats": int(repeats), "mc_samples": mc_samples, "k": int(k), "seed": _seed_record(rng),
              "units": "nats", "problem": "h(P * N(0, beta^2 I_d)), P uniform on {-1,1}^d"}
    start = time.perf_counter()
    truths = {d: true_entropy(d, beta) for d in dims}
    # One independent stream per (d, repetition): its nested draw, then its Monte Carlo noise.
    seeds = make_rng(rng).integers(2**63, size=(len(dims), repeats))

    from tqdm.auto import tqdm

    rows: list[dict] = []
    trials: list[dict] = []
    with stoppable("convergence") as stopped:
        with tqdm(total=len(dims) * len(grid) * repeats, desc="convergence", unit="trial",
                  disable=not progress) as bar:
            for i, dim in enumerate(dims):
                streams = [np.random.default_rng(int(seed)) for seed in seeds[i]]
                draws = [(corner_samples(grid[-1], dim, g), g.standard_normal((grid[-1], dim))) for g in streams]
                for n in grid:
                    bar.set_postfix(d=dim, n=n)
                    done = []
                    for repeat, ((s, z), g) in enumerate(zip(draws, streams)):
                        done.append({"d": dim, "n": n, "repeat": repeat, **_trial(s, z, n, beta, mc_samples, k, g)})
                        bar.update()
                    # Only whole (d, n) cells become rows, so an interrupted run stays consistent.
                    trials.extend(done)
                    rows.append(_summary(dim, n, truths[dim], done))

    result = {"config": config, "true_entropy": {str(d): h for d, h in truths.items()}, "rows": rows,
              "trials": trials, "interrupted": stopped[0], "runtime_s": time.perf_counter() - start}
    return save_result(out, "convergence", result, {"convergence": rows},
                       lambda path: _plot(rows, config, truths, path), paths)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``infoflow reproduce convergence``; dests are the keywords of :func:`run`."""
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 5, 10], help="dimensions d (default 2 5 10)")
    parser.add_argument("--beta", type=float, default=0.5, help="noise standard deviation (default 0.5)")
    parser.add_argument("--n-min", dest="n_min", type=int, default=16, help="smallest sample size (default 16)")
    parser.add_argument("--n-max", dest="n_max", type=int, default=16384,
                        help="largest sample size; the grid is the powers of two up to it (default 16384)")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions per (d, n) (default 5)")
    parser.add_argument("--mc-samples", dest="mc_samples", type=int, default=None,
                        help="SP Monte Carlo draws per centre (default: about 65536 queries per estimate)")
    parser.add_argument("--k", type=int, default=1, help="neighbour order of the kNN estimator (default 1)")
    parser.add_argument("--seed", dest="rng", type=int, default=0, help="random seed (default 0)")
