"""Newton's method for every discretisation: one driver, two globalisations.

For a stacked unknown ``z`` (``(U, m)`` of a time-dependent scheme, or ``(u, m, rho)`` of the
bordered ergodic system of :mod:`mfgpde.fd.ergodic`) each step solves the linearised system

    (D / dtau_k + J(z_k)) dz = -R(z_k)

and takes ``z_{k+1} = z_k + s dz``, with ``s <= 1`` capped so that the density stays where the
model needs it (positive for a Hamiltonian singular at m = 0). The globalisation is chosen by the caller:

* **line search** (time-dependent systems; ``dtau = inf``, plain Newton): ``s`` halves until
  ``|R|_2`` falls by ``1 - 1e-4 s``; when it has to fall below ``small_step``, damped
  fixed-point sweeps (backward HJB / forward FP) move the iterate before the next step.
* **pseudo time** (the ergodic system, which has no sweeps): ``D`` is 1 on the HJB and FP rows
  and 0 on the constraint rows, so a step is one implicit Euler step of ``dz/dtau = -R(z)``
  linearised at ``z_k``; a step that raises ``|R|_2`` more than ``GROWTH``-fold is retried
  with ``dtau / 4``, and ``dtau`` grows by switched evolution relaxation
  (``dtau_{k+1} = dtau_k |R_{k-1}| / |R_k|``, Kelley & Keyes 1998), so the iteration becomes
  Newton's method, with its quadratic tail, once the residual falls. From a uniform density on
  a wide box a line search stalls (the density must fall by tens of orders of magnitude in the
  tails); the pseudo-time flow, a forward-forward MFG, gets there.

Both end with the same statuses (:mod:`mfgpde.iterations`): ``converged``, ``max_iter``,
``stagnated`` and ``singular_jacobian``. The linear algebra of a step is the system's: GMRES
with the sweep preconditioner of :mod:`mfgpde.fd.krylov`, PETSc
(:class:`~mfgpde.iterations.petsc_krylov.ShellNewtonSystem`), a sparse LU, or the bordered
solve of :mod:`mfgpde.iterations.pseudo_transient`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from .base import IterationLog, residual_norms
from .fixed_point import damped_sweeps

#: below this many unknowns (U and m together) 2D/3D Newton systems are solved by sparse LU
DIRECT_MAX_UNKNOWNS = 6000
#: how far below zero (relative to max m) a Newton step may take the density where H allows it
NEGATIVE_SLACK = 1e-6
#: largest growth of ``|R|_2`` a pseudo-time step may cause before it is retried with dtau / 4
GROWTH = 2.0
#: smallest line-search step before the Newton direction is declared no descent
MIN_STEP = 2.0**-12


def newton_iteration(system, z, tol, max_iter, log, *, pseudo_dt=None, min_step=MIN_STEP, small_step=0.1, **record):
    """Newton steps on ``R(z) = 0`` from ``z`` until ``max(|R_HJB|_inf, |R_FP|_inf) <= tol``.

    Parameters
    ----------
    system : object
        ``residual(z) -> (R, |R_HJB|_inf, |R_FP|_inf)``; ``norm2(R)`` (the merit ``|R|_2``);
        ``linearise(z) -> J``; ``direction(J, R, res, dtau) -> (dz, record)``, solving
        ``(D / dtau + J) dz = -R`` (``J dz = -R`` for ``dtau`` None; ``res`` sets an inexact
        solve's forcing term) or raising ``RuntimeError`` (singular); ``max_step(z, dz)``, the
        cap keeping the density positive; ``allreduce(value, op)`` (collective on distributed
        data); optionally ``sweep(z)``, damped fixed-point sweeps for the line search.
    z : ndarray
        The start (not modified).
    tol : float
    max_iter : int
        Most steps counted by ``log.steps`` (shared by calls with one log).
    log : IterationLog
    pseudo_dt : float, optional
        First pseudo-time step: globalise by pseudo time; ``None``: by a line search, with
        ``system.sweep`` after steps below ``small_step`` and a stall when the step falls below
        ``min_step`` twice in a row (once, without ``system.sweep``).
    min_step, small_step : float
    **record
        Extra entries of every history record.

    Returns
    -------
    z, status, message
    """
    sweep = getattr(system, "sweep", None)
    # deflated Newton (mfgpde.iterations.deflation): the direction rescaled, the merit M(z) |R|_2
    deflation = getattr(system, "deflation", None)
    merit = (lambda z_, R_: system.norm2(R_)) if deflation is None else \
        (lambda z_, R_: deflation.factor(z_) * system.norm2(R_))
    R, hjb, fp = system.residual(z)
    step, dtau = 1.0, pseudo_dt
    best, best_at, stalled = np.inf, 0, False
    while True:
        k = getattr(log, "steps", 0)
        res = log.record(k, hjb, fp, **({"step": step} if dtau is None else {"pseudo_dt": float(dtau)}), **record)
        if res <= tol:
            return z, "converged", ""
        log.check_divergence(k)
        if k >= max_iter:
            return z, "max_iter", ""
        if res < 0.1 * best:
            best, best_at = res, k
        elif dtau is not None and k - best_at >= 30:     # no tenfold progress in 30 steps: round-off or a stall
            return z, "stagnated", f"no tenfold decrease of the residual in 30 iterations (best {best:.2e})"
        J, norm = system.linearise(z), merit(z, R)
        trial = _step(system, J, z, R, res, norm, dtau, merit, log, min_step)
        if trial.failure is not None:
            return (z,) + trial.failure
        step, dtau, nc = trial.step, trial.dtau, trial.merit
        zc, Rc, hc, fc = trial.z, trial.R, trial.hjb, trial.fp
        del J  # before the next linearisation is built: one alive at a time (O(N_t N) each)
        if dtau is not None:
            # switched evolution relaxation: dtau grows as the residual falls (Newton in the limit)
            dtau = min(1e13, dtau * min(10.0, max(0.5, norm / max(nc, 1e-300))) * (1.0 if step > 0.5 else 0.5))
        elif step < min_step:
            # no descent along the Newton direction: a kink of the residual (a log floor, an
            # upwind switch) or a poor linearisation. Fixed-point sweeps move the iterate off it;
            # a second failure in a row is a stall
            if sweep is None or stalled:
                return z, "stagnated", "no descent along the Newton direction"
            stalled, zc, Rc, hc, fc = True, z, R, hjb, fp
        else:
            stalled = False
        z, R, hjb, fp = zc, Rc, hc, fc
        if dtau is None and sweep is not None and step < small_step:
            z = sweep(z)
            R, hjb, fp = system.residual(z)
            log.records[-1]["fixed_point_sweeps"] = system.sweeps
        log.steps = k + 1


def fraction_to_boundary(m, dm, fraction, *, slack=0.0, reduce=None):
    """The step cap ``min(1, fraction * min_i (m_i + slack) / -dm_i)`` over the decreasing
    densities (``reduce(value, "min")`` makes it collective on distributed data).
    """
    neg = dm < 0
    ratio = float(np.min((m[neg] + slack) / -dm[neg])) if np.any(neg) else np.inf
    return min(1.0, fraction * (ratio if reduce is None else reduce(ratio, "min")))


class SpaceTimeSystem:
    """The time-dependent system ``R(U, m) = 0`` of a scheme as :func:`newton_iteration` consumes it.

    ``z`` stacks ``U`` and ``m`` (shape ``(N_t + 1, N)`` each). See :func:`newton` for the parameters.
    """

    def __init__(self, scheme, shape, tol, linear, step_solver, globalize, sweeps, damping):
        self.scheme, self.shape, self.n, self.tol = scheme, shape, int(np.prod(shape)), tol
        # the backend's linear algebra where it has its own (PETSc for the distributed scheme), and
        # its reductions: every rank must take the same step
        self.system = scheme.solve_newton_system
        self.allreduce = getattr(scheme, "allreduce", lambda value, op="sum": value)
        if not getattr(scheme, "assembles_jacobian", False):
            linear = "krylov"
        if linear == "auto" and scheme.grid.dim > 1 and 2 * self.n <= DIRECT_MAX_UNKNOWNS:
            linear = "direct"
        self.linear = linear
        self.step_solver = scheme.step_solver if step_solver is None else step_solver
        self.P = self.reused = None  # the sweep preconditioner's step solves are kept while they still work
        self.fresh_its = 10
        self.sweeps, self.damping = sweeps, damping
        if not globalize:
            self.sweep = None   # no fixed-point sweeps: the driver stops where the line search fails
        # Couplings with a floor (log) are defined for every m, and the converged FP equation
        # forces m >= 0 (M-matrix), so intermediate iterates may dip below zero in vanishing
        # tails; capping the step at m >= 0 there would stall Newton (steps ~ m/|dm| ~ 1e-11 in
        # the tails of a transported Gaussian). Only a Hamiltonian singular at m = 0 needs m > 0.
        # A running coupling with a floor (log) is flat below it, a kink the line search cannot
        # cross: its steps are capped at m >= -NEGATIVE_SLACK max|m|, which tails never reach but
        # a step that sends the bulk negative does (a log-coupled LQ problem on T = 4: a full
        # first step gave min m = -0.12, and the line search then stalled). Other problems are
        # not capped (on B1 and B2 the cap shortened steps and triggered fixed-point sweeps: 1.5x
        # and 1.25x the time; the 2D CNF, whose KL terminal cost has a floor, took 45 s against 38 s).
        self.positive = scheme.problem.hamiltonian.needs_positive_density
        self.floored = scheme.problem.coupling.needs_positive_density

    def split(self, z):
        return z[:self.n].reshape(self.shape), z[self.n:].reshape(self.shape)

    def residual(self, z):
        hjb, fp, RU, Rm = residual_norms(self.scheme, *self.split(z))
        return np.concatenate([RU.ravel(), Rm.ravel()]), hjb, fp

    def norm2(self, R):
        return np.sqrt(self.allreduce(float(np.sum(R[:self.n]**2) + np.sum(R[self.n:]**2))))

    def linearise(self, z):
        return self.scheme.jacobian(*self.split(z)) if self.linear == "direct" else self.scheme.linearisation(*self.split(z))

    def direction(self, lin, R, res, dtau):
        if self.linear == "direct":
            return spla.spsolve(lin, -R), {}
        # inexact Newton: the forcing term shrinks with the residual (Eisenstat-Walker type), so the
        # local rate stays quadratic, and is never tighter than what reaching tol from res needs (x 0.1)
        rtol = max(1e-13, min(1e-2, max(1e-2 * res, 0.1 * self.tol / res)))
        dz, kits, _ok, self.P = self.system(lin, -R, rtol, step_solver=self.step_solver, reuse=self.P,
                                            lag_budget=max(20, 2 * self.fresh_its))
        if self.P is not self.reused:
            self.fresh_its, self.reused = kits, self.P
        return dz, {"krylov_iterations": kits}

    def max_step(self, z, dz):
        M, dM = z[self.n:], dz[self.n:]
        neg = dM < 0
        if not ((self.positive or self.floored) and self.allreduce(bool(np.any(neg)), "max")):
            return 1.0
        # fraction to the boundary m >= -slack: strict positivity (slack 0) for a Hamiltonian
        # singular at m = 0; with a floored coupling vanishing tails may dip to round-off level,
        # but a step that drives the bulk of the density negative is shortened
        slack = 0.0 if self.positive else NEGATIVE_SLACK * self.allreduce(float(np.abs(M).max()), "max")
        return fraction_to_boundary(M, dM, 0.99, slack=slack, reduce=self.allreduce)

    def sweep(self, z):
        U, M = damped_sweeps(self.scheme, self.split(z)[1], self.sweeps, self.damping)
        return np.concatenate([U.ravel(), M.ravel()])


def newton(scheme, U0, M0, *, tol=1e-10, max_iter=50, verbose=None, min_step=MIN_STEP, linear="auto",
           globalize=True, small_step=0.1, sweeps=4, damping=0.5, step_solver=None, deflation=None):
    """Newton iteration on the time-dependent system ``R(U, m) = 0`` (line-search globalisation).

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
        :mod:`mfgpde.fd.krylov`. ``"auto"`` picks Krylov, except for 2D/3D systems of
        at most ``DIRECT_MAX_UNKNOWNS`` unknowns: there one sparse LU of the space-time
        Jacobian costs milliseconds, while far from the solution of a first-order problem
        GMRES can run to its iteration cap at every step (a 10^2 x 4 CNF from a random start:
        minutes instead of 4 s for 60 iterations; 6000 unknowns: 2D grids up to ~16^2 x 10).
    step_solver : {"auto", "lu", "spectral", "bicgstab"}, optional
        Step solves of the preconditioner (:func:`mfgpde.fd.steps.step_inverses`); default
        ``scheme.step_solver`` (from the scheme's ``linear_solver``).
    deflation : Deflation, optional
        Known solutions to deflate (:class:`~mfgpde.iterations.deflation.Deflation`, serial
        schemes): the iteration cannot converge back to them. The convergence test stays on the
        undeflated residual; the fixed-point sweeps of ``globalize`` stay available (they move
        the iterate; the deflated line search decides whether Newton's next step is accepted).

    Returns
    -------
    U, M, log, status
    """
    log = IterationLog("newton", verbose)
    U0 = np.asarray(U0, float)
    if deflation is not None and len(deflation):
        if hasattr(scheme, "allreduce"):
            raise ValueError("deflation: serial schemes only (the distance to a known solution is not reduced "
                             "across ranks)")
    system = SpaceTimeSystem(scheme, U0.shape, tol, linear, step_solver, globalize, sweeps, damping)
    system.deflation = deflation if deflation is not None and len(deflation) else None
    z = np.concatenate([U0.ravel(), np.asarray(M0, float).ravel()])
    z, status, message = newton_iteration(system, z, tol, max_iter, log, min_step=min_step, small_step=small_step)
    if message:
        log.records[-1].setdefault("message", message)  # why it stopped, in the history
    return (*system.split(z), log, status)


class _Trial:
    """The outcome of one globalised step: the accepted point, or why there is none."""

    __slots__ = ("R", "dtau", "failure", "fp", "hjb", "merit", "step", "z")

    def __init__(self, failure=None, step=1.0, dtau=None, z=None, R=None, hjb=None, fp=None, merit=np.inf):
        self.failure, self.step, self.dtau, self.merit = failure, step, dtau, merit
        self.z, self.R, self.hjb, self.fp = z, R, hjb, fp


def _step(system, J, z, R, res, norm, dtau, merit, log, min_step):
    """One step of :func:`newton_iteration` from ``z``: the direction, then a backtracking line
    search (``dtau`` None: Armijo descent of the merit) or a pseudo-time step, shortened fourfold
    until the merit grows by at most ``GROWTH``. ``failure`` is ``(status, message)`` when the
    direction is singular or the pseudo-time step collapses.
    """
    deflation = getattr(system, "deflation", None)
    while True:
        try:
            dz, info = system.direction(J, R, res, dtau)
            if deflation is not None:
                dz, info["deflation_tau"] = deflation.direction(z, dz)
            log.records[-1].update(info)
        except RuntimeError as exc:  # an exactly singular factor
            log.records[-1]["message"] = str(exc)
            return _Trial(("singular_jacobian", str(exc)))
        finite = system.allreduce(bool(np.all(np.isfinite(dz))), "min")
        if not finite and dtau is None:
            return _Trial(("singular_jacobian", "the Newton direction is not finite"))
        step, nc, zc, Rc, hc, fc = system.max_step(z, dz) if finite else 1.0, np.inf, None, None, None, None
        while finite:
            zc = z + step * dz
            with np.errstate(all="ignore"):
                Rc, hc, fc = system.residual(zc)
                nc = merit(zc, Rc)
            # the line search asks for descent; a pseudo-time step only for bounded growth
            if dtau is not None or (np.isfinite(nc) and nc <= (1.0 - 1e-4 * step) * norm):
                break
            step *= 0.5
            if step < min_step:
                break
        if dtau is None or (finite and np.isfinite(nc) and nc <= GROWTH * norm):
            return _Trial(None, step, dtau, zc, Rc, hc, fc, nc)
        dtau *= 0.25        # too long a pseudo-time step: retry a shorter one
        if dtau < 1e-12:
            return _Trial(("stagnated", "the pseudo-time step fell below 1e-12 without an acceptable step"))
