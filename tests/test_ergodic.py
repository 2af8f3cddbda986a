"""The ergodic (stationary) MFG: cold starts on wide boxes, a closed form, the turnpike.

Closed form E1 (:class:`mfgpde.closed_forms.ErgodicLQ`): ``H = |p|^2/2``,
``f = c log m + |x|^2/2`` has the Gaussian invariant density ``N(0, nu/a)`` with
``a^2 + (c/nu) a - 1 = 0`` and ``rho = nu a d - (c d/2) log(2 pi nu/a)``.
"""

import numpy as np
import pytest

import mfgpde as mp
from mfgpde.closed_forms import ErgodicLQ


def _confined(L, n, nu, coupling="log", dim=1, floor=1e-14):
    g = mp.TensorGrid([(-L, L)] * dim, n, "noflux")
    V = mp.PotentialCoupling(lambda *xs: sum(x**2 for x in xs) / 2)
    H = mp.QuadraticHamiltonian()
    if coupling == "log":
        c = mp.LogCoupling(floor=floor) + V
    elif coupling == "power":
        c = mp.PowerCoupling(1.0) + V
    else:  # congestion: H = |p|^2 / (2 (c0 + m)^beta)-type, no coupling but the potential
        H, c = mp.CongestionHamiltonian(), V
    return mp.ErgodicMFGProblem(g, nu, H, coupling=c)


@pytest.mark.parametrize("coupling, nu, floor", [("log", 0.5, 1e-10), ("log", 0.1, 1e-10), ("log", 0.02, 1e-10),
                                                 ("power", 0.02, None), ("power", 0.1, None),
                                                 ("power", 0.5, None), ("congestion", 0.5, None)])
def test_cold_start_on_a_wide_box_matches_the_narrow_box(coupling, nu, floor):
    """A box of half-width 20 (the density's standard deviation is about 1: plain Newton from
    the uniform density stalled at residual 17-64 for half-widths >= 8) gives, from a cold
    start, the solution on half-width 8 at the same mesh size, where they overlap."""
    kw = {} if floor is None else {"floor": floor}
    wide = mp.solve(_confined(20, 400, nu, coupling, **kw))
    narrow = mp.solve(_confined(8, 160, nu, coupling, **kw))
    for r in (wide, narrow):
        assert r.converged and r.diagnostics["residual"] <= 1e-10, r.diagnostics
        assert r.diagnostics["mass_error"] < 1e-12
        assert r.m.min() > -1e-14
    overlap = wide.m[120:280]                           # x in (-8, 8): the same cell centres
    np.testing.assert_allclose(overlap, narrow.m, atol=1e-9)
    assert abs(wide.rho - narrow.rho) < 1e-8


def test_default_log_floor_on_a_wide_box_reports_round_off():
    """With the default floor 1e-14 the density's tails reach the floor on [-12, 12]; the HJB
    residual there is limited by round-off: the solve must say so (stagnated, with the reason),
    not claim convergence, and its rho still agrees with the floor = 1e-10 solve."""
    r = mp.solve(_confined(12, 200, 0.5, "log"))
    assert not r.converged and r.diagnostics["status"] == "stagnated"
    msg = r.diagnostics["message"].lower()
    assert "floor" in msg and "round-off" in msg and "logcoupling(floor=1e-10)" in msg
    assert r.diagnostics["residual"] < 1e-5
    ok = mp.solve(_confined(12, 200, 0.5, "log", floor=1e-10))
    assert ok.converged and abs(ok.rho - r.rho) < 1e-6


@pytest.mark.parametrize("dim, n, L", [(2, 24, 6), (3, 10, 5)])
def test_cold_start_2d_3d_against_the_closed_form(dim, n, L):
    """2D and 3D from a cold start; rho, m near E1 at this coarse resolution (first order:
    recorded errors rho 0.089 / 0.29, max|m - m_E1| / max m_E1 0.032 / 0.076)."""
    nu = 0.5
    r = mp.solve(_confined(L, n, nu, "log", dim=dim, floor=1e-10))
    ex = ErgodicLQ(nu, d=dim)
    assert r.converged and r.diagnostics["mass_error"] < 1e-12
    X = r.grid.coordinates()
    assert abs(r.rho - ex.rho) < (0.12 if dim == 2 else 0.4)
    assert np.abs(r.m - ex.m(*X)).max() / ex.m(*[0 * x for x in X]).max() < (0.05 if dim == 2 else 0.1)


def test_ergodic_lq_observed_order():
    """First order in u (interior, up to a constant), m and rho against E1 on [-6, 6]."""
    from helpers import observed_order

    nu = 0.2
    ex = ErgodicLQ(nu)
    ns, eu, em, er = [50, 100, 200, 400], [], [], []
    for n in ns:
        r = mp.solve(_confined(6, n, nu, "log"))
        assert r.converged
        x = r.grid.axes[0]
        c = np.argmin(np.abs(x))
        inner = np.abs(x) <= 3        # the no-flux wall bends u within a boundary layer
        eu.append(np.abs((r.u - r.u[c]) - (ex.u(x) - ex.u(x[c])))[inner].max())
        em.append(np.abs(r.m - ex.m(x)).max())
        er.append(abs(r.rho - ex.rho))
    h = 12.0 / np.array(ns)
    for e in (eu, em, er):
        assert 0.9 < observed_order(h, e) < 1.15, e
    assert er[-1] < 1e-3 and em[-1] < 3e-4


def test_turnpike():
    """On a long horizon the time-dependent solution sits near the ergodic one in the middle of
    [0, T]: m, grad u and rho (from the decrease of the mean of u over [T/4, 3T/4]); the gaps
    shrink as T grows (recorded, T = 4 / 8 / 16: m 4.3e-2 / 6.0e-3 / 1.3e-4, grad u 0.25 /
    0.026 / 4.3e-4, rho 0.17 / 0.029 / 9.7e-4)."""
    nu = 0.5
    erg = mp.solve(_confined(6, 100, nu, "log"))
    assert erg.converged
    g = erg.grid
    x = g.axes[0]
    inner = np.abs(x) <= 3
    gaps = []
    for T in (4, 8, 16):
        p = mp.MFGProblem(g, T, 10 * T, nu, mp.QuadraticHamiltonian(),
                          m0=lambda x: np.exp(-(x - 1.5) ** 2 / 0.5) / np.sqrt(0.5 * np.pi),
                          coupling=erg.problem.coupling)
        r = mp.solve(p)
        assert r.converged, r.diagnostics
        k = p.nt // 2
        rho = (r.U[p.nt // 4].mean() - r.U[3 * p.nt // 4].mean()) / (T / 2)
        gaps.append([np.abs(r.m[k] - erg.m).max(), np.abs(np.gradient(r.U[k] - erg.u, x)[inner]).max(),
                     abs(rho - erg.rho)])
    gaps = np.array(gaps)
    assert np.all(gaps[1:] < gaps[:-1] / 3), gaps      # each doubling of T: at least 3x closer
    assert np.all(gaps[-1] < [5e-4, 2e-3, 5e-3]), gaps


def test_shipped_ergodic_configuration_through_the_cli(tmp_path):
    """``mfgpde solve solvers/ergodic_crowd_2d.toml`` (at half the resolution): converged from a
    cold start, rho in summary.json equal to the API's, and the two-well landscape's mirror
    symmetry x -> -x held by m and u (the scheme is symmetric; a planted sign error in the
    drift or the upwinding breaks it)."""
    import json

    from helpers import edited_config

    from mfgpde import cli, config

    path = edited_config(tmp_path, "ergodic_crowd_2d.toml", "shape = [60, 50]", "shape = [30, 25]")
    out = tmp_path / "out"
    assert cli.main(["solve", path, "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["converged"] and s["residual"] <= 1e-10 and s["mass_error"] < 1e-12
    assert (out / "solution.png").stat().st_size > 10_000
    r = mp.solve(config.build_problem(path))
    assert abs(r.rho - s["rho"]) < 1e-9
    np.testing.assert_allclose(r.m, r.m[::-1, :], atol=1e-9)
    np.testing.assert_allclose(r.u, r.u[::-1, :], atol=1e-7)
    assert r.m[:15].sum() * r.grid.cell_volume == pytest.approx(0.5, abs=1e-9)  # half the crowd per well


@pytest.mark.parametrize("dim, n", [(1, 60), (2, 12), (3, 6)])
def test_bordered_woodbury_solve_equals_the_direct_solve(dim, n):
    """The rank-3 Sherman-Morrison-Woodbury solve of the bordered Jacobian (dense rho column,
    mass and mean rows moved out of the sparse LU) returns the solution of the full system, at
    the cold start (short pseudo-time steps) and near the solution (up to pure Newton), and it
    is the path taken, not the LU fallback (which pure Newton near the solution used to need
    when rho and the mass pin sat in the box's corner, where the density is ~1e-6)."""
    import scipy.sparse.linalg as spla

    from mfgpde.fd.ergodic import GridErgodic
    from mfgpde.iterations.pseudo_transient import bordered_solve, pseudo_time_matrix

    problem = _confined(4, n, 0.3, "log", dim=dim, floor=1e-10)
    disc = GridErgodic(problem)
    N = disc.N
    sol = mp.solve(problem)
    assert sol.converged
    rng = np.random.default_rng(dim)
    cold = np.concatenate([np.zeros(N), np.full(N, 1.0 / (N * problem.grid.cell_volume)), [0.0]])
    near = np.concatenate([sol.u.ravel(), sol.m.ravel(), [sol.rho]]) * (1 + 1e-3 * rng.normal(size=2 * N + 1))
    for z, steps in ((cold, (1e-3, 1.0)), (near, (1e-3, 1.0, 1e13))):   # the driver starts cold with 0.1
        for dtau in steps:
            A = pseudo_time_matrix(disc.jacobian(z), N, dtau)
            r = rng.normal(size=2 * N + 1)
            info = {}
            x = bordered_solve(A, r, N, info=info, pin=int(np.argmax(z[N:2 * N])))
            assert info["path"] == "woodbury", dtau
            ref = spla.spsolve(A.tocsc(), r)
            assert np.abs(x - ref).max() <= 1e-8 * np.abs(ref).max(), dtau


def test_newton_tail_is_quadratic_from_a_near_start():
    """With a pseudo-time step of 1e13 the shared driver's steps are Newton's on the bordered
    system: from a perturbation of the solution the residual falls quadratically,
    ``r_{k+1} <= 10 r_k^2``, and the solution returned is the one of the cold start."""
    from mfgpde.fd.ergodic import solve_ergodic

    p = _confined(8, 160, 0.5, "power")  # no floor continuation: one stage
    ref = solve_ergodic(p, tol=1e-12)
    x = p.grid.axes[0]
    start = (ref.u + 0.05 * np.cos(x), ref.m * (1 + 0.05 * np.sin(x)), ref.rho + 0.01)
    r = solve_ergodic(p, tol=1e-12, initial=start, pseudo_dt=1e13)
    assert r.converged and r.diagnostics["method"] == "pseudo_transient_newton"
    res = [h["residual"] for h in r.history]
    assert len(res) <= 8, res
    for a, b in zip(res, res[1:]):
        if a < 1e-2 and b > 1e-12:
            assert b <= 10 * a**2, res
    assert all(h["pseudo_dt"] >= 1e12 for h in r.history)  # pseudo_time_matrix is then J itself
    assert abs(r.rho - ref.rho) < 1e-9 and np.abs(r.m - ref.m).max() < 1e-8
