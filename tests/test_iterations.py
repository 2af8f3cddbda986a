"""Newton, damped fixed point and fictitious play on the same discrete system."""

import os

import numpy as np
import pytest
from conftest import b1_problem

import mfgpde as mp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log_problem(n=40, nt=20):
    g = mp.TensorGrid([(0, 1)], n, "periodic")
    return mp.MFGProblem(g, 1.0, nt, 0.1, mp.QuadraticHamiltonian(), lambda x: 1 + 0.8 * np.cos(2 * np.pi * x),
                         coupling=mp.LogCoupling() + mp.PotentialCoupling(lambda x: np.sin(2 * np.pi * x)),
                         terminal=lambda x: 0.5 * np.cos(2 * np.pi * x), normalize=True)


def test_newton_is_quadratic_on_b1():
    r = mp.solve(b1_problem(100, 100), method="newton", tol=1e-11)
    assert r.converged
    res = [h["residual"] for h in r.history]
    # the last steps: r_{k+1} <= C r_k^2 with a moderate C (a linear rate would need C ~ 1/r_k)
    tail = [(a, b) for a, b in zip(res[:-1], res[1:]) if a < 1.0]
    assert len(tail) >= 2
    for a, b in tail:
        assert b <= 50.0 * a * a + 1e-11, res
    assert r.diagnostics["mass_error"] < 1e-12
    assert r.diagnostics["min_density"] >= 0


def test_b1_direct_and_krylov_newton_agree():
    from mfgpde.fd.scheme import FDScheme
    from mfgpde.iterations import newton

    p = b1_problem(40, 40)
    sc = FDScheme(p)
    M0 = np.tile(p.m0.ravel(), (p.nt + 1, 1))
    U0, _ = sc.solve_hjb(M0)
    M0 = sc.solve_fp(U0, M_lag=M0)
    a = newton(sc, U0, M0, tol=1e-11, linear="direct")
    b = newton(sc, U0, M0, tol=1e-11, linear="krylov")
    assert a[3] == b[3] == "converged"
    np.testing.assert_allclose(a[1], b[1], atol=1e-10)
    # which solve each step made: LU records no Krylov iterations; "auto" is Krylov in 1D at any
    # size (the compiled tridiagonal sweeps), LU only for small 2D/3D systems
    assert all("krylov_iterations" not in r for r in a[2].records)
    assert all(r["krylov_iterations"] > 0 for r in b[2].records[:-1])
    c = newton(sc, U0, M0, tol=1e-11)
    assert c[3] == "converged" and all("krylov_iterations" in r for r in c[2].records[:-1])


@pytest.mark.parametrize("make", [log_problem, lambda: b1_problem(40, 40)])
def test_methods_agree_on_the_discrete_solution(make):
    p = make()
    rn = mp.solve(p, method="newton", tol=1e-11)
    rf = mp.solve(p, method="fixed_point", tol=1e-10, damping=0.5, max_iter=2000)
    assert rn.converged and rf.converged
    np.testing.assert_allclose(rf.m, rn.m, atol=1e-8 * np.abs(rn.m).max())
    np.testing.assert_allclose(rf.U, rn.U, atol=1e-8 * max(1, np.abs(rn.U).max()))
    # fictitious play converges like 1/k: check it is approaching the same solution
    rp = mp.solve(p, method="fictitious_play", tol=1e-12, max_iter=300)
    err = np.abs(rp.m - rn.m).max() / np.abs(rn.m).max()
    assert err < 2e-2
    res = [h["residual"] for h in rp.history]
    assert res[-1] < 0.05 * res[0]


def test_divergence_is_reported_not_returned_as_nan():
    """A coupling that returns NaN stops with a diagnostic naming the residual and iteration."""
    bad = mp.CallableCoupling(lambda m: np.where(m > 1.2, np.nan, m), lambda m: np.ones_like(m))
    p = log_problem().replace(coupling=bad)
    with pytest.raises(mp.ConvergenceError, match="non-finite"):
        mp.solve(p, method="newton")


def test_fixed_point_reports_stagnation_for_undamped_picard():
    """Plain Picard (theta = 1) on a strongly coupled problem oscillates: reported, not hidden."""
    p = log_problem().replace(coupling=mp.PowerCoupling(1.0, scale=200.0))
    r = mp.solve(p, method="fixed_point", damping=1.0, max_iter=400, tol=1e-10)
    assert not r.converged and r.status in ("stagnated", "max_iter")
    r2 = mp.solve(p, method="newton", tol=1e-10)
    assert r2.converged


def test_continuation_in_nu_reaches_small_viscosity():
    p = log_problem(60, 30).replace(nu=0.005)
    r = mp.continuation(p, "nu", [0.1, 0.03, 0.01], method="newton", tol=1e-10)
    assert r.converged
    assert [s["value"] for s in r.diagnostics["continuation"]["steps"]] == [0.1, 0.03, 0.01, 0.005]
    assert r.diagnostics["mass_error"] < 1e-12 and r.diagnostics["min_density"] > 0


def test_ergodic_manufactured_solution_first_order():
    """u = A cos(2 pi x), m = exp(-u/nu)/Z, rho = -log Z solve the ergodic MFG with f = log m + V."""
    from helpers import observed_order

    nu, A = 0.5, 0.3
    uex = lambda x: A * np.cos(2 * np.pi * x)

    def V(x):
        up, upp = -2 * np.pi * A * np.sin(2 * np.pi * x), -(2 * np.pi) ** 2 * A * np.cos(2 * np.pi * x)
        return -nu * upp + up**2 / 2 + uex(x) / nu

    ns, eu, em, er = [50, 100, 200, 400], [], [], []
    for n in ns:
        g = mp.TensorGrid([(0, 1)], n, "periodic")
        r = mp.solve(mp.ErgodicMFGProblem(g, nu, mp.QuadraticHamiltonian(),
                                          coupling=mp.LogCoupling() + mp.PotentialCoupling(V)), tol=1e-9)
        assert r.converged
        x = g.axes[0]
        mex = np.exp(-uex(x) / nu)
        Z = mex.mean()
        eu.append(np.abs(r.u - uex(x)).max())
        em.append(np.abs(r.m - mex / Z).max())
        er.append(abs(r.rho + np.log(Z)))
    h = 1.0 / np.array(ns)
    for e in (eu, em, er):
        assert 0.85 < observed_order(h, e) < 1.2, e


def _quadratic_tail(history, floor):
    """Pairs (r_k, r_{k+1}) of the Newton tail above the round-off floor, from where r < 1."""
    r = [h["residual"] for h in history]
    return [(a, b) for a, b in zip(r[:-1], r[1:]) if a < 1.0 and b > floor]


@pytest.mark.parametrize("case", ["congestion", "cnf"])
def test_newton_converges_quadratically(case):
    """r_{k+1} <= C r_k^2 in the tail, on a congestion problem (B2 at 16^2: recorded
    r_{k+1}/r_k^2 ~ 0.014) and on the first-order CNF preset (its nu = 0 stage: 7.7e-3, 1.8e-4,
    1.3e-8, ratios 2.9 and 0.41). C = 10: a linear rate (a Jacobian with a wrong or dropped
    block) at these residuals gives ratios of hundreds or more."""
    from mfgpde import config
    from mfgpde.generative.densities import gaussian
    from mfgpde.generative.presets import cnf_problem

    if case == "congestion":
        cfg = config.load(os.path.join(ROOT, "solvers", "lst_case2.toml"))
        cfg["grid"]["shape"], cfg["time"]["nt"] = [16, 16], 8
        r = mp.solve(config.build_problem(cfg), tol=1e-12)
    else:
        p = cnf_problem(mp.TensorGrid([(-5, 5)], 80, "noflux"), gaussian([1.0], 0.25), lam=1.0, T=1.0, nt=16)
        r = mp.solve(p, tol=1e-10)
        assert r.diagnostics["continuation"]["steps"][-1]["value"] == 0.0   # the history is the nu = 0 stage
    assert r.converged
    tail = _quadratic_tail(r.history, floor=1e-10)
    assert len(tail) >= 2, r.history
    assert all(b <= 10 * a * a for a, b in tail), tail


def test_newton_leaves_a_kink_instead_of_stalling():
    """LQ with a log coupling (floor 1e-14) on [-6, 6], T = 4, m0 = N(1.5, 0.25): the full first
    Newton step sent the bulk of m to -0.12 and the next line search found no descent (the
    residual's kink at the floor), so Newton returned 'stagnated' after one iteration. With the
    step capped at m >= -1e-6 max m and fixed-point sweeps after a failed line search it
    converges (12 iterations) to the tolerance, quadratically at the end."""
    g = mp.TensorGrid([(-6, 6)], 100, "noflux")
    p = mp.MFGProblem(g, 4.0, 40, 0.5, mp.QuadraticHamiltonian(),
                      m0=lambda x: np.exp(-(x - 1.5) ** 2 / 0.5) / np.sqrt(0.5 * np.pi),
                      coupling=mp.LogCoupling() + mp.PotentialCoupling(lambda x: x**2 / 2))
    r = mp.solve(p, method="newton", tol=1e-10)
    assert r.converged, r.diagnostics
    assert r.diagnostics["min_density"] >= 0 and r.diagnostics["mass_error"] < 1e-12
    tail = _quadratic_tail(r.history, 1e-10)
    assert tail and all(b <= 10 * a**2 for a, b in tail[-2:]), tail


def test_both_backends_implement_the_discretisation_contract():
    """The fixed point and Newton run on any Discretisation: the FD and FEM schemes are both
    Newton-Krylov ones (FEM with its own PETSc Newton systems). A scheme that lacks a half-sweep
    does not pass for one."""
    from mfgpde.fd.scheme import FDScheme
    from mfgpde.fem import fem_available
    from mfgpde.iterations import Discretisation, NewtonKrylovDiscretisation

    g = mp.TensorGrid([(0, 1)], 16, "periodic")
    p = mp.MFGProblem(g, 1.0, 4, 0.2, mp.QuadraticHamiltonian(), lambda x: 1 + 0 * x)
    fd = FDScheme(p)
    assert isinstance(fd, Discretisation) and isinstance(fd, NewtonKrylovDiscretisation)

    class NoSweep:
        problem, nt = p, 4

        def residual(self, U, M):
            return U, M

        def norm(self, R):
            return 0.0

    assert not isinstance(NoSweep(), Discretisation)
    if fem_available():
        from mfgpde.fem.scheme import FEMScheme
        from mfgpde.fem.solve import problem_on_mesh

        fem = FEMScheme(problem_on_mesh(p, None))
        assert isinstance(fem, Discretisation) and isinstance(fem, NewtonKrylovDiscretisation)
        assert callable(fem.solve_newton_system) and callable(fem.allreduce)
        fem.destroy()


def test_gmres_reaches_the_true_residual_and_terminates():
    """Right-preconditioned GMRES (mfgpde.iterations.gmres): the true residual meets
    ``|b - A x| <= rtol |b|`` on a nonsymmetric convection-diffusion matrix, with and without
    restarts and from a start; an exact preconditioner (M = A^-1) converges in one iteration;
    without restarts the Krylov space is the whole space after n iterations (finite termination)."""
    import scipy.sparse as sp

    from mfgpde.iterations.gmres import gmres

    n = 40
    A = sp.diags([-1.3, 2.2, -0.7], [-1, 0, 1], shape=(n, n)).tocsr() + sp.eye(n) * 0.05
    A = A.toarray()
    A[0, -1] = -0.4  # a periodic corner: not a tridiagonal Toeplitz matrix
    rng = np.random.default_rng(3)
    b = rng.standard_normal(n)
    ident = lambda v: v
    for restart, x0 in ((60, None), (7, None), (60, rng.standard_normal(n))):
        x, its, ok = gmres(lambda v: A @ v, ident, b, x0=x0, rtol=1e-10, restart=restart, maxiter=2000)
        assert ok and np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b)
        assert np.allclose(x, np.linalg.solve(A, b), rtol=0, atol=1e-7)
        if restart == 60:
            assert its <= n
    Ainv = np.linalg.inv(A)
    x, its, ok = gmres(lambda v: A @ v, lambda v: Ainv @ v, b, rtol=1e-12, restart=10)
    assert ok and its == 1
    # an iteration cap that stops short reports it, with the best iterate so far
    x, its, ok = gmres(lambda v: A @ v, ident, b, rtol=1e-12, restart=60, maxiter=3)
    assert not ok and its == 3 and np.linalg.norm(b - A @ x) < np.linalg.norm(b)
    assert gmres(lambda v: A @ v, ident, np.zeros(n))[1:] == (0, True)


class _Atan:
    """``R(z) = atan(z - 1)`` componentwise, as :func:`newton_iteration` consumes a system.

    Undamped Newton diverges from ``|z - 1| > 1.39`` (each step overshoots further), so what
    reaches the root from there is the globalisation. Beyond ``|z - 1| > domain`` the residual
    is NaN (like ``log m`` for ``m < 0``), and so it is below ``z - 1 < cliff``.
    ``root=False``: ``R(z) = z^2 + 1``, which has none.
    """

    def __init__(self, root=True, domain=np.inf, singular=False, cliff=-np.inf):
        self.root, self.domain, self.singular, self.cliff, self.solves = root, domain, singular, cliff, []

    def allreduce(self, value, op="sum"):
        return value

    def residual(self, z):
        R = np.arctan(z - 1.0) if self.root else z**2 + 1.0
        if np.abs(z - 1.0).max() > self.domain or (z - 1.0).min() < self.cliff:
            R = np.full_like(z, np.nan)
        return R, abs(R[0]), np.abs(R[1:]).max()

    def norm2(self, R):
        return np.linalg.norm(R)

    def linearise(self, z):
        return 1.0 / (1.0 + (z - 1.0) ** 2) if self.root else 2.0 * z

    def direction(self, J, R, res, dtau):
        if self.singular:
            raise RuntimeError("Factor is exactly singular")
        self.solves.append(dtau)
        with np.errstate(divide="ignore"):  # J = 0: an infinite direction, which the driver refuses
            return -R / (J + (0.0 if dtau is None else 1.0 / dtau)), {"solve": len(self.solves)}

    def max_step(self, z, dz):
        return 1.0


def _drive(system, z0, **kw):
    from mfgpde.iterations.base import IterationLog
    from mfgpde.iterations.newton import newton_iteration

    log = IterationLog("test", verbose=False)
    z, status, message = newton_iteration(system, np.array(z0, float), 1e-12, kw.pop("max_iter", 60), log, **kw)
    return z, status, message, log


@pytest.mark.parametrize("pseudo_dt", [None, 1.0, 1e13])
def test_one_newton_driver_reaches_the_root_where_plain_newton_diverges(pseudo_dt):
    """From z - 1 = (4, -3) the full Newton step overshoots to |z - 1| ~ 20, outside the
    residual's domain |z - 1| <= 6. The line search (pseudo_dt None) and the pseudo-time steps
    (retried with dtau / 4 while the trial is not finite or the residual more than doubles,
    even from dtau = 1e13, plain Newton) both reach the root. The line search's tail is
    quadratic (atan is odd about the root: even r_{k+1} <= r_k^2); the pseudo-time tail is
    superlinear, dtau growing tenfold per step."""
    sys_ = _Atan(domain=6.0)
    z, status, _msg, log = _drive(sys_, [5.0, -2.0], pseudo_dt=pseudo_dt)
    assert status == "converged" and np.abs(z - 1.0).max() < 1e-12
    assert abs(5.0 - 17.0 * np.arctan(4.0) - 1.0) > 6.0   # the undamped first step leaves the domain
    res = [r["residual"] for r in log.records]
    tail = [(a, b) for a, b in zip(res, res[1:]) if a < 0.1]
    assert log.steps == len(res) - 1 and [r["iteration"] for r in log.records] == list(range(len(res)))
    if pseudo_dt is None:
        assert tail and all(b <= a * a for a, b in tail), res
        assert min(r["step"] for r in log.records) < 1.0          # the line search cut a step
        assert set(sys_.solves) == {None} and len(sys_.solves) == len(res) - 1
    else:
        ratios = [b / a for a, b in tail]
        assert len(ratios) >= 3 and all(q < p for p, q in zip(ratios, ratios[1:])), res
        taus = [r["pseudo_dt"] for r in log.records]
        assert taus[-1] >= 100 * min(taus) and taus[-1] == 10 * taus[-2]
        if pseudo_dt == 1e13:                                    # retried: more solves than steps
            assert min(taus) < 100 and len(sys_.solves) > len(res) + 10


def test_one_newton_driver_stops_with_the_shared_statuses():
    # no root: the line search finds no descent (without sweeps to move the iterate, once stops it)
    _z, status, message, _log = _drive(_Atan(root=False), [0.5, 0.5])
    assert status == "stagnated" and "no descent" in message
    # pseudo time from 1e13 on a bounded residual: the overshoot never doubles |R|, the iterate
    # cycles about the root, and no tenfold decrease in 30 steps stops it
    _z, status, message, log = _drive(_Atan(), [5.0, -2.0], pseudo_dt=1e13, max_iter=200)
    assert status == "stagnated" and "30 iterations" in message and len(log.records) == 31
    # every step towards the root falls off a cliff (a NaN residual just below the start):
    # pseudo time shortens dtau to its floor, the line search halves its step to the floor (and,
    # with no sweeps to move the iterate off, stops at the first failure)
    _z, status, message, log = _drive(_Atan(cliff=4.0), [5.0, 5.0], pseudo_dt=1.0)
    assert status == "stagnated" and "below 1e-12" in message and len(log.records) == 1
    _z, status, message, log = _drive(_Atan(cliff=4.0), [5.0, 5.0])
    assert status == "stagnated" and "no descent" in message and len(log.records) == 1
    # a singular factor: reported with its message, the iterate kept
    z, status, message, log = _drive(_Atan(singular=True), [3.0, 3.0])
    assert status == "singular_jacobian" and "singular" in log.records[-1]["message"] and np.all(z == 3.0)
    # a non-finite direction is singular too
    _z, status, message, _log = _drive(_Atan(root=False), [0.0, 0.0])
    assert status == "singular_jacobian" and "not finite" in message
    # max_iter bounds the steps; each record says which linear solve its step made
    _z, status, _message, log = _drive(_Atan(), [5.0, -2.0], max_iter=2)
    assert status == "max_iter" and len(log.records) == 3 and log.records[1]["solve"] == 2


@pytest.mark.parametrize("hamiltonian, coupling, expected", [
    ("quadratic", "power", 1.0),                        # m may go negative: no cap (tails, round-off)
    ("quadratic", "log", 0.99 * (0.1 + 1e-6 * 2.0)),    # floored coupling: m >= -1e-6 max|m|
    ("congestion", "power", 0.99 * 0.1),                # H singular at m = 0 (c0 = 0): m > 0 strictly
])
def test_newton_step_cap_keeps_the_density_where_the_model_needs_it(hamiltonian, coupling, expected):
    """The fraction-to-the-boundary rule of the time-dependent Newton steps: with the density
    (0.1, 2, 1, 1) and the step (-1, 0, 0, 0), the cap is 0.99 of the distance to the bound that the
    Hamiltonian or the coupling needs, and no cap where neither needs one."""
    from mfgpde.fd.scheme import FDScheme
    from mfgpde.iterations.newton import SpaceTimeSystem

    g = mp.TensorGrid([(0, 1)], 4, "periodic")
    H = mp.QuadraticHamiltonian() if hamiltonian == "quadratic" else mp.CongestionHamiltonian(c0=0.0)
    c = mp.PowerCoupling(1.0) if coupling == "power" else mp.LogCoupling()
    p = mp.MFGProblem(g, 1.0, 1, 0.2, H, lambda x: 1 + 0 * x, coupling=c)
    system = SpaceTimeSystem(FDScheme(p), (1, 4), 1e-10, "auto", None, True, 4, 0.5)
    z = np.array([0.0, 0.0, 0.0, 0.0, 0.1, 2.0, 1.0, 1.0])
    dz = np.array([0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0])
    assert system.max_step(z, dz) == pytest.approx(expected, rel=1e-12)
    assert system.max_step(z, -dz) == 1.0               # no density decreases: a full step
    # the line search's merit is |R|_2 over both halves
    R = np.array([-1.0, 2.0, -3.0, 4.0, 5.0, -6.0, 7.0, -8.0])
    assert system.norm2(R) == pytest.approx(np.linalg.norm(R), rel=1e-15)
