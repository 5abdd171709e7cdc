"""The binning estimator I(X; Bin T), I(Y; Bin T) of Shwartz-Ziv & Tishby.

Checked against its limits (ln m for tiny bins, 0 for one bin), hand-computed examples,
and a slow pure-Python reference that bins with numpy.digitize and counts with dicts.
"""

import math
from collections import Counter

import numpy as np
import pytest

from infoflow import binning
from infoflow.binning import BinningMI, binning_mi
from infoflow.datasets import szt

LN2 = math.log(2.0)


def _entropy(counter, total):
    return -sum(c / total * math.log(c / total) for c in counter.values())


def reference_binning_mi(act, labels, n_bins, limits):
    """I(X; Bin T) and I(Y; Bin T) in nats, by the definition, in pure Python."""
    low, high = limits
    edges = np.linspace(low, high, n_bins + 1)
    # digitize against the inner edges: below low -> bin 0, at/above high -> last bin.
    binned = [tuple(np.digitize(row, edges[1:-1]).tolist()) for row in np.asarray(act, dtype=np.float64)]
    m = len(binned)
    h_t = _entropy(Counter(binned), m)
    if labels is None:
        return h_t, None
    h_t_given_y = 0.0
    for cls, n_cls in Counter(labels.tolist()).items():
        rows = [b for b, lab in zip(binned, labels.tolist()) if lab == cls]
        h_t_given_y += n_cls / m * _entropy(Counter(rows), n_cls)
    return h_t, h_t - h_t_given_y


@pytest.fixture
def continuous(rng):
    act = np.tanh(rng.standard_normal((600, 4)))
    labels = rng.integers(0, 5, size=600)
    return act, labels


def test_result_type(continuous):
    act, labels = continuous
    result = binning_mi(act, labels)
    assert isinstance(result, BinningMI)
    assert type(result.ixt) is float and type(result.iyt) is float
    ixt, iyt = result
    assert (ixt, iyt) == (result.ixt, result.iyt)
    assert binning_mi(act).iyt is None


def test_tiny_bins_give_ln_m_exactly(continuous):
    act, labels = continuous
    m = len(act)
    result = binning_mi(act, labels, bin_size=1e-12)
    assert result.ixt == math.log(m)
    # Bin T identifies the input, so I(Y; Bin T) = H(Y).
    h_y = _entropy(Counter(labels.tolist()), m)
    assert result.iyt == pytest.approx(h_y, rel=1e-12)
    assert binning_mi(act, bin_size=1e-12, base=2).ixt == pytest.approx(math.log2(m), rel=1e-15)


def test_one_bin_gives_zero_exactly(continuous):
    act, labels = continuous
    assert binning_mi(act, labels, n_bins=1) == (0.0, 0.0)
    assert binning_mi(act, labels, bin_size=10.0) == (0.0, 0.0)
    # All values beyond the limits are clipped into one end bin.
    assert binning_mi(act + 5.0, labels, n_bins=30) == (0.0, 0.0)
    assert binning_mi(act - 5.0, labels, n_bins=30) == (0.0, 0.0)


def test_szt_identity_layer_has_twelve_bits():
    X, y = szt()
    result = binning_mi(X, y, base=2)
    assert result.ixt == pytest.approx(12.0, rel=1e-15)
    p1 = 2118 / 4096
    h_y = -(p1 * math.log2(p1) + (1 - p1) * math.log2(1 - p1))
    assert result.iyt == pytest.approx(h_y, rel=1e-12)


@pytest.mark.parametrize("n_bins", [1, 2, 3, 5, 30, 1000])
@pytest.mark.parametrize("n_classes", [1, 2, 7])
def test_matches_reference_and_bounds(rng, n_bins, n_classes):
    act = np.tanh(1.5 * rng.standard_normal((300, 3)))
    labels = rng.integers(0, n_classes, size=300)
    ixt, iyt = binning_mi(act, labels, n_bins=n_bins)
    ref_ixt, ref_iyt = reference_binning_mi(act, labels, n_bins, (-1, 1))
    assert ixt == pytest.approx(ref_ixt, rel=1e-12, abs=1e-12)
    assert iyt == pytest.approx(ref_iyt, rel=1e-12, abs=1e-12)
    h_y = _entropy(Counter(labels.tolist()), 300)
    assert 0.0 <= iyt <= min(ixt, h_y)
    assert 0.0 <= ixt <= math.log(300)


def test_hand_computed_example():
    # n_bins=2 over (-1, 1): bin 0 is [-1, 0), bin 1 is [0, 1).
    act = np.array([[-0.9, 0.5], [-0.2, 0.9], [-0.5, 0.1], [0.8, -0.1]])
    # Binned rows: A=(0,1), A, A, B=(1,0).  H(T) = ln 4 - (3/4) ln 3.
    h_t = math.log(4) - 0.75 * math.log(3)
    # Y = (0, 0, 1, 1): H(T|Y=0) = 0 (A, A), H(T|Y=1) = ln 2 (A, B).
    labels = np.array([0, 0, 1, 1])
    i_yt = h_t - 0.5 * LN2
    result = binning_mi(act, labels, n_bins=2)
    assert result.ixt == pytest.approx(h_t, rel=1e-14)
    assert result.iyt == pytest.approx(i_yt, rel=1e-14)
    bits = binning_mi(act, labels, n_bins=2, base=2)
    assert bits.ixt == pytest.approx(2 - 0.75 * math.log2(3), rel=1e-14)  # 0.811 bits
    assert bits.iyt == pytest.approx(1.5 - 0.75 * math.log2(3), rel=1e-14)  # 0.311 bits


def test_hand_computed_two_patterns():
    act = np.array([[-0.9, 0.5], [-0.2, 0.9], [0.3, -0.4], [0.8, -0.1]])  # A, A, B, B
    assert binning_mi(act, np.array([0, 1, 0, 1]), n_bins=2) == pytest.approx((LN2, 0.0), abs=1e-15)
    assert binning_mi(act, np.array([0, 0, 1, 1]), n_bins=2) == pytest.approx((LN2, LN2), rel=1e-15)
    assert binning_mi(act, np.array([0, 0, 1, 1]), n_bins=2, base=2) == (1.0, 1.0)
    # Finer bins separate all four rows.
    assert binning_mi(act, n_bins=4).ixt == math.log(4)


def test_bin_size_and_limits():
    act = np.array([[0.05], [0.15], [0.25], [0.95], [1.7], [-3.0]])
    assert binning_mi(act, bin_size=0.1) == binning_mi(act, n_bins=20)
    # 2.1 / 0.3 = 7.000000000000001 in floating point: still 7 bins, not 8, so 2.05 and
    # 2.5 (clipped) share the last bin.
    near = np.array([[0.1], [1.0], [2.05], [2.5]])
    assert binning_mi(near, bin_size=0.3, limits=(0, 2.1)).ixt == pytest.approx(
        math.log(4) - 0.5 * LN2, rel=1e-14
    )
    assert binning_mi(near, bin_size=0.3, limits=(0, 2.1)) == binning_mi(near, n_bins=7, limits=(0, 2.1))
    # limits (0, 1), 2 bins: [0, .5) holds 0.05, 0.15, 0.25 and -3.0 (clipped); [.5, 1)
    # holds 0.95 and 1.7 (clipped): 4 rows and 2 rows.
    h_42 = -(4 / 6 * math.log(4 / 6) + 2 / 6 * math.log(2 / 6))
    assert binning_mi(act, n_bins=2, limits=(0, 1)).ixt == pytest.approx(h_42, rel=1e-14)
    assert binning_mi(act, bin_size=0.5, limits=(0.0, 1.0)).ixt == pytest.approx(h_42, rel=1e-14)
    # bin_size 0.4 over (0, 1) makes 3 bins [0, .4) [.4, .8) [.8, 1.2): 4 rows, 0 rows, 2 rows.
    assert binning_mi(act, bin_size=0.4, limits=(0, 1)).ixt == pytest.approx(h_42, rel=1e-14)
    # bin_size 0.2 over (0, 1): 5 bins; [0, .2) holds 0.05, 0.15, -3.0; [.2, .4) 0.25;
    # [.8, 1] 0.95 and 1.7: 3, 1 and 2 rows.
    h_312 = -(3 / 6 * math.log(3 / 6) + 1 / 6 * math.log(1 / 6) + 2 / 6 * math.log(2 / 6))
    assert binning_mi(act, bin_size=0.2, limits=(0, 1)).ixt == pytest.approx(h_312, rel=1e-14)


def test_default_is_30_bins(continuous):
    act, labels = continuous
    assert binning_mi(act, labels) == binning_mi(act, labels, n_bins=30)
    assert binning.DEFAULT_N_BINS == 30


def test_units(continuous):
    act, labels = continuous
    nats = binning_mi(act, labels, n_bins=7)
    bits = binning_mi(act, labels, n_bins=7, base=2)
    dits = binning_mi(act, labels, n_bins=7, base=10)
    assert bits.ixt == pytest.approx(nats.ixt / LN2, rel=1e-14)
    assert bits.iyt == pytest.approx(nats.iyt / LN2, rel=1e-14)
    assert dits.ixt == pytest.approx(nats.ixt / math.log(10), rel=1e-14)


def test_dtypes_agree_and_input_untouched(continuous):
    act, labels = continuous
    act32 = act.astype(np.float32)
    before = act32.copy()
    expected = reference_binning_mi(act32, labels, 9, (-1, 1))
    assert binning_mi(act32, labels, n_bins=9) == pytest.approx(expected, rel=1e-12)
    assert binning_mi(act32, labels.astype(np.int8), n_bins=9) == binning_mi(act32, labels, n_bins=9)
    np.testing.assert_array_equal(act32, before)
    # Non-contiguous input.
    wide = np.repeat(act, 2, axis=1)
    assert binning_mi(wide[:, ::2], labels, n_bins=9) == binning_mi(act, labels, n_bins=9)


def test_bool_labels(continuous):
    act, labels = continuous
    assert binning_mi(act, labels > 2, n_bins=5) == binning_mi(act, (labels > 2).astype(np.int64), n_bins=5)


def test_torch_input(torch, continuous):
    act, labels = continuous
    expected = binning_mi(act, labels, n_bins=11)
    t = torch.tensor(act, requires_grad=True)
    assert binning_mi(t, torch.tensor(labels), n_bins=11) == expected
    assert binning_mi(t.float(), torch.tensor(labels), n_bins=11) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(TypeError, match="activations: expected a floating-point dtype"):
        binning_mi(torch.zeros((3, 2), dtype=torch.int64))
    with pytest.raises(TypeError, match="labels: expected an integer dtype"):
        binning_mi(t, torch.zeros(len(act)))


def test_hash_collision_falls_back_to_exact_grouping(monkeypatch, continuous):
    act, labels = continuous
    expected = binning_mi(act, labels, n_bins=4)
    # All-zero multipliers hash every row to 0: the row check must catch it.
    monkeypatch.setattr(binning, "_hash_multipliers", lambda d: np.zeros(d, dtype=np.uint64))
    assert binning_mi(act, labels, n_bins=4) == expected
    assert binning_mi(act, labels, bin_size=1e-12).ixt == math.log(len(act))


def test_large_input_tiny_bins_reach_log_m(rng):
    # Speed is a benchmark's business; here only the result of the hashed grouping.
    act = np.tanh(rng.standard_normal((20000, 500), dtype=np.float32))
    labels = rng.integers(0, 10, size=20000)
    result = binning_mi(act, labels, bin_size=1e-9)
    assert result.ixt == math.log(20000)


GOOD = np.zeros((4, 2))


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(activations=[[0.0, 1.0]]), TypeError,
         "activations: expected a numpy.ndarray or torch.Tensor, got list"),
        (dict(activations=np.zeros((4, 2), dtype=np.int64)), TypeError,
         "activations: expected a floating-point dtype, got int64"),
        (dict(activations=np.zeros((4, 2), dtype=bool)), TypeError, "activations: expected a floating-point dtype"),
        (dict(activations=np.zeros((4, 2), dtype=complex)), TypeError, "activations: expected a floating-point dtype"),
        (dict(activations=np.zeros(4)), ValueError, r"activations: expected shape \(m, d\).*reshape\(-1, 1\)"),
        (dict(activations=np.zeros((4, 2, 1))), ValueError, r"activations: expected shape \(m, d\)"),
        (dict(activations=np.zeros((0, 2))), ValueError, "activations: empty input"),
        (dict(activations=np.zeros((4, 0))), ValueError, "activations: empty input"),
        (dict(activations=np.array([[0.0, np.nan]])), ValueError, "activations: contains NaN or infinity"),
        (dict(activations=np.array([[0.0, -np.inf]])), ValueError, "activations: contains NaN or infinity"),
        (dict(labels=[0, 1, 0, 1]), TypeError, "labels: expected a numpy.ndarray or torch.Tensor, got list"),
        (dict(labels=np.zeros(4)), TypeError, "labels: expected an integer dtype, got float64"),
        (dict(labels=np.zeros(3, dtype=int)), ValueError, r"labels: has 3 entries but activations has 4 rows"),
        (dict(labels=np.zeros((4, 1), dtype=int)), ValueError, r"labels: expected shape \(4,\)"),
        (dict(bin_size=0.1, n_bins=10), ValueError, "bin_size and n_bins: give at most one"),
        (dict(bin_size=0.0), ValueError, "bin_size: must be finite and > 0"),
        (dict(bin_size=-0.5), ValueError, "bin_size: must be finite and > 0"),
        (dict(bin_size=np.nan), ValueError, "bin_size: must be finite and > 0"),
        (dict(bin_size="0.1"), TypeError, "bin_size: expected a real number"),
        (dict(bin_size=1e-300), ValueError, "bin_size: .* too small"),
        (dict(n_bins=0), ValueError, "n_bins: must be >= 1"),
        (dict(n_bins=2.5), TypeError, "n_bins: expected an integer"),
        (dict(n_bins=True), TypeError, "n_bins: expected an integer"),
        (dict(limits=(1, 1)), ValueError, "limits: expected low < high"),
        (dict(limits=(1, -1)), ValueError, "limits: expected low < high"),
        (dict(limits=(0, np.inf)), ValueError, "limits: must be finite"),
        (dict(limits=(0, 1, 2)), TypeError, r"limits: expected a pair \(low, high\)"),
        (dict(limits=1.0), TypeError, r"limits: expected a pair \(low, high\)"),
        (dict(limits=("a", "b")), TypeError, "limits: expected real numbers"),
        (dict(base=1), ValueError, "base: must not be 1"),
        (dict(base=-2), ValueError, "base: must be finite and > 0"),
    ],
)
def test_errors_name_the_argument(kwargs, exc, pattern):
    args = dict(activations=GOOD, labels=np.zeros(4, dtype=np.int64))
    args.update(kwargs)
    activations = args.pop("activations")
    labels = args.pop("labels")
    with pytest.raises(exc, match=pattern):
        binning_mi(activations, labels, **args)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        binning_mi(GOOD, None, 0.1)


def test_bins_are_bounded_where_float64_stops_telling_them_apart():
    # Before: n_bins=2**65 gave 2.996 nats (ln 20) and 2**100 gave 0, silently, because
    # the bin indices overflowed; the answer is ln 200 for 200 distinct points.
    t = np.linspace(-0.999, 0.999, 200)[:, None]
    for n_bins in (2**53 + 1, 2**65, 2**100):
        with pytest.raises(ValueError, match=rf"n_bins: {n_bins} is more than 2\*\*53 = 9007199254740992 bins"):
            binning_mi(t, n_bins=n_bins)
    with pytest.raises(ValueError, match=r"bin_size: .* is too small .*more than 2\*\*53 = 9007199254740992 bins"):
        binning_mi(t, bin_size=2 / 2**54)
    # The bound itself is exact.
    assert binning_mi(t, n_bins=2**53).ixt == math.log(200)
    assert binning_mi(t, bin_size=2 / 2**53).ixt == math.log(200)
    from infoflow.binning import MAX_BINS

    assert MAX_BINS == 2**53
