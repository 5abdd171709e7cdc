"""infoflow.distributed on a real dask.distributed.LocalCluster (2 worker processes, 1 thread each).

Every distributed result is compared with the local computation it distributes (the same
kernel and draws on one machine), or with a float64 reference; nothing of Dask is mocked.
One cluster serves the module (the sweep policy's tests start one of 1 worker with 2
threads); the killed-worker test runs last and waits for the nanny to bring the worker back.
"""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("dask.array")

import dask.array as da  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from reference import DTYPE_TOL, log_density_reference  # noqa: E402

import infoflow  # noqa: E402
from infoflow import cli  # noqa: E402
from infoflow import distributed as idist  # noqa: E402
from infoflow.queries import QUERY_CHUNK_ELEMENTS  # noqa: E402

# All-local queries per task: the local chunking, so the result must be the local one bit for bit.
WHOLE = QUERY_CHUNK_ELEMENTS
# Tiny experiment settings: the point is the plumbing, not the numbers (as in test_experiments_szt).
TINY = dict(epochs=2, n_points=2, repeats=2, max_centers=1000, mc_samples=2)


def _local_client(n_workers, threads_per_worker):
    """Yields a client of a LocalCluster of worker processes; closes both after."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Dask's start-up notices are not under test
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                               dashboard_address=":0")
        dask_client = Client(cluster)
    try:
        yield dask_client
    finally:
        dask_client.close()
        cluster.close()


@pytest.fixture(scope="module")
def client():
    yield from _local_client(2, 1)


@pytest.fixture(scope="module")
def local_two_seeds(tmp_path_factory):
    """The local ``--seeds 2`` run of the TINY szt settings: (its folder, its result)."""
    out = tmp_path_factory.mktemp("local-szt")
    return out, infoflow.experiments.EXPERIMENTS["szt"].run(out, seeds=2, progress=False, **TINY)


@pytest.fixture(scope="module")
def two_thread_worker():
    """A client of a LocalCluster of 1 worker process with 2 threads."""
    yield from _local_client(1, 2)


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_same_as_local(out, local_two_seeds):
    """``out`` holds the files and values of the local --seeds 2 run."""
    local, _ = local_two_seeds
    for i in range(2):
        assert sorted(p.name for p in (out / f"seed_{i}").iterdir()) == sorted(infoflow.experiments.szt.FILES)
        for name in ("szt_information.csv", "szt_training.csv"):
            assert read_csv(out / f"seed_{i}" / name) == read_csv(local / f"seed_{i}" / name)
    assert read_csv(out / "szt_seeds.csv") == read_csv(local / "szt_seeds.csv")


# ---------------------------------------------------------------------------------------
# The kernel on dask arrays
# ---------------------------------------------------------------------------------------

def _bound(local, blocks, dtype):
    """The stated rounding bound of a B-block combination (see log_density's Notes)."""
    u, u64 = np.finfo(dtype).eps / 2, np.finfo(np.float64).eps / 2
    ell = np.abs(local.astype(np.float64))
    return u * (2 * ell + blocks / math.e) + 2 * blocks * u64 * (ell + 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_density_on_dask_arrays_equals_local(client, dtype):
    """Query blocks alone: the local values; centre blocks too: within the stated bound of
    the local call, and the local call within float rounding of a float64 reference."""
    rng = np.random.default_rng(1)
    q = rng.normal(size=(1500, 4)).astype(dtype)
    c = rng.normal(size=(1200, 4)).astype(dtype)
    local = infoflow.log_density(q, c, 0.3)
    rows_only = idist.log_density(da.from_array(q, chunks=(400, 4)), c, 0.3).compute()
    assert rows_only.dtype == dtype and np.array_equal(rows_only, local)
    for center_chunk, blocks in ((500, 3), (100, 12)):
        got = idist.log_density(da.from_array(q, chunks=(400, 4)), da.from_array(c, chunks=(center_chunk, 4)), 0.3,
                                split_every=4).compute()
        assert got.dtype == dtype and got.shape == (1500,)
        assert np.all(np.abs(got.astype(np.float64) - local) <= _bound(local, blocks, dtype))
    reference = log_density_reference(q[:50], c, 0.3)
    assert np.max(np.abs(got[:50] - reference)) < DTYPE_TOL[dtype]


def test_gaussian_lse_weighted_batched_and_empty_blocks(client):
    """Batched mixtures, (n,) and (batch, n) weights, and a centre block whose weights are
    all 0 (its log-sum is -inf, not an error): the local values within the bound."""
    rng = np.random.default_rng(2)
    q = rng.normal(size=(2, 300, 3))
    c = rng.normal(size=(2, 400, 3))
    w = rng.random((2, 400))
    w[:, 100:200] = 0.0  # exactly the second centre block of each mixture
    for weights in (w, w[0]):
        local = infoflow.gaussian_lse(q, c, 0.4, weights=weights)
        lazy_w = da.from_array(weights, chunks=weights.shape)  # rechunked to the centres' blocks
        got = idist.gaussian_lse(da.from_array(q, chunks=(1, 120, 3)), da.from_array(c, chunks=(1, 100, 3)), 0.4,
                                 weights=lazy_w).compute()
        assert np.all(np.abs(got - local) <= _bound(local, 4, np.float64))
        density = idist.log_density(q, da.from_array(c, chunks=(2, 100, 3)), 0.4, weights=weights).compute()
        assert np.all(np.abs(density - infoflow.log_density(q, c, 0.4, weights=weights))
                      <= _bound(local, 4, np.float64) + 1e-14)


def test_dask_array_input_errors(client):
    q = da.zeros((10, 3), chunks=5)
    with pytest.raises(TypeError, match="queries: expected dtype float32 or float64"):
        idist.log_density(q.astype(np.int64), q, 1.0)
    with pytest.raises(TypeError, match="centers: expected a dask.array.Array or numpy.ndarray"):
        idist.log_density(q, [[0.0, 0.0, 0.0]], 1.0)
    with pytest.raises(TypeError, match="dtype float64 but centers has dtype float32"):
        idist.log_density(q, q.astype(np.float32), 1.0)
    with pytest.raises(ValueError, match="same dimension d"):
        idist.log_density(q, da.zeros((4, 2)), 1.0)
    with pytest.raises(ValueError, match="beta: must be finite and > 0"):
        idist.log_density(q, q, -1.0)
    with pytest.raises(ValueError, match=r"weights: expected shape \(10,\)"):
        idist.log_density(q, q, 1.0, weights=da.ones(9))
    bad = np.zeros((10, 3))
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="queries: contains NaN or infinity"):  # raised where the block runs
        idist.log_density(da.from_array(bad, chunks=5), q, 1.0).compute()
    with pytest.raises(ValueError, match="weights: must be >= 0"):
        idist.log_density(q, q, 1.0, weights=-da.ones(10)).compute()


# ---------------------------------------------------------------------------------------
# Estimates: the local draws, the kernel on the workers, the moments merged exactly
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"control_variate": False}, {"mc_samples": 3}],
                         ids=["control variate", "plain", "K=3"])
def test_mixture_entropy_equals_local(client, options):
    rng = np.random.default_rng(3)
    c = np.tanh(rng.normal(size=(3000, 5))).astype(np.float32)
    local = infoflow.mixture_entropy(c, 0.05, rng=7, **options)
    split = idist.mixture_entropy(c, 0.05, rng=7, client=client, queries_per_task=4096, **options)
    assert split.value == pytest.approx(local.value, rel=1e-14, abs=1e-14)
    assert split.stderr == pytest.approx(local.stderr, rel=1e-9, abs=1e-14)
    whole = idist.mixture_entropy(c, 0.05, rng=7, client=client, queries_per_task=WHOLE, **options)
    assert (whole.value, whole.stderr) == (local.value, local.stderr)


def test_batched_weighted_entropy_equals_local(client):
    """Many weighted mixtures (the iid design), split across tasks by mixture and by query."""
    rng = np.random.default_rng(4)
    c = rng.normal(size=(30, 50, 3))
    w = rng.random((30, 50))
    local = infoflow.mixture_entropy(c, 0.3, weights=w, rng=5, mc_queries=300)
    for per_task in (200, 1000):
        got = idist.mixture_entropy(c, 0.3, weights=w, rng=5, mc_queries=300, client=client,
                                    queries_per_task=per_task)
        np.testing.assert_allclose(got.value, local.value, rtol=1e-14)
        np.testing.assert_allclose(got.stderr, local.stderr, rtol=1e-9)


def test_information_flow_equals_local(client, torch):
    from infoflow.nn import NoisyMLP

    x, y = infoflow.datasets.szt()
    x, y = torch.from_numpy(x[::16]).double(), torch.from_numpy(y[::16])
    torch.manual_seed(0)
    model = NoisyMLP([12, 10, 7, 5, 4, 3, 2], activation="tanh", beta=0.05).double()
    options = dict(repeats=4, rng=0, mc_queries=4096)
    local = infoflow.information_flow(model, x, y, **options)
    split = idist.information_flow(model, x, y, client=client, queries_per_task=1024, **options)
    whole = idist.information_flow(model, x, y, client=client, queries_per_task=WHOLE, **options)
    for mine, theirs, same in zip(local, split, whole):
        assert (same.ixt, same.iyt, same.ixt_stderr, same.iyt_stderr) == (
            mine.ixt, mine.iyt, mine.ixt_stderr, mine.iyt_stderr)
        assert theirs.ixt == pytest.approx(mine.ixt, rel=1e-12) and theirs.iyt == pytest.approx(mine.iyt, abs=1e-12)
        assert theirs.ixt_stderr == pytest.approx(mine.ixt_stderr, rel=1e-8, abs=1e-15)
        assert theirs.ixt_convergence.values == pytest.approx(mine.ixt_convergence.values, rel=1e-12)


def test_estimate_client_errors(client):
    with pytest.raises(TypeError, match="client: expected a distributed.Client"):
        idist.mixture_entropy(np.zeros((4, 2)), 1.0, client="tcp://nowhere:1")
    with pytest.raises(ValueError, match="queries_per_task: must be >= 1"):
        idist.mixture_entropy(np.zeros((4, 2)), 1.0, client=client, queries_per_task=0)
    with pytest.raises(ValueError, match="centers: contains NaN"):  # validated on the client, before any task
        idist.mixture_entropy(np.full((4, 2), np.nan), 1.0, client=client)


# ---------------------------------------------------------------------------------------
# Sweeps
# ---------------------------------------------------------------------------------------

def test_sweep_rejects_bad_requests_before_starting(tmp_path, client):
    with pytest.raises(ValueError, match="experiment: sweeps run the experiments with seeds"):
        idist.sweep("convergence", tmp_path, client=client)
    with pytest.raises(TypeError, match="szt has no option 'bogus'"):
        idist.sweep("szt", tmp_path, client=client, bogus=1)
    with pytest.raises(ValueError, match="settings: 'a/b' is not a folder name"):
        idist.sweep("szt", tmp_path, client=client, settings={"a/b": {}})
    with pytest.raises(ValueError, match="client and workers: give at most one"):
        idist.sweep("szt", tmp_path, client=client, workers=2, **TINY)
    with pytest.raises(ValueError, match="runs_per_worker: must be >= 1"):
        idist.sweep("szt", tmp_path, client=client, runs_per_worker=0, **TINY)
    (tmp_path / "szt_config.json").write_text("mine")
    with pytest.raises(FileExistsError, match="szt_config.json"):
        idist.sweep("szt", tmp_path, client=client, **TINY)
    assert (tmp_path / "szt_config.json").read_text() == "mine"


def test_bad_scheduler_address_fails_fast(tmp_path, capsys):
    """Nothing listens on port 1: exit 2 within the connect timeout (5 s), one line naming
    the address; a malformed address at once."""
    for address, message in (("tcp://127.0.0.1:1", "cannot reach a Dask scheduler at 'tcp://127.0.0.1:1'"),
                             ("no-port-here", "'no-port-here' is not a Dask scheduler address")):
        started = time.perf_counter()
        code = cli.main(["reproduce", "szt", "--out", str(tmp_path / "out"), "--scheduler", address,
                         "--epochs", "1", "--points", "2"])
        seconds = time.perf_counter() - started
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and message in err, err
        assert seconds < 10
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_sweep_settings_write_each_folder(tmp_path, client):
    """Two settings, one seed each: each folder holds what a local run of that setting writes."""
    result = idist.sweep("szt", tmp_path, client=client, progress=False,
                         settings={"tanh": {"activation": "tanh"}, "relu": {"activation": "relu"}},
                         **{**TINY, "epochs": 1})
    assert set(result["settings"]) == {"tanh", "relu"} and not result["interrupted"]
    for name in ("tanh", "relu"):
        config = json.loads((tmp_path / name / "szt_config.json").read_text())
        assert config["activation"] == name and config["seed_label"] == "0"
    histories = [result["settings"][name]["history"] for name in ("tanh", "relu")]
    assert all(histories) and histories[0] != histories[1]


def test_ctrl_c_keeps_the_finished_runs(tmp_path, client):
    """SIGINT to the command mid-sweep (on the module's cluster, through --scheduler): exit
    130, every finished run's folder complete, the aggregate of exactly those runs."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "infoflow", "reproduce", "szt", "--seeds", "4", "--out", str(out),
               "--scheduler", client.scheduler.address, "--epochs", "2", "--points", "2", "--repeats", "2",
               "--max-centers", "1000", "--mc-samples", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("seed_*/szt_config.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    finished = [i for i in range(4) if (out / f"seed_{i}" / "szt_config.json").exists()]
    assert 1 <= len(finished) < 4, err
    for i in finished:
        assert sorted(p.name for p in (out / f"seed_{i}").iterdir()) == sorted(infoflow.experiments.szt.FILES)
    saved = json.loads((out / "szt_seeds.json").read_text())
    assert saved["runs"] == [f"seed_{i}" for i in finished] and saved["n_runs"] == len(finished)


def _compute_intervals(stream, word: str) -> list[tuple[float, float]]:
    """(start, stop) of each task of a task stream whose key holds ``word``, by start."""
    return sorted((part["start"], part["stop"]) for task in stream.data if word in str(task["key"])
                  for part in task["startstops"] if part["action"] == "compute")


def test_sweep_runs_a_run_per_worker_thread(tmp_path, two_thread_worker, local_two_seeds):
    """A worker with 2 threads runs 2 runs at once, each with the kernel on 1 thread and
    torch on 1; runs_per_worker=1 runs one at a time with the kernel on both.  Either way
    the files and values of the local run."""
    from distributed import get_task_stream

    with get_task_stream(two_thread_worker) as stream:
        result = idist.sweep("szt", tmp_path / "each", client=two_thread_worker, seeds=2, progress=False, **TINY)
    (a_start, a_stop), (b_start, b_stop) = _compute_intervals(stream, "seed_")
    assert b_start < a_stop, "the two runs did not run at the same time"
    for i in range(2):
        config = json.loads((tmp_path / "each" / f"seed_{i}" / "szt_config.json").read_text())
        assert (config["estimator_threads"], config["torch_threads"]) == (1, 1)
    assert_same_as_local(tmp_path / "each", local_two_seeds)
    assert [row["ixt_mean"] for row in result["history"]] == [row["ixt_mean"] for row in local_two_seeds[1]["history"]]

    with get_task_stream(two_thread_worker) as stream:
        idist.sweep("szt", tmp_path / "whole", client=two_thread_worker, seeds=2, runs_per_worker=1, progress=False,
                    **TINY)
    (a_start, a_stop), (b_start, b_stop) = _compute_intervals(stream, "seed_")
    assert b_start >= a_stop
    for i in range(2):
        config = json.loads((tmp_path / "whole" / f"seed_{i}" / "szt_config.json").read_text())
        assert (config["estimator_threads"], config["torch_threads"]) == (2, 1)
    assert_same_as_local(tmp_path / "whole", local_two_seeds)


def test_a_sweep_of_fewer_runs_than_threads_gives_them_the_rest(tmp_path, two_thread_worker):
    """One run on a worker of 2 threads: by default the run takes both for its kernel
    (the runs per worker are capped by the sweep's runs), not one of them."""
    idist.sweep("szt", tmp_path, client=two_thread_worker, seeds=1, progress=False, **TINY)
    config = json.loads((tmp_path / "szt_config.json").read_text())
    assert (config["estimator_threads"], config["torch_threads"]) == (2, 1)


def test_a_run_error_reaches_the_client_as_itself(two_thread_worker):
    """A run that raises in its run process: the same exception type and message on the
    client (not a bare failure of the process)."""
    from infoflow.distributed._sweep import _run_seed
    from infoflow.experiments.seeds import SeedPlan
    from infoflow.experiments.szt import FILES
    from infoflow.experiments.training import run_seeds

    root, torch_seed = run_seeds(0, 1)[0]
    plan = SeedPlan("szt", "szt", FILES, {"bogus_option": 1})
    future = two_thread_worker.submit(_run_seed, plan, root, torch_seed, "0", pure=False)
    with pytest.raises(TypeError, match="bogus_option"):
        future.result()


def test_run_slots_share_a_worker_threads(two_thread_worker):
    """On a worker with 2 threads: two runs hold a thread each at once; with
    runs_per_worker=1 a run holds both, as a kernel task does, so a second waits."""

    def hold(kind, runs):
        from infoflow.distributed import _cluster

        slot = _cluster.worker_slot() if kind == "kernel" else _cluster.run_slot(runs)
        with slot as threads:
            started = time.monotonic()
            time.sleep(0.5)
            return threads, started, time.monotonic()

    def together(first, second):
        a, b = (two_thread_worker.submit(hold, *how, pure=False) for how in (first, second))
        (ta, sa, ea), (tb, sb, eb) = a.result(), b.result()
        return (ta, tb), sa < eb and sb < ea

    assert together(("run", None), ("run", None)) == ((1, 1), True)
    assert together(("run", 1), ("run", 1)) == ((2, 2), False)
    assert together(("run", None), ("kernel", None)) == ((1, 2), False)


def _kill_a_busy_worker(client, killed: list, stop: threading.Event) -> None:
    """Wait until some worker has been running a sweep task for a moment, then SIGKILL its process."""
    pids = client.run(os.getpid)
    busy_since: dict[str, float] = {}
    while not stop.is_set():
        now = time.monotonic()
        for address, keys in client.processing().items():
            if any("seed_" in str(key) for key in keys):
                busy_since.setdefault(address, now)
                if now - busy_since[address] > 1.0 and address in pids:
                    os.kill(pids[address], signal.SIGKILL)
                    killed.append(address)
                    return
            else:
                busy_since.pop(address, None)
        time.sleep(0.1)


def test_sweep_survives_a_killed_worker_and_equals_local(tmp_path, client, local_two_seeds):
    """Two seeds on two workers; one worker process is killed in the middle of a run.
    Dask runs that seed again; every run's folder and the aggregate are complete and hold
    the values of a local --seeds 2 run."""
    killed: list = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_busy_worker, args=(client, killed, stop), daemon=True)
    killer.start()
    try:
        result = idist.sweep("szt", tmp_path / "dask", client=client, seeds=2, progress=False, **TINY)
    finally:
        stop.set()
        killer.join(10)
    assert killed, "no worker was killed: the test did not test recovery"
    assert not result["interrupted"] and result["runs_done"] == 2
    assert_same_as_local(tmp_path / "dask", local_two_seeds)
    local = local_two_seeds[1]
    assert json.loads((tmp_path / "dask" / "szt_seeds.json").read_text())["runs"] == ["seed_0", "seed_1"]
    assert [row["ixt_mean"] for row in result["history"]] == [row["ixt_mean"] for row in local["history"]]
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker


def test_local_cluster_runs_dask_monitoring_at_long_intervals():
    # Against Dask's own defaults (20 ms ticks, a 10 ms profiler), read where they act: the
    # scheduler's and workers' periodic callbacks; the caller's configuration is untouched.
    import dask

    before = dask.config.get("distributed.admin.tick.interval")
    with idist.local_cluster(1, threads_per_worker=1) as dask_client:
        workers = dask_client.run(lambda dask_worker: {"tick": dask_worker.periodic_callbacks["tick"].callback_time,
                                                       "profile": "profile" in dask_worker.periodic_callbacks})
        scheduler = dask_client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.periodic_callbacks["tick"].callback_time)
    assert list(workers.values()) == [{"tick": 500, "profile": False}]
    assert scheduler == 500
    assert dask.config.get("distributed.admin.tick.interval") == before


def test_cli_workers_runs_binning_on_a_local_cluster(tmp_path, capsys):
    """--workers K starts (and closes) a LocalCluster of its own; the binning experiment's
    run comes back with the files and values of the local command."""
    options = ["--epochs", "1", "--points", "2", "--repeats", "2", "--max-halvings", "3", "--mc-samples", "2"]
    assert cli.main(["reproduce", "binning", "--out", str(tmp_path / "dask"), "--workers", "1", *options]) == 0
    assert cli.main(["reproduce", "binning", "--out", str(tmp_path / "local"), *options]) == 0
    capsys.readouterr()
    names = sorted(p.name for p in (tmp_path / "dask").iterdir())
    assert names == sorted(infoflow.experiments.binning.FILES)
    for name in ("binning_over_epochs.csv", "binning_vs_bin_size.csv"):
        assert read_csv(tmp_path / "dask" / name) == read_csv(tmp_path / "local" / name)
