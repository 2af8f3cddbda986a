"""``solve(problem, backend="fem")``: the FEM path of :func:`mfgpde.solve`."""

from __future__ import annotations

import copy
import time

import numpy as np

from ..iterations.fixed_point import damped_sweeps, fixed_point
from ..iterations.newton import newton
from ..problem import MFGProblem
from .domain import MeshDomain
from .result import FEMResult
from .scheme import FEMScheme


def problem_on_mesh(problem, comm=None):
    """The same problem on the structured mesh matching its :class:`~mfgpde.TensorGrid`.

    Callables (m0, potentials) are re-evaluated at the mesh nodes; arrays given on the
    tensor grid are interpolated linearly.
    """
    grid = problem.grid
    if getattr(grid, "is_mesh", False):
        return problem
    dom = MeshDomain.from_grid(grid, comm)
    m0 = problem.m0_source
    if not callable(m0):
        m0 = _interpolator(grid, problem.m0)
    terminal = copy.copy(problem.terminal)
    if hasattr(terminal, "_cache"):
        terminal._cache = {}
        if not callable(terminal.V):
            terminal.V = _interpolator(grid, terminal.field(grid))
    drift = None
    if problem.drift is not None:
        drift = problem.drift.b
        if not callable(drift):  # a fixed array on the grid: interpolate each component onto the vertices
            parts = [_interpolator(grid, c) for c in np.asarray(drift, float)]

            def drift(t, *xs):
                return [f(*xs) for f in parts]

            drift.time_dependent = False
    sources = {k: _source_on_mesh(grid, getattr(problem, k + "_spec", None), problem.dt)
               for k in ("hjb_source", "fp_source")}
    p = MFGProblem(dom, problem.T, problem.nt, problem.nu, problem.hamiltonian, m0, coupling=problem.coupling,
                   terminal=terminal, drift=drift, normalize=problem.normalize, name=problem.name, **sources)
    return p


def _source_on_mesh(grid, spec, dt):
    """A source given for the tensor grid, for the matching mesh: a callable ``s(t, x)`` as it is,
    an array interpolated linearly onto the vertices (one interpolant per time level when it has
    one slice per level; level ``n`` is read at ``t = n dt``).
    """
    if spec is None or callable(spec):
        return spec
    arr = np.asarray(spec, float)
    if arr.shape == tuple(grid.shape):
        f = _interpolator(grid, arr)
        return lambda t, *xs: f(*xs)
    levels = [_interpolator(grid, a) for a in arr]  # (the problem checked the shape (N_t + 1,) + grid.shape)
    return lambda t, *xs: levels[int(round(t / dt))](*xs)


def _interpolator(grid, values):
    from scipy.interpolate import RegularGridInterpolator

    interp = RegularGridInterpolator(grid.axes, np.asarray(values, float), bounds_error=False, fill_value=None)
    return lambda *xs: interp(np.stack([np.asarray(x, float) for x in xs], axis=-1))


def solve_fem(problem, *, method="newton", tol=1e-10, max_iter=None, damping=0.5, verbose=None, initial=None,
              linear_solver="auto", comm=None, start_sweeps=4):
    """Solve an :class:`~mfgpde.MFGProblem` with the monotone P1 scheme (see :mod:`mfgpde.fem.scheme`).

    Parameters are those of :func:`mfgpde.solve`; ``start_sweeps`` damped fixed-point sweeps
    (relaxation 1/2) give Newton its initial guess when ``initial`` is not given.

    Returns
    -------
    FEMResult
    """
    t0 = time.perf_counter()
    p = problem_on_mesh(problem, comm)
    if p.grid.comm.rank != 0:
        verbose = False  # one progress line per iteration, from rank 0
    scheme = FEMScheme(p, linear_solver=linear_solver)
    try:
        U0 = M0 = None
        if initial is not None:
            U0, M0 = (initial.U_local, initial.m_local) if hasattr(initial, "U_local") else initial
            U0, M0 = np.asarray(U0, float), np.asarray(M0, float)
            if U0.shape != (p.nt + 1, scheme.n) or M0.shape != U0.shape:
                raise ValueError(f"initial: expected this rank's arrays of shape {(p.nt + 1, scheme.n)}")
        if method == "newton":
            if not p.hamiltonian.has_second_derivatives:
                raise ValueError("method='newton' needs a Hamiltonian with phi_SS; use method='fixed_point'")
            if U0 is None:
                # a few damped fixed-point sweeps bring Newton into its basin; from one sweep the first
                # Newton steps stall on transport-dominated problems (crowd room, B2) and cost more
                U0, M0 = damped_sweeps(scheme, np.tile(scheme.m0, (p.nt + 1, 1)), start_sweeps)
            U, M, log, status = newton(scheme, U0, M0, tol=tol, max_iter=50 if max_iter is None else max_iter, verbose=verbose)
        else:
            U, M, log, status = fixed_point(scheme, tol=tol, max_iter=1000 if max_iter is None else max_iter, damping=damping,
                                            fictitious=(method == "fictitious_play"), M0=M0, verbose=verbose)
    finally:
        scheme.destroy()  # the step solvers and the PETSc options the scheme set
    return FEMResult.from_arrays(p, U, M, log, status, method, time.perf_counter() - t0)
