"""Grid sequencing changes Newton's start, not the discrete solution."""

import importlib
import json

import numpy as np
import pytest

import mfgpde as mp
from mfgpde import config
from mfgpde.iterations import sequencing


def _log2d(n, nt, boundary="periodic"):
    g = mp.TensorGrid([(0, 1), (0, 1)], n, boundary)
    return mp.MFGProblem(g, 1.0, nt, 0.1, mp.QuadraticHamiltonian(),
                         lambda x, y: 1 + 0.5 * np.cos(2 * np.pi * x) * np.cos(2 * np.pi * y),
                         coupling=mp.LogCoupling() + mp.PotentialCoupling(
                             lambda x, y: np.sin(2 * np.pi * x) + np.cos(2 * np.pi * y)),
                         terminal=lambda x, y: 0.5 * np.cos(2 * np.pi * (x - y)), normalize=True)


def test_coarse_problem_halves_the_grid_and_the_steps():
    p = _log2d(40, 30)
    c = sequencing.coarse_problem(p)
    assert c.grid.shape == (20, 20) and c.nt == 15
    assert c.grid.bounds == p.grid.bounds and c.grid.boundary == p.grid.boundary
    assert (c.T, c.nu) == (p.T, p.nu)
    # too small to coarsen (space-time points, an axis, the steps), or data that live on the fine grid only
    assert sequencing.coarse_problem(_log2d(20, 20)) is None
    assert sequencing.coarse_problem(_log2d((200, 14), 30)) is None
    assert sequencing.coarse_problem(_log2d(64, 6)) is None
    g = mp.TensorGrid([(0, 1), (0, 1)], 40, "periodic")
    # an m0 array is interpolated to the coarse grid with its mass; a potential array cannot be
    m0 = 1 + 0.5 * np.cos(2 * np.pi * g.coordinates()[0])
    arr = sequencing.coarse_problem(mp.MFGProblem(g, 1.0, 30, 0.1, mp.QuadraticHamiltonian(), m0))
    assert arr.grid.integrate(arr.m0) == pytest.approx(g.integrate(m0), rel=1e-13)
    xc = arr.grid.coordinates()[0]
    np.testing.assert_allclose(arr.m0, (1 + 0.5 * np.cos(2 * np.pi * xc)) * arr.m0.mean() / (1 + 0 * xc).mean(),
                               atol=0.02)
    pot = mp.MFGProblem(g, 1.0, 30, 0.1, mp.QuadraticHamiltonian(), lambda x, y: 1 + 0 * x,
                        coupling=mp.PotentialCoupling(np.ones(g.shape)))
    assert sequencing.coarse_problem(pot) is None


@pytest.mark.parametrize("boundary", ["periodic", "noflux"])
def test_prolongation_is_linear_interpolation_and_keeps_the_mass(boundary):
    """Fields linear in t and x are reproduced where the fine points lie between coarse ones
    (cell-centred no-flux grids: the outermost fine points lie outside and take the end value;
    periodic axes wrap); the density starts at m0 and carries its mass at every time."""
    p = _log2d(40, 30, boundary)
    c = sequencing.coarse_problem(p)
    tc = c.times[:, None, None]
    xc, yc = c.grid.coordinates()
    U = (tc + 0.3 * xc - 0.2 * yc).reshape(c.nt + 1, -1)
    M = np.broadcast_to(1.0 + 0.5 * tc + 0 * xc, (c.nt + 1,) + c.grid.shape).reshape(c.nt + 1, -1)
    Uf, Mf = sequencing.prolong(c, p, U, M)
    xf, yf = p.grid.coordinates()
    exact = (p.times[:, None, None] + 0.3 * xf - 0.2 * yf).reshape(p.nt + 1, *p.grid.shape)
    Uf = Uf.reshape(exact.shape)
    inner = (slice(None), slice(1, -1), slice(1, -1))
    if boundary == "noflux":
        np.testing.assert_allclose(Uf[inner], exact[inner], atol=1e-12)
    else:  # linear inside one period; only the wrap interval differs
        np.testing.assert_allclose(Uf[:, 1:-1, 1:-1], exact[:, 1:-1, 1:-1], atol=1e-12)
    np.testing.assert_array_equal(Mf[0], p.m0.ravel())
    np.testing.assert_allclose(Mf.sum(axis=1), p.m0.sum(), rtol=1e-13)
    assert Mf.min() >= 0


def test_sequenced_newton_reaches_the_same_discrete_solution():
    """Same problem, same tolerance: Newton from the coarse-grid start and from the default start
    end at the same (U, m) to 1e-9, and the diagnostics say what the coarse levels did."""
    p = _log2d(32, 40)
    a = mp.solve(p, tol=1e-11, verbose=False)
    b = mp.solve(p, tol=1e-11, verbose=False, grid_sequencing=False)
    assert a.converged and b.converged
    seq = a.diagnostics["grid_sequencing"]
    assert seq["coarse_shape"] == [16, 16] and seq["coarse_nt"] == 20 and seq["coarse_status"] == "converged"
    assert "grid_sequencing" not in b.diagnostics
    # the start is better: fewer fine Newton steps
    assert a.iterations < b.iterations
    np.testing.assert_allclose(a.m, b.m, rtol=0, atol=1e-9 * np.abs(b.m).max())
    np.testing.assert_allclose(a.U, b.U, rtol=0, atol=1e-9 * np.abs(b.U).max())
    summary = json.loads(json.dumps(a.summary(), default=float))  # what summary.json holds
    assert summary["grid_sequencing"]["coarse_shape"] == [16, 16]


def test_grid_sequencing_option_is_checked_and_configurable():
    with pytest.raises(ValueError, match="grid_sequencing"):
        mp.solve(_log2d(20, 20), grid_sequencing="yes")
    cfg = config.load({"grid": {"bounds": [[0, 1]], "shape": 20, "boundary": "periodic"}, "time": {"T": 1, "nt": 10},
                       "model": {"nu": 0.1}, "hamiltonian": {"type": "quadratic"},
                       "m0": {"type": "expr", "expr": "1 + 0 * x"}, "solver": {"grid_sequencing": False}})
    assert config.solver_options(cfg)["grid_sequencing"] is False



def test_a_failing_coarse_level_falls_back_to_the_default_start(monkeypatch):
    """A coarse solve that raises does not sink the fine one: it starts from the default start and
    the diagnostics say what happened on the coarse grid."""
    import importlib

    solve_module = importlib.import_module("mfgpde.fd.solve")

    p = _log2d(32, 40)
    real = solve_module.solve_fd

    def failing(problem, *args, **kw):
        if problem.grid.shape == (16, 16):
            raise FloatingPointError("coarse trouble")
        return real(problem, *args, **kw)

    monkeypatch.setattr(solve_module, "solve_fd", failing)
    # (no error estimate: its ladder would solve the 16^2 level itself)
    r = mp.solve(p, tol=1e-10, verbose=False, error_estimate=False)
    assert r.converged
    seq = r.diagnostics["grid_sequencing"]
    assert seq["coarse_status"] == "error" and "coarse trouble" in seq["coarse_message"]


@pytest.mark.parametrize("period", [None, 1.0])
def test_interpolation_matrix_is_numpy_interp_and_sparse(period, rng):
    """Two entries per row (no dense n_fine x n_coarse matrix on long axes), the values of
    ``np.interp`` (clamped at the ends, or periodic), targets outside the source range included."""
    from mfgpde.iterations.sequencing import _interpolation_matrix

    xs = np.sort(rng.random(9)) if period is None else np.arange(9) / 9
    xt = np.linspace(-0.4, 1.4, 101)
    v = rng.standard_normal(9)
    P = _interpolation_matrix(xt, xs, period)
    assert P.nnz <= 2 * xt.size
    np.testing.assert_allclose(P @ v, np.interp(xt, xs, v, period=period), rtol=0, atol=1e-14)


@pytest.mark.slow  # 45 s: two 400 x 100 CNF continuations (the fall-back tests below run in the default suite)
def test_sequenced_viscosity_continuation_reaches_the_same_first_order_solution():
    """nu = 0 (a CNF, 400 x 100): the viscous stages nu >= 1e-3 L^2/T run on the 200 x 50 grid and
    the fine grid starts below the last of them; every later stage and the target are fine solves,
    so the discrete solution is the one of the unsequenced continuation (measured: m 1.4e-11 apart, 11
    fine Newton iterations instead of 71)."""
    from mfgpde.generative.densities import gaussian
    from mfgpde.generative.presets import cnf_problem

    g = mp.TensorGrid([(-5, 5)], 400, "noflux")
    p = cnf_problem(g, gaussian([1.0], 0.25), lam=0.1, T=1.0, nt=100)
    # (no error estimates: their ladder would solve the 200 x 50 and 100 x 25 levels twice more)
    plain = mp.solve(p, tol=1e-9, grid_sequencing=False, verbose=False, error_estimate=False)
    seq = mp.solve(p, tol=1e-9, verbose=False, error_estimate=False)
    assert plain.converged and seq.converged and seq.diagnostics["residual"] <= 1e-9
    steps = seq.diagnostics["continuation"]["steps"]
    assert steps[0]["grid"] == [200] and steps[0]["nt"] == 50 and steps[0]["status"] == "converged"
    # the fine grid starts below the hand-off, a viscosity step of factor^2 = 9 down
    assert steps[1]["value"] == pytest.approx(steps[0]["value"] / 9) and "grid" not in steps[1]
    assert steps[-1]["value"] == 0.0 and all(s["value"] < 0.2 for s in steps)   # no fine stage above the hand-off
    fine = lambda r: sum(s["iterations"] for s in r.diagnostics["continuation"]["steps"] if "grid" not in s)
    assert fine(seq) < 0.7 * fine(plain)
    assert np.abs(seq.m - plain.m).max() <= 1e-9 * np.abs(plain.m).max()
    assert np.abs(seq.U - plain.U).max() <= 1e-8 * max(1.0, np.abs(plain.U).max())


@pytest.mark.parametrize("failure", ["coarse", "fine"])
def test_sequenced_continuation_falls_back_to_every_stage_on_the_fine_grid(monkeypatch, failure):
    """A coarse continuation that fails, or a fine grid that cannot solve the first stage below the
    hand-off nor the hand-off stage from the coarse start, leaves the plain continuation: the same
    solution, and the record says why."""
    from mfgpde.generative.densities import gaussian
    from mfgpde.generative.presets import cnf_problem

    monkeypatch.setattr(sequencing, "MIN_POINTS", 1000)          # sequence a small problem
    p = cnf_problem(mp.TensorGrid([(-5, 5)], 60, "noflux"), gaussian([1.0], 0.25), lam=0.3, T=1.0, nt=20)
    plain = mp.solve(p, tol=1e-9, grid_sequencing=False, verbose=False)
    module = importlib.import_module("mfgpde.fd.solve")
    if failure == "coarse":  # the coarse continuation (the ladder below the fine grid) raises
        def broken(*args, **kwargs):
            raise ValueError("planted coarse failure")
        monkeypatch.setattr(module, "_coarse_ladder", broken)
    else:  # the fine solve of the hand-off stage from the coarse start (a pair of arrays) fails
        real = module.solve_fd  # the stage solve

        def flaky(problem, options, initial=None, **kwargs):
            if isinstance(initial, tuple):
                options = options.replace(max_iter=0)
            return real(problem, options, initial=initial, **kwargs)
        monkeypatch.setattr(module, "solve_fd", flaky)
    r = mp.solve(p, tol=1e-9, verbose=False, error_estimate=False)
    steps = r.diagnostics["continuation"]["steps"]
    assert steps[0]["grid"] == [30]
    if failure == "coarse":
        assert steps[0]["status"] == "error" and "planted coarse failure" in steps[0]["message"]
    else:  # the stage below the hand-off fails, then the hand-off stage itself
        assert steps[0]["status"] == "converged" and steps[1]["status"] == steps[2]["status"] == "max_iter"
        assert steps[1]["value"] == pytest.approx(steps[0]["value"] / 9) and steps[2]["value"] == steps[0]["value"]
    # then every stage of the plan on the fine grid, from the first
    fine = [s for s in steps if "grid" not in s and s["status"] == "converged"]
    assert [s["value"] for s in fine] == [s["value"] for s in plain.diagnostics["continuation"]["steps"]]
    assert r.converged and np.abs(r.m - plain.m).max() <= 1e-12


def test_a_failing_first_fine_stage_retries_the_handoff_stage(monkeypatch):
    """When the stage below the hand-off cannot be solved from the interpolated coarse start, the
    fine grid solves the hand-off stage first and goes on from there: same solution, no plain
    continuation."""
    from mfgpde.generative.densities import gaussian
    from mfgpde.generative.presets import cnf_problem

    monkeypatch.setattr(sequencing, "MIN_POINTS", 1000)
    p = cnf_problem(mp.TensorGrid([(-5, 5)], 60, "noflux"), gaussian([1.0], 0.25), lam=0.3, T=1.0, nt=20)
    plain = mp.solve(p, tol=1e-9, grid_sequencing=False, verbose=False)
    module = importlib.import_module("mfgpde.fd.solve")
    real, handoff = module.solve_fd, {}  # the stage solve

    def flaky(problem, options, initial=None, **kwargs):
        # only the first solve from the coarse start (a pair of arrays) fails
        if isinstance(initial, tuple) and not handoff:
            handoff["nu"] = problem.nu
            options = options.replace(max_iter=0)
        return real(problem, options, initial=initial, **kwargs)
    monkeypatch.setattr(module, "solve_fd", flaky)
    r = mp.solve(p, tol=1e-9, verbose=False, error_estimate=False)
    steps = r.diagnostics["continuation"]["steps"]
    nu_h = steps[0]["value"]
    assert steps[0]["grid"] == [30] and handoff["nu"] == pytest.approx(nu_h / 9)
    assert [s["status"] for s in steps[1:3]] == ["max_iter", "converged"] and steps[2]["value"] == nu_h
    assert steps[3]["value"] == pytest.approx(nu_h / 9) and steps[3]["status"] == "converged"
    assert all("grid" not in s and s["value"] <= nu_h for s in steps[1:])   # no plain continuation
    assert r.converged and np.abs(r.m - plain.m).max() <= 1e-9 * np.abs(plain.m).max()
