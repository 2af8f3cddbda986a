"""Step solvers and the matrix-free linearisation state the same operators as the sparse ones."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla

import mfgpde as mp
from mfgpde.fd.krylov import BlockTriangularPreconditioner
from mfgpde.fd.scheme import FDScheme
from mfgpde.fd.steps import SpectralInverse, StepOperator, stencil_csc, step_inverses

GRIDS = [
    ([(0, 1)], 17, "periodic"),
    ([(0, 1)], 13, "noflux"),
    ([(0, 1), (-1, 2)], (9, 8), ("periodic", "noflux")),
    ([(0, 2), (0, 1)], (10, 7), "periodic"),
    ([(0, 1), (0, 1)], (6, 9), "noflux"),
    ([(0, 1), (0, 1), (0, 2)], (5, 6, 7), ("noflux", "periodic", "noflux")),
]


HAMILTONIANS = {
    "quadratic": mp.QuadraticHamiltonian,
    # phi_SS != 0: the Hessian block D^T diag(m phi_SS) D of the Jacobian is not zero
    "power": lambda: mp.PowerHamiltonian(3.0),
    # H depends on m: the d_um block
    "congestion": lambda: mp.CongestionHamiltonian(0.5, 1.0, 1.0),
}


def _problem(g, nu=0.3, drift=None, nt=4, hamiltonian="quadratic", terminal=None):
    m0 = 1 + 0.5 * np.cos(np.arange(g.size)).reshape(g.shape)
    return mp.MFGProblem(g, 1.0, nt, nu, HAMILTONIANS[hamiltonian](), m0, coupling=mp.LogCoupling(), drift=drift,
                         terminal=terminal or (lambda *x: 0.3 * np.sin(3 * x[0])), normalize=True)


@pytest.mark.parametrize("spec", GRIDS)
def test_spectral_inverse_inverts_the_scheme_laplacian(spec, rng):
    """``SpectralInverse.solve`` is the exact inverse of ``a I + nu (-Lap_h)`` of the scheme."""
    g = mp.TensorGrid(*spec)
    sc = FDScheme(_problem(g, nu=0.7))
    a = 3.0
    P = stencil_csc(sc._diffusion, sc.cols).toarray() + a * np.eye(g.size)
    rhs = rng.standard_normal(g.size)
    x = SpectralInverse(g, 0.7).solve(rhs, a=a)
    np.testing.assert_allclose(P @ x, rhs, rtol=0, atol=1e-12 * np.abs(rhs).max() * a)
    # the mean diagonal used for the shift is that of the stencil
    assert SpectralInverse(g, 0.7).diagonal == pytest.approx(sc._diffusion[:, 0].mean(), rel=1e-12)


@pytest.mark.parametrize("hamiltonian", sorted(HAMILTONIANS))
@pytest.mark.parametrize("spec", GRIDS)
def test_linearisation_matvec_is_the_assembled_jacobian(spec, hamiltonian, rng):
    """The matrix-free ``J z`` (the fused compiled product) equals the assembled analytic Jacobian,
    drift included, for a Hamiltonian with phi_SS = 0, one with phi_SS != 0 and one depending on m."""
    g = mp.TensorGrid(*spec)
    drift = lambda t, *x: tuple(0.4 * np.sin(2 * xi + t) for xi in x)
    # a terminal cost depending on m (g = 0.7 log m + potential): the dU^{N_t}/dm^{N_t} row
    terminal = mp.LogCoupling(0.7) + mp.PotentialCoupling(lambda *x: 0.3 * np.sin(3 * x[0]))
    sc = FDScheme(_problem(g, drift=drift, hamiltonian=hamiltonian, terminal=terminal))
    U = rng.standard_normal((sc.nt + 1, g.size))
    M = 1 + 0.5 * rng.random((sc.nt + 1, g.size))
    J = sc.jacobian(U, M)
    z = rng.standard_normal(J.shape[0])
    np.testing.assert_allclose(sc.linearisation(U, M).matvec(z), J @ z, rtol=0, atol=1e-12 * np.abs(J @ z).max())


@pytest.mark.parametrize("spec", GRIDS[2:])
def test_spectral_step_solves(spec, rng):
    """Accurate step solves reach the LU solution; the Richardson approximation is linear and,
    where diffusion dominates the transport, contracts."""
    g = mp.TensorGrid(*spec)
    sc = FDScheme(_problem(g, nu=1.0))
    U = 0.05 * rng.standard_normal((sc.nt + 1, g.size))
    M = 1 + 0.5 * rng.random((sc.nt + 1, g.size))
    lin = sc.linearisation(U, M)
    rhs = rng.standard_normal(g.size)
    for vals in (lin.vals_uu[0], lin.vals_mmT[-1]):
        op = StepOperator(vals, sc.cols, sc.spectral_inverse(), sc.dt)
        exact = spla.spsolve(stencil_csc(vals, sc.cols), rhs)
        np.testing.assert_allclose(op.solve(rhs), exact, rtol=0, atol=1e-11 * np.abs(exact).max())
        assert op.contraction() < 0.8
        y = rng.standard_normal(g.size)
        np.testing.assert_allclose(op.richardson(2 * rhs - y, 3), 2 * op.richardson(rhs, 3) - op.richardson(y, 3),
                                   atol=1e-12 * np.abs(exact).max())
        # each sweep contracts the error
        errs = [np.abs(op.richardson(rhs, k) - exact).max() for k in (1, 2, 3)]
        assert errs[2] < errs[1] < errs[0]
        # k sweeps: x_1 = P^{-1} b, x_{j+1} = x_j + P^{-1} (b - A x_j)
        x1 = op.precondition(rhs)
        np.testing.assert_array_equal(op.richardson(rhs, 1), x1)
        np.testing.assert_allclose(op.richardson(rhs, 2), x1 + op.precondition(rhs - op.matvec(x1)),
                                   rtol=0, atol=1e-14 * np.abs(x1).max())
    # where diffusion dominates no step falls back to an exact solve
    assert step_inverses(lin, method="spectral")[2]["exact_steps"] == 0


def test_transport_dominated_steps_fall_back_to_exact_solves(rng):
    """With nu = 0 the spectral model is a multiple of I; steps that do not contract are solved exactly."""
    g = mp.TensorGrid([(0, 1), (0, 1)], 40, "periodic")
    sc = FDScheme(_problem(g, nu=1e-4, nt=3))
    U = 40 * rng.standard_normal((sc.nt + 1, g.size))  # steep: |p|/h >> 1/dt
    M = 1 + 0.5 * rng.random((sc.nt + 1, g.size))
    lin = sc.linearisation(U, M)
    inv_u, _inv_m, info = step_inverses(lin, method="spectral")
    # exactly the steps whose Richardson sweep does not contract
    from mfgpde.fd.steps import CONTRACTION_LIMIT

    spectral = sc.spectral_inverse()
    expected = sum(StepOperator(v[n], sc.cols, spectral, sc.dt).contraction(probes=1) > CONTRACTION_LIMIT
                   for v in (lin.vals_uu, lin.vals_mmT) for n in range(sc.nt))
    assert info["exact_steps"] == expected > 0
    rhs = rng.standard_normal(g.size)
    exact = spla.spsolve(stencil_csc(lin.vals_uu[0], sc.cols), rhs)
    np.testing.assert_allclose(inv_u[0](rhs), exact, atol=1e-9 * np.abs(exact).max())


def test_accurate_solve_of_a_transport_dominated_step(rng):
    """Where the spectral BiCGSTAB gives up, the fallbacks (Jacobi BiCGSTAB, LU) still solve exactly."""
    g = mp.TensorGrid([(0, 1), (0, 1)], 30, ("periodic", "noflux"))
    sc = FDScheme(_problem(g, nu=1e-4, nt=3))
    lin = sc.linearisation(40 * rng.standard_normal((sc.nt + 1, g.size)), np.ones((sc.nt + 1, g.size)))
    b = rng.standard_normal(g.size)
    for vals in (lin.vals_uu[1], lin.vals_mmT[1]):
        op = StepOperator(vals, sc.cols, sc.spectral_inverse(), sc.dt)
        exact = spla.spsolve(stencil_csc(vals, sc.cols), b)
        np.testing.assert_allclose(op.solve(b), exact, atol=1e-10 * np.abs(exact).max())


def _triangular_part_solve(sc, rng):
    """A linearisation at a random iterate, a random r, and the sparse-LU solution of
    [[J_UU, 0], [J_mU, J_mm]] x = r (the Jacobian without the coupling block J_Um)."""
    U = 0.3 * rng.standard_normal((sc.nt + 1, sc.grid.size))
    M = 1 + 0.5 * rng.random((sc.nt + 1, sc.grid.size))
    J = sc.jacobian(U, M).tocsr()
    n = J.shape[0] // 2
    Ptri = J.copy().tolil()
    Ptri[:n, n:] = 0
    r = rng.standard_normal(J.shape[0])
    return sc.linearisation(U, M), r, spla.spsolve(Ptri.tocsc(), r)


@pytest.mark.parametrize("hamiltonian", ["quadratic", "power"])
@pytest.mark.parametrize("spec", GRIDS[:2])
def test_1d_preconditioner_inverts_the_triangular_part(spec, hamiltonian, rng):
    """In 1D both sweeps are compiled tridiagonal solves (``kernels.tri_backward_sweep`` and
    ``tri_forward_sweep``): P^{-1} is the exact inverse of [[J_UU, 0], [J_mU, J_mm]]."""
    sc = FDScheme(_problem(mp.TensorGrid(*spec), nt=6, hamiltonian=hamiltonian))
    lin, r, exact = _triangular_part_solve(sc, rng)
    x = BlockTriangularPreconditioner(lin) @ r
    assert np.abs(x - exact).max() <= 1e-10 * np.abs(exact).max()


@pytest.mark.parametrize("step_solver", ["lu", "spectral", "bicgstab"])
def test_preconditioner_with_exact_steps_inverts_the_triangular_part(step_solver, rng):
    """With exact step solves P^{-1} inverts [[J_UU, 0], [J_mU, J_mm]] (checked against sparse LU);
    with Richardson steps it approximates it."""
    sc = FDScheme(_problem(mp.TensorGrid([(0, 1), (0, 1)], (8, 10), ("periodic", "noflux")), nt=5))
    lin, r, exact = _triangular_part_solve(sc, rng)
    x = BlockTriangularPreconditioner(lin, step_solver=step_solver) @ r
    tol = 1e-2 if step_solver == "spectral" else 1e-9
    assert np.abs(x - exact).max() <= tol * np.abs(exact).max()


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("shape, method, spectral, expected", [
    ((20, 20), "auto", True, "lu"),             # N = 400 = DIRECT_LIMIT: factorised
    ((21, 20), "auto", True, "jacobi"),         # N = 420: compiled Jacobi BiCGSTAB
    ((128, 64), "auto", True, "spectral"),      # N = 8192 = SPECTRAL_MIN: spectral BiCGSTAB
    ((128, 80), "auto", True, "spectral"),      # and above it
    ((91, 90), "auto", True, "jacobi"),         # N = 8190 < SPECTRAL_MIN
    ((128, 64), "auto", False, "jacobi"),       # nu = 0: no spectral model
    ((128, 64), "direct", True, "lu"),          # "direct": sparse LU everywhere
    ((10, 10), "iterative", True, "jacobi"),    # "iterative": never factorised
])
def test_step_solver_choice_and_solution(shape, method, spectral, expected, transpose, monkeypatch, rng):
    """``solve_stencil`` picks the documented solver for ``linear_solver`` and the size (the three
    agree to 1e-13, so only which one runs tells the choice), and every path solves the system."""
    from mfgpde.fd import kernels, linear

    g = mp.TensorGrid([(0, 1), (0, 1)], shape, "noflux")
    sc = FDScheme(_problem(g, nu=0.2))
    U = 0.1 * rng.standard_normal((sc.nt + 1, g.size))
    M = 1 + 0.5 * rng.random((sc.nt + 1, g.size))
    vals = sc.linearisation(U, M).vals_uu[0]
    used = []

    def spy(name, fun):
        def wrapped(*a, **k):
            used.append(name)
            return fun(*a, **k)
        return wrapped

    monkeypatch.setattr(linear.spla, "spsolve", spy("lu", spla.spsolve))
    monkeypatch.setattr(linear.kernels, "stencil_bicgstab", spy("jacobi", kernels.stencil_bicgstab))
    monkeypatch.setattr(linear.StepOperator, "solve", spy("spectral", StepOperator.solve))
    rhs = rng.standard_normal(g.size)
    x = linear.solve_stencil(vals, sc.cols, rhs, transpose, method, sc.csr,
                             spectral=sc.spectral_inverse() if spectral else None, dt=sc.dt)
    assert used[0] == expected, used
    A = stencil_csc(vals, sc.cols)
    A = A.T if transpose else A
    np.testing.assert_allclose(A @ x, rhs, rtol=0, atol=1e-10 * np.abs(rhs).max() * np.abs(vals).max())
