"""infoflow.sampling.sample_layers: S_l at every GaussianNoise, (m, R, d_l), in forward order,
checked against hand computations, for NoisyMLP and for hand-built models."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from infoflow.nn import GaussianNoise, NoisyMLP  # noqa: E402
from infoflow.sampling import sample_layers  # noqa: E402

WIDTHS = [12, 10, 7, 5, 4, 3, 2]
NAMES = [f"noise{i}" for i in range(1, 6)]


def make_net(beta=0.05, dtype=torch.float32, seed=0, **kwargs):
    torch.manual_seed(seed)
    return NoisyMLP(WIDTHS, "tanh", beta, **kwargs).to(dtype)


def bits(m, rng_seed=1):
    return np.random.default_rng(rng_seed).integers(0, 2, (m, 12)).astype(np.float32)


def params(lin):
    return lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()


class RowCounter(torch.nn.Module):
    """Identity that records the size of every batch it sees."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def forward(self, x):
        self.rows.append(x.shape[0])
        return x


class HandBuilt(torch.nn.Module):
    """Not a NoisyMLP: registration order differs from forward order, the noise sits in
    nested containers, one noise layer sees (rows, channels, length) tensors, and one
    GaussianNoise is registered but never used."""

    def __init__(self, beta=0.1):
        super().__init__()
        torch.manual_seed(3)
        self.late = torch.nn.Sequential(torch.nn.Linear(8, 3), torch.nn.Sigmoid(), GaussianNoise(beta))
        self.unused = GaussianNoise(beta)
        self.counter = RowCounter()
        self.early = torch.nn.ModuleDict({"lin": torch.nn.Linear(5, 8), "noise": GaussianNoise(beta)})
        self.head = torch.nn.Linear(3, 2)

    def forward(self, x):
        x = self.counter(x)
        s1 = torch.relu(self.early["lin"](x)).reshape(-1, 2, 4)
        t1 = self.early["noise"](s1).reshape(-1, 8)
        return self.head(self.late(t1))


# --------------------------------------------------------------------------- shapes, order, values


@pytest.mark.parametrize("dtype, np_dtype", [(torch.float32, np.float32), (torch.float64, np.float64)])
def test_shapes_order_and_dtype(dtype, np_dtype):
    net = make_net(dtype=dtype)
    out = sample_layers(net, bits(9), repeats=4, rng=0)
    assert list(out) == NAMES
    for name, d in zip(NAMES, WIDTHS[1:-1]):
        assert isinstance(out[name], np.ndarray)
        assert out[name].shape == (9, 4, d) and out[name].dtype == np_dtype
        assert np.isfinite(out[name]).all()


def forward_rounding_bounds(net, x_max, beta):
    """First-order bounds on |S_l(float32) - S_l(float64)| for a tanh NoisyMLP run with
    the same weights and the same noise in both dtypes: the float64 run is exact to
    float32 precision, and the float32 run rounds each dot product of n terms (at most
    (n + 2) u sum|w t| with the bias), tanh (2 u) and beta z and the sum S + beta z
    (2 u |t|), and passes on the earlier error through |W| (tanh is 1-Lipschitz);
    u = 2**-24."""
    u = np.finfo(np.float32).eps / 2
    bounds, error, t_max = [], 0.0, x_max
    for lin in net.linear_layers[:-1]:
        w = lin.weight.detach().double().abs().numpy()
        b = lin.bias.detach().double().abs().numpy()
        row = w.sum(axis=1)
        error = (row * error).max() + ((w.shape[1] + 2) * u * (row * t_max + b)).max() + 2 * u
        bounds.append(error)
        t_max = 1.0 + 6 * beta  # |tanh| <= 1, plus the noise (6 sigma; checked below)
        error += 2 * u * t_max
    return bounds


def test_float32_and_float64_models_get_the_same_noise_for_the_same_seed():
    # Before, torch drew float32 and float64 normals with different algorithms, so the two
    # dtypes sampled different noise from the same seed (differences of order beta).
    beta = 0.05
    net = make_net(beta=beta)
    twin = make_net(beta=beta, dtype=torch.float64)  # the same weights (seed), exactly
    x = bits(64)
    single = sample_layers(net, x, repeats=8, rng=3)
    double = sample_layers(twin, x.astype(np.float64), repeats=8, rng=3)
    for name, bound in zip(NAMES, forward_rounding_bounds(net, 1.0, beta)):
        assert np.abs(double[name]).max() <= 1.0 + 6 * beta
        assert np.abs(single[name] - double[name]).max() <= bound, name


def test_first_layer_is_deterministic_and_equals_the_noiseless_computation():
    net = make_net(beta=0.2)
    x = bits(50)
    out = sample_layers(net, x, repeats=6, rng=1)
    s1 = out["noise1"]
    np.testing.assert_allclose(s1, np.broadcast_to(s1[:, :1], s1.shape), rtol=0, atol=1e-6)
    w1, b1 = params(net.linear1)
    expected = np.broadcast_to(np.tanh(x @ w1.T + b1)[:, None, :], s1.shape)
    np.testing.assert_allclose(s1, expected, rtol=0, atol=2e-6)


def test_later_layers_vary_with_the_linearised_spread():
    """Given x, S_2 = tanh(W2 (S_1 + Z_1) + b2): for small beta its spread across repeats is
    beta * sqrt(sum_j J_kj^2) with J = diag(1 - S_2^2) W2 (first-order propagation)."""
    beta = 0.01
    net = make_net(beta=beta, dtype=torch.float64)
    x = bits(3).astype(np.float64)
    out = sample_layers(net, x, repeats=4000, rng=2)
    w1, b1 = params(net.linear1)
    w2, b2 = params(net.linear2)
    s1 = np.tanh(x @ w1.T + b1)
    s2 = np.tanh(s1 @ w2.T + b2)
    jac = (1 - s2**2)[:, :, None] * w2[None]
    predicted = beta * np.sqrt((jac**2).sum(axis=2))
    measured = out["noise2"].std(axis=1)
    np.testing.assert_allclose(measured, predicted, rtol=0.06)
    # The mean is s2 up to 5 standard errors plus the second-order shift |s2| (1 - s2^2) var.
    tolerance = 5 * measured / np.sqrt(4000) + beta**2 * (w2**2).sum(axis=1)
    assert (np.abs(out["noise2"].mean(axis=1) - s2) <= tolerance).all()
    for name in NAMES[1:]:
        assert (out[name].std(axis=1) > 0).all()


def test_repeats_one_gives_one_draw_per_input():
    net = make_net()
    out = sample_layers(net, bits(16), rng=0)
    assert [v.shape for v in out.values()] == [(16, 1, d) for d in WIDTHS[1:-1]]


def test_hand_built_model():
    model = HandBuilt(beta=0.1)
    x = np.random.default_rng(4).normal(size=(11, 5))
    out = sample_layers(model, x, repeats=3, rng=5)
    # Forward order, names from named_modules(), unused noise omitted, (rows, 2, 4) flattened.
    assert list(out) == ["early.noise", "late.2"]
    assert out["early.noise"].shape == (11, 3, 8) and out["late.2"].shape == (11, 3, 3)
    assert out["early.noise"].dtype == np.float32
    lin = model.early["lin"]
    w, b = params(lin)
    expected = np.maximum(x.astype(np.float32).astype(np.float64) @ w.T + b, 0)
    np.testing.assert_allclose(out["early.noise"], expected[:, None, :].repeat(3, axis=1), rtol=0, atol=2e-6)
    assert (out["late.2"].std(axis=1) > 0).all()
    assert 0 < out["late.2"].min() and out["late.2"].max() < 1  # sigmoid outputs


def test_model_without_parameters_takes_the_input_dtype():
    model = torch.nn.Sequential(GaussianNoise(0.3), GaussianNoise(0.3))
    x = np.linspace(-1, 1, 12).reshape(4, 3)
    out = sample_layers(model, x, repeats=2000, rng=0)
    assert list(out) == ["0", "1"] and out["0"].dtype == np.float64
    np.testing.assert_array_equal(out["0"], np.broadcast_to(x[:, None, :], (4, 2000, 3)))
    z = out["1"] - x[:, None, :]
    assert abs(z.std() - 0.3) <= 0.02 * 0.3 and abs(z.mean()) <= 0.01


# --------------------------------------------------------------------------- randomness and chunking


def test_same_rng_same_samples_different_rng_different():
    net = make_net()
    x = bits(20)
    a = sample_layers(net, x, repeats=3, rng=7)
    b = sample_layers(net, x, repeats=3, rng=np.random.default_rng(7))
    c = sample_layers(net, x, repeats=3, rng=8)
    d = sample_layers(net, x, repeats=3)
    e = sample_layers(net, x, repeats=3)
    for name in NAMES:
        np.testing.assert_array_equal(a[name], b[name])
    np.testing.assert_array_equal(a["noise1"], c["noise1"])  # deterministic layer
    for name in NAMES[1:]:
        assert not np.array_equal(a[name], c[name])
        assert not np.array_equal(d[name], e[name])


def test_global_torch_rng_and_module_state_are_left_alone():
    net = make_net()
    net.train()
    own = torch.Generator().manual_seed(0)
    net.noise3.generator = own
    before = torch.get_rng_state()
    sample_layers(net, bits(5), repeats=2, rng=0)
    assert torch.equal(torch.get_rng_state(), before)
    assert net.training and net.noise3.generator is own
    assert all(m.generator is None for m in net.noise_layers if m is not net.noise3)
    net.eval()
    sample_layers(net, bits(5), repeats=2, rng=0)
    assert not net.training
    assert all(not m._forward_hooks for m in net.modules())
    # No autograd graph is built.
    out = sample_layers(net, torch.from_numpy(bits(3)).requires_grad_(), rng=0)
    assert all(isinstance(v, np.ndarray) for v in out.values())


def test_disabled_noise_layers_are_sampled_but_add_nothing():
    net = make_net()
    net.noise1.enabled = False
    out = sample_layers(net, bits(4), repeats=3, rng=0)
    w2, b2 = params(net.linear2)
    np.testing.assert_allclose(out["noise2"], np.tanh(out["noise1"].astype(np.float64) @ w2.T + b2), atol=2e-6)
    assert not net.noise1.enabled


@pytest.mark.parametrize("m, repeats, batch_size, max_rows",
                         [(10, 3, 7, 6), (5, 10, 4, 4), (6, 1, 4096, 6), (4, 5, 5, 5)])
def test_batches_never_exceed_batch_size_and_cover_everything(m, repeats, batch_size, max_rows):
    model = HandBuilt()
    x = np.random.default_rng(0).normal(size=(m, 5))
    out = sample_layers(model, x, repeats=repeats, batch_size=batch_size, rng=0)
    assert max(model.counter.rows) == max_rows
    assert sum(model.counter.rows) == m * repeats
    first = out["early.noise"]
    w, b = params(model.early["lin"])
    expected = np.maximum(x.astype(np.float32).astype(np.float64) @ w.T + b, 0)
    np.testing.assert_allclose(first, np.broadcast_to(expected[:, None, :], first.shape), rtol=0, atol=2e-6)
    if repeats > 1:
        assert (out["late.2"].std(axis=1) > 0).all()


def test_batch_size_changes_the_draws_not_the_distribution():
    """Documented: chunking changes which noise each row gets (one torch.randn call per
    layer per pass), so only the deterministic layer and the distribution are compared."""
    net = make_net(beta=0.05, dtype=torch.float64)
    x = bits(4).astype(np.float64)
    small = sample_layers(net, x, repeats=3000, batch_size=7, rng=0)
    large = sample_layers(net, x, repeats=3000, batch_size=4096, rng=0)
    again = sample_layers(net, x, repeats=3000, batch_size=7, rng=0)
    np.testing.assert_allclose(small["noise1"], large["noise1"], rtol=0, atol=1e-12)
    for name in NAMES[1:]:
        assert small[name].shape == large[name].shape
        np.testing.assert_array_equal(small[name], again[name])
        assert not np.array_equal(small[name], large[name])
        # Means and spreads over 3000 repeats agree to a few standard errors.
        se = large[name].std(axis=1) / np.sqrt(3000)
        assert (np.abs(small[name].mean(axis=1) - large[name].mean(axis=1)) <= 6 * np.sqrt(2) * se + 1e-12).all()
        np.testing.assert_allclose(small[name].std(axis=1), large[name].std(axis=1), rtol=0.12)


# --------------------------------------------------------------------------- inputs


def test_tensor_and_array_inputs_agree_and_are_cast_to_the_model_dtype():
    net = make_net()
    x = bits(8).astype(np.float64)
    from_numpy = sample_layers(net, x, repeats=2, rng=3)
    from_tensor = sample_layers(net, torch.from_numpy(x), repeats=2, rng=3)
    from_half = sample_layers(net, x.astype(np.float16), repeats=2, rng=3)  # 0/1 exact in float16
    swapped = sample_layers(net, x.astype(">f8"), repeats=2, rng=3)
    strided = sample_layers(net, np.repeat(x, 2, axis=0)[::2], repeats=2, rng=3)
    for name in NAMES:
        assert from_numpy[name].dtype == np.float32
        for other in (from_tensor, from_half, swapped, strided):
            np.testing.assert_array_equal(from_numpy[name], other[name])


@pytest.mark.parametrize(
    "inputs, exc, pattern",
    [
        (np.ones((3, 12), dtype=np.int64), TypeError, "inputs: expected a floating-point array, got dtype int64"),
        (np.ones((3, 12), dtype=bool), TypeError, "inputs: expected a floating-point array, got dtype bool"),
        (torch.ones(3, 12, dtype=torch.int32), TypeError, "inputs: expected a floating-point tensor, got torch.int32"),
        (np.ones((3, 12), dtype=np.complex64), TypeError, "inputs: expected a floating-point array"),
        ([[0.0] * 12], TypeError, "inputs: expected a numpy.ndarray or torch.Tensor, got list"),
        (np.zeros((0, 12)), ValueError, r"inputs: no inputs \(the leading dimension is 0\)"),
        (np.zeros((3, 0)), ValueError, "inputs: empty input, shape"),
        (np.float64(1.0), TypeError, "inputs: expected a numpy.ndarray or torch.Tensor, got float64"),
        (np.array(1.0), ValueError, "inputs: expected shape"),
        (np.full((3, 12), np.nan), ValueError, "inputs: contains NaN or infinity"),
        (torch.tensor([[0.0] * 11 + [float("inf")]]), ValueError, "inputs: contains NaN or infinity"),
    ],
)
def test_input_errors(inputs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        sample_layers(make_net(), inputs, rng=0)


def test_dataset_and_dataloader_inputs_give_the_arrays_samples():
    from torch.utils.data import DataLoader, TensorDataset

    net = make_net()
    x = bits(30)
    expected = sample_layers(net, x, repeats=3, rng=4)
    labelled = TensorDataset(torch.from_numpy(x), torch.zeros(30, dtype=torch.int64))  # labels: not needed, dropped
    for given in (labelled, DataLoader(labelled, batch_size=7), DataLoader(TensorDataset(torch.from_numpy(x))),
                  DataLoader(labelled, batch_size=None)):
        out = sample_layers(net, given, repeats=3, rng=4)
        for name in NAMES:
            np.testing.assert_array_equal(out[name], expected[name])
    with pytest.raises(ValueError, match="inputs: the DataLoader yielded no data"):
        sample_layers(net, DataLoader(TensorDataset(torch.zeros(0, 12))), rng=0)


def test_input_errors_name_uint8_and_masked_inputs():
    net = make_net()
    with pytest.raises(TypeError, match=r"inputs: expected a floating-point array, got dtype uint8.*/ 255"):
        sample_layers(net, bits(3).astype(np.uint8))
    with pytest.raises(TypeError, match="inputs: numpy masked arrays are not supported"):
        sample_layers(net, np.ma.masked_invalid(bits(3)))


def test_repeats_are_bounded_and_memory_errors_say_how_much(monkeypatch):
    from infoflow import sampling

    with pytest.raises(ValueError, match=r"repeats: 3 inputs x 1073741824 repeats = 3221225472 rows of samples per "
                                         r"layer, more than the maximum of 2\*\*31 = 2147483648"):
        sample_layers(make_net(), bits(3), repeats=2**30)

    def refuse(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(np, "empty", refuse)
    captured = [("noise1", torch.zeros(12, 10)), ("noise2", torch.zeros(12, 7))]
    with pytest.raises(MemoryError, match=r"repeats: the samples of all layers need .* GiB of host memory \(4 inputs x "
                                          r"3 repeats x 17 units x 4 bytes\); lower repeats or pass fewer inputs"):
        sampling._result_array(4, 3, 10, np.float32, captured)


def test_argument_errors():
    net = make_net()
    x = bits(2)
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module, got function"):
        sample_layers(lambda t: t, x)
    with pytest.raises(ValueError, match="model: contains no infoflow.nn.GaussianNoise layers"):
        sample_layers(torch.nn.Linear(12, 3), x)
    with pytest.raises(ValueError, match="repeats: must be >= 1, got 0"):
        sample_layers(net, x, repeats=0)
    with pytest.raises(TypeError, match="repeats: expected an integer, got float"):
        sample_layers(net, x, repeats=2.0)
    with pytest.raises(ValueError, match="batch_size: must be >= 1, got 0"):
        sample_layers(net, x, batch_size=0)
    with pytest.raises(TypeError, match="rng: expected None, an int seed"):
        sample_layers(net, x, rng="seed")


def test_model_structure_errors_and_cleanup_after_errors():
    noise = GaussianNoise(0.1)
    shared = torch.nn.Sequential(noise, torch.nn.Tanh(), noise)
    with pytest.raises(ValueError, match=r"GaussianNoise module\(s\) \['0'\] ran more than once"):
        sample_layers(shared, np.zeros((2, 3)), rng=0)

    class Transposed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.noise = GaussianNoise(0.1)

        def forward(self, x):
            return self.noise(x.T)

    with pytest.raises(ValueError, match="'noise' has shape .* the forward batch has 2 rows"):
        sample_layers(Transposed(), np.zeros((2, 3)), rng=0)

    class Interrupted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.noise = GaussianNoise(0.1)

        def forward(self, x):
            self.noise(x)
            raise KeyboardInterrupt

    model = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        sample_layers(model, np.zeros((2, 3)), rng=0)
    for m in (noise, model.noise):
        assert not m._forward_hooks and m.generator is None

    class Skipping(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.noise = GaussianNoise(0.1)

        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="none of its GaussianNoise modules ran"):
        sample_layers(Skipping(), np.zeros((2, 3)), rng=0)


# --------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")
def test_cuda_model():
    net = make_net(beta=0.05).cuda()
    x = bits(30)
    a = sample_layers(net, x, repeats=5, batch_size=16, rng=0)
    b = sample_layers(net, torch.from_numpy(x).cuda(), repeats=5, batch_size=16, rng=0)
    cpu = sample_layers(net.cpu(), x, repeats=5, rng=0)
    assert list(a) == NAMES
    for name, d in zip(NAMES, WIDTHS[1:-1]):
        assert a[name].shape == (30, 5, d) and a[name].dtype == np.float32
        np.testing.assert_array_equal(a[name], b[name])
    np.testing.assert_allclose(a["noise1"], cpu["noise1"], rtol=0, atol=1e-5)
    assert (a["noise2"].std(axis=1) > 0).all()
