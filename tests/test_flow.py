"""information_flow, its results, the schedule, InformationPlane and the information-plane plot
(infoflow.flow, .results, .schedule, .recorder, .plots)."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from infoflow.flow import information_flow  # noqa: E402
from infoflow.mutual_information import layer_information, mi_xt, mi_yt  # noqa: E402
from infoflow.nn import GaussianNoise, NoisyMLP  # noqa: E402
from infoflow.plots import plot_information_plane  # noqa: E402
from infoflow.recorder import InformationPlane  # noqa: E402
from infoflow.results import CONVERGENCE_FIELDS, HISTORY_FIELDS, InformationFlow, LayerInformation  # noqa: E402
from infoflow.sampling import sample_layers  # noqa: E402
from infoflow.schedule import log_spaced_epochs  # noqa: E402

M = 256  # inputs of the small test problem


@pytest.fixture(scope="module")
def data():
    # All 256 distinct 8-bit patterns (X uniform over distinct inputs: I(X;T) <= ln 256).
    x = ((np.arange(M)[:, None] >> np.arange(7, -1, -1)) & 1).astype(np.float32)
    y = (x[:, :4].sum(axis=1) > 2).astype(np.int64)
    return x, y


def small_net(seed=0, beta=0.05):
    torch.manual_seed(seed)
    return NoisyMLP([8, 5, 4, 3, 2], beta=beta)


# --- information_flow ------------------------------------------------------------------

def test_matches_direct_estimator_calls(data):
    """Same seed, same calls in the same order: identical numbers to mi_xt/mi_yt on sample_layers."""
    x, y = data
    net = small_net()
    flow = information_flow(net, x, y, repeats=4, mc_samples=8, rng=123)

    gen = np.random.default_rng(123)
    samples = sample_layers(net, x, repeats=4, rng=gen)
    assert [row.name for row in flow] == list(samples) == ["noise1", "noise2", "noise3"]
    for row, (name, s) in zip(flow, samples.items()):
        if name == "noise1":
            # The first noisy layer is deterministic given x: its repeats are copies (up to
            # float rounding), and information_flow keeps one (exact conditional entropy h_Z).
            assert np.max(np.abs(s - s[:, :1])) <= 1e-3 * 0.05
            s = s[:, :1]
        else:
            assert np.max(np.abs(s - s[:, :1])) > 1e-3 * 0.05
        ixt, iyt = layer_information(s, y, 0.05, mc_samples=8, rng=gen)
        assert (row.ixt, row.ixt_stderr, row.iyt, row.iyt_stderr) == (ixt.value, ixt.stderr, iyt.value, iyt.stderr)
        assert row.width == s.shape[2] and row.unit == "nats"


def test_layer_information_shares_h_t_with_mi_xt_and_agrees_with_mi_yt(data):
    """h(T) is estimated once: the first draws are mi_xt's (identical I(X;T) for one seed),
    and I(Y;T) agrees with a separate mi_yt within the combined standard error."""
    x, y = data
    s = sample_layers(small_net(), x, repeats=4, rng=5)["noise2"]
    ixt, iyt = layer_information(s, y, 0.05, rng=77)
    assert ixt == mi_xt(s, 0.05, rng=77)
    separate = mi_yt(s, y, 0.05, rng=78)
    assert abs(iyt.value - separate.value) <= 4 * math.hypot(iyt.stderr, separate.stderr)


def test_reproducible_and_bounded(data):
    x, y = data
    net = small_net(beta=0.01)
    first = information_flow(net, x, y, repeats=2, rng=5)
    again = information_flow(net, x, y, repeats=2, rng=5)
    assert first.to_dict() == again.to_dict()
    # Well-separated first layer (beta small against the spread of tanh(Wx+b)): close to
    # the ceiling ln m, and never above it beyond Monte Carlo error.
    ixt1 = first["noise1"]
    assert ixt1.ixt <= math.log(M) + 4 * ixt1.ixt_stderr
    assert ixt1.ixt > math.log(M) - 1.0
    _, counts = np.unique(y, return_counts=True)
    h_y = -sum(c / M * math.log(c / M) for c in counts)
    for row in first:
        assert row.iyt <= h_y + 4 * row.iyt_stderr


def test_result_type_and_outputs(tmp_path, data):
    x, y = data
    flow = information_flow(small_net(), x, y, repeats=2, mc_samples=4, rng=0, base=2)
    assert isinstance(flow, InformationFlow) and len(flow) == 3
    assert all(isinstance(row, LayerInformation) and row.unit == "bits" for row in flow)
    assert flow.unit == "bits" and flow.n_inputs == M and flow.repeats == 2 and flow.beta == 0.05
    text = str(flow)
    assert "noise3" in text and "I(X;T)" in text and "bits" in text
    assert flow[0] is flow["noise1"]
    with pytest.raises(KeyError, match="noise9"):
        flow["noise9"]
    flow.to_csv(tmp_path / "flow.csv")
    header = (tmp_path / "flow.csv").read_text().splitlines()[0]
    assert header == ",".join(("name", "width", "ixt", "ixt_stderr", "iyt", "iyt_stderr", "unit")
                              + CONVERGENCE_FIELDS)
    flow.to_json(tmp_path / "flow.json")
    import json

    assert json.loads((tmp_path / "flow.json").read_text()) == flow.to_dict()


def test_model_mode_restored(data):
    x, y = data
    net = small_net()
    net.train()
    information_flow(net, x, y, repeats=2, mc_samples=2, rng=0)
    assert all(module.training for module in net.modules())


def test_errors(data):
    x, y = data
    with pytest.raises(ValueError, match="no infoflow.nn.GaussianNoise"):
        information_flow(torch.nn.Sequential(torch.nn.Linear(8, 2)), x, y)
    with pytest.raises(ValueError, match="y: has 255 entries but x has 256 rows"):
        information_flow(small_net(), x, y[:-1])
    with pytest.raises(TypeError, match="y: expected an integer dtype"):
        information_flow(small_net(), x, y.astype(np.float64))
    with pytest.raises(ValueError, match="beta: 0.1 differs"):
        information_flow(small_net(beta=0.05), x, y, beta=0.1)
    information_flow(small_net(beta=0.05), x, y, beta=0.05, repeats=1, mc_samples=1, rng=0)  # equal: fine
    mixed = small_net()
    mixed.noise2.beta = 0.2
    with pytest.raises(ValueError, match="different beta"):
        information_flow(mixed, x, y)
    disabled = small_net()
    disabled.noise1.enabled = False
    with pytest.raises(ValueError, match="disabled"):
        information_flow(disabled, x, y)
    with pytest.raises(TypeError, match="model"):
        information_flow("not a model", x, y)
    with pytest.raises(ValueError, match="repeats"):
        information_flow(small_net(), x, y, repeats=0)
    # The noise module alone is a valid (one-layer) model.
    flow = information_flow(GaussianNoise(0.1), x, y, repeats=1, mc_samples=2, rng=0)
    assert len(flow) == 1 and flow[0].width == 8


def _same_flow(a, b):
    assert [row.to_dict() for row in a] == [row.to_dict() for row in b]


def test_a_dataset_or_dataloader_gives_the_arrays_result(data):
    """A Dataset or DataLoader x is iterated once: inputs from the first entry of each
    batch, labels from the second (then y is None)."""
    from torch.utils.data import DataLoader, TensorDataset

    x, y = data
    options = dict(repeats=2, mc_samples=2, rng=7, convergence=False)
    expected = information_flow(small_net(), x, y, **options)
    dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    for given in (dataset, DataLoader(dataset, batch_size=37), DataLoader(dataset, batch_size=None)):
        _same_flow(information_flow(small_net(), given, **options), expected)
    inputs_only = DataLoader(TensorDataset(torch.from_numpy(x)), batch_size=50)
    _same_flow(information_flow(small_net(), inputs_only, y, **options), expected)
    plane = InformationPlane(small_net(), DataLoader(dataset, batch_size=64), epochs=[0], **options)
    assert plane.n_inputs == M and np.array_equal(plane.y, y)


def test_a_shuffling_loader_keeps_inputs_and_labels_paired():
    from torch.utils.data import DataLoader, TensorDataset

    from infoflow.datasets import szt, szt_labels
    from infoflow.sampling import dataset_arrays

    x, y = szt()
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=100, shuffle=True)
    inputs, labels = dataset_arrays(loader, "x")
    assert inputs.shape == (4096, 12) and not np.array_equal(inputs.numpy(), x)  # another order,
    np.testing.assert_array_equal(labels.numpy(), szt_labels(inputs.numpy()))  # but each label with its input


def test_input_and_label_errors_name_the_arguments(data):
    from torch.utils.data import DataLoader, TensorDataset

    x, y = data
    net = small_net()
    with pytest.raises(TypeError, match=r"x: expected a floating-point array, got dtype uint8.*"
                                        r"x\.astype\(numpy\.float32\) / 255 for 8-bit images"):
        information_flow(net, x.astype(np.uint8), y)
    with pytest.raises(TypeError, match=r"x: expected a floating-point tensor, got torch\.uint8.*x\.float\(\) / 255"):
        InformationPlane(net, torch.from_numpy(x.astype(np.uint8)), y, epochs=[0])
    with pytest.raises(ValueError, match=r"y: expected one class index per row of x, shape \(256,\), got shape "
                                         r"\(256, 2\): one-hot or probability rows\? .*y\.argmax\(1\)"):
        information_flow(net, x, np.eye(2, dtype=np.float32)[y])
    with pytest.raises(TypeError, match="y: expected the labels"):
        information_flow(net, x)
    with pytest.raises(TypeError, match="x: numpy masked arrays are not supported"):
        information_flow(net, np.ma.masked_invalid(x), y)
    one_hot = DataLoader(TensorDataset(torch.from_numpy(x), torch.eye(2)[y]), batch_size=64)
    with pytest.raises(ValueError, match=r"y \(the labels in x's batches\): .*one-hot.*y\.argmax\(1\)"):
        information_flow(net, one_hot)
    labelled = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=64)
    with pytest.raises(ValueError, match="y: x is a DataLoader whose batches carry labels; pass y=None"):
        information_flow(net, labelled, y)
    with pytest.raises(TypeError, match="x: its batches are dicts"):
        information_flow(net, DataLoader([{"image": row} for row in x], batch_size=64))


def test_work_bounds_are_checked_before_sampling(data, monkeypatch):
    from infoflow import flow

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the budget was checked")

    monkeypatch.setattr(flow, "sample_layers", no_sampling)
    x, y = data
    with pytest.raises(ValueError, match=r"repeats: 256 inputs x 8388609 repeats = 2147483904 rows of samples per "
                                         r"layer, more than the maximum of 2\*\*31"):
        information_flow(small_net(), x, y, repeats=2**23 + 1)
    with pytest.raises(ValueError, match=r"mc_samples: mc_samples=4194304 asks for 4294967296 Monte Carlo queries for "
                                         r"h\(T\) of 1024 pooled samples"):
        information_flow(small_net(), x, y, repeats=4, mc_samples=2**22)
    with pytest.raises(ValueError, match="mc_queries: .*more than the maximum of 2"):
        InformationPlane(small_net(), x, y, epochs=[0], mc_queries=2**31 + 1)
    with pytest.raises(ValueError, match=r"n_points: 65537 is more than the maximum of 2\*\*16 = 65536"):
        log_spaced_epochs(10**6, 2**16 + 1)


# --- schedule --------------------------------------------------------------------------

@pytest.mark.parametrize("max_epoch", [1, 2, 7, 50, 300, 10000])
@pytest.mark.parametrize("n_points", [2, 3, 5, 12, 20, 40])
def test_log_spaced_schedule(max_epoch, n_points):
    epochs = log_spaced_epochs(max_epoch, n_points)
    assert epochs[0] == 0 and epochs[-1] == max_epoch
    assert epochs == sorted(set(epochs))  # sorted, distinct
    assert all(isinstance(e, int) for e in epochs)
    assert len(epochs) == min(n_points, max_epoch + 1)
    if n_points >= 3 and max_epoch >= 2:
        assert epochs[1] == 1


def test_log_spaced_schedule_is_geometric():
    assert log_spaced_epochs(10000, 6) == [0, 1, 10, 100, 1000, 10000]
    epochs = np.array(log_spaced_epochs(10000, 20)[1:], dtype=float)
    ratios = epochs[1:] / epochs[:-1]
    # Late points (no integer ties) follow one ratio, (10000/e)**(1/k) ~ 1.66.
    assert np.allclose(ratios[-8:], ratios[-1], rtol=0.02)
    assert log_spaced_epochs(0, 5) == [0]
    with pytest.raises(ValueError, match="n_points"):
        log_spaced_epochs(10, 1)
    with pytest.raises(ValueError, match="max_epoch"):
        log_spaced_epochs(-1, 5)


# --- InformationPlane ------------------------------------------------------------------

def test_plane_schedule_and_due(data):
    x, y = data
    plane = InformationPlane(small_net(), x, y, max_epoch=100, n_points=6, repeats=2, rng=0)
    assert plane.schedule == log_spaced_epochs(100, 6)
    explicit = InformationPlane(small_net(), x, y, epochs=[5, 0, 5, 2], rng=0)
    assert explicit.schedule == [0, 2, 5]
    assert explicit.due(2) and not explicit.due(3)
    with pytest.raises(ValueError, match="exactly one"):
        InformationPlane(small_net(), x, y, epochs=[1], max_epoch=3)
    with pytest.raises(ValueError, match="exactly one"):
        InformationPlane(small_net(), x, y)
    with pytest.raises(ValueError, match="y: has"):
        InformationPlane(small_net(), x, y[:10], max_epoch=3)


def test_plane_record_save_load_plot(tmp_path, data):
    x, y = data
    net = small_net()
    plane = InformationPlane(net, x, y, epochs=[0, 1, 3], repeats=2, mc_samples=4, rng=1)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for epoch in range(4):
        assert (plane.maybe_record(epoch) is not None) == (epoch in (0, 1, 3))
        assert not plane.due(epoch)
        loss = torch.nn.functional.cross_entropy(net(xt), yt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with pytest.raises(ValueError, match="already recorded"):
        plane.record(3)
    history = plane.history
    assert len(history) == 3 * 3
    assert [row["epoch"] for row in history] == [0, 0, 0, 1, 1, 1, 3, 3, 3]
    assert all(tuple(row) == HISTORY_FIELDS for row in history)
    assert plane.recorded_epochs == [0, 1, 3]

    csv_path, json_path = plane.save(tmp_path / "run")
    assert (csv_path.name, json_path.name) == ("run.csv", "run.json")
    assert InformationPlane.load_history(csv_path) == history
    assert InformationPlane.load_history(json_path) == history
    folder = tmp_path / "folder"
    folder.mkdir()
    assert plane.save(folder)[0] == folder / "information_plane.csv"

    png = plane.plot(tmp_path / "plane.png", title="test")
    assert png.stat().st_size > 20_000  # a drawn figure, not an empty canvas
    from matplotlib.image import imread

    pixels = imread(png)
    assert pixels.shape[0] > 500 and pixels.shape[1] > 800
    assert np.std(pixels[..., :3]) > 0.05  # more than a blank page
    plot_information_plane(InformationPlane.load_history(csv_path), tmp_path / "again.png")
    assert (tmp_path / "again.png").stat().st_size > 20_000
    with pytest.raises(ValueError, match="no rows"):
        plot_information_plane([], tmp_path / "empty.png")


def test_histories_written_before_the_r_convergence_columns_still_load_and_plot(tmp_path):
    """A CSV with only the eight original columns loads with the new ones empty (None,
    R unknown = 0) and plots without the R-convergence panels."""
    path = tmp_path / "old.csv"
    path.write_text("epoch,layer,width,ixt,ixt_stderr,iyt,iyt_stderr,unit\n"
                    "0,noise1,10,8.3,0.01,0.69,0.01,nats\n5,noise1,10,8.2,0.01,0.68,,nats\n")
    rows = InformationPlane.load_history(path)
    assert [tuple(row) for row in rows] == [HISTORY_FIELDS] * 2
    assert rows[0]["repeats"] == 0 and rows[0]["r_half"] is None and rows[0]["converged"] is None
    assert rows[1]["ixt"] == 8.2 and math.isnan(rows[1]["iyt_stderr"])
    plot_information_plane(rows, tmp_path / "old.png")
    assert (tmp_path / "old.png").stat().st_size > 20_000


def test_plane_same_seed_same_history(data):
    x, y = data
    histories = []
    for _ in range(2):
        plane = InformationPlane(small_net(), x, y, epochs=[0, 1], repeats=2, mc_samples=2, rng=9)
        plane.record(0)
        plane.record(1)
        histories.append(plane.history)
    assert histories[0] == histories[1]


def test_plane_passes_the_query_budget(data):
    """InformationPlane(mc_queries=N) records what information_flow(mc_queries=N) computes,
    and refuses a budget given twice."""
    x, y = data
    net = small_net()
    plane = InformationPlane(net, x, y, epochs=[0], repeats=2, mc_queries=300, rng=4)
    flow = plane.record(0)
    direct = information_flow(net, x, y, repeats=2, mc_queries=300, rng=np.random.default_rng(4))
    assert [(r.ixt, r.iyt) for r in flow] == [(r.ixt, r.iyt) for r in direct]
    assert plane.to_dict()["mc_queries"] == 300
    with pytest.raises(ValueError, match="mc_samples and mc_queries"):
        InformationPlane(net, x, y, epochs=[0], mc_samples=2, mc_queries=300)
