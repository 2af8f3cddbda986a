"""Grid sequencing: Newton's first iterate from the same MFG solved on a coarser grid.

Newton on the coupled system converges quadratically only near the solution. From the default
start (one fixed-point sweep) most of the iterations go to the globalisation: on B2
(50^2 x 50, congestion) 8 of 12 Newton steps are damped by the line search or followed by
fixed-point sweeps, and each costs as much as a quadratic one. Solved on a grid with half the
points per axis and half the time steps, the same problem costs about 1/8 (1/16 in 3D) per
iteration, and its solution, interpolated, is within the discretisation error ``O(h + dt)`` of
the fine one: there Newton takes full steps at once. The coarse problem is itself solved by
sequencing, so the globalisation happens on the coarsest grid (Knoll and Keyes 2004, section
3.4; PETSc's ``-snes_grid_sequence``).

Only the starting guess changes: the fine discrete system, its residual and its tolerance are
the same, so the answer is the fine-grid solution to the requested tolerance (a regression test
pins it). An initial density given as a fine-grid array (the generative presets) is interpolated
to the coarse grid; problems with other data given as fine-grid arrays (a drift, a potential) are
solved without sequencing.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.sparse as sp

from ..grid import TensorGrid
from ..problem import MFGProblem
from .newton import newton

logger = logging.getLogger(__name__)

#: Coarsen only while every axis keeps at least this many points and the coarse time grid
#: this many steps: below that the coarse solution says little about the fine one.
MIN_AXIS = 8
MIN_STEPS = 4
#: Grids with fewer space-time points than this are solved directly (sequencing saves nothing).
MIN_POINTS = 40_000
#: Tolerance of the coarse solves: their answer is only a starting guess, within the
#: discretisation error (~1e-2) of the fine solution, so tighter solves are wasted work.
COARSE_TOL = 1e-6


def coarse_shape(grid, nt):
    """Shape and number of steps of the next coarser level, or ``None`` when there is none."""
    shape = tuple((n + 1) // 2 for n in grid.shape)
    nt_c = nt // 2
    if min(shape) < MIN_AXIS or nt_c < MIN_STEPS or grid.size * (nt + 1) < MIN_POINTS:
        return None
    return shape, nt_c


def coarse_problem(problem):
    """The same MFG on the grid with half the points per axis and half the time steps.

    Returns ``None`` when the grid is too small to coarsen or the problem's data cannot be
    evaluated on another grid (arrays instead of functions, a subclass with extra state).
    """
    grid = problem.grid
    if getattr(grid, "is_mesh", False) or type(problem) is not MFGProblem:
        return None
    level = coarse_shape(grid, problem.nt)
    if level is None:
        return None
    drift = None
    if problem.drift is not None:
        if not callable(problem.drift.b):
            return None
        drift = problem.drift.b
    shape, nt_c = level
    sources = {key: getattr(problem, key + "_spec", None) for key in ("hjb_source", "fp_source")}
    if any(spec is not None and not callable(spec) for spec in sources.values()):
        return None  # a source given as a fine-grid array: no coarse problem
    try:
        with warnings.catch_warnings():
            # the fine problem has warned already (a potential that jumps across a periodic seam)
            warnings.simplefilter("ignore")
            coarse = TensorGrid(grid.bounds, shape, grid.boundary)
            m0 = problem.m0_source
            if not callable(m0):
                # a density given on the fine grid (the generative presets' data): interpolated
                # to the coarse points with the fine mass; the coarse solve only makes a start
                m0 = np.maximum(resample(problem.m0, grid, coarse), 0.0)
                m0 *= grid.integrate(problem.m0) / coarse.integrate(m0)
            p = MFGProblem(coarse, problem.T, nt_c, problem.nu, problem.hamiltonian, m0,
                           coupling=problem.coupling, terminal=problem.terminal, drift=drift,
                           normalize=problem.normalize, name=f"{problem.name} (coarse)", **sources)
            # evaluate the couplings once: data given as fine-grid arrays fail here, not mid-solve
            m = np.tile(p.m0.ravel(), (2, 1))
            for term in (p.coupling, p.terminal):
                term.value(m.reshape((2,) + shape), coarse)
    except (ValueError, TypeError):
        return None
    return p


def _interpolation_matrix(x_target, x_source, period=None):
    """Sparse (CSR) matrix of piecewise linear interpolation from the points ``x_source`` to
    ``x_target``: two entries per row; constant beyond the ends, or periodic with ``period``.
    """
    xs = np.asarray(x_source, float)
    n = xs.size
    rows = np.arange(np.size(x_target))
    if n == 1:
        return sp.csr_matrix((np.ones(rows.size), (rows, np.zeros(rows.size, int))), shape=(rows.size, 1))
    if period is None:
        xt = np.clip(x_target, xs[0], xs[-1])
        j = np.clip(np.searchsorted(xs, xt, side="right") - 1, 0, n - 2)
        right, jn = xs[j + 1], j + 1
    else:
        xt = xs[0] + np.mod(np.asarray(x_target, float) - xs[0], period)
        j = np.clip(np.searchsorted(xs, xt, side="right") - 1, 0, n - 1)
        jn = (j + 1) % n
        right = np.where(j < n - 1, xs[np.minimum(j + 1, n - 1)], xs[0] + period)
    w = (xt - xs[j]) / (right - xs[j])
    return sp.csr_matrix((np.r_[1.0 - w, w], (np.r_[rows, rows], np.r_[j, jn])), shape=(rows.size, n))


def _apply_along(P, F, axis):
    """``P`` applied along one axis of the array ``F``."""
    G = np.moveaxis(F, axis, 0)
    out = P @ G.reshape(G.shape[0], -1)
    return np.moveaxis(out.reshape((P.shape[0],) + G.shape[1:]), 0, axis)


def _axis_matrices(source, target):
    """Per-axis interpolation matrices from the points of grid ``source`` to those of ``target``."""
    mats = []
    for k in range(target.dim):
        a, b = target.bounds[k]
        period = (b - a) if target.boundary[k] == "periodic" else None
        mats.append(_interpolation_matrix(target.axes[k], source.axes[k], period))
    return mats


def resample(values, source, target):
    """A grid function on ``source`` interpolated (linearly per axis) to the points of ``target``."""
    F = np.asarray(values, float).reshape(source.shape)
    for k, P in enumerate(_axis_matrices(source, target)):
        F = _apply_along(P, F, k)
    return F


def prolong(coarse, fine, U, M):
    """Interpolate a coarse solution ``(U, M)`` (shape (nt_c + 1, N_c)) to the fine problem.

    Linear in time and along each axis (periodic axes wrap). The density keeps what the fine
    system fixes exactly: ``m^0 = m0`` and, since the FP steps conserve mass, every time slice
    carries the mass of ``m0``.
    """
    gc, gf = coarse.grid, fine.grid
    mats = _axis_matrices(gc, gf)
    Pt = _interpolation_matrix(fine.times, coarse.times)

    def up(F):
        F = _apply_along(Pt, np.asarray(F, float).reshape((coarse.nt + 1,) + gc.shape), 0)
        for k, P in enumerate(mats):
            F = _apply_along(P, F, k + 1)
        return F.reshape(fine.nt + 1, gf.size)

    Uf, Mf = up(U), np.maximum(up(M), 0.0)
    Mf[0] = fine.m0.ravel()
    mass = Mf[0].sum()
    totals = Mf.sum(axis=1)
    ok = totals > 0
    Mf[ok] *= (mass / totals[ok])[:, None]
    return Uf, Mf


#: Tolerance of the HJB levels in the fine fixed-point sweep after the coarse hand-off (see
#: :func:`sequenced_newton`).
START_HJB_TOL = 1e-3
#: Relative residual of that sweep's iterative FP step solves (the mass is restored exactly).
START_FP_RTOL = 1e-6


def sequenced_newton(problem, scheme, coarse_solve, tol, max_iter, *, verbose=None, local=None):
    """Newton on ``scheme`` (the discretisation of ``problem``) from the best start there is.

    The start is ``problem`` solved on the next coarser grid by ``coarse_solve(coarse, tol)``
    (which sequences in turn), interpolated by :func:`prolong`; in 2D/3D followed by one fine
    fixed-point sweep, U for the interpolated density and m for that U. Measured (serial): B2
    from the raw interpolant 9 Newton steps (residual 4e2 at the start), after the sweep 5 (1.7e2,
    then full steps); LOG2D 64^2 4 and 3. The sweep's HJB levels are solved to
    :data:`START_HJB_TOL`, far below the start's residual (0.5 to 2e2 on these): B2 and LOG2D 64^2
    take the same Newton steps as after a sweep to 1e-8, and the sweep costs 0.17 s instead of
    0.23 s (B2), 0.32 s instead of 0.47 s (LOG2D 64^2). In 1D the raw interpolant: there a
    Newton step (compiled tridiagonal sweeps) costs less than the sweep (B1 from the raw
    interpolant 4 steps in 0.09 s, after the sweep (0.026 s) 3 steps in 0.09 s).

    Without a coarser level, when the coarse solve fails, or when Newton from the coarse start
    does not converge (a coarse grid that misses the fine solution's features), Newton starts
    from the fixed-point start (U for the frozen density m0, then m for that U).

    Parameters
    ----------
    problem : MFGProblem
    scheme : NewtonKrylovDiscretisation
    coarse_solve : callable or None
        ``coarse_solve(coarse_problem, tol) -> MFGResult``, or ``None`` for no sequencing. It may
        raise ``ArithmeticError``, ``ValueError`` or ``RuntimeError``: the fine solve then goes on
        without the start.
    tol, max_iter, verbose
        Of the fine Newton iteration.
    local : callable, optional
        Global ``(K, N)`` arrays to the scheme's layout (a distributed scheme's owned points);
        the identity by default.

    Returns
    -------
    U, M, log, status
        As :func:`mfgpde.iterations.newton.newton`.
    info : dict or None
        ``None`` without a coarser level; else what was done: ``coarse_shape``, ``coarse_nt``,
        ``coarse_status``, ``coarse_iterations``, ``coarse_time_s`` (``coarse_message`` on an
        error, ``coarse_ranks`` and ``coarser`` when the coarse result says so) and
        ``fine_status_from_coarse_start`` when Newton from that start did not converge.
    """
    local = local or (lambda X: X)
    info = _coarse_start(problem, coarse_solve, tol, verbose)
    if info is not None and "start" in info:
        U0, M0 = (local(X) for X in info.pop("start"))
        if problem.grid.dim > 1:
            U0, _ = scheme.solve_hjb(M0, tol=START_HJB_TOL)
            M0 = scheme.solve_fp(U0, M_lag=M0, rtol=START_FP_RTOL)
        U, M, log, status = newton(scheme, U0, M0, tol=tol, max_iter=max_iter, verbose=verbose)
        if status == "converged":
            return U, M, log, status, info
        info["fine_status_from_coarse_start"] = status
    M0 = np.tile(local(problem.m0.reshape(1, -1)), (problem.nt + 1, 1))
    U0, _ = scheme.solve_hjb(M0)
    U, M, log, status = newton(scheme, U0, scheme.solve_fp(U0, M_lag=M0), tol=tol, max_iter=max_iter,
                               verbose=verbose)
    return U, M, log, status, info


def _coarse_start(problem, coarse_solve, tol, verbose):
    """``None`` without a coarser level, else a dict of what was done, with the interpolated start
    under ``"start"`` if the coarse solve converged (see :func:`sequenced_newton`).
    """
    import time

    coarse = None if coarse_solve is None else coarse_problem(problem)
    if coarse is None:
        return None
    t0 = time.perf_counter()
    info = {"coarse_shape": list(coarse.grid.shape), "coarse_nt": coarse.nt}
    try:
        rc = coarse_solve(coarse, max(tol, COARSE_TOL))
    except (ArithmeticError, ValueError, RuntimeError) as exc:
        # the coarse problem failed where the fine one may not (a coupling singular at a coarse
        # density): the fine solve goes on from its default start, and the diagnostics say why
        info.update(coarse_status="error", coarse_message=str(exc), coarse_time_s=time.perf_counter() - t0)
        return info
    info.update(coarse_status=rc.status, coarse_iterations=rc.iterations, coarse_time_s=time.perf_counter() - t0)
    for key, name in (("ranks", "coarse_ranks"), ("grid_sequencing", "coarser")):
        if key in rc.diagnostics:
            info[name] = rc.diagnostics[key]
    if verbose:
        logger.info("grid sequencing: %s x %d steps, %s in %d Newton iterations, %.2f s",
                    "x".join(map(str, coarse.grid.shape)), coarse.nt, rc.status, rc.iterations, info["coarse_time_s"])
    if rc.converged:
        info["start"] = prolong(coarse, problem, rc.U.reshape(coarse.nt + 1, -1), rc.m.reshape(coarse.nt + 1, -1))
    return info
