"""Finite differences over MPI ranks (PETSc DMDA, :mod:`mfgpde.fd.distributed`).

The distributed scheme is the serial discrete system point for point: in-process on one rank
(whose periodic patch wraps through the DMDA's ghosts) its residual and Jacobian products equal
the serial ones to round-off; through the CLI under ``mpiexec -n 2``, ``-n 3`` (an uneven split)
and ``-n 4`` (2 x 2 boxes, with rank corners) the solution equals the serial one to 1e-9 on a 2D
periodic grid with a drift, a 2D no-flux grid and a 3D grid, mass is conserved to 1e-12 and
m >= 0; the Newton tail stays quadratic; a failure on one rank stops every rank with the same
message. The preconditioner's patch multigrid steps are as close to the exact sweep as the
serial V-cycles; its PETSc-step and fallback paths give the KSP sweep.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import lq_config

from mfgpde.fd.petsc import petsc_available

if os.environ.get("MFGPDE_REQUIRE_FEM") and not petsc_available():
    # CI sets this: there the distributed tests must run, never be skipped
    raise RuntimeError("MFGPDE_REQUIRE_FEM is set but petsc4py is not importable")
pytestmark = pytest.mark.skipif(not petsc_available(),
                                reason="petsc4py not installed (the fem extra): pip install 'mfgpde[fem]'")

CASES = {
    "periodic2d": """
name = "periodic2d"
normalize_m0 = true
[grid]
bounds = [[0.0, 1.0], [0.0, 1.0]]
shape = [20, 23]
boundary = "periodic"
[time]
T = 0.5
nt = 8
[model]
nu = 0.05
drift = ["sin(2 * pi * y)", "0.3 + 0 * x"]
[hamiltonian]
type = "power"
q = 3.0
[[coupling]]
type = "log"
[terminal]
type = "potential"
expr = "cos(2 * pi * x) * sin(2 * pi * y)"
[m0]
type = "expr"
expr = "exp(-30 * ((x - 0.4)**2 + (y - 0.5)**2)) + 0.1"
[solver]
tol = 1e-11
""",
    "noflux2d": """
name = "noflux2d"
normalize_m0 = true
[grid]
bounds = [[-1.0, 1.0], [-1.0, 1.5]]
shape = [22, 19]
boundary = "noflux"
[time]
T = 0.6
nt = 8
[model]
nu = 0.08
[hamiltonian]
type = "congestion"
c0 = 0.1
c1 = 1.0
beta = 0.5
[[coupling]]
type = "potential"
expr = "0.5 * (x**2 + y**2)"
[terminal]
type = "potential"
expr = "x + 0.5 * y"
[m0]
type = "gaussian"
mean = [0.2, 0.1]
cov = 0.1
[solver]
tol = 1e-11
""",
    "cube3d": """
name = "cube3d"
normalize_m0 = true
[grid]
bounds = [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
shape = [9, 10, 11]
boundary = ["periodic", "noflux", "periodic"]
[time]
T = 0.4
nt = 5
[model]
nu = 0.1
[hamiltonian]
type = "quadratic"
[[coupling]]
type = "log"
[terminal]
type = "potential"
expr = "cos(2 * pi * x) + y * cos(2 * pi * z)"
[m0]
type = "expr"
expr = "1 + 0.5 * cos(2 * pi * x) * cos(2 * pi * z) + y"
[solver]
tol = 1e-11
""",
}


def run_cli(cfg, out, ranks, expect=0, extra=()):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [sys.executable, "-m", "mfgpde", "solve", str(cfg), "--out", str(out), "--no-plot", *extra]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(([mpiexec, "-n", str(ranks)] if ranks > 1 else []) + cmd, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == expect, proc.stderr[-3000:]
    return proc


def load(out):
    import xarray as xr

    with xr.open_dataset(out / "solution.nc") as ds:
        ds = ds.load()
    return json.load(open(out / "summary.json")), ds


@pytest.mark.mpi
@pytest.mark.parametrize("case", sorted(CASES))
def test_serial_and_mpi_cli_solves_agree(tmp_path, case):
    cfg = tmp_path / f"{case}.toml"
    cfg.write_text(CASES[case])
    runs = {}
    # 4 ranks split a 2D box 2 x 2: rank corners, where a star-shaped halo missed the diagonal ghosts
    counts = (1, 2, 3, 4) if case == "periodic2d" else (1, 2, 3)
    for ranks in counts:
        run_cli(cfg, tmp_path / f"o{ranks}", ranks)
        runs[ranks] = load(tmp_path / f"o{ranks}")
    if case == "periodic2d":  # the preconditioner's steps as PETSc KSP solves instead of patch multigrid
        run_cli(cfg, tmp_path / "petsc", 2, extra=("--petsc-option", "step_ksp_type=gmres"))
        runs["petsc"] = load(tmp_path / "petsc")
    serial = runs[1][1]
    assert "ranks" not in runs[1][0]
    for ranks in counts[1:] + (("petsc",) if case == "periodic2d" else ()):
        summary, ds = runs[ranks]
        steps = "petsc" if ranks == "petsc" else "multigrid"
        assert summary["preconditioner_steps"] == steps and summary["ghost_layers"] >= 2, summary
        ranks = 2 if ranks == "petsc" else ranks
        assert summary["converged"] and summary["ranks"] == ranks, summary
        assert int(np.prod(summary["rank_grid"])) == ranks
        if ranks == 4:  # phi_S of |p|^3/3 depends on S, which reads U at the diagonal neighbours
            assert summary["rank_grid"] == [2, 2]
        assert np.abs(ds["m"].values - serial["m"].values).max() < 1e-9
        assert np.abs(ds["U"].values - serial["U"].values).max() < 1e-9
        m = ds["m"].values
        mass = m.reshape(m.shape[0], -1).sum(axis=1)
        assert np.abs(mass - mass[0]).max() < 1e-12 * mass[0]
        assert m.min() >= 0.0
    # the Newton tail is quadratic on 2 ranks: a step from below 0.1 to above round-off level at
    # least squares the residual in the exponent sense (log r_{k+1} / log r_k >= 1.8; a linear rate
    # of 0.01 from 1e-3 would give 1.67)
    res = runs[2][1]["residual"].values
    assert res[-1] <= 1e-11
    tail = [np.log(b) / np.log(a) for a, b in zip(res[:-1], res[1:]) if a < 0.1 and b > 1e-13]
    assert tail and max(tail) >= 1.8, res


@pytest.mark.mpi
def test_grid_sequencing_over_ranks_reaches_the_serial_solution(tmp_path):
    """A grid large enough for grid sequencing (48 x 40 x 24 steps): on 2 ranks the coarse level
    (24 x 20 x 12) is itself solved over the ranks, its solution starts the fine Newton, and the
    fine solution equals the serial one (which sequences too) to 1e-9, in fewer fine Newton
    iterations than from the fixed-point start."""
    text = CASES["noflux2d"].replace("shape = [22, 19]", "shape = [48, 40]").replace("nt = 8", "nt = 24")
    cfg = tmp_path / "seq.toml"
    cfg.write_text(text)
    plain = tmp_path / "plain.toml"
    plain.write_text(text.replace("tol = 1e-11", "tol = 1e-11\ngrid_sequencing = false"))
    run_cli(cfg, tmp_path / "o1", 1)
    run_cli(cfg, tmp_path / "o2", 2)
    run_cli(plain, tmp_path / "p2", 2)
    (s1, d1), (s2, d2), (p2, _) = load(tmp_path / "o1"), load(tmp_path / "o2"), load(tmp_path / "p2")
    assert s1["converged"] and s1["grid_sequencing"]["coarse_status"] == "converged", s1
    seq = s2["grid_sequencing"]
    assert seq["coarse_shape"] == [24, 20] and seq["coarse_ranks"] == 2 and seq["coarse_status"] == "converged", seq
    assert "fine_status_from_coarse_start" not in seq and s2["converged"]
    assert "grid_sequencing" not in p2
    assert s2["iterations"] < p2["iterations"], (s2["iterations"], p2["iterations"])
    assert np.abs(d2["m"].values - d1["m"].values).max() < 1e-9
    assert np.abs(d2["U"].values - d1["U"].values).max() < 1e-9


@pytest.mark.mpi
def test_failure_on_one_rank_stops_every_rank(tmp_path):
    """A coupling that overflows only where the density is large (one rank's half of the box)
    stops both ranks with the same message, within the timeout, and no result is written."""
    text = CASES["noflux2d"].replace('type = "potential"\nexpr = "0.5 * (x**2 + y**2)"',
                                     'type = "power"\np = 400.0').replace("mean = [0.2, 0.1]", "mean = [-0.7, 0.1]")
    text = text.replace("cov = 0.1", "cov = 0.01")
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    proc = run_cli(cfg, tmp_path / "out", 2, expect=1)
    # each rank prints the same message (their lines may interleave in the shared stderr)
    message = "mfgpde solve: error: HJB sweep: the coupling f[m] is non-finite on some rank"
    assert proc.stderr.count(message) == 2 and proc.stderr.count("mfgpde solve: error") == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_distributed_scheme_is_the_serial_system_on_one_rank():
    """On one rank (the DMDA's ghosts wrap the periodic axis onto the same rank), the residual, the
    Jacobian product and the half-sweeps of the distributed scheme equal the serial ones at a random
    iterate, sources included."""
    from mpi4py import MPI

    import mfgpde as mp
    from mfgpde.fd.distributed import DistributedFDScheme
    from mfgpde.fd.scheme import FDScheme

    g = mp.TensorGrid([(0, 1), (0, 2)], (12, 14), ("periodic", "noflux"))
    p = mp.MFGProblem(g, 0.5, 6, 0.07, mp.QuadraticHamiltonian(), lambda x, y: 1 + 0.3 * np.cos(2 * np.pi * x) + y,
                      coupling=mp.LogCoupling(),
                      # a terminal cost that depends on m(T): the HJB sweep must read the last slice
                      terminal=mp.LogCoupling() + mp.PotentialCoupling(lambda x, y: np.cos(2 * np.pi * x) * y),
                      drift=lambda t, x, y: (np.sin(2 * np.pi * x) + t, y - 1), normalize=True,
                      # sources, in the residual and in both half-sweeps (an FP source with non-zero
                      # integral: the forward sweep's mass restoration must add it)
                      hjb_source=lambda t, x, y: np.cos(2 * np.pi * x) * y + t,
                      fp_source=lambda t, x, y: 0.2 + np.sin(2 * np.pi * x) * y * (1 + t))
    rng = np.random.default_rng(3)
    U = rng.normal(size=(7, g.size))
    M = 0.5 + rng.random((7, g.size))
    serial = FDScheme(p)
    dist = DistributedFDScheme(p, MPI.COMM_SELF)
    try:
        # the halo is as wide as OVERLAP where the box allows it; the system does not depend on it
        assert dist.ghost_width == 4 and dist.patch.shape == (12 + 8, 14)
        assert dist.N == g.size and np.array_equal(dist.m0, p.m0.ravel())
        for a, b in zip(serial.residual(U, M), dist.residual(U, M)):
            assert np.abs(a - b).max() <= 1e-12 * np.abs(a).max()
        z = rng.normal(size=2 * U.size)
        Jz = serial.linearisation(U, M).matvec(z)
        lin = dist.linearisation(U, M)
        both = dist.ghosted(z.reshape(14, -1))
        own = lin.matvec(both.ravel()).reshape(14, -1)[:, dist.owned].ravel()
        assert np.abs(Jz - own).max() <= 1e-12 * np.abs(Jz).max()
        # the accurate half-sweeps are the serial ones (step solves to 1e-12 instead of LU)
        Us, _ = serial.solve_hjb(M)
        Ud, _ = dist.solve_hjb(M)
        assert np.abs(Us - Ud).max() < 1e-9
        assert np.abs(serial.solve_fp(Us, M_lag=M) - dist.solve_fp(Us, M_lag=M)).max() < 1e-9
        # a non-finite terminal cost g[m(T)] is refused by name, before the coupling f[m] (which
        # reads the same slice): the check reads the terminal level U[N_t]
        Mz = M.copy()
        Mz[-1, 3] = np.nan
        with pytest.raises(mp.ConvergenceError, match="terminal cost"):
            dist.solve_hjb(Mz)
    finally:
        dist.destroy()


def test_distributed_preconditioner_steps_approximate_the_exact_sweep(monkeypatch):
    """The preconditioner of the distributed Newton systems is the block-triangular sweep with
    inexact step solves: patch multigrid by default (two V-cycles on the overlapping patch), PETSc
    KSP solves to 1e-3 when ``petsc_options`` configure the step solver, and KSP solves for the
    steps on which the patch V-cycles do not contract. Each is close to the exact sweep (LU
    steps) as the serial V-cycle sweep is, the KSP steps closer; forcing every step to "not contracting" gives the KSP sweep."""
    from mpi4py import MPI

    import mfgpde as mp
    import mfgpde.fd.distributed as fdd
    from mfgpde.fd.krylov import BlockTriangularPreconditioner
    from mfgpde.fd.scheme import FDScheme

    g = mp.TensorGrid([(0, 1), (0, 1)], (24, 20), ("periodic", "noflux"))
    p = mp.MFGProblem(g, 0.5, 6, 0.1, mp.QuadraticHamiltonian(), lambda x, y: 1 + 0.5 * np.cos(2 * np.pi * x) * y,
                      coupling=mp.LogCoupling(), terminal=lambda x, y: np.sin(2 * np.pi * x) * y, normalize=True)
    rng = np.random.default_rng(5)
    # a smooth U: on a random one the V-cycles themselves contract by only ~0.2 per step (serially too)
    x, y = g.coordinates()
    U = np.outer(np.linspace(1.0, 0.5, 7), (0.3 * np.cos(2 * np.pi * x) * y).ravel())
    M = np.tile(p.m0.ravel(), (7, 1))
    r = rng.normal(size=2 * U.size)
    serial = FDScheme(p)
    exact = BlockTriangularPreconditioner(serial.linearisation(U, M), step_solver="lu").matvec(r)
    vcycles = BlockTriangularPreconditioner(serial.linearisation(U, M), step_solver="multigrid").matvec(r)

    def sweep(monkeypatch_limit=None, **kw):
        dist = fdd.DistributedFDScheme(p, MPI.COMM_SELF, **kw)
        try:
            if monkeypatch_limit is not None:
                monkeypatch.setattr(fdd, "MG_CONTRACTION_LIMIT", monkeypatch_limit)
            calls = []
            apply = dist._step.apply
            dist._step.apply = lambda vals, rhs: calls.append(1) or apply(vals, rhs)
            return dist.step_method, dist._sweep(dist.linearisation(U, M), r), len(calls)
        finally:
            dist.destroy()

    def err(z):
        return np.abs(z - exact).max() / np.abs(exact).max()

    # two V-cycles per step leave ~0.13 of the exact sweep here, serially too
    method, mg, calls = sweep()
    assert method == "multigrid" and calls == 0 and 1e-6 < err(mg) <= 1.25 * err(vcycles) < 0.2
    method, ksp, calls = sweep(petsc_options={"step_ksp_rtol": 1e-3})
    assert method == "petsc" and calls == 2 * p.nt and err(ksp) < 2e-3
    method, fallback, calls = sweep(monkeypatch_limit=-1.0)
    assert method == "multigrid" and calls == 2 * p.nt and np.abs(fallback - ksp).max() <= 1e-12 * np.abs(ksp).max()


def test_distributed_requests_are_checked_before_any_work():
    from mpi4py import MPI

    import mfgpde as mp
    from mfgpde.fd.distributed import DistributedFDScheme

    g = mp.TensorGrid([(0, 1), (0, 1)], (10, 10), "periodic")
    base = dict(T=0.5, nt=4, hamiltonian=mp.QuadraticHamiltonian(), m0=lambda x, y: 1 + 0 * x)
    with pytest.raises(ValueError, match="nu > 0"):
        DistributedFDScheme(mp.MFGProblem(g, nu=0.0, **base), MPI.COMM_SELF)
    conv = mp.ConvolutionCoupling(lambda x, y: np.exp(-(x**2 + y**2)))
    with pytest.raises(ValueError, match="nonlocal"):
        DistributedFDScheme(mp.MFGProblem(g, nu=0.1, coupling=conv, **base), MPI.COMM_SELF)
    with pytest.raises(ValueError, match="must start with 'step_'"):
        DistributedFDScheme(mp.MFGProblem(g, nu=0.1, **base), MPI.COMM_SELF, petsc_options={"ksp_type": "cg"})
    with pytest.warns(UserWarning, match="serial"):
        mp.solve(mp.MFGProblem(g, nu=0.1, **base), petsc_options={"step_pc_type": "gamg"}, max_iter=1)
    with pytest.raises(ValueError, match="mfgpde_fem_step_"):
        mp.solve(mp.MFGProblem(g, nu=0.1, **base), backend="fem", petsc_options={"step_pc_type": "gamg"})


def test_a_nested_scheme_cannot_remove_the_users_petsc_options():
    """Grid sequencing nests a second distributed scheme inside the first: creating it with the same
    options and destroying it must leave the first scheme's options intact, so the user's
    ``step_pc_type`` reaches the fine solve's step KSP (it used to be deleted from the global options
    database by the nested destroy()). Nothing is left in the database afterwards."""
    from mpi4py import MPI
    from petsc4py import PETSc

    import mfgpde as mp
    from mfgpde.fd.distributed import DistributedFDScheme

    g = mp.TensorGrid([(0, 1), (0, 1)], (12, 12), "periodic")
    p = mp.MFGProblem(g, 0.5, 4, 0.1, mp.QuadraticHamiltonian(), lambda x, y: 1 + 0.5 * np.cos(2 * np.pi * x))
    opts = {"step_pc_type": "jacobi", "sweep_ksp_type": "bcgs"}
    fine = DistributedFDScheme(p, MPI.COMM_SELF, petsc_options=opts)
    try:
        coarse = DistributedFDScheme(p, MPI.COMM_SELF, petsc_options=opts)
        coarse.destroy()
        step = fine._step
        step.pc_A = step._matrix()
        ksp = step._ksp(step.pc_A, 1e-3, "step_")
        sweep_ksp = step._ksp(step._matrix(), 1e-3, "sweep_")
        assert ksp.getPC().getType() == "jacobi" and sweep_ksp.getType() == "bcgs"
        ksp.destroy()
        sweep_ksp.destroy()
    finally:
        fine.destroy()
    db = PETSc.Options()
    assert not db.hasName("mfgpde_step_pc_type") and not db.hasName("mfgpde_sweep_ksp_type")


@pytest.mark.mpi
def test_order_two_and_the_error_estimate_under_mpiexec(tmp_path):
    """``--order 2`` on 2 ranks: every level of the Richardson ladder is a distributed solve, and the
    extrapolated fields, the order and the error estimate are the serial ones."""
    cfg = tmp_path / "lq.toml"
    cfg.write_text(lq_config(2, 32, 16, "tol = 1e-11\norder = 2"))
    runs = {}
    for ranks in (1, 2):
        run_cli(cfg, tmp_path / f"o{ranks}", ranks)
        runs[ranks] = load(tmp_path / f"o{ranks}")
    (s1, d1), (s2, d2) = runs[1], runs[2]
    assert s1["order"] == s2["order"] == 2 and s2["ranks"] == 2
    assert np.abs(d1["m"].values - d2["m"].values).max() < 1e-9
    assert np.abs(d1["U"].values - d2["U"].values).max() < 1e-9
    for key in ("m_L1_final", "grad_U_weighted"):
        assert s2["error_estimate"][key] == pytest.approx(s1["error_estimate"][key], rel=1e-6, abs=1e-12)
