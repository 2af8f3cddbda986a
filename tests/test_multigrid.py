"""Aggregation multigrid of the step systems: Galerkin coarse operators, contraction, compiled sweeps."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import mfgpde as mp
from mfgpde.fd.krylov import BlockTriangularPreconditioner
from mfgpde.fd.multigrid import Hierarchy
from mfgpde.fd.scheme import FDScheme
from mfgpde.fd.steps import stencil_csc, stencil_matrix

GRIDS = [
    ([(0, 1), (0, 1)], (24, 20), "periodic"),
    ([(0, 1), (-1, 2)], (19, 13), ("periodic", "noflux")),  # odd sizes: aggregates of one cell
    ([(0, 1), (0, 1)], (33, 5), "noflux"),                   # an axis too short to coarsen
    ([(0, 1), (0, 1), (0, 2)], (10, 9, 8), ("noflux", "periodic", "noflux")),
]


def _step_stencils(spec, rng, nu=0.05, nt=3, rough=False):
    """Linearised HJB and FP step stencils of a log-coupled problem with a drift (M-matrices).

    ``rough``: at a random value function (gradients ~ 1/h pointing anywhere, the transport
    dominating diffusion and 1/dt on most of the grid); otherwise at a smooth one."""
    g = mp.TensorGrid(*spec)
    amp = 3.0 if rough else 1.0
    drift = lambda t, *x: tuple(amp * np.sin(2 * np.pi * xi + k) for k, xi in enumerate(x))
    m0 = 1 + 0.5 * np.cos(np.arange(g.size)).reshape(g.shape)
    p = mp.MFGProblem(g, 1.0, nt, nu, mp.QuadraticHamiltonian(), m0, coupling=mp.LogCoupling(), drift=drift,
                      terminal=lambda *x: 0.3 * np.sin(2 * np.pi * x[0]), normalize=True)
    sc = FDScheme(p)
    if rough:
        U = rng.standard_normal((nt + 1, g.size))
    else:
        x = g.coordinates()
        phase = rng.random(nt + 1)
        U = np.stack([2.0 * np.sin(2 * np.pi * (sum(x) / len(x) + ph)).ravel() for ph in phase])
    M = 1 + 0.5 * rng.random((nt + 1, g.size))
    return sc, sc.linearisation(U, M)


def _level(ops, k, lvl):
    h = ops.h
    n = int(h.sizes[lvl])
    vals = ops.flat[k][h.value_offsets[lvl]:h.value_offsets[lvl + 1]].reshape(n, h.s)
    cols = h.cols[h.offsets[lvl]:h.offsets[lvl + 1]]
    return stencil_matrix(vals[None], cols).toarray()


@pytest.mark.parametrize("spec", GRIDS)
def test_coarse_operators_are_galerkin_products(spec, rng):
    """Every level's stencil is ``P^T A P`` of the level above (P: piecewise constant on aggregates)."""
    sc, lin = _step_stencils(spec, rng)
    H = Hierarchy(sc.grid.shape, coarsest=8)
    assert H.levels >= 3
    ops = H.operators(lin.vals_mmT)
    for lvl in range(H.levels - 1):
        n, nc = int(H.sizes[lvl]), int(H.sizes[lvl + 1])
        agg = H.agg[H.offsets[lvl]:H.offsets[lvl + 1]]
        assert set(agg) == set(range(nc))  # every coarse point is an aggregate
        P = sp.csr_matrix((np.ones(n), (np.arange(n), agg)), shape=(n, nc))
        A = _level(ops, 1, lvl)
        np.testing.assert_allclose(_level(ops, 1, lvl + 1), (P.T @ A @ P), rtol=0, atol=1e-12 * np.abs(A).max())
    # the coarsest level is inverted exactly
    Ac = _level(ops, 1, H.levels - 1)
    np.testing.assert_allclose(ops.cinv[1] @ Ac, np.eye(Ac.shape[0]), atol=1e-10)


@pytest.mark.parametrize("spec", GRIDS)
def test_coarse_fp_operators_conserve_mass(spec, rng):
    """FP steps conserve mass (columns of ``B^T`` sum to 1/dt); restriction by aggregation adds the
    columns of an aggregate, so a coarse column sums to (aggregate size)/dt: the coarse problems
    are steps of the same conservative kind."""
    sc, lin = _step_stencils(spec, rng)
    H = Hierarchy(sc.grid.shape, coarsest=8)
    ops = H.operators(lin.vals_mmT)
    size = np.ones(int(H.sizes[0]))
    for lvl in range(H.levels):
        A = _level(ops, 0, lvl)
        np.testing.assert_allclose(A.sum(axis=0), size / sc.dt, rtol=1e-11)
        if lvl + 1 < H.levels:
            agg = H.agg[H.offsets[lvl]:H.offsets[lvl + 1]]
            size = np.bincount(agg, weights=size, minlength=int(H.sizes[lvl + 1]))


@pytest.mark.parametrize("spec", [GRIDS[0], GRIDS[3], ([(0, 1), (0, 1)], (50, 50), "periodic")])
def test_vcycles_contract_and_converge_to_the_lu_solution(spec, rng):
    """Where diffusion dominates at the grid scale (cell Peclet number (|grad U| + |b|) h / nu below
    1, as on the steps of B2 and LOG2D), two V-cycles reduce the residual by more than 3x, and
    iterated they reach the sparse-LU solution. (Unsmoothed aggregation is
    weaker on thin or odd-sized grids whose steps are nearly singular Laplacians, 0.3-0.8 per two
    cycles; the preconditioner measures that and solves such steps exactly, see below.)"""
    sc, lin = _step_stencils(spec, rng, nu=1.0)
    H = sc.hierarchy()
    for vals in (lin.vals_uu, lin.vals_mmT):
        ops = H.operators(vals)
        for k in range(len(ops)):
            A = stencil_csc(vals[k], sc.cols)
            b = rng.standard_normal(A.shape[0])
            r1 = np.linalg.norm(b - A @ ops.vcycles(k, b, cycles=1))
            r2 = np.linalg.norm(b - A @ ops.vcycles(k, b, cycles=2))
            assert r2 < 0.3 * np.linalg.norm(b)
            assert r2 < r1
            # iterated, the V-cycles converge to the LU solution
            x = ops.vcycles(k, b, cycles=150)
            np.testing.assert_allclose(x, spla.spsolve(A, b), rtol=0, atol=1e-10 * np.abs(x).max())


def test_vcycles_are_a_fixed_linear_map(rng):
    """GMRES needs a linear preconditioner: V(a b1 + b2) = a V(b1) + V(b2) to round-off."""
    sc, lin = _step_stencils(GRIDS[1], rng)
    ops = sc.hierarchy().operators(lin.vals_uu)
    b1, b2 = rng.standard_normal((2, sc.N))
    lhs = ops.vcycles(0, 2.5 * b1 + b2, cycles=2)
    rhs = 2.5 * ops.vcycles(0, b1, cycles=2) + ops.vcycles(0, b2, cycles=2)
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=1e-12 * np.abs(lhs).max())


def test_compiled_sweeps_are_the_block_triangular_solves(rng):
    """With enough V-cycles the compiled backward/forward sweeps solve the block bidiagonal HJB and
    FP systems exactly: ``x^n = A_n^{-1}(a^n + x^{n+1}/dt)``, ``y^{n+1} = B_n^{-T}(b^{n+1} + y^n/dt)``."""
    sc, lin = _step_stencils(GRIDS[0], rng, nt=4, nu=1.0)
    H = sc.hierarchy()
    ou, om = H.operators(lin.vals_uu), H.operators(lin.vals_mmT)
    a = rng.standard_normal((sc.nt + 1, sc.N))
    assert max(ou.contraction(2).max(), om.contraction(2).max()) < 0.3
    x = ou.sweep(a, sc.dt, cycles=60, backward=True)
    y = om.sweep(a, sc.dt, cycles=60, backward=False)
    xe, ye = np.empty_like(a), np.empty_like(a)
    xe[-1], ye[0] = a[-1], a[0]
    for n in range(sc.nt - 1, -1, -1):
        xe[n] = spla.spsolve(stencil_csc(lin.vals_uu[n], sc.cols), a[n] + xe[n + 1] / sc.dt)
    for n in range(sc.nt):
        ye[n + 1] = spla.spsolve(stencil_csc(lin.vals_mmT[n], sc.cols), a[n + 1] + ye[n] / sc.dt)
    np.testing.assert_allclose(x, xe, rtol=0, atol=1e-9 * np.abs(xe).max())
    np.testing.assert_allclose(y, ye, rtol=0, atol=1e-9 * np.abs(ye).max())


def test_newton_with_multigrid_steps_reaches_the_lu_solution():
    """The step solver changes the work, not the discrete solution: Newton with multigrid sweeps
    (the default) and with SuperLU factors end at the same (U, m) to 1e-9."""
    g = mp.TensorGrid([(0, 1), (0, 1)], (40, 36), ("periodic", "noflux"))
    p = mp.MFGProblem(g, 0.5, 10, 0.05, mp.CongestionHamiltonian(c0=0.1, c1=1.0, beta=0.5),
                      lambda x, y: np.exp(-20 * ((x - 0.3) ** 2 + (y - 0.5) ** 2)) + 0.05,
                      terminal=lambda x, y: np.cos(2 * np.pi * x) + y, normalize=True)
    a = mp.solve(p, tol=1e-11, verbose=False)
    b = mp.solve(p, tol=1e-11, verbose=False, linear_solver="direct")
    assert a.diagnostics["converged"] and b.diagnostics["converged"]
    np.testing.assert_allclose(a.m, b.m, rtol=0, atol=1e-9 * np.abs(b.m).max())
    np.testing.assert_allclose(a.U, b.U, rtol=0, atol=1e-9 * np.abs(b.U).max())


def test_steps_where_vcycles_do_not_contract_are_solved_exactly(rng):
    """Random value functions make the steps transport-dominated with an irregular field (cell Peclet
    numbers far above 1): there aggregation V-cycles amplify the residual. The preconditioner measures that per step and solves
    those steps exactly, so its sweeps still invert the triangular part."""
    sc, lin = _step_stencils(GRIDS[1], rng, nt=4, rough=True)
    ops = sc.hierarchy().operators(lin.vals_uu)
    assert np.max(ops.contraction(2)) > 1.0  # the V-cycles alone would diverge here
    P = BlockTriangularPreconditioner(lin, step_solver="auto")
    assert P.step_info["method"] == "multigrid" and P.step_info["exact_steps"] > 0
    exact = BlockTriangularPreconditioner(lin, step_solver="lu")
    r = rng.standard_normal(P.shape[0])
    ye = exact.matvec(r)
    y = P.matvec(r)
    # steps that passed the probe are V-cycles (contracting), the rest exact
    assert np.linalg.norm(y - ye) < 0.3 * np.linalg.norm(ye)
