"""Structure of the discrete system: exact Jacobian, conservation, positivity, adjointness."""

import numpy as np
import pytest
from helpers import observed_order

import mfgpde as mp
from mfgpde.fd.scheme import FDScheme


def _fd_jacobian(sc, U, M, eps=1e-6):
    n = U.size
    z = np.concatenate([U.ravel(), M.ravel()])

    def R(z):
        a, b = sc.residual(z[:n].reshape(U.shape), z[n:].reshape(U.shape))
        return np.concatenate([a.ravel(), b.ravel()])

    cols = []
    for j in range(z.size):
        e = np.zeros_like(z)
        e[j] = eps
        cols.append((R(z + e) - R(z - e)) / (2 * eps))
    return np.array(cols).T


CASES = {
    "congestion_1d": lambda: mp.MFGProblem(mp.TensorGrid([(0, 1)], 9, "periodic"), 0.5, 4, 0.05,
                                           mp.CongestionHamiltonian(1, 4, 1.5), np.ones(9),
                                           coupling=mp.PowerCoupling(2.0), terminal=mp.LogCoupling()),
    "power_2d_drift": lambda: mp.MFGProblem(mp.TensorGrid([(0, 1), (0, 1)], (5, 4), ("periodic", "noflux")), 0.5, 3,
                                            0.1, mp.PowerHamiltonian(3.0), np.ones((5, 4)),
                                            coupling=mp.LogCoupling(),
                                            drift=lambda t, x, y: (np.sin(2 * np.pi * x) + t, y - 0.5)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_analytic_jacobian_matches_finite_differences(case, rng):
    p = CASES[case]()
    sc = FDScheme(p)
    shape = (p.nt + 1, p.grid.size)
    U = rng.standard_normal(shape)
    M = rng.random(shape) + 0.5
    J = sc.jacobian(U, M).toarray()
    Jfd = _fd_jacobian(sc, U, M)
    np.testing.assert_allclose(J, Jfd, atol=2e-6 * np.abs(J).max())


@pytest.mark.parametrize("bc", ["periodic", "noflux"])
def test_fp_sweep_conserves_mass_and_positivity(bc, rng):
    g = mp.TensorGrid([(0, 1), (0, 1)], (24, 20), bc)
    X, Y = g.coordinates()
    m0 = np.where((X - 0.3) ** 2 + (Y - 0.6) ** 2 < 0.04, 3.0, 0.0)  # compact support: zeros must stay >= 0
    p = mp.MFGProblem(g, 1.0, 20, 0.0, mp.QuadraticHamiltonian(0.5), m0,
                      drift=lambda t, x, y: (np.cos(3 * y), -np.sin(2 * x)))
    sc = FDScheme(p)
    U = rng.standard_normal((p.nt + 1, g.size))
    M = sc.solve_fp(U)
    mass = M.sum(axis=1) * g.cell_volume
    assert np.max(np.abs(mass - mass[0])) / mass[0] < 1e-12
    assert M.min() >= 0.0
    # the sweep solves the discrete FP equation itself (the mass restoration cannot hide a
    # wrong operator, e.g. A instead of A^T: its residual was 3e4)
    _, Rm = sc.residual(U, M)
    assert np.abs(Rm).max() < 1e-9 * np.abs(M).max() / p.dt


@pytest.mark.parametrize("case", sorted(CASES) + ["quadratic_2d_iterative"])
def test_hjb_sweep_solves_the_discrete_hjb(case, rng):
    """Given a density path M, the backward sweep returns U with R_HJB(U, M) = 0: every level's
    nonlinear implicit step solved to ``tol`` (relative to the level's scale), the terminal level
    ``U^{N_t} = g(m^{N_t})`` exactly; the same U from a start ``U_init``; a loose ``tol`` (the
    grid-sequencing start) gives a residual below it."""
    if case == "quadratic_2d_iterative":   # the BiCGSTAB step solves with the spectral preconditioner
        g = mp.TensorGrid([(0, 1), (0, 1)], (12, 10), ("periodic", "noflux"))
        p = mp.MFGProblem(g, 0.5, 5, 0.2, mp.QuadraticHamiltonian(0.7), np.ones(g.shape),
                          coupling=mp.LogCoupling(), terminal=lambda x, y: np.cos(2 * np.pi * x) * y)
        sc = FDScheme(p, linear_solver="iterative")
    else:
        p = CASES[case]()
        sc = FDScheme(p)
    shape = (p.nt + 1, p.grid.size)
    M = rng.random(shape) + 0.5
    U, steps = sc.solve_hjb(M)
    # Newton per level with the exact step Jacobian: 3-5 steps a level (recorded 16, 12, 21 over
    # 4, 3, 5 levels); a wrong Jacobian (2/dt on its diagonal) still converges, linearly: 159 steps
    assert U.shape == shape and p.nt <= steps <= 6 * p.nt, steps
    RU, _ = sc.residual(U, M)
    scale = np.abs(U).max() / p.dt + 1.0
    assert np.abs(RU).max() <= 1e-11 * scale, np.abs(RU).max()
    np.testing.assert_array_equal(U[-1], sc.g(M[-1]))
    U2, _ = sc.solve_hjb(M, U_init=U + 0.1 * rng.standard_normal(shape))
    np.testing.assert_allclose(U2, U, rtol=0, atol=1e-10 * np.abs(U).max())
    U3, _ = sc.solve_hjb(M, tol=1e-3)
    RU3, _ = sc.residual(U3, M)
    assert np.abs(RU3).max() <= 1e-3 * scale and np.abs(U3 - U).max() > 0


@pytest.mark.parametrize("b", [0.7, -1.3])
def test_drift_stencil_is_consistent_with_minus_b_grad(b):
    """``L = -nu Lap_h - b . grad_h`` applied to a smooth function, first order (upwind) in h."""
    errs, hs = [], []
    for n in (32, 64, 128, 256):
        g = mp.TensorGrid([(0, 1)], n, "periodic")
        p = mp.MFGProblem(g, 1.0, 1, 0.1, mp.QuadraticHamiltonian(), np.ones(n), drift=lambda t, x: (b + 0 * x,))
        sc = FDScheme(p)
        x = g.axes[0]
        u = np.sin(2 * np.pi * x)
        exact = 0.1 * (2 * np.pi) ** 2 * u - b * 2 * np.pi * np.cos(2 * np.pi * x)
        Lu = (sc.linear_stencil(0) * u[sc.cols]).sum(axis=1)
        errs.append(np.abs(Lu - exact).max())
        hs.append(1.0 / n)
    slope = observed_order(hs, errs)
    assert 0.9 < slope < 1.1, (errs, slope)
    assert errs[-1] < 0.05 * abs(b) * 2 * np.pi


def test_fp_transports_the_mean_with_the_drift():
    """With U = 0 the FP is pure drift-diffusion: the mean moves by exactly ``b T``.

    For a constant upwind drift, ``sum_i x_i (L^T m)_i = -b sum_i m_i`` away from walls, so the
    first moment of the implicit scheme moves by ``b dt`` per step exactly.
    """
    g = mp.TensorGrid([(0, 10), (-5, 5)], (80, 60), "noflux")
    X, Y = g.coordinates()
    m0 = np.exp(-4 * ((X - 3) ** 2 + (Y - 1) ** 2))
    b = (1.0, -0.5)
    p = mp.MFGProblem(g, 2.0, 40, 0.02, mp.QuadraticHamiltonian(), m0, normalize=True,
                      drift=lambda t, x, y: (b[0] + 0 * x, b[1] + 0 * y))
    sc = FDScheme(p)
    M = sc.solve_fp(np.zeros((p.nt + 1, g.size)))
    mT = M[-1].reshape(g.shape)
    mean = [float((c * mT).sum() / mT.sum()) for c in (X, Y)]
    mean0 = [float((c * m0).sum() / m0.sum()) for c in (X, Y)]
    np.testing.assert_allclose(mean, [mean0[0] + b[0] * 2.0, mean0[1] + b[1] * 2.0], atol=1e-8)


def test_fp_is_adjoint_of_linearised_hjb(rng):
    """<A^T m, v> = <m, A v>: the FP transport is the adjoint of the linearised HJB operator."""
    g = mp.TensorGrid([(0, 1), (0, 1)], (7, 6), "periodic")
    p = mp.MFGProblem(g, 1.0, 2, 0.2, mp.QuadraticHamiltonian(), np.ones(g.shape))
    sc = FDScheme(p)
    U = rng.standard_normal((3, g.size))
    M = rng.random((3, g.size))
    J = sc.jacobian(U, M)
    N = g.size
    # HJB row block n=0 wrt U^0 and FP row block 1 wrt m^1
    Juu = J[:N, :N].toarray()
    Jmm = J[4 * N: 5 * N, 4 * N: 5 * N].toarray()
    np.testing.assert_allclose(Jmm, Juu.T, atol=1e-12)
