r"""The single-neuron example of Goldfeld et al. (ICML 2019): I(X;T) against the weight.

One noisy tanh neuron, :math:`T = \tanh(w (X - 2)) + Z`, with X uniform on
{-3, -1, 1, 3} and :math:`Z \sim \mathcal N(0, \beta^2)`.  S = tanh(w (X - 2)) is a
deterministic function of X, so :math:`I(X;T) = h(T) - h_Z` with
:math:`h_Z = \tfrac12 \ln(2\pi e \beta^2)`, and h(T) is the entropy of a mixture of four
Gaussians centred at the images of the four inputs.

As w grows the curve shows the paper's "compression by clustering":

* w = 0: all inputs map to 0, I(X;T) = 0;
* small w: the four images separate by more than beta, I(X;T) rises towards
  :math:`\ln 4 = 1.386` nats;
* larger w: tanh saturates; the images of -3 and -1 (tanh(-5w), tanh(-3w)) merge first
  (a shoulder near :math:`H(\tfrac14, \tfrac14, \tfrac12) = 1.5 \ln 2 = 1.040` nats),
  then that of 1 (tanh(-w)) joins them, and I(X;T) falls to the entropy of the 3:1 split,
  :math:`H(\tfrac14) = 0.562` nats.

Two curves are computed on a grid of w:

* the SP estimate from samples, as the paper's estimator sees a dataset: n draws of X
  (fixed for the whole grid, like a training set), their images as the centres of
  :func:`infoflow.mixture_entropy`, minus :math:`h_Z`; with its Monte Carlo standard
  error.  By default the draws are balanced (n/4 of each input), so their law is the
  uniform law of X and the estimate differs from the exact value by Monte Carlo error
  only.  With i.i.d. draws (``balanced=False``) it also carries the plug-in error of
  their empirical law: it then converges to that law's value (the column
  ``exact_sample``), not to the uniform law's H(1/4) (116 of 400 draws at X = 3, say,
  give about 0.60 nats for large w);
* the exact value, by adaptive 1-D quadrature of :math:`-g \ln g` over the mixture.

Default beta = 0.05: of beta in 0.05 .. 0.2 it is the one whose curve reaches ln 4
(1.369 nats at w = 0.2, against 1.17 for beta = 0.1 and 0.85 for beta = 0.2), shows the
1.5 ln 2 shoulder (about 1.03 nats for w in 0.75 .. 1) and then falls to H(1/4) by
w = 3.  Everything happens for w < 4, hence the default grid 0 .. 4 in steps of 0.05.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from scipy import integrate

from .._output import new_figure, save_figure, stoppable
from .._random import make_rng
from ..density import log_gaussian_normaliser
from ..entropy import mixture_entropy, noise_entropy
from .output import prepare_output, save_result

__all__ = [
    "X_VALUES",
    "LN4",
    "H_QUARTER",
    "H_SHOULDER",
    "neuron",
    "mixture_entropy_1d",
    "exact_mi",
    "sample_inputs",
    "sampled_mi",
    "run",
    "add_arguments",
]

#: The four equally likely inputs.
X_VALUES = np.array([-3.0, -1.0, 1.0, 3.0])
#: The bias is -2w, i.e. the neuron sees w (X - 2).
SHIFT = 2.0
#: I(X;T) when the four images are far apart (in units of beta), in nats.
LN4 = math.log(4.0)
#: I(X;T) when three images have merged (3:1 split), H(1/4) in nats.
H_QUARTER = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
#: I(X;T) when the images of -3 and -1 have merged (1/4, 1/4, 1/2 split), 1.5 ln 2 nats.
H_SHOULDER = 1.5 * math.log(2.0)
#: The files a run writes into its folder.
FILES = ("single_neuron.csv", "single_neuron.png", "single_neuron.json")

# Quadrature tolerances: tight enough that the exact curve is exact at plotting scale
# and for the tests (1e-8 nats), loose enough that quad never warns about round-off.
_EPSABS = 1e-11
_EPSREL = 1e-10
# The mixture density beyond 12 beta from every centre is below 1e-31 of its peak.
_TAIL = 12.0
# Knots closer than this (in units of beta) are merged.
_MIN_GAP = 1e-3


def neuron(x, w: float) -> np.ndarray:
    """The noiseless output S = tanh(w (x - 2)) (dimensionless)."""
    return np.tanh(w * (np.asarray(x, dtype=np.float64) - SHIFT))


# ---------------------------------------------------------------------------------------
# Exact value by quadrature
# ---------------------------------------------------------------------------------------

def _merge_centers(centers, weights) -> tuple[np.ndarray, np.ndarray]:
    """Distinct centres (sorted) and their total weights, normalised; zero weights dropped.

    Merging exactly equal centres makes a single-Gaussian mixture exact (no quadrature).
    """
    s = np.asarray(centers, dtype=np.float64).ravel()
    p = np.full(s.shape, 1.0) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if s.size == 0 or p.shape != s.shape:
        raise ValueError(f"centers and weights: expected equal non-empty 1-D sizes, got {s.shape} and {p.shape}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(p)) and np.all(p >= 0) and p.sum() > 0):
        raise ValueError("centers must be finite and weights finite, >= 0 and not all 0")
    unique, inverse = np.unique(s, return_inverse=True)
    total = np.bincount(inverse.ravel(), weights=p, minlength=unique.size)
    keep = total > 0
    return unique[keep], total[keep] / total.sum()


def _knots(s: np.ndarray, beta: float) -> np.ndarray:
    """Break points for the piecewise quadrature: every centre, +-3 and +-6 beta around it
    (so quad sees every bump and its shoulders), and the ends at +-12 beta.

    Knots closer than beta/1000 to the previous one are dropped: the integrand is smooth
    on the scale of beta, and intervals a few ulps wide (nearly merged centres, e.g.
    tanh(-3w) and tanh(-5w) at large w) only make quad warn about round-off.
    """
    lo, hi = s[0] - _TAIL * beta, s[-1] + _TAIL * beta
    around = (s[:, None] + beta * np.array([-6.0, -3.0, 0.0, 3.0, 6.0])).ravel()
    candidates = np.unique(np.concatenate([[lo, hi], np.clip(around, lo, hi)]))
    knots = [lo]
    for t in candidates[1:]:
        if t - knots[-1] > _MIN_GAP * beta:
            knots.append(t)
    knots[-1] = hi  # the last kept knot is hi, or was within beta/1000 of it
    return np.array(knots)


def mixture_entropy_1d(centers, beta: float, weights=None) -> float:
    r"""Differential entropy of a 1-D Gaussian mixture by adaptive quadrature, in nats.

    .. math:: h = -\int g(t) \ln g(t)\, dt, \qquad
              g(t) = \sum_j p_j\, \varphi_\beta(t - s_j).

    Parameters
    ----------
    centers : array_like, shape (n,)
        The centres :math:`s_j` (exactly equal centres are merged).
    beta : float
        Standard deviation of every component, > 0.
    weights : array_like, shape (n,), optional
        Non-negative weights :math:`p_j` (normalised here); default equal weights.

    Returns
    -------
    float
        h in nats, accurate to about 1e-9 nats.  A single distinct centre gives the
        closed form :math:`\tfrac12 \ln(2\pi e \beta^2)` exactly.

    Notes
    -----
    :math:`\ln g` is evaluated as a log-sum-exp, so the integrand is exact where ``g``
    itself would underflow.  The integral runs piecewise over knots at the centres and
    at :math:`\pm 3\beta, \pm 6\beta` around them, out to :math:`\pm 12\beta` beyond the
    extreme centres (the neglected tails are below 1e-30 nats).
    """
    if not (beta > 0 and math.isfinite(beta)):
        raise ValueError(f"beta: expected a finite number > 0, got {beta!r}")
    s, p = _merge_centers(centers, weights)
    if s.size == 1:
        return noise_entropy(1, beta)
    log_p = np.log(p) - log_gaussian_normaliser(1, beta)
    inv_two_var = 1.0 / (2.0 * beta * beta)

    def integrand(t: float) -> float:
        a = log_p - (t - s) ** 2 * inv_two_var
        top = a.max()
        log_g = top + math.log(np.exp(a - top).sum())
        return -math.exp(log_g) * log_g

    knots = _knots(s, beta)
    return math.fsum(
        integrate.quad(integrand, a, b, limit=200, epsabs=_EPSABS, epsrel=_EPSREL)[0]
        for a, b in zip(knots[:-1], knots[1:])
    )


def exact_mi(w: float, beta: float, probabilities=None) -> float:
    r"""Exact :math:`I(X;T)` in nats for :math:`T = \tanh(w(X-2)) + Z`, by quadrature.

    Parameters
    ----------
    w : float
        The weight.
    beta : float
        Noise standard deviation, > 0.
    probabilities : array_like, shape (4,), optional
        The law of X on :data:`X_VALUES`; default uniform (the experiment's X).  Pass the
        empirical frequencies of a sample to get the value the SP estimator converges to
        for that sample.

    Returns
    -------
    float
        :math:`h(T) - h_Z` in nats; exactly 0 when all images coincide (w = 0).
    """
    return mixture_entropy_1d(neuron(X_VALUES, w), beta, probabilities) - noise_entropy(1, beta)


# ---------------------------------------------------------------------------------------
# The SP estimate from samples
# ---------------------------------------------------------------------------------------

def sample_inputs(n: int, rng, *, balanced: bool = True) -> np.ndarray:
    """n draws of X, uniform on {-3, -1, 1, 3}.

    With ``balanced=True`` (the default; n a multiple of 4) each value appears exactly n/4
    times, so the empirical distribution is exactly uniform and the estimate has no
    plug-in error; ``balanced=False`` draws i.i.d.
    """
    generator = make_rng(rng)
    if balanced:
        if n % len(X_VALUES):
            raise ValueError(f"n_samples: balanced draws (n/4 of each input) need a multiple of 4, got {n}; "
                             "for i.i.d. draws pass balanced=False (--iid)")
        return generator.permutation(np.repeat(X_VALUES, n // len(X_VALUES)))
    return generator.choice(X_VALUES, size=n)


def sampled_mi(x: np.ndarray, w: float, beta: float, *, mc_samples=None, rng=None):
    r"""SP estimate of :math:`I(X;T)` from the draws ``x`` of X, in nats.

    The centres are the images :math:`s_i = \tanh(w(x_i - 2))`; since S is deterministic
    given X, :math:`h(T \mid X) = h_Z` exactly and only h(T) is estimated, by the Monte
    Carlo entropy of the equal-weight mixture :math:`\hat P_S * \varphi_\beta`.  (This is
    what :func:`infoflow.mi_xt` computes for samples of shape (n, 1, 1).)

    Returns
    -------
    infoflow.Estimate
        ``value`` and Monte Carlo ``stderr`` in nats.
    """
    centers = neuron(x, w)[:, None]
    return mixture_entropy(centers, beta, mc_samples=mc_samples, rng=rng) - noise_entropy(1, beta)


def _row(w: float, x: np.ndarray, frequencies: np.ndarray, beta: float, mc_samples, generator) -> dict:
    estimate = sampled_mi(x, w, beta, mc_samples=mc_samples, rng=generator)
    return {
        "w": float(w),
        "estimate": float(estimate.value),
        "stderr": float(estimate.stderr),
        "exact": exact_mi(w, beta),
        "exact_sample": exact_mi(w, beta, frequencies),
    }


# ---------------------------------------------------------------------------------------
# Figure
# ---------------------------------------------------------------------------------------

def _plot(rows: list[dict], curve: dict, config: dict, path: Path) -> Path:
    fig, axes = new_figure(width=7.5, height=4.8)
    ax = axes[0, 0]
    ax.axhline(LN4, color="0.35", ls="--", lw=1, label=f"ln 4 = {LN4:.3f} nats (4 separated outputs)")
    ax.axhline(H_SHOULDER, color="0.6", ls="-.", lw=1,
               label=f"H(1/4, 1/4, 1/2) = {H_SHOULDER:.3f} nats (images of -3, -1 merged)")
    ax.axhline(H_QUARTER, color="0.35", ls=":", lw=1.2,
               label=f"H(1/4) = {H_QUARTER:.4f} nats (3:1 split)")
    ax.plot(curve["w"], curve["exact"], color="C0", lw=1.8, label="exact I(X;T) (quadrature)")
    if rows:
        w = [r["w"] for r in rows]
        # Hollow markers under the line: the estimate should sit on the empirical-X curve
        # (its gap to the exact curve is plug-in error), and both must stay visible.
        ax.errorbar(w, [r["estimate"] for r in rows], yerr=[r["stderr"] for r in rows],
                    fmt="o", ms=4.5, mfc="none", color="C3", ecolor="C3", elinewidth=1, capsize=2,
                    zorder=3, label=f"SP estimate from n = {config['n_samples']} samples of X, "
                                    f"{'n/4 of each' if config['balanced'] else 'i.i.d.'} (bars: 1 MC stderr)")
        if not config["balanced"]:  # balanced draws: their law is the uniform law, the exact curve itself
            ax.plot(w, [r["exact_sample"] for r in rows], color="C1", lw=1.0, zorder=4,
                    label="exact for the empirical law of those samples")
    ax.set_xlabel("weight w (T = tanh(w (X - 2)) + Z)")
    ax.set_ylabel("I(X;T)  [nats]")
    ax.set_xlim(0, config["w_max"])
    ax.set_ylim(-0.05, LN4 + 0.3)
    ax.set_title(f"Single noisy neuron, X uniform on {{-3, -1, 1, 3}}, beta = {config['beta']:g}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------

def _seed_record(rng):
    """The seed as a JSON value: the int itself, else the type of the generator given."""
    return rng if rng is None or isinstance(rng, int) else f"<{type(rng).__name__}>"


def run(out_dir, *, w_max: float = 4.0, n_w: int = 81, beta: float = 0.05, n_samples: int = 400,
        balanced: bool = True, mc_samples: int | None = None, rng=0, progress: bool = True,
        overwrite: bool = False) -> dict:
    r"""I(X;T) of the single noisy neuron against w: SP estimate and exact value.

    Writes into ``out_dir``: ``single_neuron.csv`` (one row per w: ``w``, ``estimate``,
    ``stderr``, ``exact``, ``exact_sample``, all in nats), ``single_neuron.json`` (the
    configuration, the rows, the exact curve on a fine grid, the counts of the sampled X,
    runtime) and ``single_neuron.png``.  On Ctrl-C it stops after the current w and writes
    the rows done.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        Output folder (created if needed).
    w_max : float
        Largest weight; the grid is ``numpy.linspace(0, w_max, n_w)``.  The curve is flat
        at H(1/4) beyond w of about 3 for beta = 0.05 (about 4 for beta = 0.01).
    n_w : int
        Number of weights on the grid (>= 2).
    beta : float
        Noise standard deviation, > 0.
    n_samples : int
        n, the draws of X the estimate uses (one dataset for the whole grid).
    balanced : bool
        Draw exactly n/4 of each input (default): the samples' law is then exactly the
        uniform law of X, the estimate has no plug-in error, only Monte Carlo error, and
        its limit for large w is H(1/4) = 0.562 nats.  False: i.i.d. draws, like a real
        dataset; the estimate then follows the exact curve of the draws' own empirical law
        (e.g. 116 of 400 draws at X = 3 gives about 0.60 nats for large w), drawn as its
        own line.
    mc_samples : int, optional
        Monte Carlo draws per centre, passed to :func:`infoflow.mixture_entropy`
        (default: its default, about 65536 queries in all).
    rng : int, numpy.random.Generator or None
        Seed of the draws of X and of the Monte Carlo noise (Scientific Python SPEC 7,
        https://scientific-python.org/specs/spec-0007/).
    progress : bool
        Show a progress bar over w.
    overwrite : bool
        Replace the files of an earlier run in ``out_dir`` (default False:
        FileExistsError naming them, before any computation).

    Returns
    -------
    dict
        What ``single_neuron.json`` holds: ``config``, ``rows`` (values in nats),
        ``exact_curve``, ``x_counts``, ``interrupted``, ``runtime_s``, ``files``.
    """
    if n_w < 2:
        raise ValueError(f"n_w: expected at least 2 grid points, got {n_w}")
    if not (w_max > 0 and math.isfinite(w_max)):
        raise ValueError(f"w_max: expected a finite number > 0, got {w_max!r}")
    out, paths = prepare_output(out_dir, FILES, overwrite=overwrite)
    config = {"w_max": float(w_max), "n_w": int(n_w), "beta": float(beta), "n_samples": int(n_samples),
              "balanced": bool(balanced), "mc_samples": mc_samples, "seed": _seed_record(rng),
              "units": "nats", "model": "T = tanh(w (X - 2)) + Z, X uniform on {-3,-1,1,3}, Z ~ N(0, beta^2)"}
    start = time.perf_counter()
    generator = make_rng(rng)
    x = sample_inputs(n_samples, generator, balanced=balanced)
    counts = np.array([(x == v).sum() for v in X_VALUES])
    frequencies = counts / counts.sum()

    from tqdm.auto import tqdm

    rows: list[dict] = []
    with stoppable("single-neuron") as stopped:
        # Rounded so that the CSV reads 0.15, not 0.15000000000000002.
        with tqdm(np.linspace(0.0, w_max, n_w).round(12), desc="single-neuron", unit="w", disable=not progress) as bar:
            for w in bar:
                rows.append(_row(w, x, frequencies, beta, mc_samples, generator))

    # The exact curve is cheap (about 1 ms per point): draw it on a fine grid, so that the
    # steep rise near w = 0 is resolved whatever n_w is.
    fine = np.linspace(0.0, w_max, max(401, n_w))
    curve = {"w": fine, "exact": np.array([exact_mi(w, beta) for w in fine])}
    result = {"config": config, "rows": rows, "exact_curve": curve,
              "x_counts": dict(zip(map(str, X_VALUES.astype(int)), counts)),
              "interrupted": stopped[0], "runtime_s": time.perf_counter() - start}
    return save_result(out, "single_neuron", result, {"single_neuron": rows},
                       lambda path: _plot(rows, curve, config, path), paths)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``infoflow reproduce single-neuron``; dests are the keywords of :func:`run`."""
    parser.add_argument("--w-max", dest="w_max", type=float, default=4.0,
                        help="largest weight w (default 4; the curve is flat beyond about 3)")
    parser.add_argument("--n-w", dest="n_w", type=int, default=81, help="number of weights on the grid (default 81)")
    parser.add_argument("--beta", type=float, default=0.05, help="noise standard deviation (default 0.05)")
    parser.add_argument("--samples", dest="n_samples", type=int, default=400,
                        help="draws of X used by the SP estimate (default 400)")
    parser.add_argument("--balanced", dest="balanced", action="store_true", default=True,
                        help="exactly n/4 draws of each input (the default; kept for older command lines)")
    parser.add_argument("--iid", dest="balanced", action="store_false",
                        help="i.i.d. draws of X (default: exactly n/4 of each input, so the samples' law is the "
                             "uniform law and the large-w limit is H(1/4))")
    parser.add_argument("--mc-samples", dest="mc_samples", type=int, default=None,
                        help="Monte Carlo noise draws per centre (default: about 65536 queries in all)")
    parser.add_argument("--seed", dest="rng", type=int, default=0, help="random seed (default 0)")
