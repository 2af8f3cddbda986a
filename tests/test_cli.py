"""The CLI writes the solution, a plot and summary.json; bad configurations fail clearly."""

import json
import os

import numpy as np
import pytest

import mfgpde as mp
from mfgpde import cli, config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLVERS = os.path.join(ROOT, "solvers")




def _write_toml(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("name", ["lq_gaussian.toml", "lst_case1.toml", "lst_case2.toml", "cnf_gaussian_1d.toml",
                                  "cnf_gmm8_2d.toml", "score_mfg_2d.toml"])
def test_shipped_configurations_build(name):
    """The built problem is the one the file describes: grid, horizon, steps, diffusion, a
    nonnegative initial density of positive mass."""
    import tomllib

    with open(os.path.join(SOLVERS, name), "rb") as fh:
        raw = tomllib.load(fh)
    p = config.build_problem(os.path.join(SOLVERS, name))
    shape = raw["grid"]["shape"]
    shape = shape if isinstance(shape, list) else [shape] * len(raw["grid"]["bounds"])
    assert p.grid.shape == tuple(shape)
    assert [tuple(b) for b in p.grid.bounds] == [tuple(b) for b in raw["grid"]["bounds"]]
    assert p.nt == raw["time"]["nt"] and p.T == raw["time"].get("T", 1.0)
    if raw.get("preset") == "cnf":
        assert p.nu == 0.0                          # the CNF is first order
    elif "nu" in raw.get("model", {}):
        assert p.nu == raw["model"]["nu"]
    m0 = np.asarray(p.m0)
    assert np.all(np.isfinite(m0)) and m0.min() >= 0 and p.grid.integrate(m0) > 0


def test_cli_solve_writes_outputs(tmp_path):
    out = tmp_path / "out"
    rc = cli.main(["solve", os.path.join(SOLVERS, "lst_case1.toml"), "--out", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("converged", "iterations", "residual", "mass_error", "min_density", "wall_time_s"):
        assert key in summary
    assert summary["converged"] and summary["residual"] <= 1e-10 and summary["mass_error"] < 1e-12
    assert (out / "solution.png").stat().st_size > 10_000
    import xarray as xr

    with xr.open_dataset(out / "solution.nc") as ds:
        assert ds["m"].shape == (201, 200)
        assert "mfgpde_problem" in ds.attrs
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


_SMALL = """
[grid]
bounds = [[0, 1]]
shape = {shape}
[time]
T = 1.0
nt = 4
[model]
nu = 0.1
[m0]
expr = "{m0}"
"""


def test_cli_bad_config_is_reported(tmp_path, capsys):
    bad = _write_toml(tmp_path / "bad.toml", _SMALL.format(shape=2, m0="1 + 0 * x"))
    rc = cli.main(["solve", bad, "--out", str(tmp_path / "o")])
    assert rc == 1
    assert "too coarse" in capsys.readouterr().err
    bad2 = _write_toml(tmp_path / "bad2.toml", _SMALL.format(shape=20, m0="1 + os.system('x')"))
    assert cli.main(["solve", bad2, "--out", str(tmp_path / "o")]) == 1
    assert "unknown name(s)" in capsys.readouterr().err
    assert cli.main(["solve", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_ergodic_config(tmp_path):
    path = _write_toml(tmp_path / "erg.toml", """
kind = "ergodic"
[grid]
bounds = [[0, 1]]
shape = 64
boundary = "periodic"
[model]
nu = 0.3
[[coupling]]
type = "log"
[[coupling]]
type = "potential"
expr = "cos(2 * pi * x)"
""")
    out = tmp_path / "o"
    assert cli.main(["solve", path, "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["converged"] and s["mass_error"] < 1e-12
    ref = mp.solve(config.build_problem(path), tol=1e-10)      # the same problem through the API
    assert abs(s["rho"] - ref.rho) < 1e-8, (s["rho"], ref.rho)
    assert abs(s["rho"]) > 1e-3                                 # a constant that was computed, not a default


@pytest.mark.parametrize("edit, message", [
    (("nu = 0.1", "nuu = 0.1"), r"[model] unknown key 'nuu'; did you mean 'nu'?"),
    (("shape = 20", "shap = 20"), r"[grid] unknown key 'shap'; did you mean 'shape'?"),
    (("nt = 4", "NT = 4"), r"[time] unknown key 'NT'; did you mean 'nt'?"),
    (("[grid]", "normalise_m0 = true\n[grid]"), r"[top level] unknown key 'normalise_m0'; did you mean 'normalize_m0'?"),
    (("[model]", "[modle]"), r"[top level] unknown key 'modle'; did you mean 'model'?"),
    (("[grid]", "kind = \"ergodc\"\n[grid]"), r"kind = 'ergodc' is unknown"),
    (("[grid]", "normalize_m0 = \"no\"\n[grid]"), r"normalize_m0 must be true or false, got 'no'"),
    (("[m0]", "[[coupling]]\ntype = \"log\"\nscal = 2.0\n[m0]"), r"[coupling[0]] unknown key 'scal'; did you mean 'scale'?"),
    (("[m0]", "[solver]\nlinear_solver = \"direct\"\nmax_itr = 3\n[m0]"), r"[solver] unknown key 'max_itr'; did you mean 'max_iter'?"),
])
def test_cli_misspelt_keys_are_refused_with_a_suggestion(tmp_path, capsys, edit, message):
    """A misspelt key used to be ignored (its default silently used); now it is named, with the nearest valid key."""
    text = _SMALL.format(shape=20, m0="1 + 0 * x").replace(*edit, 1)
    path = _write_toml(tmp_path / "bad.toml", text)
    assert cli.main(["solve", path, "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("m0, message", [
    ("1 / 0 + x", "evaluating '1 / 0 + x' on the grid failed: ZeroDivisionError"),
    ("x[1000] + 1", "evaluating 'x[1000] + 1' on the grid failed: IndexError"),
    ("1 + y", "uses ['y'] but the grid has 1 axis(es) (x)"),
    ("log(x - 0.5)", "m0: values on the grid must be finite"),
])
def test_cli_expression_errors_are_messages(tmp_path, capsys, m0, message):
    """Expressions that fail or warn on the grid give one line naming the key, not a traceback."""
    path = _write_toml(tmp_path / "bad.toml", _SMALL.format(shape=20, m0=m0))
    assert cli.main(["solve", path, "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "__import__" not in err


def test_guarded_expression_with_a_floating_point_warning_solves(tmp_path):
    """``where(x > 0.5, 1/(x - 0.025), 0)`` divides by zero at the cell x = 0.025, where the value
    is not used: a valid expression, solved (it used to end in KeyError: '__import__')."""
    text = _SMALL.format(shape=20, m0="1 + 0 * x") + """
[terminal]
type = "potential"
expr = "where(x > 0.5, 1 / (x - 0.025), 0)"
"""
    path = _write_toml(tmp_path / "ok.toml", text)
    assert cli.main(["solve", path, "--out", str(tmp_path / "o"), "--no-plot"]) == 0


def _small_lq(tmp_path):
    src = open(os.path.join(SOLVERS, "lst_case1.toml")).read().replace("shape = 200", "shape = 40")
    return _write_toml(tmp_path / "small.toml", src.replace("nt = 200", "nt = 20"))


def test_solve_output_folder_is_replaced_as_a_whole(tmp_path, monkeypatch):
    """A rerun with --no-plot removes the earlier plot; a failed rerun leaves a summary that
    says it failed and no solution of the earlier run beside it."""
    import importlib

    solve_mod = importlib.import_module("mfgpde.solver")

    cfg, out = _small_lq(tmp_path), tmp_path / "out"
    assert cli.main(["solve", cfg, "--out", str(out)]) == 0
    assert {"solution.nc", "solution.png", "summary.json"} <= set(os.listdir(out))
    assert cli.main(["solve", cfg, "--out", str(out), "--no-plot"]) == 0
    assert set(os.listdir(out)) == {"solution.nc", "summary.json"}

    def diverging(*a, **k):
        raise FloatingPointError("newton: the HJB residual became non-finite at iteration 3")

    monkeypatch.setattr(solve_mod, "solve", diverging)
    assert cli.main(["solve", cfg, "--out", str(out)]) == 1
    assert set(os.listdir(out)) == {"summary.json"}
    s = json.loads((out / "summary.json").read_text())
    assert s["converged"] is False and "non-finite at iteration 3" in s["error"]


@pytest.mark.parametrize("make_out, message", [
    (lambda p: p.joinpath("afile").write_text("x") and p / "afile", "exists and is not a folder"),
    (lambda p: p.joinpath("afile").write_text("x") and p / "afile" / "sub", "is not a folder"),
])
def test_unwritable_out_is_refused_before_solving(make_out, message, tmp_path, capsys, monkeypatch):
    import importlib

    solve_mod = importlib.import_module("mfgpde.solver")

    monkeypatch.setattr(solve_mod, "solve", lambda *a, **k: pytest.fail("solved before checking --out"))
    assert cli.main(["solve", _small_lq(tmp_path), "--out", str(make_out(tmp_path))]) == 1
    assert message in capsys.readouterr().err
