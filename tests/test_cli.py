"""The command line, as a user runs it."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from reference import kt_bounds_reference

from infoflow import cli


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "infoflow", *args], capture_output=True, text=True, timeout=300)


def strict_json(text):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def assert_user_error(result, *fragments):
    err = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("infoflow "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_demo_runs_and_reports_estimate_bounds_and_limits():
    result = run_cli("entropy", "--demo")
    assert result.returncode == 0, result.stderr
    assert "built-in demo" in result.stdout and "nats" in result.stdout
    assert "Kolchinsky-Tracey bounds" in result.stdout and "h_Z + ln n" in result.stdout


def test_demo_json_is_consistent():
    result = run_cli("entropy", "--demo", "--json", "--beta", "0.6")
    data = json.loads(result.stdout)
    assert data["n"] == 4096 and data["d"] == 12 and data["unit"] == "nats"
    assert data["noise_entropy"] <= data["lower_bound"] <= data["upper_bound"] <= data["noise_entropy_plus_log_n"]
    assert data["lower_bound"] - 4 * data["stderr"] <= data["entropy"] <= data["upper_bound"] + 4 * data["stderr"]


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
def test_file_formats(tmp_path, suffix):
    samples = np.random.default_rng(0).uniform(-1, 1, (300, 3))
    path = tmp_path / f"samples{suffix}"
    if suffix == ".npy":
        np.save(path, samples)
    elif suffix == ".npz":
        np.savez(path, layer1=samples)
    else:
        np.savetxt(path, samples, delimiter=",", header="a,b,c", comments="")
    result = run_cli("entropy", str(path), "--beta", "0.1", "--json", "--base", "2", "--mc-samples", "20")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    lower, upper = kt_bounds_reference(samples, 0.1)
    assert data["unit"] == "bits" and data["mc_samples"] == 20
    assert data["lower_bound"] == pytest.approx(lower / math.log(2), rel=1e-9)
    assert data["upper_bound"] == pytest.approx(upper / math.log(2), rel=1e-9)


def test_errors_are_reported_not_raised(tmp_path):
    missing = run_cli("entropy", str(tmp_path / "nope.npy"), "--beta", "0.1")
    assert missing.returncode == 2 and "No such file" in missing.stderr
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((5, 2)))
    bad_beta = run_cli("entropy", str(path), "--beta", "-1")
    assert bad_beta.returncode == 2 and "beta: must be finite and > 0" in bad_beta.stderr
    no_beta = run_cli("entropy", str(path))
    assert no_beta.returncode == 2 and "--beta is required" in no_beta.stderr


def test_info_prints_build_facts(capsys):
    assert cli.main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "simd_runtime" in info and "cuda_built" in info


@pytest.mark.parametrize("args, message", [
    (["--protocol", "official", "--points", "3"], "n_points: the official protocol"),
    (["--seeds", "0"], "seeds: "),
    (["--seed", "-1"], "seed"),
])
def test_reproduce_szt_user_errors_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    pytest.importorskip("torch")
    code = cli.main(["reproduce", "szt", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


# ---------------------------------------------------------------------------------------
# reproduce: no silent overwriting
# ---------------------------------------------------------------------------------------

def test_reproduce_refuses_to_overwrite_before_training(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "szt_config.json").write_text('{"mine": true}')
    (tmp_path / "szt_training.csv").write_text("mine\n")
    result = run_cli("reproduce", "szt", "--out", str(tmp_path), "--epochs", "1", "--points", "2", "--repeats", "2")
    assert_user_error(result, "szt_config.json", "szt_training.csv", "--overwrite")
    assert (tmp_path / "szt_config.json").read_text() == '{"mine": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["szt_config.json", "szt_training.csv"]


CONVERGENCE = ["--dims", "1", "--n-min", "2", "--n-max", "4", "--repeats", "1", "--mc-samples", "2"]


def test_reproduce_overwrite_replaces(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    (tmp_path / "convergence.json").write_text('{"mine": true}')
    args = ["reproduce", "convergence", "--out", str(tmp_path), *CONVERGENCE]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "convergence.json" in err and "--overwrite" in err, err
    assert (tmp_path / "convergence.json").read_text() == '{"mine": true}'
    assert cli.main([*args, "--overwrite"]) == 0
    saved = strict_json((tmp_path / "convergence.json").read_text())
    assert saved["config"]["n"] == [2, 4] and saved["interrupted"] is False


# ---------------------------------------------------------------------------------------
# entropy: user errors are one line on stderr, exit code 2, no traceback
# ---------------------------------------------------------------------------------------

# The bad files that are text: file name -> (content, a fragment of the error).
BAD_TEXT = {
    "empty.csv": ("", "no samples"),
    "header-only.csv": ("a,b,c\n", "no samples"),
    "nan.csv": ("1,2\n3,nan\n", "nan.csv: sample 2 of 2 holds NaN"),
    "text.npy": ("1,2\n3,4\n", "not a .npy file"),
}


def bad_file(tmp_path, kind):
    """A file of samples that a user could plausibly give by mistake, and a fragment of the error."""
    path = tmp_path / kind
    if kind in BAD_TEXT:
        text, fragment = BAD_TEXT[kind]
        path.write_text(text)
        return path, fragment
    if kind == "truncated.npz":
        full = tmp_path / "full.npz"
        np.savez(full, x=np.zeros((100, 3)))
        path.write_bytes(full.read_bytes()[:200])
        return path, "truncated.npz"
    np.save(path, np.zeros((2, 3, 4)) if kind == "3d.npy" else np.array(1.5))
    return path, "shape"


@pytest.mark.parametrize("kind", ["empty.csv", "header-only.csv", "nan.csv", "truncated.npz", "text.npy", "3d.npy",
                                  "0d.npy"])
def test_unreadable_or_misshapen_files_are_one_line_errors(tmp_path, kind):
    path, fragment = bad_file(tmp_path, kind)
    assert_user_error(run_cli("entropy", str(path), "--beta", "0.1", "--mc-samples", "2"), fragment)


def test_no_file_is_a_one_line_error():
    assert_user_error(run_cli("entropy", "--beta", "0.1"), "FILE")
    assert_user_error(run_cli("entropy"), "--beta")


def csv_result(tmp_path, text, *args):
    path = tmp_path / "samples.csv"
    path.write_text(text)
    return run_cli("entropy", str(path), "--beta", "0.3", "--json", "--mc-samples", "2", *args)


@pytest.mark.parametrize("text, where", [
    ("1,2,3\n4,5\n", "line 2"),               # ragged: used to read n = 1, the first row taken as a header
    ("a,b,c\n1,2,3\n4,5\n", "line 3"),
    ("1,2\n3,4\n5,6,7\n", "line 3"),
    ("x,y\n1,2\n3,oops\n", "line 3"),
    ("1,2x,3\n4,5,6\n", "line 1, value 2"),    # a typo in the first row is not a header
    ("1,2,\n3,4,\n", "line 1, value 3: is empty"),
])
def test_csv_ragged_or_non_numeric_rows_are_errors_naming_the_line(tmp_path, text, where):
    assert_user_error(csv_result(tmp_path, text), "samples.csv", where)


@pytest.mark.parametrize("text", [
    "1,2,3\n4,5,6\n-1,0.5,2e-3\n",
    "a,b,c\n1,2,3\n4,5,6\n-1,0.5,2e-3\n",
    "\ufeff\"col a\",\"col b\",c\n1,2,3\n4,5,6\n-1,0.5,2e-3\n\n",
    "# a, b, c\n1, 2, 3\n4,5,6\n\n-1 ,0.5,2e-3\n",
])
def test_csv_header_only_when_the_first_row_is_not_numeric(tmp_path, text):
    samples = np.array([[1, 2, 3], [4, 5, 6], [-1, 0.5, 2e-3]])
    result = csv_result(tmp_path, text)
    assert result.returncode == 0, result.stderr
    data = strict_json(result.stdout)
    assert (data["n"], data["d"]) == (3, 3)
    lower, upper = kt_bounds_reference(samples, 0.3)
    assert data["lower_bound"] == pytest.approx(lower, rel=1e-12)
    assert data["upper_bound"] == pytest.approx(upper, rel=1e-12)


def test_mc_samples_zero_is_an_error_naming_the_option():
    assert_user_error(run_cli("entropy", "--demo", "--mc-samples", "0"), "--mc-samples", ">= 1")


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_key_applies_to_npz_only(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    if suffix == ".npy":
        np.save(path, np.zeros((4, 2)))
    else:
        path.write_text("1,2\n3,4\n")
    assert_user_error(run_cli("entropy", str(path), "--beta", "0.1", "--key", "layer1"), "--key", ".npz")
    assert_user_error(run_cli("entropy", "--demo", "--key", "layer1"), "--key", ".npz")


@pytest.mark.parametrize("dtype", ["float16", ">f8", ">f4", "<f4"])
def test_float16_and_big_endian_files_are_read(tmp_path, dtype):
    samples = np.random.default_rng(1).uniform(-1, 1, (50, 2)).astype(dtype)
    path = tmp_path / "x.npy"
    np.save(path, samples)
    result = run_cli("entropy", str(path), "--beta", "0.2", "--json", "--mc-samples", "2")
    assert result.returncode == 0, result.stderr
    data = strict_json(result.stdout)
    lower, upper = kt_bounds_reference(samples.astype(np.float64), 0.2)
    # float16 becomes float64 (exact); float32 stays float32, so its bounds carry float32 rounding.
    tolerance = 1e-5 if np.dtype(dtype).itemsize == 4 else 1e-12
    assert data["n"] == 50 and data["lower_bound"] == pytest.approx(lower, rel=tolerance)
    assert data["upper_bound"] == pytest.approx(upper, rel=tolerance)


# ---------------------------------------------------------------------------------------
# --json is always valid JSON
# ---------------------------------------------------------------------------------------

def test_json_huge_beta_is_valid_json():
    result = run_cli("entropy", "--demo", "--json", "--beta", "1e200", "--mc-samples", "1")
    assert result.returncode == 0, result.stderr
    data = strict_json(result.stdout)
    assert data["beta"] == 1e200 and (data["n"], data["d"]) == (4096, 12)
    # h_Z = d/2 ln(2 pi e beta^2) is finite; null until the numerics stop overflowing beta^2.
    h_z = 12 * (0.5 * math.log(2 * math.pi * math.e) + math.log(1e200))
    assert data["noise_entropy"] is None or data["noise_entropy"] == pytest.approx(h_z, rel=1e-12)
    for key in ("entropy", "stderr", "lower_bound", "upper_bound", "noise_entropy_plus_log_n"):
        assert data[key] is None or math.isfinite(data[key])


def test_json_one_center_one_draw_has_null_stderr(tmp_path):
    result = csv_result(tmp_path, "0.5,1\n", "--mc-samples", "1")  # the last --mc-samples counts
    assert result.returncode == 0, result.stderr
    data = strict_json(result.stdout)
    h_z = 0.5 * 2 * math.log(2 * math.pi * math.e * 0.3**2)  # one centre: the mixture is one Gaussian
    assert (data["n"], data["d"], data["mc_queries"]) == (1, 2, 1)
    assert data["noise_entropy"] == data["lower_bound"] == data["upper_bound"] == pytest.approx(h_z, rel=1e-12)
    assert data["noise_entropy_plus_log_n"] == pytest.approx(h_z, rel=1e-12)
    assert data["stderr"] is None or data["stderr"] == 0  # undefined from one draw
    assert math.isfinite(data["entropy"])


# ---------------------------------------------------------------------------------------
# Help text and labels
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--help"], ["entropy", "--help"], ["reproduce", "--help"],
                                  ["reproduce", "szt", "--help"], ["reproduce", "single-neuron", "--help"]])
def test_help_is_plain_text(args):
    result = run_cli(*args)
    assert result.returncode == 0 and "usage: infoflow" in result.stdout
    assert "``" not in result.stdout and ":math:" not in result.stdout and ":func:" not in result.stdout


@pytest.mark.parametrize("base, label", [("2", "h_Z + log2 n"), ("10", "h_Z + log10 n"), ("3", "h_Z + log_3 n")])
def test_ceiling_label_names_the_base(base, label):
    result = run_cli("entropy", "--demo", "--base", base, "--mc-samples", "1")
    assert result.returncode == 0, result.stderr
    assert label in result.stdout and "ln n" not in result.stdout


# ---------------------------------------------------------------------------------------
# reproduce: an interrupted run exits 130
# ---------------------------------------------------------------------------------------

def test_interrupted_reproduce_writes_results_and_exits_130(tmp_path, interrupt_at_call, capsys):
    pytest.importorskip("matplotlib")
    from infoflow.experiments import convergence as cv

    interrupt_at_call(cv, "_trial", 2)
    code = cli.main(["reproduce", "convergence", "--out", str(tmp_path), *CONVERGENCE])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130
    assert "interrupted" in err[-1] and str(tmp_path) in err[-1]
    saved = strict_json((tmp_path / "convergence.json").read_text())
    assert saved["interrupted"] is True and [row["n"] for row in saved["rows"]] == [2]
