"""End-to-end benchmark: one epoch of the 12-bit experiment's I(X;T_l) estimates.

Selected only on request (``conftest.py`` deselects it otherwise)::

    mkdir -p bench/results
    python -m pytest bench/ --benchmark-only -m end_to_end \\
        --benchmark-json=bench/results/end_to_end.json

The workload is what the experiment of Goldfeld et al. (ICML 2019) computes at every
logged epoch: the noisy 12-10-7-5-4-3-2 tanh network (beta = 0.005, seeded PyTorch
initialisation; untrained, which does not change the cost), all 4096 inputs of the
12-bit dataset, R samples of every hidden layer per input, and for each of the 5
hidden layers the sample-propagation estimate

    I(X;T) = h(T) - (1/m) sum_i h(T | X = x_i),

every entropy a Monte Carlo estimate over K noisy queries per centre (K =
``infoflow.default_mc_samples(m R)``, 2 for m R = 32768).  Sampling the layers is
shared and timed on its own.  Timed against each other:

* ``infoflow``: :func:`infoflow.mi_xt` per layer (all threads; and once more with
  ``num_threads=1``, since scikit-learn's KDE is single-threaded);
* ``sklearn_kde``: the same estimator computed the way the paper's official code
  does, with ``KernelDensity(kernel="gaussian", bandwidth=beta, rtol=1e-3)``:
  h(T) = -mean log g over the m R K queries ``s + beta z``, log g from
  ``score_samples`` of a KDE fitted on all m R samples, and each h(T | X = x_i)
  from a KDE fitted on input i's R samples -- a Python loop over the m inputs,
  which is the cost the paper paid.

If the KDE conditional loop is estimated (from a pilot on the first inputs) to push
the KDE side past ``INFOFLOW_BENCH_E2E_BUDGET_S`` (300 s), only an evenly
spaced fraction of the inputs is run, the loop's time is divided by that fraction,
and the spread of h(T | X = x_i) over the inputs is added to the estimate's
standard error; ``extra_info["cond_fraction"]`` records it.  On a 2-core machine
the whole KDE epoch takes well under a minute, so the fraction is 1.

The two MI estimates must agree per layer within ``4 sqrt(se_a^2 + se_b^2) +
2 ln(1/(1 - rtol))``: independent Monte Carlo draws (their standard errors), plus
the KDE's approximation, which moves each log g by at most ln(1/(1 - rtol)) ~ 1e-3
nats, so h(T) and the mean conditional entropy by as much, in either direction.

Environment, for smoke runs: ``INFOFLOW_BENCH_E2E_INPUTS`` (the first k inputs),
``INFOFLOW_BENCH_E2E_REPEATS`` (R), ``INFOFLOW_BENCH_E2E_BUDGET_S``; ``config.py``
reads them and gives their defaults.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import config
import numpy as np
import pytest

torch = pytest.importorskip("torch")
sklearn_neighbors = pytest.importorskip("sklearn.neighbors")

import infoflow  # noqa: E402
from infoflow.nn import NoisyMLP  # noqa: E402

pytestmark = pytest.mark.end_to_end

WIDTHS = [12, 10, 7, 5, 4, 3, 2]
BETA = 0.005
INPUTS, REPEATS, BUDGET_S = config.E2E_INPUTS, config.E2E_REPEATS, config.E2E_BUDGET_S
KDE_RTOL = 1e-3
PILOT_INPUTS = 64  # inputs in the pilot of the KDE conditional loop, per layer
SEED = 2019


@dataclass
class Epoch:
    """The shared inputs of both methods, and what each produced.

    Attributes
    ----------
    samples : dict of str to numpy.ndarray
        ``sample_layers`` output: layer name -> (m, R, d_l) float32.
    sample_s : float
        Seconds that ``sample_layers`` took.
    mc_samples : int
        K, the Monte Carlo draws per centre, as infoflow chooses it.
    results : dict
        ``results[method] = {"seconds": ..., "layers": {name: (value, stderr)}}``.
    """

    samples: dict
    sample_s: float
    mc_samples: int
    results: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def epoch():
    """Seeded network, the 12-bit inputs and R samples of every hidden layer.

    Returns
    -------
    Epoch
    """
    # fork_rng: seed the initialisation without leaving torch's global RNG changed.
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = NoisyMLP(WIDTHS, activation="tanh", beta=BETA)
    x, _ = infoflow.datasets.szt()
    x = x[:INPUTS]
    infoflow.sample_layers(model, x[:8], repeats=2, rng=0)  # warm torch up
    start = time.perf_counter()
    samples = infoflow.sample_layers(model, x, repeats=REPEATS, rng=SEED)
    sample_s = time.perf_counter() - start
    k = infoflow.default_mc_samples(x.shape[0] * REPEATS)
    return Epoch(samples=samples, sample_s=sample_s, mc_samples=k)


def _layer_seed(index, stream=0):
    """A reproducible seed per layer; ``stream`` 0 for infoflow, 1 for the KDE side,
    so the two methods' Monte Carlo draws are independent."""
    return np.random.SeedSequence([SEED, index, stream])


def infoflow_epoch(samples, num_threads=None):
    """I(X;T_l) for every layer with :func:`infoflow.mi_xt`.

    Parameters
    ----------
    samples : dict of str to numpy.ndarray
    num_threads : int, optional

    Returns
    -------
    dict of str to (float, float)
        Layer -> (value, stderr) in nats.
    """
    out = {}
    for index, (name, s) in enumerate(samples.items()):
        est = infoflow.mi_xt(s, BETA, rng=_layer_seed(index), num_threads=num_threads)
        out[name] = (float(est.value), float(est.stderr))
    return out


def _kde_entropy(points, beta, k, rng):
    """Monte Carlo h of the Gaussian KDE of ``points``, the official code's way.

    Parameters
    ----------
    points : numpy.ndarray, shape (n, d), float64
    beta : float
    k : int
        Noise draws per point.
    rng : numpy.random.Generator

    Returns
    -------
    value, stderr : float
        Nats.
    """
    kde = sklearn_neighbors.KernelDensity(kernel="gaussian", bandwidth=beta, rtol=KDE_RTOL)
    kde.fit(points)
    queries = np.repeat(points, k, axis=0)
    queries += beta * rng.standard_normal(queries.shape)
    neg_log_g = -kde.score_samples(queries)
    return float(neg_log_g.mean()), float(neg_log_g.std(ddof=1) / math.sqrt(neg_log_g.size))


def kde_mi_xt(s, beta, k, rng, inputs=None):
    """I(X;T) from scikit-learn KDEs: one for h(T), one per input for h(T | X = x_i).

    Parameters
    ----------
    s : numpy.ndarray, shape (m, R, d)
        Layer samples.
    beta : float
    k : int
        Monte Carlo draws per centre (the same K as infoflow).
    rng : numpy.random.Generator
    inputs : numpy.ndarray of int, optional
        Indices of the inputs whose conditional entropy is computed (default: all m).

    Returns
    -------
    dict
        ``value``, ``stderr`` (nats), ``marginal_s`` and ``cond_s`` (seconds of the
        two parts), ``cond_inputs``.
    """
    m, r, d = s.shape
    pooled = s.reshape(m * r, d).astype(np.float64)
    start = time.perf_counter()
    h_t, se_t = _kde_entropy(pooled, beta, k, rng)
    marginal_s = time.perf_counter() - start

    idx = np.arange(m) if inputs is None else np.asarray(inputs)
    values = np.empty(idx.size)
    errors = np.empty(idx.size)
    start = time.perf_counter()
    for j, i in enumerate(idx):  # the per-input Python loop of the official code
        values[j], errors[j] = _kde_entropy(s[i].astype(np.float64), beta, k, rng)
    cond_s = time.perf_counter() - start

    h_cond = float(values.mean())
    se_cond = float(np.sqrt(np.sum(errors**2)) / idx.size)
    if idx.size < m:
        # A subset of inputs also samples the spread of h(T|X=x_i) over inputs
        # (finite-population correction, since the inputs are drawn from m).
        spread = values.std(ddof=1) if idx.size > 1 else 0.0
        se_cond = math.hypot(se_cond, spread / math.sqrt(idx.size) * math.sqrt(1 - idx.size / m))
    return dict(value=h_t - h_cond, stderr=math.hypot(se_t, se_cond),
                marginal_s=marginal_s, cond_s=cond_s, cond_inputs=int(idx.size))


def kde_epoch(samples, k, fraction=1.0):
    """:func:`kde_mi_xt` for every layer, with an evenly spaced fraction of the inputs.

    Parameters
    ----------
    samples : dict of str to numpy.ndarray
    k : int
    fraction : float
        Share of the inputs whose conditional KDE is run.

    Returns
    -------
    dict of str to dict
        Layer -> :func:`kde_mi_xt` result.
    """
    out = {}
    for index, (name, s) in enumerate(samples.items()):
        m = s.shape[0]
        inputs = None if fraction >= 1 else np.unique(
            np.linspace(0, m - 1, max(2, round(fraction * m))).astype(int))
        out[name] = kde_mi_xt(s, BETA, k, np.random.default_rng(_layer_seed(index, 1)), inputs)
    return out


def _describe(benchmark, epoch, method, **extra):
    benchmark.group = "end-to-end: I(X;T_l), 12-bit experiment, one epoch"
    m, r, _ = next(iter(epoch.samples.values())).shape
    benchmark.extra_info.update(
        suite="end_to_end", method=method, inputs=m, repeats=r, beta=BETA,
        mc_samples=epoch.mc_samples, widths=WIDTHS, sample_layers_s=epoch.sample_s,
        layer_dims={name: int(s.shape[2]) for name, s in epoch.samples.items()}, **extra)


@pytest.mark.parametrize("threads", [None, 1], ids=["all_threads", "1_thread"])
def test_end_to_end_infoflow(benchmark, epoch, threads):
    # A first call loads the extension and starts the thread pool: keep it untimed.
    infoflow_epoch({k: v[:8] for k, v in epoch.samples.items()}, threads)
    method = "infoflow" if threads is None else "infoflow_1thread"
    _describe(benchmark, epoch, method, num_threads=threads)
    layers = benchmark.pedantic(infoflow_epoch, args=(epoch.samples, threads),
                                rounds=3 if threads is None else 1, iterations=1)
    benchmark.extra_info["layers"] = {n: list(v) for n, v in layers.items()}
    epoch.results[method] = {"seconds": benchmark.stats.stats.median, "layers": layers}
    for name, (value, stderr) in layers.items():
        m = next(iter(epoch.samples.values())).shape[0]
        # 0 <= I(X;T) <= ln m, up to Monte Carlo error.
        assert -5 * stderr <= value <= math.log(m) + 5 * stderr, (name, value, stderr)


def test_end_to_end_sklearn_kde(benchmark, epoch):
    k = epoch.mc_samples
    # Pilot on the first PILOT_INPUTS inputs of every layer, to estimate the
    # conditional loop (its cost per input hardly depends on the input).  The
    # marginal KDEs are always run in full; only the loop may be scaled.
    pilot = {name: kde_mi_xt(s[:PILOT_INPUTS], BETA, k, np.random.default_rng(0),
                             inputs=np.arange(min(PILOT_INPUTS, s.shape[0])))
             for name, s in epoch.samples.items()}
    m = next(iter(epoch.samples.values())).shape[0]
    cond_est = sum(p["cond_s"] / p["cond_inputs"] * m for p in pilot.values())
    fraction = 1.0 if cond_est <= BUDGET_S else BUDGET_S / cond_est

    _describe(benchmark, epoch, "sklearn_kde", kde_rtol=KDE_RTOL, cond_fraction=fraction,
              cond_estimate_s=cond_est, budget_s=BUDGET_S)
    layers = benchmark.pedantic(kde_epoch, args=(epoch.samples, k, fraction), rounds=1,
                                iterations=1)
    measured = benchmark.stats.stats.median
    cond_s = sum(v["cond_s"] for v in layers.values())
    # Scale only the conditional loop; the marginal KDEs ran in full.
    scaled = measured + cond_s * (1.0 / fraction - 1.0)
    benchmark.extra_info.update(
        layers={n: [v["value"], v["stderr"]] for n, v in layers.items()},
        parts={n: {"marginal_s": v["marginal_s"], "cond_s": v["cond_s"],
                   "cond_inputs": v["cond_inputs"]} for n, v in layers.items()},
        scaled_seconds=scaled)

    # Compare with infoflow on the same samples (computed here, untimed, if its
    # benchmark was not selected).
    ours = epoch.results.get("infoflow")
    if ours is None:
        ours = {"seconds": None, "layers": infoflow_epoch(epoch.samples)}
    if ours["seconds"]:
        benchmark.extra_info["ratio_vs_infoflow"] = scaled / ours["seconds"]
    single = epoch.results.get("infoflow_1thread")
    if single:
        benchmark.extra_info["ratio_vs_infoflow_1thread"] = scaled / single["seconds"]

    rtol_effect = math.log(1.0 / (1.0 - KDE_RTOL))
    failures = []
    comparison = {}
    for name, (value, stderr) in ours["layers"].items():
        kde = layers[name]
        tol = 4.0 * math.hypot(stderr, kde["stderr"]) + 2.0 * rtol_effect
        diff = kde["value"] - value
        comparison[name] = {"infoflow": value, "infoflow_stderr": stderr, "kde": kde["value"],
                            "kde_stderr": kde["stderr"], "diff": diff, "tol": tol}
        if abs(diff) > tol:
            failures.append(f"{name}: infoflow {value:.4f} ± {stderr:.4f}, KDE "
                            f"{kde['value']:.4f} ± {kde['stderr']:.4f}, |diff| {abs(diff):.4f} > {tol:.4f}")
    benchmark.extra_info["comparison"] = comparison
    assert not failures, "; ".join(failures)
