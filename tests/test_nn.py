"""infoflow.nn: the GaussianNoise module (on in train and eval, off only when asked) and
the NoisyMLP of the paper (noise after every hidden layer, noiseless logits)."""

import copy
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from infoflow.nn import GaussianNoise, NoisyMLP, named_noise_modules, noise_disabled  # noqa: E402

PAPER_WIDTHS = [12, 10, 7, 5, 4, 3, 2]


# --------------------------------------------------------------------------- GaussianNoise


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_has_the_right_std_in_train_and_eval(mode, dtype):
    beta = 0.3
    module = GaussianNoise(beta)
    getattr(module, mode)()
    torch.manual_seed(1)
    x = torch.linspace(-2.0, 2.0, 200_000, dtype=dtype).reshape(1000, 200)
    out = module(x)
    assert out.dtype == dtype and out.shape == x.shape
    z = (out - x).double()
    n = z.numel()
    assert abs(z.std().item() - beta) <= 0.02 * beta
    assert abs(z.mean().item()) <= 5 * beta / math.sqrt(n)
    # Independent draws: no correlation between neighbouring elements.
    flat = z.flatten()
    corr = torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()
    assert abs(corr) <= 5 / math.sqrt(n)
    # A second call draws fresh noise.
    assert not torch.equal(module(x), out)


def test_disabled_noise_is_the_identity():
    x = torch.randn(50, 4)
    off = GaussianNoise(0.5, enabled=False)
    assert torch.equal(off(x), x)
    on = GaussianNoise(0.5)
    on.enabled = False
    assert torch.equal(on(x), x)
    on.enabled = True
    assert not torch.equal(on(x), x)


def test_noise_disabled_context_manager_restores_each_state():
    model = torch.nn.Sequential(GaussianNoise(0.1), torch.nn.Linear(3, 3), GaussianNoise(0.2, enabled=False))
    first, last = model[0], model[2]
    x = torch.randn(8, 3)
    with noise_disabled(model) as same:
        assert same is model
        assert not first.enabled and not last.enabled
        assert torch.equal(model(x), model(x))
    assert first.enabled and not last.enabled
    with pytest.raises(RuntimeError, match="boom"):
        with noise_disabled(model):
            raise RuntimeError("boom")
    assert first.enabled and not last.enabled
    # A model without noise is left alone; a non-module is a TypeError.
    with noise_disabled(torch.nn.Linear(2, 2)):
        pass
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        with noise_disabled("net"):
            pass


def test_seeded_generator_reproduces_the_noise():
    module = GaussianNoise(1.0)
    x = torch.zeros(10, 3)
    module.generator = torch.Generator().manual_seed(5)
    a = module(x)
    module.generator = torch.Generator().manual_seed(5)
    b = module(x)
    assert torch.equal(a, b)
    expected = torch.randn((10, 3), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, expected)


def test_gradient_flows_through_unchanged():
    x = torch.randn(6, 2, requires_grad=True)
    GaussianNoise(0.4)(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf")])
def test_beta_must_be_finite_and_positive(bad):
    with pytest.raises(ValueError, match="beta: must be finite and > 0"):
        GaussianNoise(bad)
    module = GaussianNoise(0.1)
    with pytest.raises(ValueError, match="beta"):
        module.beta = bad
    assert module.beta == 0.1


@pytest.mark.parametrize("bad", ["0.1", None, True, [0.1]])
def test_beta_must_be_a_real_number(bad):
    with pytest.raises(TypeError, match="beta: expected a real number"):
        GaussianNoise(bad)


def test_attribute_validation_and_repr():
    module = GaussianNoise(np.float32(0.25))
    assert isinstance(module.beta, float) and module.beta == 0.25
    assert repr(module) == "GaussianNoise(beta=0.25)"
    module.enabled = False
    assert repr(module) == "GaussianNoise(beta=0.25, enabled=False)"
    with pytest.raises(TypeError, match="enabled: expected a bool"):
        module.enabled = 1
    with pytest.raises(TypeError, match="generator: expected None or a torch.Generator"):
        module.generator = np.random.default_rng(0)
    assert module.generator is None
    assert list(module.parameters()) == [] and module.state_dict() == {}


def test_integer_input_is_a_type_error():
    with pytest.raises(TypeError, match="floating-point input"):
        GaussianNoise(0.1)(torch.ones(3, 2, dtype=torch.int64))


# --------------------------------------------------------------------------- NoisyMLP


def test_paper_network_structure():
    net = NoisyMLP(PAPER_WIDTHS, "tanh", 0.005)
    names = [name for name, _ in net.named_children()]
    expected = []
    for layer in range(1, 6):
        expected += [f"linear{layer}", f"act{layer}", f"noise{layer}"]
    assert names == expected + ["output"]
    linears = [m for m in net.children() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == list(zip(PAPER_WIDTHS[:-1], PAPER_WIDTHS[1:]))
    assert all(m.bias is not None for m in linears)
    assert net.linear_layers == tuple(linears)
    children = list(net.children())
    # Every hidden Linear is followed by its activation and then noise; the output is last and noiseless.
    for i, m in enumerate(children[:-1]):
        if isinstance(m, torch.nn.Linear):
            assert isinstance(children[i + 1], torch.nn.Tanh)
            assert isinstance(children[i + 2], GaussianNoise)
    assert isinstance(children[-1], torch.nn.Linear) and children[-1].out_features == 2
    noise = [m for m in net.modules() if isinstance(m, GaussianNoise)]
    assert len(noise) == 5 and all(m.beta == 0.005 for m in noise)
    assert net.noise_layers == tuple(noise)
    assert [n for n, _ in net.named_noise_layers()] == [f"noise{i}" for i in range(1, 6)]
    assert [n for n, _ in named_noise_modules(net)] == [f"noise{i}" for i in range(1, 6)]
    assert net.beta == 0.005 and net.widths == tuple(PAPER_WIDTHS) and net.activation == "tanh"
    assert "GaussianNoise(beta=0.005)" in repr(net)


def test_forward_matches_a_hand_computation():
    torch.manual_seed(0)
    net = NoisyMLP([4, 6, 5, 3], beta=0.01).double()
    x = torch.randn(20, 4, dtype=torch.float64)

    def by_hand(noise):
        t = x
        for layer, lin in enumerate(net.linear_layers[:-1]):
            t = torch.tanh(t @ lin.weight.T + lin.bias)
            if noise is not None:
                t = t + 0.01 * noise[layer]
        out = net.linear_layers[-1]
        return t @ out.weight.T + out.bias

    net.eval()  # noise stays on in eval mode
    gen_state = torch.get_rng_state()
    noisy = net(x)
    torch.set_rng_state(gen_state)
    # The noise is drawn in float32 whatever the dtype, then cast (see GaussianNoise Notes).
    draws = [torch.randn(20, 6).double(), torch.randn(20, 5).double()]
    torch.testing.assert_close(noisy, by_hand(draws), rtol=0, atol=1e-12)
    assert not torch.allclose(noisy, by_hand(None), rtol=0, atol=1e-6)
    with noise_disabled(net):
        torch.testing.assert_close(net(x), by_hand(None), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "activation, kind",
    [("relu", torch.nn.ReLU), ("Sigmoid", torch.nn.Sigmoid), ("identity", torch.nn.Identity),
     (torch.nn.ELU, torch.nn.ELU), (lambda: torch.nn.LeakyReLU(0.1), torch.nn.LeakyReLU)],
)
def test_activations(activation, kind):
    net = NoisyMLP([3, 4, 4, 2], activation, beta=0.1)
    acts = [net.act1, net.act2]
    assert all(type(a) is kind for a in acts) and acts[0] is not acts[1]
    assert net(torch.randn(5, 3)).shape == (5, 2)


def test_activation_errors():
    with pytest.raises(ValueError, match=r"activation: unknown name 'gelu'.*'identity', 'relu', 'sigmoid', 'tanh'"):
        NoisyMLP([3, 4, 2], "gelu")
    with pytest.raises(TypeError, match="activation: got a module instance.*torch.nn.Tanh"):
        NoisyMLP([3, 4, 2], torch.nn.Tanh())
    with pytest.raises(TypeError, match="activation: expected a name or a callable, got int"):
        NoisyMLP([3, 4, 2], 3)
    with pytest.raises(TypeError, match="the factory returned builtin_function_or_method, expected a torch.nn.Module"):
        NoisyMLP([3, 4, 2], lambda: torch.tanh)


@pytest.mark.parametrize(
    "widths, exc, pattern",
    [
        ([12], ValueError, r"widths: need at least 2 entries"),
        ([], ValueError, r"widths: need at least 2 entries"),
        ([12, 0, 2], ValueError, r"widths\[1\]: layer widths must be >= 1, got 0"),
        ([12, 4, -3], ValueError, r"widths\[2\]: layer widths must be >= 1, got -3"),
        ([12, 2.5, 2], TypeError, r"widths\[1\]: expected an int, got float"),
        ([True, 2], TypeError, r"widths\[0\]: expected an int, got bool"),
        ("12,2", TypeError, r"widths: expected a sequence of ints"),
        (12, TypeError, r"widths: expected a sequence of ints"),
    ],
)
def test_width_errors(widths, exc, pattern):
    with pytest.raises(exc, match=pattern):
        NoisyMLP(widths)


def test_other_argument_errors():
    with pytest.raises(ValueError, match="beta: must be finite and > 0"):
        NoisyMLP([3, 4, 2], beta=0.0)
    with pytest.raises(TypeError, match="bias: expected a bool"):
        NoisyMLP([3, 4, 2], bias=1)


def test_options_and_edge_cases():
    net = NoisyMLP(np.array([3, 5, 2]), bias=False, beta=0.2)
    assert net.widths == (3, 5, 2) and all(lin.bias is None for lin in net.linear_layers)
    assert set(net.state_dict()) == {"linear1.weight", "output.weight"}
    # No hidden layer: a noiseless linear model.
    plain = NoisyMLP([3, 2])
    assert plain.noise_layers == () and len(plain.linear_layers) == 1
    x = torch.randn(4, 3)
    assert torch.equal(plain(x), plain(x))
    with pytest.raises(ValueError, match="no hidden"):
        _ = plain.beta
    # Layers with different beta have no common beta.
    net.noise1.beta = 0.2
    twice = NoisyMLP([3, 5, 5, 2], beta=0.2)
    twice.noise2.beta = 0.3
    with pytest.raises(ValueError, match="different beta"):
        _ = twice.beta
    # A deep copy is an independent, working network.
    clone = copy.deepcopy(twice)
    clone.noise1.beta = 0.7
    assert twice.noise1.beta == 0.2 and clone(x).shape == (4, 2)
