"""The Numba kernels agree with plain NumPy statements of the same formulas."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import mfgpde as mp
from mfgpde.fd import kernels, reference
from mfgpde.fd.scheme import FDScheme

GRIDS = [
    ([(0, 1)], 17, "periodic"),
    ([(0, 1)], 13, "noflux"),
    ([(0, 1), (-1, 2)], (9, 7), ("periodic", "noflux")),
    ([(0, 1), (0, 1), (0, 2)], (5, 6, 7), ("noflux", "periodic", "noflux")),
]


@pytest.mark.parametrize("spec", GRIDS)
def test_upwind_square_matches_numpy(spec, rng):
    g = mp.TensorGrid(*spec)
    u = rng.standard_normal((3, g.size))
    S, ap, bm = kernels.upwind_square(u, g)
    for t in range(3):
        np.testing.assert_allclose(S[t].reshape(g.shape), reference.upwind_square(u[t].reshape(g.shape), g),
                                   rtol=1e-13, atol=1e-12)
    assert np.all(ap >= 0) and np.all(bm <= 0)


@pytest.mark.parametrize("spec", GRIDS)
def test_dS_stencil_is_the_derivative_of_S(spec, rng):
    """Row p of dS_stencil is dS_p/du (checked against central differences)."""
    g = mp.TensorGrid(*spec)
    u = rng.standard_normal((1, g.size))
    _S, ap, bm = kernels.upwind_square(u, g)
    sc = FDScheme(mp.MFGProblem(g, 1.0, 1, 0.1, mp.QuadraticHamiltonian(), np.ones(g.shape)))
    D = sc.csr(kernels.dS_stencil(ap, bm, g)).toarray()
    eps = 1e-7
    Dfd = np.empty_like(D)
    for j in range(g.size):
        e = np.zeros((1, g.size))
        e[0, j] = eps
        Dfd[:, j] = (kernels.upwind_square(u + e, g)[0] - kernels.upwind_square(u - e, g)[0])[0] / (2 * eps)
    np.testing.assert_allclose(D, Dfd, atol=1e-5 * np.abs(D).max())
    # monotone: non-negative diagonal, non-positive off-diagonal, zero row sums
    off = D - np.diag(np.diag(D))
    assert np.all(np.diag(D) >= 0) and np.all(off <= 1e-12)
    np.testing.assert_allclose(D.sum(axis=1), 0, atol=1e-10 * np.abs(D).max())


@pytest.mark.parametrize("spec", GRIDS)
def test_laplacian_stencil_and_transpose(spec, rng):
    g = mp.TensorGrid(*spec)
    nu = 0.7
    sc = FDScheme(mp.MFGProblem(g, 1.0, 1, nu, mp.QuadraticHamiltonian(), np.ones(g.shape)))
    u = rng.standard_normal((1, g.size))
    Lu = kernels.apply_stencil(sc.linear_stencil(0)[None], g, u)[0]
    np.testing.assert_allclose(Lu.reshape(g.shape), -nu * reference.laplacian(u[0].reshape(g.shape), g),
                               rtol=1e-12, atol=1e-9)
    vals = rng.standard_normal((g.size, 1 + 2 * g.dim))
    A = sc.csr(vals[None]).toarray()
    # masked neighbours have zero weight in real operators; emulate that
    _, hm, hp = g.stencil
    for k in range(g.dim):
        vals[:, 1 + 2 * k] *= hm[k]
        vals[:, 2 + 2 * k] *= hp[k]
    A = sc.csr(vals[None]).toarray()
    T = sc.csr(kernels.transpose_stencil(vals, g.stencil[0])[None]).toarray()
    np.testing.assert_allclose(T, A.T, atol=1e-14)
    y = kernels.apply_stencil(vals[None], g, u, transpose=True)[0]
    np.testing.assert_allclose(y, A.T @ u[0], atol=1e-12)


@pytest.mark.parametrize("bc", ["periodic", "noflux"])
def test_tridiagonal_solver_matches_sparse_lu(bc, rng):
    g = mp.TensorGrid([(0, 1)], 31, bc)
    sc = FDScheme(mp.MFGProblem(g, 1.0, 1, 0.3, mp.QuadraticHamiltonian(), np.ones(g.shape)))
    u = rng.standard_normal((1, g.size))
    _S, ap, bm = kernels.upwind_square(u, g)
    vals = (kernels.dS_stencil(ap, bm, g) + sc.linear_stencil(0)[None])[0]
    vals[:, 0] += 10.0
    A = sc.csr(vals[None]).tocsc()
    b = rng.standard_normal(g.size)
    np.testing.assert_allclose(kernels.tri_solve(vals, b, False), spla.spsolve(A, b), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(kernels.tri_solve(vals, b, True), spla.spsolve(sp.csc_matrix(A.T), b),
                               rtol=1e-11, atol=1e-12)


def test_stencil_bicgstab_matches_sparse_lu(rng):
    g = mp.TensorGrid([(0, 1), (0, 1)], (40, 30), ("periodic", "noflux"))
    sc = FDScheme(mp.MFGProblem(g, 1.0, 1, 0.2, mp.QuadraticHamiltonian(), np.ones(g.shape)))
    u = rng.standard_normal((1, g.size))
    _S, ap, bm = kernels.upwind_square(u, g)
    vals = (kernels.dS_stencil(ap, bm, g) + sc.linear_stencil(0)[None])[0]
    vals[:, 0] += 50.0
    b = rng.standard_normal(g.size)
    x, its, ok = kernels.stencil_bicgstab(vals, g.stencil[0], b, b / vals[:, 0], 1e-13, 2000)
    # recorded 82-95 iterations over five random fields and right-hand sides: a wrong recurrence
    # that still converges (a wrong beta restarts it as steepest descent) needs many more
    assert ok and its <= 150, its
    np.testing.assert_allclose(x, spla.spsolve(sc.csr(vals[None]).tocsc(), b), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("spec", GRIDS[2:])
def test_serial_and_threaded_builds_agree(spec, monkeypatch, rng):
    """Each kernel is compiled twice, serially and with ``prange`` over time slices, and picked by
    problem size (:data:`kernels.PARALLEL_MIN_POINTS`). Both builds give the same numbers: the
    threaded one is forced here on arrays the tests otherwise run serially."""
    g = mp.TensorGrid(*spec)
    K, N, s = 4, g.size, 1 + 2 * g.dim
    u = rng.standard_normal((K, N))
    vals = rng.standard_normal((K, N, s))
    D, DT, W, A, BT = (rng.standard_normal((K, N, s)) for _ in range(5))
    c, d_um = rng.standard_normal((K, N)), rng.standard_normal((K, N))
    dU, dM = rng.standard_normal((K + 1, N)), rng.standard_normal((K + 1, N))

    def run():
        _S, ap, bm = kernels.upwind_square(u, g)
        yU, yM = np.zeros((K + 1, N)), np.zeros((K + 1, N))
        kernels.jacobian_product(A, BT, D, DT, c, W, d_um, g, 0.1, dU, dM, yU, yM)
        return [_S, ap, bm, kernels.dS_stencil(ap, bm, g, c), kernels.apply_stencil(vals, g, u),
                kernels.apply_hessian(D, DT, c, W, g, u), kernels.transpose_stencils(vals, g), yU, yM]

    monkeypatch.setattr(kernels, "PARALLEL_MIN_POINTS", 10**12)
    serial = run()
    monkeypatch.setattr(kernels, "PARALLEL_MIN_POINTS", 0)
    for a, b in zip(serial, run(), strict=True):
        np.testing.assert_array_equal(a, b)
