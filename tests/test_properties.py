"""Invariants of the discrete operators for random grids, drifts, value functions and densities."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import mfgpde as mp
from mfgpde.fd import kernels
from mfgpde.fd.scheme import FDScheme

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def schemes(draw):
    d = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(4, 9)) for _ in range(d))
    bcs = tuple(draw(st.sampled_from(["periodic", "noflux"])) for _ in range(d))
    nu = draw(st.sampled_from([0.0, 0.05, 0.5]))
    b = [draw(st.floats(-2, 2)) for _ in range(d)]
    seed = draw(st.integers(0, 2**31))
    g = mp.TensorGrid([(0, 1)] * d, shape, bcs)
    rng = np.random.default_rng(seed)
    m0 = rng.random(g.shape) + 0.1
    drift = (lambda t, *x: tuple(bk + 0.3 * np.sin(3 * x[k] + t) for k, bk in enumerate(b)))
    p = mp.MFGProblem(g, 0.5, 3, nu, mp.QuadraticHamiltonian(), m0, drift=drift, normalize=True)
    return FDScheme(p), rng


@SETTINGS
@given(schemes())
def test_one_fp_step_keeps_mass_and_sign(case):
    """The FP step matrix is the transpose of an M-matrix with columns summing to 1/dt."""
    sc, rng = case
    U = 2 * rng.standard_normal((sc.nt + 1, sc.N))
    m = sc.problem.m0.ravel()
    vals = sc.fp_stencil(U[0], m, 0)
    m1 = sc.step_solve(vals, m / sc.dt, transpose=True)
    assert abs(m1.sum() - m.sum()) <= 1e-12 * m.sum()
    assert m1.min() >= -1e-14 * m1.max()


def _linearised(case):
    """The linearisation at a random value function and a positive density."""
    sc, rng = case
    U = 2 * rng.standard_normal((sc.nt + 1, sc.N))
    M = rng.random((sc.nt + 1, sc.N)) + 0.1
    return sc, rng, sc.linearisation(U, M)


@SETTINGS
@given(schemes())
def test_hjb_step_operator_is_monotone(case):
    """Off-diagonal weights <= 0 and a diagonal that dominates: comparison principle of the HJB step."""
    sc, _rng, lin = _linearised(case)
    off = lin.vals_uu[:, :, 1:]
    assert off.max() <= 0.0
    assert np.all(lin.vals_uu[:, :, 0] + off.sum(axis=2) >= 1.0 / sc.dt * (1 - 1e-12))


@SETTINGS
@given(schemes())
def test_fp_operator_is_the_adjoint(case):
    """``<A u, m> = <u, A^T m>`` for the stencils applied by the compiled kernels."""
    sc, rng, lin = _linearised(case)
    u = rng.standard_normal((sc.nt, sc.N))
    m = rng.standard_normal((sc.nt, sc.N))
    lhs = np.sum(kernels.apply_stencil(lin.vals_mm, sc.grid, u) * m)
    rhs = np.sum(u * kernels.apply_stencil(lin.vals_mmT, sc.grid, m))
    assert abs(lhs - rhs) <= 1e-11 * (np.abs(lin.vals_mm).max() * np.abs(u).sum() * np.abs(m).max())
