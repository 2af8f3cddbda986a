"""Newton's method on the coupled space-time system with the analytic sparse Jacobian.

Each step solves ``J(z_k) dz = -R(z_k)`` for ``z = (U, m)`` (GMRES with the sweep
preconditioner of :mod:`mfgpde.iterations.krylov`, or sparse LU) and takes
``z_{k+1} = z_k + s dz``, with ``s`` from a backtracking line search on ``|R|_2`` and, when a
coupling needs ``m > 0`` (log), a fraction-to-the-boundary cap that keeps m positive.
Close to the solution the full step is accepted and the residual falls quadratically.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from .base import IterationLog, residual_norms
from .fixed_point import damped_sweeps
from .krylov import solve_newton_system

#: below this many unknowns (U and m together) 2D/3D Newton systems are solved by sparse LU
DIRECT_MAX_UNKNOWNS = 6000
#: how far below zero (relative to max m) a Newton step may take the density where H allows it
NEGATIVE_SLACK = 1e-6


def newton(scheme, U0, M0, tol=1e-10, max_iter=50, verbose=None, min_step=2.0**-12, linear="auto",
           globalize=True, small_step=0.1, sweeps=4, damping=0.5, step_solver=None):
    """Newton iteration on ``R(U, m) = 0``.

    Parameters
    ----------
    scheme : NewtonKrylovDiscretisation
        Residual, half-sweeps, Jacobian and linearisation
        (:class:`~mfgpde.iterations.contract.NewtonKrylovDiscretisation`): the serial and distributed
        FD schemes and the FEM scheme; the last two bring ``solve_newton_system`` and ``allreduce``.
    U0, M0 : ndarray (N_t + 1, N)
        Initial guess (e.g. one fixed-point sweep).
    tol : float
        Stop when ``max(|R_HJB|_inf, |R_FP|_inf) <= tol``.
    max_iter : int
    verbose : bool or None
    min_step : float
        Smallest line-search step before the iteration is declared stagnated.
    globalize : bool
        When the line search has to cut the step below ``small_step`` (far from the
        solution, e.g. congestion with a density close to zero), take ``sweeps`` damped
        fixed-point sweeps (``damping``) from the current iterate before the next Newton
        step. Near the solution full steps are taken and the rate stays quadratic.
    linear : {"auto", "direct", "krylov"}
        Linear solver of the Newton systems: sparse LU of the space-time matrix, or GMRES
        with the block-triangular (backward HJB / forward FP sweep) preconditioner of
        :mod:`mfgpde.iterations.krylov`. ``"auto"`` picks Krylov, except for 2D/3D systems of
        at most ``DIRECT_MAX_UNKNOWNS`` unknowns: there one sparse LU of the space-time
        Jacobian costs milliseconds, while far from the solution of a first-order problem
        GMRES can run to its iteration cap at every step (a 10^2 x 4 CNF from a random start:
        minutes instead of 4 s for 60 iterations; 6000 unknowns: 2D grids up to ~16^2 x 10).
    step_solver : {"auto", "lu", "spectral", "bicgstab"}, optional
        Step solves of the preconditioner (:func:`mfgpde.fd.steps.step_inverses`); default
        ``scheme.step_solver`` (from the scheme's ``linear_solver``).

    Returns
    -------
    U, M, log, status
    """
    log = IterationLog("newton", verbose)
    # the backend's linear algebra where it has its own (PETSc for the distributed scheme), and
    # its reductions: every rank must take the same step
    system = getattr(scheme, "solve_newton_system", solve_newton_system)
    reduce = getattr(scheme, "allreduce", lambda value, op="sum": value)
    if system is not solve_newton_system:
        linear = "krylov"
    if linear == "auto" and scheme.grid.dim > 1 and 2 * np.size(U0) <= DIRECT_MAX_UNKNOWNS:
        linear = "direct"
    step_solver = scheme.step_solver if step_solver is None else step_solver
    U, M = np.array(U0, float), np.array(M0, float)
    shape, n = U.shape, U.size
    # Couplings with a floor (log) are defined for every m, and the converged FP equation
    # forces m >= 0 (M-matrix), so intermediate iterates may dip below zero in vanishing
    # tails; capping the step at m >= 0 there would stall Newton (steps ~ m/|dm| ~ 1e-11 in
    # the tails of a transported Gaussian). Only a Hamiltonian singular at m = 0 needs m > 0.
    # A running coupling with a floor (log) is flat below it, a kink the line search cannot cross:
    # its steps are capped at m >= -NEGATIVE_SLACK max|m|, which tails never reach but a step
    # that sends the bulk negative does (a log-coupled LQ problem on T = 4: a full first step
    # gave min m = -0.12, and the line search then stalled). Other problems are not capped
    # (on B1 and B2 the cap shortened steps and triggered fixed-point sweeps: 1.5x and 1.25x the
    # time; the 2D CNF, whose KL terminal cost has a floor, took 45 s against 38 s in one run).
    positive = scheme.problem.hamiltonian.needs_positive_density
    floored = scheme.problem.coupling.needs_positive_density
    hjb, fp, RU, Rm = residual_norms(scheme, U, M)
    step = 1.0
    P = reused = None  # the sweep preconditioner's step solves are kept while they still work
    fresh_its = 10
    stalled = False
    for k in range(max_iter + 1):
        res = log.record(k, hjb, fp, step=step)
        if res <= tol:
            return U, M, log, "converged"
        log.check_divergence(k)
        if k == max_iter:
            break
        R = np.concatenate([RU.ravel(), Rm.ravel()])
        try:
            if linear == "direct":
                dz = spla.spsolve(scheme.jacobian(U, M), -R)
            else:
                lin = scheme.linearisation(U, M)
                # inexact Newton: forcing term shrinks with the residual (Eisenstat-Walker type),
                # so the local rate stays quadratic up to the tolerance
                # and is never tighter than what reaching ``tol`` from ``res`` needs (x 0.1)
                rtol = max(1e-13, min(1e-2, max(1e-2 * res, 0.1 * tol / res)))
                dz, kits, _ok, P = system(lin, -R, rtol, step_solver=step_solver, reuse=P,
                                                      lag_budget=max(20, 2 * fresh_its))
                if P is not reused:
                    fresh_its, reused = kits, P
                log.records[-1]["krylov_iterations"] = kits
                del lin  # before the next linearisation is built: one alive at a time (O(N_t N) each)
        except RuntimeError as exc:  # singular factor
            log.records[-1]["message"] = str(exc)
            return U, M, log, "singular_jacobian"
        if not reduce(bool(np.all(np.isfinite(dz))), "min"):
            return U, M, log, "singular_jacobian"
        dU, dM = dz[:n].reshape(shape), dz[n:].reshape(shape)
        step = 1.0
        neg = dM < 0
        if (positive or floored) and reduce(bool(np.any(neg)), "max"):
            # fraction to the boundary m >= -slack: strict positivity (slack 0) for a Hamiltonian
            # singular at m = 0; with a floored coupling vanishing tails may dip to round-off
            # level, but a step that drives the bulk of the density negative is shortened
            slack = 0.0 if positive else NEGATIVE_SLACK * reduce(float(np.abs(M).max()), "max")
            ratio = float(np.min((M[neg] + slack) / -dM[neg])) if np.any(neg) else np.inf
            step = min(1.0, 0.99 * reduce(ratio, "min"))
        merit = np.sqrt(reduce(float(np.sum(RU**2) + np.sum(Rm**2))))
        while True:
            Uc, Mc = U + step * dU, M + step * dM
            hc, fc, RUc, Rmc = residual_norms(scheme, Uc, Mc)
            mc = np.sqrt(reduce(float(np.sum(RUc**2) + np.sum(Rmc**2))))
            if np.isfinite(mc) and mc <= (1.0 - 1e-4 * step) * merit:
                break
            step *= 0.5
            if step < min_step:
                break
        if step < min_step:
            # no descent along the Newton direction: a kink of the residual (a log floor, an
            # upwind switch) or a poor linearisation. Fixed-point sweeps move the iterate off it;
            # a second failure in a row is a stall
            if not globalize or stalled:
                return U, M, log, "stagnated"
            stalled = True
            Uc, Mc, hc, fc, RUc, Rmc = U, M, hjb, fp, RU, Rm
        else:
            stalled = False
        U, M, hjb, fp, RU, Rm = Uc, Mc, hc, fc, RUc, Rmc
        if globalize and step < small_step:
            U, M = damped_sweeps(scheme, M, sweeps, damping)
            hjb, fp, RU, Rm = residual_norms(scheme, U, M)
            log.records[-1]["fixed_point_sweeps"] = sweeps
    return U, M, log, "max_iter"
