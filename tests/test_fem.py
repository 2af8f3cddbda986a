"""The P1 finite-element backend (DOLFINx): closed form C3, agreement with FD, conservation,
positivity, serial vs ``mpiexec -n 2``, meshes with holes, bad input.

Skipped with a visible reason when the FEM extra is not installed (Python < 3.12); CI installs
it, so there these tests always run.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import observed_order

from mfgpde.fem import INSTALL_HINT, fem_available

if os.environ.get("MFGPDE_REQUIRE_FEM") and not fem_available():
    # CI sets this: there the FEM tests must run, never be skipped
    raise RuntimeError("MFGPDE_REQUIRE_FEM is set but the FEM extra is missing: " + INSTALL_HINT)

pytestmark = [pytest.mark.fem,
              pytest.mark.skipif(not fem_available(), reason="FEM extra (DOLFINx) not installed: " + INSTALL_HINT)]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def mp():
    import mfgpde

    return mfgpde


def c3_problem(mp, dom, nt, nu=0.05, q=1.0, g0=1.0, T=0.5, s0=0.3):
    from mfgpde.closed_forms import LinearQuadratic

    lq = LinearQuadratic(q, g0, nu, T, [0.0] * dom.dim, s0)
    prob = mp.MFGProblem(dom, T=T, nt=nt, nu=nu, hamiltonian=mp.QuadraticHamiltonian(),
                         m0=lambda *x: lq.m(0, *x), coupling=mp.PotentialCoupling(lambda *x: 0.5 * q * sum(c**2 for c in x)),
                         terminal=lambda *x: 0.5 * g0 * sum(c**2 for c in x), normalize=True, name="c3")
    return prob, lq


def test_c3_observed_order_1d(mp):
    """FEM against the closed form C3: L1 error of m(T) and sup error of U(0) fall at order ~1."""
    from mfgpde.fem.domain import MeshDomain

    hs, em, eu = [], [], []
    for n in (40, 80, 160):
        dom = MeshDomain.interval(n, bounds=(-2.0, 2.0))
        prob, lq = c3_problem(mp, dom, nt=n // 2)
        r = mp.solve(prob, tol=1e-11)
        assert r.converged
        x = dom.coords[:, 0]
        em.append(dom.integrate(np.abs(r.m_local[-1] - lq.m(prob.T, x))))
        inner = np.abs(x) < 1.0  # away from the truncated tails
        eu.append(np.abs(r.U_local[0] - lq.U(0.0, x))[inner].max())
        hs.append(4.0 / n)
    pm = observed_order(hs, em)
    pu = observed_order(hs, eu)
    assert 0.75 < pm < 1.4, (em, pm)
    assert 0.75 < pu < 1.4, (eu, pu)


def test_fem_error_estimate_is_close_to_the_true_error(mp):
    """The two-mesh estimate (the nested mesh with half the cells and steps, mfgpde.fem.estimate)
    against the closed forms: C3 in 1D and 2D (L1 error of m(T), measured 0.87 and 0.73 of the
    true error) and E1 on a crossed mesh (rho and the L1 error of m, 1.2 and 1.2); the two
    P1 gradient and support norms are reported too. The band is 0.6-1.5 (the target is a factor
    2): a factor 2 planted in the L1 norm or in rho fails it."""
    from mfgpde.closed_forms import ErgodicLQ
    from mfgpde.fem.domain import MeshDomain

    for dom, nt in ((MeshDomain.interval(80, bounds=(-2.0, 2.0)), 40),
                    (MeshDomain.rectangle((32, 32), bounds=((-2, 2), (-2, 2))), 16)):
        prob, lq = c3_problem(mp, dom, nt=nt)
        r = mp.solve(prob, tol=1e-11)
        est = r.error_estimate
        true = dom.integrate(np.abs(r.m_local[-1] - lq.m(prob.T, *dom.coords.T)))
        assert 0.6 < est["m_L1_final"] / true < 1.5, (dom.dim, est, true)   # (0.87, 0.73 measured)
        assert est["m_L1_max"] >= est["m_L1_final"] and est["grad_U_weighted"] > 0 and est["U_max_support"] > 0
        assert est["order"] == 1 and r.summary()["error_estimate"] == est
    ex = ErgodicLQ(0.5, d=2)
    dom = MeshDomain.rectangle((20, 20), bounds=((-5, 5), (-5, 5)), diagonal="crossed")
    c = mp.LogCoupling(floor=1e-10) + mp.PotentialCoupling(lambda x, y: (x**2 + y**2) / 2)
    r = mp.solve(mp.ErgodicMFGProblem(dom, 0.5, mp.QuadraticHamiltonian(), coupling=c))
    est = r.error_estimate
    true_m = dom.integrate(np.abs(r.m[dom.start:dom.start + dom.n] - ex.m(*dom.coords.T)))
    assert 0.6 < est["rho"] / abs(r.rho - ex.rho) < 1.5 and 0.6 < est["m_L1"] / true_m < 1.5, (est, r.rho, true_m)


def test_fem_error_estimate_says_why_it_is_missing(mp):
    """No nested mesh, no estimate, and the reason: a gmsh mesh, an odd number of cells, an odd
    nt, an initial density given as a mesh array; ``error_estimate=False`` skips the coarse solve."""
    from mfgpde.fem import geometry
    from mfgpde.fem.domain import MeshDomain

    def why(dom, nt=8, m0=None, **kw):
        p = mp.MFGProblem(dom, T=0.25, nt=nt, nu=0.2, hamiltonian=mp.QuadraticHamiltonian(),
                          m0=(lambda *x: 1.0 + 0.0 * x[0]) if m0 is None else m0, coupling=mp.LogCoupling())
        r = mp.solve(p, tol=1e-9, **kw)
        assert r.converged and r.error_estimate is None
        return r.diagnostics.get("error_estimate_unavailable")

    assert "no nested coarse mesh" in why(geometry.room(width=1.0, height=1.0, obstacles=[], h=0.2))
    assert "even number of cells" in why(MeshDomain.interval(11))
    assert "nt must be even" in why(MeshDomain.interval(12), nt=7)
    line = MeshDomain.interval(12)
    assert "m0 is given as an array" in why(line, m0=np.ones(line.n))
    assert why(line, error_estimate=False) is None


def test_c3_2d_on_unstructured_mesh_with_log_coupling_conserves_and_stays_positive(mp):
    """A coupled 2D problem on a gmsh mesh with a hole: Newton converges quadratically, mass is
    conserved to round-off and m >= 0."""
    from mfgpde.fem import geometry

    dom = geometry.room(width=2.0, height=1.0, obstacles=[(1.0, 0.5, 0.15)], h=0.06)
    assert dom.stabilised_edges >= 0 and dom.n > 300
    prob = mp.MFGProblem(dom, T=0.5, nt=10, nu=0.05, hamiltonian=mp.QuadraticHamiltonian(),
                         m0=lambda x, y: np.exp(-((x - 0.4) ** 2 + (y - 0.5) ** 2) / 0.02), coupling=mp.LogCoupling(0.1),
                         terminal=lambda x, y: (x - 2.0) ** 2, normalize=True)
    r = mp.solve(prob, tol=1e-10)
    assert r.converged
    d = r.diagnostics
    assert d["mass_error"] < 1e-12
    assert d["min_density"] >= -1e-14
    res = [h["residual"] for h in r.history]
    tail = [(a, b) for a, b in zip(res[:-1], res[1:]) if a < 1e-2]
    assert all(b <= 100 * a * a + 1e-10 for a, b in tail), res


def _b2_fem_and_fd(mp, n, nt, tol, edit=None):
    """B2 (solvers/lst_case2.toml) at n^2 x nt, edited by ``edit(cfg)``, solved on the
    right-diagonal periodic mesh and by FD; returns both results, the FD fields at the mesh's
    vertices (m(T), U(0)) and the configuration."""
    from mfgpde import config

    cfg = config.load(os.path.join(ROOT, "solvers", "lst_case2.toml"))
    cfg["grid"]["shape"], cfg["time"]["nt"] = [n, n], nt
    if edit is not None:
        edit(cfg)
    p = config.build_problem(cfg)
    rfe = mp.solve(p, backend="fem", tol=tol)
    rfd = mp.solve(p, backend="fd", tol=tol)
    assert rfe.converged and rfd.converged, (rfe.diagnostics, rfd.diagnostics)
    ix = np.rint(rfe.coords[:, 0] / p.grid.h[0]).astype(int) % n
    iy = np.rint(rfe.coords[:, 1] / p.grid.h[1]).astype(int) % n
    return rfe, rfd, (rfd.m[-1][ix, iy], rfd.U[0][ix, iy]), cfg


def test_fem_equals_fd_on_b2_structured_periodic_mesh(mp):
    """On a right-diagonal periodic mesh the P1 edge scheme is the FD scheme: B2 (congestion,
    c0 = 0) gives the same discrete solution to solver tolerance."""
    rfe, _, (m_fd, U_fd), _ = _b2_fem_and_fd(mp, 24, 12, 1e-11)
    assert np.abs(rfe.m[-1] - m_fd).max() < 1e-8
    assert np.abs(rfe.U[0] - U_fd).max() < 1e-8
    assert rfe.diagnostics["mass_error"] < 1e-12


def test_fem_equals_fd_with_a_drift_on_right_diagonal_periodic_mesh(mp):
    """A time-dependent drift b(t, x, y) = (sin(2 pi y) + 2 t - 0.5, cos(2 pi x)) (both signs on
    both axes) on B2: on a right-diagonal mesh the edge upwinding of -b . grad U and its adjoint
    in the FP equation are the FD upwinding (across the periodic seam by minimum-image edge
    vectors), so the discrete solutions coincide to solver tolerance. The drift moves the
    solution: without it m(T) differs by more than 1e-2."""
    from mfgpde import config

    def drift(cfg):
        cfg["model"]["drift"] = ["sin(2 * pi * y) + 2 * t - 0.5", "cos(2 * pi * x)"]

    rfe, rfd, (m_fd, U_fd), cfg = _b2_fem_and_fd(mp, 16, 8, 1e-11, drift)
    assert np.abs(rfe.m[-1] - m_fd).max() < 1e-8
    assert np.abs(rfe.U[0] - U_fd).max() < 1e-8
    assert rfe.diagnostics["mass_error"] < 1e-12 and rfe.diagnostics["min_density"] >= 0
    del cfg["model"]["drift"]
    still = mp.solve(config.build_problem(cfg), backend="fd", tol=1e-11)
    assert np.abs(still.m[-1] - rfd.m[-1]).max() > 1e-2


def test_fem_equals_fd_with_a_hamiltonian_nonlinear_in_s_on_right_diagonal_periodic_mesh(mp):
    """H = |p|^3 / 3 on B2's grid: phi(S) = S^(3/2) / 3 has phi_SS != 0, so the Newton Jacobian
    carries the Hessian block D^T diag(m phi_SS) D on the mesh (``ds_matrix``, ``hessian_matrix``),
    which the quadratic and congestion cases leave at zero. The discrete solutions coincide with FD
    to solver tolerance (the block itself: ``test_fem_jacobian_product_is_the_derivative_of_the_residual``)."""
    def power(cfg):
        cfg["hamiltonian"] = {"type": "power", "q": 3.0}

    rfe, _, (m_fd, U_fd), _ = _b2_fem_and_fd(mp, 16, 8, 1e-11, power)
    assert np.abs(rfe.m[-1] - m_fd).max() < 1e-8
    assert np.abs(rfe.U[0] - U_fd).max() < 1e-8
    assert rfe.diagnostics["residual"] < 1e-11


@pytest.mark.parametrize("hamiltonian", ["power", "congestion"])
def test_fem_jacobian_product_is_the_derivative_of_the_residual(mp, hamiltonian):
    """The mesh linearisation's ``J z`` equals the central difference of the residual along z, on a
    crossed mesh with a drift, a log coupling and a Hamiltonian with phi_SS != 0 (|p|^3) or
    depending on m (congestion): every block of the Newton matrix (the Hessian block
    D^T diag(m phi_SS) D, the m-derivative of H, the drift and its adjoint) states its derivative."""
    from mfgpde.fem.domain import MeshDomain
    from mfgpde.fem.linearisation import FEMLinearisation, jacobian_product
    from mfgpde.fem.scheme import FEMScheme

    dom = MeshDomain.rectangle((7, 6), bounds=((0.0, 1.0), (0.0, 1.0)), diagonal="crossed")
    H = mp.PowerHamiltonian(3.0) if hamiltonian == "power" else mp.CongestionHamiltonian(0.5, 1.0, 1.0)
    prob = mp.MFGProblem(dom, T=0.3, nt=3, nu=0.1, hamiltonian=H, m0=lambda x, y: 1 + 0.5 * np.cos(np.pi * x),
                         coupling=mp.LogCoupling(), terminal=lambda x, y: np.cos(np.pi * y),
                         drift=lambda t, x, y: (0.3 * np.sin(2 * y) + t, -0.2 + 0 * x))
    sc = FEMScheme(prob)
    rng = np.random.default_rng(7)
    shape = (prob.nt + 1, sc.n)
    U = rng.standard_normal(shape)
    M = 1 + 0.5 * rng.random(shape)
    z = rng.standard_normal(2 * U.size)
    zU, zM = z[:U.size].reshape(shape), z[U.size:].reshape(shape)
    eps = 1e-6

    def R(a):
        ru, rm = sc.residual(U + a * zU, M + a * zM)
        return np.concatenate([ru.ravel(), rm.ravel()])

    fd = (R(eps) - R(-eps)) / (2 * eps)
    Jz = jacobian_product(FEMLinearisation(sc, U, M), z)
    np.testing.assert_allclose(Jz, fd, rtol=0, atol=1e-6 * np.abs(fd).max())
    sc.destroy()


def test_fem_drift_transports_the_mean_on_a_crossed_mesh(mp):
    """No costs (U = 0), constant drift b = (0.6, -0.3): the players follow dX = b dt + noise,
    so the mean of m moves by b T exactly (the walls are far from the density). On a
    crossed-diagonal mesh (stars with diagonal edges, where the FD and FEM schemes differ) the
    mean displacement is b T to O(h), mass is conserved and m stays >= 0. A reversed drift or
    a dropped adjoint moves the mean the wrong way or loses mass."""
    from mfgpde.fem.domain import MeshDomain

    dom = MeshDomain.rectangle([24, 24], bounds=((-1.5, 1.5), (-1.5, 1.5)), diagonal="crossed", name="crossed")
    T = 1.0
    p = mp.MFGProblem(dom, T=T, nt=20, nu=0.02, hamiltonian=mp.QuadraticHamiltonian(),
                      m0=lambda x, y: np.exp(-((x + 0.3) ** 2 + (y - 0.15) ** 2) / (2 * 0.15**2)),
                      drift=lambda t, x, y: (0.6 + 0 * x, -0.3 + 0 * y), normalize=True)
    r = mp.solve(p, tol=1e-10)
    assert r.converged and r.diagnostics["mass_error"] < 1e-12 and r.diagnostics["min_density"] >= 0
    mu = dom.mu
    mean0 = [(mu * r.m_local[0] * c).sum() for c in dom.coordinates()]
    meanT = [(mu * r.m_local[-1] * c).sum() for c in dom.coordinates()]
    np.testing.assert_allclose(np.subtract(meanT, mean0), [0.6 * T, -0.3 * T], atol=0.02)


def test_fem_equals_fd_with_a_convolution_coupling_on_right_diagonal_periodic_mesh(mp):
    """A Gaussian convolution coupling (width 0.1, the nonlocal congestion of crowd models) on
    B2: the mesh evaluates int K(x_i - y) m(y) dy by lumped quadrature over the vertices within
    the kernel's cut-off (KD-tree, minimum image across the seams), which on a uniform periodic
    mesh is the FD circular convolution: the discrete solutions coincide (recorded 9e-14). The
    coupling matters: without it m(T) differs by more than 1e-3."""
    from mfgpde import config

    def convolution(cfg):
        cfg["coupling"] = [{"type": "convolution", "kernel": "exp(-(x**2 + y**2) / (2 * 0.1**2))", "scale": 0.5}]

    rfe, _, (m_fd, U_fd), cfg = _b2_fem_and_fd(mp, 12, 6, 1e-10, convolution)
    assert np.abs(rfe.m[-1] - m_fd).max() < 1e-9
    assert np.abs(rfe.U[0] - U_fd).max() < 1e-9
    cfg["coupling"] = []
    free = mp.solve(config.build_problem(cfg), backend="fem", tol=1e-10)
    assert np.abs(free.m_local[-1] - rfe.m_local[-1]).max() > 1e-3


def test_mesh_convolution_cut_off_is_sparse_and_exact_to_the_cut_off(mp):
    """On a no-flux mesh of 41^2 vertices a Gaussian kernel of width 0.05 keeps only the pairs
    within its cut-off (|K| > 1e-12 max K, radius ~0.37): far fewer than all pairs, and the
    product equals the dense quadrature sum to 1e-10 relative (recorded 3e-12: the dropped
    pairs each weigh < 1e-12 max K)."""
    from mfgpde.fem.domain import MeshDomain

    dom = MeshDomain.rectangle((40, 40), diagonal="crossed")
    c = mp.ConvolutionCoupling(lambda x, y: np.exp(-(x**2 + y**2) / (2 * 0.05**2)))
    W, radius = c._mesh_matrix(dom)
    assert 0.3 < radius < 0.45 and W.nnz < 0.45 * dom.n**2
    rng = np.random.default_rng(0)
    m = rng.random(dom.n)
    X = dom.coords
    D = np.exp(-((X[:, None, 0] - X[None, :, 0]) ** 2 + (X[:, None, 1] - X[None, :, 1]) ** 2) / (2 * 0.05**2))
    dense = D @ (dom.mu * m)
    np.testing.assert_allclose(c.value(m, dom), dense, rtol=0, atol=1e-10 * dense.max())


def test_ergodic_on_right_diagonal_periodic_mesh_equals_fd(mp):
    """The ergodic problem on a mesh (log coupling + potential, periodic square) from a cold
    start: on a right-diagonal periodic mesh the P1 edge scheme is the FD scheme, so u, m and
    rho coincide to solver tolerance; mass 1 to round-off, m > 0."""
    from mfgpde.fem.domain import MeshDomain

    n = 24
    V = mp.PotentialCoupling(lambda x, y: np.cos(2 * np.pi * x) + 0.5 * np.sin(2 * np.pi * y))
    dom = MeshDomain.rectangle((n, n), periodic=(True, True))
    g = mp.TensorGrid([(0, 1), (0, 1)], n, "periodic")
    rfe = mp.solve(mp.ErgodicMFGProblem(dom, 0.2, mp.QuadraticHamiltonian(), coupling=mp.LogCoupling() + V))
    rfd = mp.solve(mp.ErgodicMFGProblem(g, 0.2, mp.QuadraticHamiltonian(), coupling=mp.LogCoupling() + V))
    assert rfe.converged and rfd.converged, (rfe.diagnostics, rfd.diagnostics)
    ix = np.rint(rfe.coords[:, 0] * n).astype(int) % n
    iy = np.rint(rfe.coords[:, 1] * n).astype(int) % n
    assert abs(rfe.rho - rfd.rho) < 1e-9 and abs(rfd.rho) > 1e-2
    assert np.abs(rfe.m - rfd.m[ix, iy]).max() < 1e-9
    assert np.abs(rfe.u - rfd.u[ix, iy]).max() < 1e-9
    assert rfe.diagnostics["mass_error"] < 1e-12 and rfe.m.min() > 0


def test_ergodic_on_crossed_mesh_against_the_closed_form(mp):
    """E1 (Gaussian invariant density, closed_forms.ErgodicLQ) on crossed no-flux meshes of
    [-5, 5]^2 from a cold start: rho and m converge to the closed form under refinement
    (recorded 20 / 40 cells: rho error 0.059 / 0.028, relative max m error 0.026 / 0.012)."""
    from mfgpde.closed_forms import ErgodicLQ
    from mfgpde.fem.domain import MeshDomain

    ex = ErgodicLQ(0.5, d=2)
    errs = []
    for n in (20, 40):
        dom = MeshDomain.rectangle((n, n), bounds=((-5, 5), (-5, 5)), diagonal="crossed")
        c = mp.LogCoupling(floor=1e-10) + mp.PotentialCoupling(lambda x, y: (x**2 + y**2) / 2)
        r = mp.solve(mp.ErgodicMFGProblem(dom, 0.5, mp.QuadraticHamiltonian(), coupling=c))
        assert r.converged and r.diagnostics["mass_error"] < 1e-12, r.diagnostics
        errs.append((abs(r.rho - ex.rho), np.abs(r.m - ex.m(*r.coords.T)).max() / ex.m(0.0, 0.0)))
    errs = np.array(errs)
    assert np.all(errs[1] < 0.6 * errs[0]) and errs[1, 0] < 0.05 and errs[1, 1] < 0.02, errs


@pytest.mark.mpi
def test_ergodic_mesh_serial_and_mpi_cli_agree(tmp_path):
    """``mpiexec -n 2 mfgpde solve`` on an ergodic mesh configuration (kind = "ergodic", drift
    and log coupling on a crossed rectangle) gives the serial u, m and rho; summary.json,
    solution.nc and the plot are written."""
    import xarray as xr

    cfg = tmp_path / "erg.toml"
    cfg.write_text("""
kind = "ergodic"
[mesh]
type = "rectangle"
n = [16, 12]
bounds = [[-3, 3], [-2, 2]]
diagonal = "crossed"
[model]
nu = 0.4
drift = ["0.3 * y", "-0.3 * x"]
[[coupling]]
type = "log"
floor = 1e-10
[[coupling]]
type = "potential"
expr = "(x**2 + 2 * y**2) / 2"
""")
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    runs = {}
    for ranks in (1, 2):
        out = tmp_path / f"o{ranks}"
        cmd = [sys.executable, "-m", "mfgpde", "solve", str(cfg), "--out", str(out)]
        proc = subprocess.run(([mpiexec, "-n", str(ranks)] if ranks > 1 else []) + cmd, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        s = json.load(open(out / "summary.json"))
        assert s["converged"] and s["ranks"] == ranks and s["mass_error"] < 1e-12
        assert (out / "solution.png").stat().st_size > 10_000
        with xr.open_dataset(out / "solution.nc") as ds:
            order = np.lexsort(np.round(np.stack([ds["y"].values, ds["x"].values]), 9))
            runs[ranks] = (s["rho"], ds["u"].values[order], ds["m"].values[order])
            runs[ranks] += (s["error_estimate"],)
    assert abs(runs[1][0] - runs[2][0]) < 1e-10
    assert np.abs(runs[1][1] - runs[2][1]).max() < 1e-9 and np.abs(runs[1][2] - runs[2][2]).max() < 1e-9
    # the two-mesh error estimate (the 8 x 6 crossed mesh) is the same on 1 and 2 ranks
    est1, est2 = runs[1][3], runs[2][3]
    assert est1 is not None and est1["m_L1"] > 0 and est1.keys() == est2.keys()
    assert all(abs(est1[k] - est2[k]) <= 1e-8 * abs(est1[k]) for k in ("m_L1", "m_max_rel", "u_max_support",
                                                                       "grad_u_weighted", "rho"))


def test_fem_and_fd_agree_on_c3_2d_to_discretisation_error(mp):
    """C3 in 2D on no-flux boxes: FD (cell centres) and FEM (vertices) differ by much less than
    their own errors against the closed form, and the gap shrinks faster than those errors."""
    from scipy.interpolate import RegularGridInterpolator

    gaps, errs = [], []
    for n in (16, 32):
        grid = mp.TensorGrid([(-1.5, 1.5)] * 2, n, "noflux")
        from mfgpde.closed_forms import LinearQuadratic

        lq = LinearQuadratic(1.0, 1.0, 0.05, 0.5, [0.0, 0.0], 0.3)
        prob = mp.MFGProblem(grid, T=0.5, nt=n // 2, nu=0.05, hamiltonian=mp.QuadraticHamiltonian(),
                             m0=lambda x, y, lq=lq: lq.m(0, x, y), coupling=mp.PotentialCoupling(lambda x, y: 0.5 * (x**2 + y**2)),
                             terminal=lambda x, y: 0.5 * (x**2 + y**2), normalize=True)
        rfd = mp.solve(prob, backend="fd")
        rfe = mp.solve(prob, backend="fem")
        X = rfe.coords
        fd_at_nodes = RegularGridInterpolator(grid.axes, rfd.m[-1], bounds_error=False, fill_value=None)(X)
        exact = lq.m(0.5, X[:, 0], X[:, 1])
        dom = rfe.domain
        gaps.append(dom.integrate(np.abs(fd_at_nodes - rfe.m[-1])))
        errs.append(dom.integrate(np.abs(rfe.m[-1] - exact)))
    # recorded: gap 0.028 -> 0.0072 (order 1.9), FEM error 0.19 -> 0.10: the two schemes share their
    # leading (upwind) error, so they agree far better than either matches the closed form
    assert observed_order([1 / 16, 1 / 32], gaps) > 1.5, gaps
    assert gaps[-1] < 0.15 * errs[-1], (gaps, errs)


def test_fixed_point_matches_newton_on_mesh(mp):
    from mfgpde.fem.domain import MeshDomain

    dom = MeshDomain.rectangle((12, 12), bounds=((0.0, 1.0), (0.0, 1.0)), diagonal="crossed")
    prob = mp.MFGProblem(dom, T=0.3, nt=6, nu=0.1, hamiltonian=mp.QuadraticHamiltonian(),
                         m0=lambda x, y: 1 + 0.5 * np.cos(np.pi * x), coupling=mp.PowerCoupling(1.0, 0.5),
                         terminal=lambda x, y: np.cos(np.pi * y), normalize=True)
    rn = mp.solve(prob, tol=1e-11)
    rf = mp.solve(prob, method="fixed_point", damping=0.7, tol=1e-10)
    ri = mp.solve(prob, tol=1e-11, linear_solver="iterative")
    assert rn.converged and rf.converged and ri.converged
    assert np.abs(rn.m_local - rf.m_local).max() < 1e-8
    assert np.abs(rn.m_local - ri.m_local).max() < 1e-9


def test_xdmf_and_npz_outputs(mp, tmp_path):
    from mfgpde.fem.domain import MeshDomain

    dom = MeshDomain.rectangle((8, 8))
    prob = mp.MFGProblem(dom, T=0.2, nt=4, nu=0.1, hamiltonian=mp.QuadraticHamiltonian(),
                         m0=lambda x, y: 1 + x, terminal=lambda x, y: y, normalize=True)
    r = mp.solve(prob)
    r.write_xdmf(tmp_path / "sol.xdmf")
    r.save(tmp_path / "sol.npz")
    r.plot(str(tmp_path / "sol.png"))
    assert (tmp_path / "sol.xdmf").exists() and (tmp_path / "sol.h5").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    with np.load(tmp_path / "sol.npz") as z:
        assert z["m"].shape == (5, 81)
    text = (tmp_path / "sol.xdmf").read_text()
    assert text.count('Name="m"') >= 5


def test_bad_mesh_input(mp, tmp_path):
    from mfgpde.fem.domain import MeshDomain

    with pytest.raises(FileNotFoundError, match="does not exist"):
        MeshDomain.from_file(tmp_path / "nope.msh")
    bad = tmp_path / "bad.msh"
    bad.write_text("this is not a mesh\n")
    with pytest.raises(ValueError, match="not a gmsh mesh"):
        MeshDomain.from_file(bad)
    other = tmp_path / "mesh.txt"
    other.write_text("1 2 3\n")
    with pytest.raises(ValueError, match="unknown format"):
        MeshDomain.from_file(other)
    with pytest.raises(ValueError, match="at least 2 cells"):
        MeshDomain.rectangle((1, 5))
    from mfgpde.fem import geometry

    with pytest.raises(ValueError, match="obstacle 0"):
        geometry.room(obstacles=[(0.1, 0.5, 0.3)])


def test_fem_scheme_options_are_checked(mp):
    """The step-solver options of the mesh scheme: refused out of range with their name, accepted
    on the boundary (an additive Schwarz overlap of 0 is block Jacobi)."""
    from mfgpde.fem.domain import MeshDomain
    from mfgpde.fem.scheme import FEMScheme

    dom = MeshDomain.rectangle((4, 4), bounds=((0.0, 1.0), (0.0, 1.0)))
    prob = mp.MFGProblem(dom, T=0.3, nt=2, nu=0.1, hamiltonian=mp.QuadraticHamiltonian(), m0=lambda x, y: 1 + 0 * x)
    assert FEMScheme(prob, asm_overlap=0).asm_overlap == 0
    default = FEMScheme(prob)
    assert default.asm_overlap == 16 and default.linear_solver == "direct"
    with pytest.raises(ValueError, match="asm_overlap must be >= 0, got -1"):
        FEMScheme(prob, asm_overlap=-1)
    with pytest.raises(ValueError, match="parallel_step must be 'asm' or 'mumps'"):
        FEMScheme(prob, parallel_step="ilu")
    with pytest.raises(ValueError, match="linear_solver must be 'auto', 'direct' or 'iterative'"):
        FEMScheme(prob, linear_solver="lu")


def test_fem_hjb_sweep_refuses_non_finite_data(mp):
    """A terminal cost or coupling that is non-finite at the densities reached (log m where m = 0)
    stops the mesh HJB sweep with a message naming it, before any step is solved."""
    from mfgpde.couplings import CallableCoupling
    from mfgpde.fem.domain import MeshDomain
    from mfgpde.fem.scheme import FEMScheme
    from mfgpde.iterations.base import ConvergenceError

    dom = MeshDomain.rectangle((4, 4), bounds=((0.0, 1.0), (0.0, 1.0)))
    M = np.ones((3, dom.n))
    M[-1, 0] = M[1, 0] = 0.0
    log = CallableCoupling(np.log, lambda m: 1 / m)
    for kw, name in ((dict(terminal=log), "terminal cost"), (dict(coupling=log), "coupling")):
        prob = mp.MFGProblem(dom, T=0.3, nt=2, nu=0.1, hamiltonian=mp.QuadraticHamiltonian(),
                             m0=lambda x, y: 1 + 0 * x, **kw)
        sc = FEMScheme(prob)
        with np.errstate(divide="ignore"), pytest.raises(ConvergenceError, match=f"the {name}.* is non-finite"):
            sc.solve_hjb(M)
        sc.destroy()


def test_cli_bad_mesh_file_is_a_clear_error(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[mesh]\ntype = "file"\npath = "missing.msh"\n[time]\nT = 1.0\nnt = 4\n[model]\nnu = 0.1\n'
                   '[m0]\ntype = "expr"\nexpr = "1 + 0 * x"\n')
    out = subprocess.run([sys.executable, "-m", "mfgpde", "solve", str(cfg), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "missing.msh" in out.stderr and "does not exist" in out.stderr
    assert "Traceback" not in out.stderr


def cli_solve(cfg, out, ranks):
    """``[mpiexec -n ranks] mfgpde solve cfg``; returns the summary and the gathered (m, U) in
    coordinate order (dof numbering depends on the partition)."""
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [sys.executable, "-m", "mfgpde", "solve", str(cfg), "--out", str(out), "--no-plot"]
    proc = subprocess.run(([mpiexec, "-n", str(ranks)] if ranks > 1 else []) + cmd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(out / "solution.npz") as z:
        order = np.lexsort(np.round(z["coords"].T[::-1], 9))
        fields = z["m"][:, order], z["U"][:, order]
    return json.load(open(out / "summary.json")), fields


@pytest.mark.mpi
def test_serial_and_mpi_cli_solves_agree(tmp_path):
    """``mpiexec -n 2 mfgpde solve`` on the crowd-room configuration (coarse) gives the serial
    result to solver tolerance, writes XDMF for ParaView and the usual summary.json."""
    import mfgpde.config as config

    src = config.load(os.path.join(ROOT, "solvers", "crowd_room.toml"))
    text = open(src["_path"]).read().replace("h = 0.0105", "h = 0.06").replace("nt = 50", "nt = 10")
    cfg = tmp_path / "crowd.toml"
    cfg.write_text(text)
    runs = {}
    for n in (1, 2):
        summary, runs[n] = cli_solve(cfg, tmp_path / f"o{n}", n)
        assert summary["converged"] and summary["ranks"] == n
        assert (tmp_path / f"o{n}" / "solution.xdmf").exists() and (tmp_path / f"o{n}" / "solution.h5").exists()
    assert np.abs(runs[1][0] - runs[2][0]).max() < 1e-8
    assert np.abs(runs[1][1] - runs[2][1]).max() < 1e-8


@pytest.mark.mpi
def test_fem_sweep_under_mpiexec_returns_every_member(tmp_path):
    """A sweep of FEM members over 2 ranks: each member is a serial mesh solve on its rank; a bad
    value is a failed row, the others finish."""
    cfg = tmp_path / "s.toml"
    cfg.write_text('name = "s"\nnormalize_m0 = true\n[mesh]\ntype = "rectangle"\nn = [10, 10]\n[time]\nT = 0.2\nnt = 4\n'
                   '[model]\nnu = 0.1\n[hamiltonian]\ntype = "quadratic"\n[[coupling]]\ntype = "log"\nscale = 0.1\n'
                   '[terminal]\ntype = "potential"\nexpr = "x"\n[m0]\ntype = "expr"\nexpr = "1 + x * y"\n')
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    out = tmp_path / "o"
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "mfgpde", "sweep", str(cfg), "--param",
                           "model.nu=0.05,0.1,-1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]   # the nu = -1 member fails: exit 2
    table = json.load(open(out / "sweep.json"))["members"]
    assert [r["model.nu"] for r in table] == [0.05, 0.1, -1]
    assert {r["rank"] for r in table} == {0, 1}
    assert table[0]["converged"] and table[1]["converged"]
    assert table[2]["status"] == "error" and "nu" in table[2]["message"]


def test_c3_observed_order_on_unstructured_gmsh_meshes(mp):
    """C3 on Frontal-Delaunay meshes of [0, 3]^2 (h and dt halved together): the upwind square is
    only approximately consistent there, yet m(T) and U(0) converge at order ~1
    (validation/fem_convergence.py runs one more level: 0.89 and 0.98)."""
    from mfgpde.closed_forms import LinearQuadratic
    from mfgpde.fem import geometry

    c, T, nu = 1.5, 0.5, 0.05
    lq = LinearQuadratic(1.0, 1.0, nu, T, [c, c], 0.3)
    hs, em, eu = [], [], []
    for h in (0.2, 0.1, 0.05):
        dom = geometry.room(width=3.0, height=3.0, obstacles=[], h=h)
        prob = mp.MFGProblem(dom, T=T, nt=int(round(0.5 / h)), nu=nu, hamiltonian=mp.QuadraticHamiltonian(),
                             m0=lambda x, y: lq.m(0, x, y),
                             coupling=mp.PotentialCoupling(lambda x, y: 0.5 * ((x - c) ** 2 + (y - c) ** 2)),
                             terminal=lambda x, y: 0.5 * ((x - c) ** 2 + (y - c) ** 2), normalize=True)
        r = mp.solve(prob, tol=1e-10)
        X = dom.coords
        hs.append(dom.h)
        em.append(dom.integrate(np.abs(r.m_local[-1] - lq.m(T, X[:, 0], X[:, 1]))))
        inner = np.hypot(X[:, 0] - c, X[:, 1] - c) < 0.8
        eu.append(np.abs(r.U_local[0] - lq.U(0.0, X[:, 0], X[:, 1]))[inner].max())
        assert r.diagnostics["mass_error"] < 1e-12 and r.diagnostics["min_density"] >= 0
    pm = observed_order(hs, em)
    pu = observed_order(hs, eu)
    assert 0.7 < pm < 1.4, (em, pm)
    assert 0.7 < pu < 1.4, (eu, pu)


def test_c3_3d_box_error_falls_and_mass_is_conserved(mp):
    """Tetrahedral boxes (built-in), the C3 problem itself (quadratic potential coupling and
    terminal cost; this test used to solve a log-coupling problem against C3's closed form):
    the L1 error of m(T) and the variance error fall at first order, mass is conserved, m >= 0."""
    from mfgpde.closed_forms import LinearQuadratic

    lq = LinearQuadratic(1.0, 1.0, 0.05, 0.3, [0.0, 0.0, 0.0], 0.35)
    errs_l1, errs_var = [], []
    for n in (8, 14):
        grid = mp.TensorGrid([(-1.5, 1.5)] * 3, n, "noflux")
        prob = mp.MFGProblem(grid, T=0.3, nt=n // 2, nu=0.05, hamiltonian=mp.QuadraticHamiltonian(),
                             m0=lambda x, y, z: lq.m(0, x, y, z),
                             coupling=mp.PotentialCoupling(lambda x, y, z: 0.5 * (x**2 + y**2 + z**2)),
                             terminal=lambda x, y, z: 0.5 * (x**2 + y**2 + z**2), normalize=True)
        r = mp.solve(prob, backend="fem")
        assert r.converged and r.diagnostics["mass_error"] < 1e-12 and r.diagnostics["min_density"] >= 0
        assert r.domain.dim == 3 and r.domain.stabilised_edges == 0
        X = r.domain.coords
        exact = lq.m(0.3, X[:, 0], X[:, 1], X[:, 2])
        errs_l1.append(r.domain.integrate(np.abs(r.m_local[-1] - exact)))
        var = r.domain.integrate(r.m_local[-1] * (X**2).sum(axis=1)) / 3
        errs_var.append(abs(var - lq.variance(0.3)) / lq.variance(0.3))
    # recorded: L1 0.30 -> 0.18, relative variance error 0.40 -> 0.24 (h = 3/8 -> 3/14): order 0.87
    # and 0.89, the first order of the upwind scheme on these coarse tetrahedra
    h = [3 / 8, 3 / 14]
    assert 0.6 < observed_order(h, errs_l1) < 1.2, errs_l1
    assert 0.6 < observed_order(h, errs_var) < 1.2, errs_var


@pytest.mark.mpi
def test_periodic_b2_serial_and_mpi_agree(tmp_path):
    """B2 (periodic, congestion) with a time-dependent drift, a convolution coupling and
    backend = "fem" from the CLI: 1 and 2 ranks agree (the drift's edge weights use ghost values
    of b and of the coordinates, with minimum-image edge vectors across the seam; the
    convolution gathers every vertex's density on every rank)."""
    text = open(os.path.join(ROOT, "solvers", "lst_case2.toml")).read()
    text = text.replace("shape = [50, 50]", "shape = [16, 16]").replace("nt = 50", "nt = 8")
    text = text.replace("nu = 0.3", 'nu = 0.3\ndrift = ["sin(2 * pi * y) + 2 * t - 0.5", "cos(2 * pi * x)"]')
    text += '\n[[coupling]]\ntype = "convolution"\nkernel = "exp(-(x**2 + y**2) / 0.02)"\nscale = 0.5\n'
    assert text.count("[[coupling]]") == 2
    text = text.replace('method = "newton"', 'method = "newton"\nbackend = "fem"')
    cfg = tmp_path / "b2.toml"
    cfg.write_text(text)
    runs = {}
    for n in (1, 2):
        summary, (runs[n], _) = cli_solve(cfg, tmp_path / f"o{n}", n)
        assert summary["mass_error"] < 1e-12
    assert np.abs(runs[1] - runs[2]).max() < 1e-9


def test_fem_petsc_options_have_a_fixed_prefix_and_are_removed(mp):
    """The step solvers read ``mfgpde_fem_sweep_*`` / ``mfgpde_fem_step_*``: a user's option is kept
    (the scheme's defaults never overwrite it) and the scheme's own defaults are removed after the
    solve, so nothing of one solve leaks into the next (they used to pile up under per-object keys)."""
    from mpi4py import MPI  # noqa: F401  (loads the MPI library petsc4py links to; it must come first)
    from petsc4py import PETSc

    from mfgpde.fem.domain import MeshDomain
    from mfgpde.fem.scheme import FEMScheme
    from mfgpde.fem.solve import problem_on_mesh

    def ours():
        return {k: v for k, v in PETSc.Options().getAll().items() if k.startswith("mfgpde")}

    before = ours()
    prob, _ = c3_problem(mp, MeshDomain.interval(30, bounds=(-2.0, 2.0)), nt=6)
    opts = PETSc.Options()
    opts["mfgpde_fem_sweep_ksp_type"] = "gmres"  # a user's choice for the half-sweeps' steps
    try:
        r = mp.solve(prob, tol=1e-10)
        assert r.converged
        assert ours() == {**before, "mfgpde_fem_sweep_ksp_type": "gmres"}
        sc = FEMScheme(problem_on_mesh(prob))
        _, d, _, phiS = sc._level(np.zeros(sc.n), np.ones(sc.n))
        ksp = sc.ksp("hjb_sweep", sc.hjb_matrix(d, phiS, key="sweep", level=0))
        assert ksp.getType() == "gmres" and ksp.getOptionsPrefix() == FEMScheme.OPTIONS_PREFIXES["sweep"]
        sc.destroy()
    finally:
        opts.delValue("mfgpde_fem_sweep_ksp_type")
    assert ours() == before


def test_saved_solutions_load_in_a_process_that_used_dolfinx(tmp_path):
    """A saved finite-difference solution loads in a process that has set up a mesh scheme first
    (a fresh interpreter: DOLFINx's HDF5 stays loaded once used). NetCDF-4 files then failed with
    "NetCDF: HDF error" (a test reading CLI output failed after another test had built a
    FEMScheme); the classic format written by ``save_netcdf`` needs no HDF5."""
    import mfgpde as mfg

    g = mfg.TensorGrid([(0, 1)], 16, "periodic")
    p = mfg.MFGProblem(g, 1.0, 4, 0.2, mfg.QuadraticHamiltonian(), lambda x: 1 + 0.5 * np.cos(2 * np.pi * x))
    r = mfg.solve(p, tol=1e-10)
    r.save(tmp_path / "sol.nc")
    np.save(tmp_path / "m.npy", r.m)
    code = f"""
import numpy as np
import mfgpde as mp
from mfgpde.fem.scheme import FEMScheme
from mfgpde.fem.solve import problem_on_mesh
from mfgpde.result import MFGResult
g = mp.TensorGrid([(0, 1)], 16, "periodic")
p = mp.MFGProblem(g, 1.0, 4, 0.2, mp.QuadraticHamiltonian(), lambda x: 1 + 0 * x)
FEMScheme(problem_on_mesh(p, None)).destroy()
ds = MFGResult.load_dataset({str(tmp_path / 'sol.nc')!r})
m = np.load({str(tmp_path / 'm.npy')!r})
assert np.array_equal(ds["m"].values.reshape(m.shape), m)
print("loaded", ds["m"].shape)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "loaded (5, 16)" in proc.stdout


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_mesh_solution_figure_on_1d_2d_and_3d_meshes(mp, dim, tmp_path):
    """The mesh solution's figure (plotting.plot_mesh_result) is written for every mesh
    dimension: triangles in 2D, values against x on intervals and tetrahedral boxes (whose
    cells are not triangles), with the HJB and FP residual history."""
    from mfgpde.fem.domain import MeshDomain

    dom = {1: lambda: MeshDomain.interval(16), 2: lambda: MeshDomain.rectangle(6), 3: lambda: MeshDomain.box(3)}[dim]()
    p = mp.MFGProblem(dom, 0.2, 3, 0.2, mp.QuadraticHamiltonian(), lambda *xs: 1 + 0.5 * np.cos(2 * np.pi * xs[0]),
                      coupling=mp.LogCoupling())
    r = mp.solve(p, tol=1e-8)
    assert r.converged
    fig = r.plot()
    titles = [a.get_title() for a in fig.axes]
    assert sum(t.startswith("m, t = ") for t in titles) == 4 and "U, t = 0" in titles
    history = fig.axes[titles.index("residual (max-norm)")]
    assert [line.get_label() for line in history.get_lines()] == ["HJB", "FP"]
    out = r.plot(str(tmp_path / "solution.png"))
    assert os.path.getsize(out) > 1000
