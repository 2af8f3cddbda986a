"""MPI jobs stop together (:mod:`mfgpde.parallel.stop`): a signal to one rank or to ``mpiexec`` ends
every rank with the documented exit code (130 SIGINT, 143 SIGTERM) and leaves the previous results
as they were; a PETSc option PETSc rejects is refused before the solve, naming it; a solve whose
linear solver failed exits (it used to hang at shutdown); staging debris of a killed run is removed
by the next run.

The signal tests wait for the solve to be under way on every rank (the first ladder level's log
line, which follows collectives of both ranks) before sending; a hang fails them by the
subprocess timeout, not by a timing assertion.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mfgpde.fd.petsc import petsc_available

pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(not petsc_available(), reason="petsc4py not installed (the fem extra): pip install "
                                 "'mfgpde[fem]'")]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")


def long_config(tmp_path):
    """B2 on 80^2 x 80: tens of seconds on 2 ranks, long enough to be signalled mid-solve."""
    text = open(os.path.join(ROOT, "solvers", "lst_case2.toml")).read()
    text = text.replace("shape = [50, 50]", "shape = [80, 80]").replace("nt = 50", "nt = 80")
    assert "[80, 80]" in text and "nt = 80" in text
    cfg = tmp_path / "long.toml"
    cfg.write_text(text)
    return cfg


def start(cfg, out, log, extra=()):
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "mfgpde", "solve", str(cfg), "--out", str(out), "--no-plot", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"), start_new_session=True,
                            env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))


def wait_for(log, text, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in open(log).read():
            return
        assert proc.poll() is None, open(log).read()[-2000:]
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not logged within {timeout} s")


def ranks_of(proc):
    """The pids of the ranks: the grandchildren of mpiexec (Hydra's proxy starts them)."""
    pids = []
    for child in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split():
        pids += [int(p) for p in subprocess.run(["pgrep", "-P", child], capture_output=True, text=True).stdout.split()]
    return sorted(pids)


@pytest.mark.parametrize("target,signum,code", [("rank 0", signal.SIGTERM, 143), ("rank 1", signal.SIGINT, 130),
                                                ("mpiexec", signal.SIGINT, 130)])
def test_a_signal_to_one_rank_or_to_mpiexec_stops_every_rank(tmp_path, target, signum, code):
    cfg = long_config(tmp_path)
    out, log = tmp_path / "out", tmp_path / "log"
    out.mkdir()
    (out / "summary.json").write_text('{"converged": true, "note": "an earlier run"}')
    proc = start(cfg, out, log)
    try:
        wait_for(log, "Richardson ladder: level 1", proc)
        if target == "mpiexec":
            pid = proc.pid
        else:
            ranks = ranks_of(proc)
            assert len(ranks) == 2, ranks
            pid = ranks[int(target[-1])]  # (the pids' order need not be the ranks'; either rank is one rank)
        os.kill(pid, signum)
        assert proc.wait(timeout=60) == code, open(log).read()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # (the abort's own line may be lost: the process manager kills the ranks before it forwards
    # their last output; PETSc's handler, which used to pre-empt ours with exit 59, must not show)
    assert "PETSC ERROR" not in open(log).read()
    # the previous results stand, and nothing of this run was published
    assert json.loads((out / "summary.json").read_text())["note"] == "an earlier run"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".staging-")) == ["summary.json"]


def test_a_petsc_option_petsc_rejects_is_refused_before_the_solve(tmp_path):
    """``step_pc_type=nonexistent_pc`` used to run the whole solve, report ``singular_jacobian`` and
    then never exit (PETSc objects left in reference cycles were destroyed in different orders on
    the two ranks at shutdown, and their collective destroys deadlocked)."""
    cfg = os.path.join(ROOT, "solvers", "lst_case2.toml")
    for option, group in (("step_pc_type=nonexistent_pc", "step"), ("newton_ksp_max_it=abc", "newton")):
        proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "mfgpde", "solve", cfg, "--out",
                               str(tmp_path / "o"), "--no-plot", "--petsc-option", option], capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert f"PETSc refused the {group} options ({option})" in proc.stderr, proc.stderr[-2000:]
        assert "Richardson ladder" not in proc.stderr  # refused before the solve


def test_staging_debris_of_a_killed_run_is_removed_by_the_next_run(tmp_path):
    """A run killed while publishing (SIGKILL, an MPI abort) leaves ``.staging-<pid>@<host>-*``; the
    next run removes those of this host whose process is gone, not one of a run still in progress
    nor one of another host."""
    from mfgpde.cli import _HOST

    out = tmp_path / "out"
    dead = out / f".staging-999999999@{_HOST}-abc"
    alive = out / f".staging-{os.getpid()}@{_HOST}-abc"
    elsewhere = out / ".staging-999999999@another_node-abc"       # (a shared file system)
    for d in (dead, alive, elsewhere):
        d.mkdir(parents=True)
        (d / "solution.nc").write_text("half written")
    proc = subprocess.run([sys.executable, "-m", "mfgpde", "solve", os.path.join(ROOT, "solvers", "lst_case1.toml"),
                           "--out", str(out), "--no-plot", "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not dead.exists() and alive.exists() and elsewhere.exists()
    assert (out / "summary.json").exists() and (out / "solution.nc").exists()
