"""Outputs that check themselves and verdicts that refuse to guess.

A NetCDF solution carries a SHA-256 per variable: a truncated or bit-flipped file is refused on
load instead of reading back as zeros; hostile models (sys.exit, overflowing or in-place-writing
models) fail validation instead of passing with exit 0; `wellposed` refuses a tolerance or a
refinement that cannot support its verdict.
"""

import os
import sys

import numpy as np
import pytest

import mfgpde as mp
from mfgpde import cli
from mfgpde.validate.models import CheckedModel, ModelError, load_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    g = mp.TensorGrid([(0, 1)], 40, "periodic")
    p = mp.MFGProblem(g, 1.0, 16, 0.1, mp.QuadraticHamiltonian(), lambda x: 1 + 0.5 * np.cos(2 * np.pi * x),
                      coupling=mp.LogCoupling())
    r = mp.solve(p, tol=1e-10)
    path = tmp_path_factory.mktemp("nc") / "s.nc"
    r.save(path)
    return r, path


def test_saved_solution_loads_verified(saved):
    r, path = saved
    ds = mp.MFGResult.load_dataset(path)
    assert np.array_equal(ds["m"].values, r.m) and np.array_equal(ds["U"].values, r.U)
    assert len(ds["m"].attrs["mfgpde_sha256"]) == 64


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file_is_refused(saved, tmp_path, fraction):
    _, path = saved
    data = open(path, "rb").read()
    cut = tmp_path / "cut.nc"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        mp.MFGResult.load_dataset(cut)


def test_flipped_byte_in_the_data_is_refused(saved, tmp_path):
    r, path = saved
    data = bytearray(open(path, "rb").read())
    # flip a byte inside the stored density values (find its float64 big-endian bytes)
    needle = np.asarray(r.m.ravel()[len(r.m.ravel()) // 2], ">f8").tobytes()
    at = bytes(data).find(needle)
    assert at > 0
    data[at + 3] ^= 0x10
    bad = tmp_path / "flip.nc"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="variable 'm' differ from what was written"):
        mp.MFGResult.load_dataset(bad)


def test_a_file_without_checksums_still_loads(saved, tmp_path):
    import xarray as xr

    r, _ = saved
    plain = tmp_path / "plain.nc"
    xr.Dataset({"m": (("t", "x"), r.m)}).to_netcdf(plain, engine="scipy")
    assert np.array_equal(mp.MFGResult.load_dataset(plain)["m"].values, r.m)


# ------------------------------------------------------------------ hostile models
def _checked(fn):
    return CheckedModel(fn, "velocity", 1, name="m")


def test_sys_exit_in_a_model_call_is_a_model_error():
    def exits(x, t):
        sys.exit(0)

    with pytest.raises(ModelError, match=r"called sys.exit\(0\)"):
        _checked(exits)(np.zeros((3, 1)), 0.0)


def test_overflowing_model_is_refused():
    with pytest.raises(ModelError, match="would overflow to infinity"):
        _checked(lambda x, t: 1e300 * (x + 1))(np.ones((3, 1)), 0.0)


def test_a_model_that_writes_into_its_input_cannot_change_the_grid_points():
    def vandal(x, t):
        x *= 2.0
        return x

    pts = np.linspace(0, 1, 5)[:, None]
    before = pts.copy()
    out = _checked(vandal)(pts, 0.0)
    assert np.array_equal(pts, before) and np.allclose(out, 2 * before)
    assert np.allclose(_checked(vandal)(pts, 0.0), 2 * before)  # the same answer the second time


def test_complex_output_is_refused():
    with pytest.raises(ModelError, match="expected a real floating-point array"):
        _checked(lambda x, t: x.astype(complex))(np.ones((3, 1)), 0.0)


@pytest.mark.parametrize("where", ["import", "factory"])
def test_sys_exit_at_import_or_in_a_factory_is_refused(where, tmp_path, monkeypatch):
    mod = tmp_path / f"exiting_{where}.py"
    body = "import sys\n" + ("sys.exit(0)\n" if where == "import" else "def make_net():\n    sys.exit(3)\n")
    mod.write_text(body)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"called sys.exit\((0|3)\)"):
        load_model(f"exiting_{where}:" + ("f" if where == "import" else "make_net"))


def test_validate_cli_with_an_exiting_model_exits_non_zero(tmp_path, monkeypatch, capsys, small_c1_config):
    (tmp_path / "quitter.py").write_text("import sys\ndef v(x, t):\n    sys.exit(0)\n")
    monkeypatch.chdir(tmp_path)
    cfg = small_c1_config
    rc = cli.main(["validate", str(cfg), "--model", "quitter:v", "--out", str(tmp_path / "o")])
    assert rc == 3 and "sys.exit" in capsys.readouterr().err


# ------------------------------------------------------------------ wellposed settings
@pytest.mark.parametrize("extra, message", [
    (["--tol", "inf"], r"--tol must be in \(0, 1e-06\]"),
    (["--tol", "1e-3"], r"--tol must be in \(0, 1e-06\]"),
    (["--refine", "50"], "at least two grid sizes, each twice the one before"),
    (["--refine", "100", "50"], "at least two grid sizes, each twice the one before"),
    (["--refine", "50", "120"], "at least two grid sizes, each twice the one before"),
    (["--refine", "abc", "20"], "expects integer grid sizes"),
    (["--starts", "1"], "--starts must be >= 2"),
    (["--lambdas", "1", "0"], "--lambdas must be positive"),
    (["--lambdas", "-0.1"], "--lambdas must be positive"),
    (["--time-limit", "0"], "--time-limit must be a positive number"),
    (["--time-limit", "nan"], "--time-limit must be a positive number"),
    (["--workers", "0"], "--workers must be an integer >= 1"),
])
def test_wellposed_refuses_settings_that_cannot_support_a_verdict(extra, message, tmp_path, capsys):
    rc = cli.main(["wellposed", os.path.join(ROOT, "solvers", "lst_case1.toml"), "--out", str(tmp_path / "w")]
                  + extra)
    err = capsys.readouterr().err
    assert rc == 1 and __import__("re").search(message, err), err
    assert not (tmp_path / "w").exists()


def test_a_failed_rerun_with_a_bad_configuration_marks_the_folder(tmp_path):
    """`solve` over a converged folder with nu = -1: the old solution must not stand there unmarked."""
    import json

    src = open(os.path.join(ROOT, "solvers", "lst_case1.toml")).read().replace("shape = 200", "shape = 40")
    good = tmp_path / "good.toml"
    good.write_text(src.replace("nt = 200", "nt = 20"))
    out = tmp_path / "o"
    assert cli.main(["solve", str(good), "--out", str(out), "--no-plot"]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace("nu = 0.05", "nu = -1.0"))
    assert "nu = -1.0" in bad.read_text()
    assert cli.main(["solve", str(bad), "--out", str(out)]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "error" and "nu" in summary["error"]
    assert sorted(os.listdir(out)) == ["summary.json"]


@pytest.mark.parametrize("where", ["import", "factory"])
def test_model_timeout_covers_import_and_factory(where, tmp_path, monkeypatch, capsys):
    """A module or a make_* factory that hangs is stopped by --model-timeout (exit 3) before the
    reference is solved; the default limit is finite (600 s), so nothing waits forever."""
    name = f"sleepy_{where}"
    body = ("import time\ntime.sleep(30)\ndef v(x, t):\n    return x\n" if where == "import"
            else "import time\ndef make_v():\n    time.sleep(30)\n")
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.chdir(tmp_path)
    spec = f"{name}:" + ("v" if where == "import" else "make_v")
    rc = cli.main(["validate", os.path.join(ROOT, "solvers", "cnf_gaussian_1d.toml"), "--model", spec,
                   "--out", str(tmp_path / "o"), "--model-timeout", "0.5"])
    err = capsys.readouterr().err
    assert rc == 3 and "took longer than the timeout of 0.5 s" in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ["inf", "1e20", "0", "-1", "nan"])
def test_model_timeout_out_of_range_is_refused(value, capsys):
    rc = cli.main(["validate", os.path.join(ROOT, "solvers", "cnf_gaussian_1d.toml"), "--model", "x:y",
                   "--out", "/nonexistent/o", "--model-timeout", value])
    err = capsys.readouterr().err
    assert rc == 1 and "--model-timeout must be in (0, 86400]" in err and "Traceback" not in err, err
