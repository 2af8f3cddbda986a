"""Parameter sweeps: serial and under mpiexec -n 2, failed members reported, bad parameters refused."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from mfgpde import cli
from mfgpde.config import ConfigError
from mfgpde.parallel.sweep import parse_params, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(ROOT, "solvers", "lst_case1.toml")
PARAMS = ["model.nu=0.05,0.1,-1.0", "grid.shape=50"]


def test_serial_sweep_reports_every_member(tmp_path, caplog):
    caplog.set_level("INFO", logger="mfgpde")
    table = sweep(CFG, parse_params(PARAMS), str(tmp_path))
    # progress: one record per member, with how it ended and the time left until the last
    lines = [r.getMessage() for r in caplog.records if r.name == "mfgpde.parallel.sweep"]
    assert [line.split(" (")[0] for line in lines] == ["sweep: 1 of 3", "sweep: 2 of 3", "sweep: 3 of 3"]
    assert "member 2: error" in lines[2] and "s left" in lines[0] and "left" not in lines[2]
    assert len(table) == 3
    ok = [r for r in table if r["status"] == "converged"]
    bad = [r for r in table if r["status"] == "error"]
    assert len(ok) == 2 and len(bad) == 1
    assert "nu (diffusion) must be finite and >= 0" in bad[0]["message"]
    assert (tmp_path / "sweep.csv").read_text().count("\n") == 4


def test_sweep_refuses_unknown_parameter(tmp_path):
    with pytest.raises(ConfigError, match=r"parameter 'model\.viscosity' does not exist"):
        sweep(CFG, parse_params(["model.viscosity=1,2"]), str(tmp_path))
    assert cli.main(["sweep", CFG, "--param", "model.viscosity=1", "--out", str(tmp_path / "x")]) == 1


def _mpiexec():
    cand = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return cand if os.path.exists(cand) else shutil.which("mpiexec")


@pytest.mark.mpi
def test_sweep_under_mpiexec_matches_serial(tmp_path):
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip("mpiexec not found (install the mpich wheel: pip install mpich)")
    out = tmp_path / "mpi"
    cmd = [mpiexec, "-n", "2", sys.executable, "-m", "mfgpde", "sweep", CFG, "--out", str(out)]
    for p in PARAMS:
        cmd += ["--param", p]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr          # one member (nu = -1) fails: not every one converged
    data = json.loads((out / "sweep.json").read_text())
    assert data["ranks"] == 2
    rows = data["members"]
    assert sorted(r["rank"] for r in rows) == [0, 0, 1]
    serial = sweep(CFG, parse_params(PARAMS), str(tmp_path / "serial"))
    for a, b in zip(rows, serial):
        assert a["status"] == b["status"]
        if a["status"] == "converged":
            assert a["iterations"] == b["iterations"]
            # the same solutions, compared on solution functionals (not on residuals, which any
            # converged solve has below tol)
            for key in ("U_rms", "m_rms", "m_final_mean"):
                assert abs(a[key] - b[key]) <= 1e-12 * abs(b[key]), key
    assert rows[0]["U_rms"] != rows[1]["U_rms"]       # and the functionals do tell members apart


def test_sweep_exit_codes_and_repeated_parameters(tmp_path, capsys):
    """Exit 1 when no member converged, 2 when some did not; a --param given twice is refused
    (only the last used to count); true/false are TOML booleans."""
    assert parse_params(["normalize_m0=false,true"]) == [("normalize_m0", [False, True])]
    with pytest.raises(ValueError, match=r"model\.nu is given twice"):
        parse_params(["model.nu=0.1", "model.nu=0.2"])
    base = ["sweep", CFG, "--param", "grid.shape=40", "--out"]
    assert cli.main(base + [str(tmp_path / "a"), "--param", "model.nu=-1.0,-2.0"]) == 1
    assert cli.main(base + [str(tmp_path / "b"), "--param", "model.nu=0.1,-1.0"]) == 2
    assert cli.main(base + [str(tmp_path / "c"), "--param", "model.nu=0.1"]) == 0
    assert "1 members, 1 converged" in capsys.readouterr().err
