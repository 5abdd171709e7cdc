"""Bad input gets a clear error naming the argument, before any compiled code runs."""

import math

import numpy as np
import pytest

import infoflow

GOOD = np.zeros((4, 2))


def _calls():
    """(name, call(queries, centers, beta)) for every public entry point taking arrays."""
    yield "log_density", lambda q, c, b: infoflow.log_density(q, c, b)
    yield "gaussian_lse", lambda q, c, b: infoflow.gaussian_lse(q, c, b)
    yield "mixture_entropy", lambda q, c, b: infoflow.mixture_entropy(c, b, rng=0)
    yield "mixture_entropy_bounds", lambda q, c, b: infoflow.mixture_entropy_bounds(c, b)


CALLS = list(_calls())


@pytest.mark.parametrize("name, call", CALLS, ids=[n for n, _ in CALLS])
@pytest.mark.parametrize(
    "bad, exc, pattern",
    [
        ([[0.0, 1.0]], TypeError, "centers: expected a numpy.ndarray or torch.Tensor, got list"),
        (np.zeros((4, 2), dtype=np.int64), TypeError, "centers: expected dtype float32 or float64, got int64"),
        (np.zeros((4, 2), dtype=bool), TypeError, "centers: expected dtype float32 or float64"),
        (np.zeros((4, 2), dtype=np.float16), TypeError, "centers: expected dtype float32 or float64"),
        (np.zeros((4, 2), dtype=np.complex128), TypeError, "centers: expected dtype"),
        (np.zeros(4), ValueError, r"centers: expected at least 2 dimensions.*reshape\(-1, 1\)"),
        (np.zeros((0, 2)), ValueError, "centers: empty input"),
        (np.zeros((4, 0)), ValueError, "centers: empty input"),
        (np.array([[0.0, np.nan]]), ValueError, "centers: contains NaN or infinity"),
        (np.array([[0.0, np.inf]]), ValueError, "centers: contains NaN or infinity"),
    ],
)
def test_bad_centers(name, call, bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(GOOD, bad, 1.0)


@pytest.mark.parametrize("name, call", CALLS, ids=[n for n, _ in CALLS])
@pytest.mark.parametrize(
    "beta, exc, pattern",
    [
        (0.0, ValueError, "beta: must be finite and > 0"),
        (-1.0, ValueError, "beta: must be finite and > 0"),
        (math.nan, ValueError, "beta: must be finite and > 0"),
        (math.inf, ValueError, "beta: must be finite and > 0"),
        ("0.1", TypeError, "beta: expected a real number, got str"),
        (True, TypeError, "beta: expected a real number, got bool"),
        (None, TypeError, "beta: expected a real number"),
    ],
)
def test_bad_beta(name, call, beta, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(GOOD, GOOD, beta)


def test_beta_too_small_for_float32():
    # 1/(2 beta^2) overflows float32 at beta = 1e-25, but the kernel scales by a power of
    # two: points within a few beta of each other are fine and agree with float64.
    x = np.zeros((3, 2), dtype=np.float32)
    np.testing.assert_allclose(infoflow.log_density(x, x, 1e-25), infoflow.log_density(x.astype(np.float64),
                               x.astype(np.float64), 1e-25), rtol=1e-6)
    with pytest.raises(ValueError, match=r"beta: 1e-39 is outside the range supported in float32"):
        infoflow.log_density(x, x, 1e-39)  # below float32's smallest normal number
    with pytest.raises(ValueError, match="beta: 1e-25 is too small for points of magnitude up to 1 .* float32"):
        infoflow.log_density(x + 1, x, 1e-25)  # squared distances of 1e50 beta^2


@pytest.mark.parametrize(
    "queries, centers, exc, pattern",
    [
        ([[0.0]], GOOD, TypeError, "queries: expected a numpy.ndarray"),
        (np.zeros((4, 3)), GOOD, ValueError, "same dimension d.*got 3 and 2"),
        (np.zeros((2, 4, 2)), np.zeros((3, 4, 2)), ValueError, r"equal leading batch shapes.*\(2,\) and \(3,\)"),
        (np.zeros((4, 2)), np.zeros((1, 4, 2)), ValueError, "equal leading batch shapes"),
        (np.zeros((4, 2), np.float32), GOOD, TypeError, "queries has dtype float32 but centers has dtype float64"),
        (np.zeros(2), GOOD, ValueError, "queries: expected at least 2 dimensions"),
        (np.full((4, 2), np.nan), GOOD, ValueError, "queries: contains NaN"),
        (np.zeros((0, 2)), GOOD, ValueError, "queries: empty input"),
    ],
)
def test_bad_queries(queries, centers, exc, pattern):
    with pytest.raises(exc, match=pattern):
        infoflow.log_density(queries, centers, 1.0)


def test_mixed_array_types(torch):
    with pytest.raises(TypeError, match="queries is a torch array but centers is a numpy array"):
        infoflow.log_density(torch.zeros(4, 2, dtype=torch.float64), GOOD, 1.0)
    with pytest.raises(TypeError, match="expected dtype torch.float32 or torch.float64, got torch.int64"):
        infoflow.mixture_entropy(torch.zeros(4, 2, dtype=torch.int64), 1.0)
    with pytest.raises(TypeError, match="torch.float16"):
        infoflow.mixture_entropy(torch.zeros(4, 2, dtype=torch.float16), 1.0)


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        ({"mc_samples": 0}, ValueError, "mc_samples: must be >= 1, got 0"),
        ({"mc_samples": -3}, ValueError, "mc_samples: must be >= 1"),
        ({"mc_samples": 2.5}, TypeError, "mc_samples: expected an integer, got float"),
        ({"base": 1}, ValueError, "base: must not be 1"),
        ({"base": 0}, ValueError, "base: must be finite and > 0"),
        ({"base": -2}, ValueError, "base: must be finite and > 0"),
        ({"base": "e"}, TypeError, "base: expected a real number"),
        ({"rng": "seed"}, TypeError, "rng: expected None, an int seed or a numpy.random.Generator, got str"),
        ({"rng": np.random.RandomState(0)}, TypeError, "rng: numpy.random.RandomState is not supported"),
        ({"rng": -1}, ValueError, "rng:"),
        ({"num_threads": 0}, ValueError, "num_threads: must be >= 1"),
        ({"num_threads": 1.5}, TypeError, "num_threads: expected an integer"),
    ],
)
def test_bad_options(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        infoflow.mixture_entropy(GOOD, 1.0, **kwargs)


def test_bad_bounds_and_noise_entropy_options():
    with pytest.raises(ValueError, match="base: must not be 1"):
        infoflow.mixture_entropy_bounds(GOOD, 1.0, base=1.0)
    with pytest.raises(ValueError, match="dim: must be >= 1"):
        infoflow.noise_entropy(0, 1.0)
    with pytest.raises(ValueError, match="beta: must be finite and > 0"):
        infoflow.noise_entropy(2, 0.0)
    with pytest.raises(ValueError, match="num_threads: must be >= 1"):
        infoflow.log_density(GOOD, GOOD, 1.0, num_threads=0)


def test_core_rejects_wrong_dtype_without_copying():
    # The bindings take float32 and float64 only, with .noconvert(): no silent casts.
    from infoflow import _core

    with pytest.raises(TypeError):
        _core.log_density(np.zeros((1, 2, 2), np.int32), np.zeros((1, 2, 2), np.int32), 1.0)
    with pytest.raises(TypeError):
        _core.log_density(np.zeros((1, 2, 2), np.float32), np.zeros((1, 2, 2), np.float64), 1.0)
    with pytest.raises(ValueError, match="isa"):
        _core.log_density(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), 1.0, 0, "sse9")


# --------------------------------------------------------------------------- ndarray subclasses

# A masked Inf: before, the mask was ignored and the Inf reached the kernel (a NaN estimate).
MASKED = np.ma.masked_invalid(np.array([[0.0, 1.0], [2.0, np.inf], [1.0, 0.5]]))
SAMPLES = np.arange(12.0).reshape(3, 2, 2)


def _masked_calls():
    """(name, call, argument named in the error) for every public estimator."""
    from infoflow.mutual_information import layer_information

    three = np.zeros((3, 2))
    labels = np.ma.masked_equal(np.array([0, 1, -1]), -1)
    yield "mixture_entropy", lambda: infoflow.mixture_entropy(MASKED, 0.5, rng=0), "centers"
    yield "mixture_entropy_bounds", lambda: infoflow.mixture_entropy_bounds(MASKED, 0.5), "centers"
    yield "log_density", lambda: infoflow.log_density(MASKED, three, 0.5), "queries"
    yield "gaussian_lse", lambda: infoflow.gaussian_lse(three, MASKED, 0.5), "centers"
    yield "weights", lambda: infoflow.mixture_entropy(three, 0.5, weights=np.ma.masked_less(np.ones(3), 0), rng=0), \
        "weights"
    yield "mi_xt", lambda: infoflow.mi_xt(np.ma.masked_invalid(SAMPLES), 0.5, rng=0), "samples"
    yield "mi_yt labels", lambda: infoflow.mi_yt(SAMPLES, labels, 0.5, rng=0), "labels"
    yield "layer_information", lambda: layer_information(SAMPLES, labels, 0.5, rng=0), "labels"
    yield "binning_mi", lambda: infoflow.binning_mi(MASKED), "activations"
    yield "binning_mi labels", lambda: infoflow.binning_mi(three, labels), "labels"
    yield "szt_labels", lambda: infoflow.datasets.szt_labels(np.ma.masked_equal(np.eye(12, dtype=int), 1)), "x"


MASKED_CALLS = list(_masked_calls())


@pytest.mark.parametrize("name, call, argument", MASKED_CALLS, ids=[c[0] for c in MASKED_CALLS])
def test_masked_arrays_are_rejected_naming_the_argument(name, call, argument):
    with pytest.raises(TypeError, match=rf"{argument}: numpy masked arrays are not supported: the mask would be "
                                        r"ignored.*\.filled\(value\)"):
        call()


def test_matrix_and_memmap_are_their_plain_values(tmp_path):
    x = np.tanh(np.random.default_rng(0).normal(size=(40, 3)))
    memmap = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float64, shape=x.shape)
    memmap[:] = x
    plain = infoflow.mixture_entropy(x, 0.3, mc_samples=4, rng=0)
    for other in (x.view(np.matrix), memmap):  # (np.matrix(x) warns that matrix is deprecated)
        assert infoflow.mixture_entropy(other, 0.3, mc_samples=4, rng=0) == plain
        assert infoflow.mixture_entropy_bounds(other, 0.3) == infoflow.mixture_entropy_bounds(x, 0.3)
    labels = np.array([0, 1] * 20)
    assert infoflow.binning_mi(x.view(np.matrix), labels) == infoflow.binning_mi(x, labels)


def test_other_ndarray_subclasses_are_rejected():
    class Quantity(np.ndarray):
        """Stands for an array with units, which infoflow would drop."""

    x = np.zeros((4, 2)).view(Quantity)
    with pytest.raises(TypeError, match=r"centers: got a .*Quantity, a subclass of numpy.ndarray .*numpy.asarray"):
        infoflow.mixture_entropy(x, 0.5)
    infoflow.mixture_entropy(np.asarray(x), 0.5, mc_samples=2, rng=0)  # as the message says


# --------------------------------------------------------------------------- one-hot labels


@pytest.mark.parametrize("dtype", [np.int64, np.float32])
def test_one_hot_labels_suggest_argmax(dtype):
    labels = np.eye(2, dtype=dtype)[[0, 1, 1]]  # (3, 2) one-hot rows
    with pytest.raises(ValueError, match=r"labels: expected one class index per row of samples, shape \(3,\), got "
                                         r"shape \(3, 2\): one-hot or probability rows\? .*labels\.argmax\(1\)"):
        infoflow.mi_yt(SAMPLES, labels, 0.5, rng=0)
    with pytest.raises(ValueError, match=r"labels\.argmax\(1\)"):
        infoflow.binning_mi(np.zeros((3, 2)), labels)
    infoflow.mi_yt(SAMPLES, labels.argmax(1), 0.5, rng=0)  # as suggested


# --------------------------------------------------------------------------- work bounds


@pytest.mark.parametrize("kwargs, name", [({"mc_samples": 2**62}, "mc_samples"), ({"mc_samples": 2**40}, "mc_samples"),
                                          ({"mc_queries": 2**31 + 1}, "mc_queries")])
def test_monte_carlo_budget_beyond_2_31_queries_is_rejected_up_front(kwargs, name):
    # Before: 2**62 built a list of chunks until MemoryError, 2**40 ran for days.
    value = kwargs[name]
    with pytest.raises(ValueError, match=rf"{name}: {name}={value} asks for \d+ Monte Carlo queries \(1 mixture\(s\) "
                                         r"of 4 centres\), more than the maximum of 2\*\*31 = 2147483648 per estimate"):
        infoflow.mixture_entropy(np.zeros((4, 2)), 0.5, rng=0, **kwargs)
    with pytest.raises(ValueError, match=rf"{name}: .*more than the maximum of 2\*\*31"):
        infoflow.mixture_entropy(np.zeros((4, 2)), 0.5, weights=np.ones(4), rng=0, **kwargs)


def test_the_query_bound_counts_the_whole_batch():
    from infoflow.queries import MAX_MC_QUERIES, check_query_budget

    assert MAX_MC_QUERIES == 2**31
    check_query_budget(MAX_MC_QUERIES, None, MAX_MC_QUERIES)  # the bound itself is allowed
    with pytest.raises(ValueError, match="mc_queries: mc_queries=1073741824 asks for 3221225472 Monte Carlo "
                                         r"queries \(3 mixture\(s\) of 4 centres\)"):
        infoflow.mixture_entropy(np.zeros((3, 4, 2)), 0.5, mc_queries=2**30, rng=0)
    with pytest.raises(ValueError, match="mc_queries: the default of 65536 queries per mixture asks for"):
        infoflow.mixture_entropy(np.zeros((2**15 + 1, 2, 1)), 0.5, rng=0)


def test_mutual_information_budgets_are_checked_before_any_work(monkeypatch):
    from infoflow import entropy_engine
    from infoflow.mutual_information import layer_information

    def no_work(*args, **kwargs):
        raise AssertionError("an entropy was estimated before the budget was checked")

    monkeypatch.setattr(entropy_engine, "query_plan", no_work)
    samples, labels = np.zeros((4, 2, 1)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"mc_samples: mc_samples=1073741824 asks for 8589934592 Monte Carlo queries "
                                         r"for h\(T\) of 8 pooled samples"):
        infoflow.mi_xt(samples, 0.5, mc_samples=2**30)
    with pytest.raises(ValueError, match=r"mc_queries: .* for h\(T\) of 8 pooled samples"):
        infoflow.mi_yt(samples, labels, 0.5, mc_queries=2**31 + 1)
    with pytest.raises(ValueError, match="mc_samples: .*more than the maximum of 2"):
        layer_information(samples, labels, 0.5, mc_samples=2**29)
