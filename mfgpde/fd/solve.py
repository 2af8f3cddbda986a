"""The serial finite-difference solve of a time-dependent MFG: the backend behind ``solve()``.

:func:`solve_fd` picks the start (a warm start, grid sequencing, the fixed-point start) and the
iteration (Newton or the fixed-point iterations) for one grid; first-order problems (``nu = 0``)
go through :func:`viscosity_continuation`, a strategy that wraps :func:`solve_fd` for each stage.
Nothing here calls the public :func:`mfgpde.solve`: the coarse levels of grid sequencing and the
stages of the continuation are :func:`solve_fd` calls with validated :class:`SolveOptions`
variants, on problems rebuilt through their constructor.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..iterations import fixed_point, newton, sequencing
from ..memory import FLOATS_PER_SPACE_TIME_POINT, require
from ..options import SolveOptions
from ..problem import MFGProblem
from ..result import MFGResult
from .scheme import FDScheme

logger = logging.getLogger(__name__)


def _initial_arrays(problem, initial):
    """``initial`` (an MFGResult or a pair) as ``(U0, M0)`` of shape ``(N_t + 1, N)``, or ``(None, None)``."""
    if initial is None:
        return None, None
    expected = (problem.nt + 1,) + problem.grid.shape
    try:
        U0, M0 = (initial.U, initial.m) if isinstance(initial, MFGResult) else initial
        U0, M0 = np.asarray(U0, float), np.asarray(M0, float)
    except (TypeError, ValueError):
        raise TypeError("initial: expected an MFGResult or a pair (U, m) of arrays of shape "
                        f"{expected}") from None
    size = (problem.nt + 1) * problem.grid.size
    if U0.size != size or M0.size != size:
        raise ValueError(f"initial: expected arrays of shape {expected}, got {U0.shape} and {M0.shape}")
    return U0.reshape(problem.nt + 1, -1), M0.reshape(problem.nt + 1, -1)


def solve_fd(problem: MFGProblem, options: SolveOptions, *, initial=None, coarse_start=None) -> MFGResult:
    """The serial finite-difference solve of a time-dependent problem.

    Parameters
    ----------
    problem : MFGProblem
    options : SolveOptions
    initial : MFGResult or (U, m), optional
        Warm start.
    coarse_start : MFGResult, optional
        This problem already solved on the next coarser grid (a Richardson ladder's level), used as
        the grid-sequencing start instead of a new coarse solve.
    """
    t0 = time.perf_counter()
    require(8 * FLOATS_PER_SPACE_TIME_POINT * (problem.nt + 1) * float(problem.grid.size),
            f"a solve on {problem.grid.size} grid points x {problem.nt + 1} time levels")
    scheme = FDScheme(problem, linear_solver=options.linear_solver)
    U0, M0 = _initial_arrays(problem, initial)
    vc = options.viscosity_continuation
    if vc is True or (vc == "auto" and problem.nu == 0.0 and options.method == "newton" and initial is None):
        # (grid sequencing is not used here: tried, Newton at nu = 0 from the interpolated coarse
        # nu = 0 solution stalled -- a 1D CNF, 400 x 100: 20 steps, max_iter -- and the fine
        # continuation was needed after all)
        res = viscosity_continuation(problem, initial, options, sequence=options.grid_sequencing is not False)
        res.diagnostics["wall_time_s"] = time.perf_counter() - t0
        return res
    sequenced = None
    if options.method == "newton":
        U, M, log, status, sequenced = _newton_fd(problem, scheme, U0, M0, options, coarse_start)
    else:
        U, M, log, status = fixed_point(scheme, tol=options.tol, max_iter=options.iterations(), damping=options.damping,
                                        fictitious=(options.method == "fictitious_play"), M0=M0,
                                        verbose=options.verbose)
    res = MFGResult.from_arrays(problem, U, M, log, status, options.method, time.perf_counter() - t0)
    if sequenced is not None:
        res.diagnostics["grid_sequencing"] = sequenced
    return res


def _newton_fd(problem, scheme, U0, M0, options, coarse_start=None):
    """Newton from ``(U0, M0)``, or from the coarse grid's solution (grid sequencing), or from
    the fixed-point start (:func:`mfgpde.iterations.sequencing.sequenced_newton`);
    ``(U, M, log, status, sequencing diagnostics or None)``.
    """
    if not problem.hamiltonian.has_second_derivatives:
        raise ValueError("method='newton' needs a Hamiltonian with phi_SS; use method='fixed_point'")
    n_max = options.iterations()
    if U0 is not None:
        return (*newton(scheme, U0, M0, tol=options.tol, max_iter=n_max, verbose=options.verbose), None)

    def coarse_solve(coarse, coarse_tol):
        if (coarse_start is not None and coarse_start.converged and coarse_start.diagnostics["residual"] <= coarse_tol
                and coarse_start.problem.grid.shape == coarse.grid.shape and coarse_start.problem.nt == coarse.nt):
            return coarse_start  # the ladder solved this level already (to a tighter tolerance)
        return solve_fd(coarse, SolveOptions(method="newton", tol=coarse_tol, max_iter=n_max, verbose=False,
                                             linear_solver=options.linear_solver))

    return sequencing.sequenced_newton(problem, scheme, None if options.grid_sequencing is False else coarse_solve,
                                       options.tol, n_max, verbose=options.verbose)


#: the viscous stages ``nu = c L^2 / T`` with ``c >= HANDOFF_C`` run on the next coarser grid
#: when there is one (see :func:`viscosity_continuation`)
HANDOFF_C = 1e-3
#: tolerance of the intermediate viscous stages (the last stage of the plan gets ``tol``)
STAGE_TOL = 1e-3
#: after a coarse hand-off the fine grid solves every FINE_STRIDE-th stage of the plan
FINE_STRIDE = 2


def viscosity_continuation(problem, initial, options, *, start=0.1, stop=1e-5, factor=3.0, max_refine=4, until=None,
                           sequence=True):
    """Adaptive continuation in nu down to ``problem.nu`` (see :func:`mfgpde.solve`).

    Viscosities ``nu_k = c_k L^2 / T`` from ``c = start`` down by ``factor`` to ``stop``, then the
    target. A stage that fails is retried at the geometric mean of the last converged and the
    failed value (at most ``max_refine`` times in a row). ``until``: stop after the stage at
    this viscosity (one of the plan's), whose result is returned.

    Sequenced continuation (``sequence``, no ``initial``, a grid that coarsens: see
    :func:`mfgpde.iterations.sequencing.coarse_problem`): the stages with ``c >= HANDOFF_C``
    are solved on the next coarser grid (recursively, to ``COARSE_TOL``) and the fine grid
    starts at the last of them from the interpolated coarse solution. Those viscous stages
    are where the iterations go (2D 8-mode CNF, 64^2 x 32: 81 of the 100 fine Newton
    iterations were at nu >= 0.1, 3 to 6 per stage below), and a coarse iteration costs a
    sixteenth of a fine one in 2D. The fine grid then solves every ``FINE_STRIDE``-th stage
    below the hand-off (viscosity steps of ``factor**2``; the hand-off stage itself only when
    the first of them fails), and the target ``nu`` to ``tol``: the answer is the fine problem's.
    """
    L = max(b - a for a, b in problem.grid.bounds)
    scale = L * L / problem.T
    plan = []
    c = start
    while c >= stop * 0.999:
        if c * scale > problem.nu:
            plan.append(c * scale)
        c /= factor
    plan.append(problem.nu)
    if until is not None:
        plan = [nu for nu in plan if nu >= until]
    steps, current, last_ok, retry_handoff = [], initial, None, None
    handoff = [k for k, nu in enumerate(plan) if nu >= HANDOFF_C * scale]
    coarse = sequencing.coarse_problem(problem) if sequence and initial is None and len(handoff) >= 1 else None
    if coarse is not None:
        nu_h = plan[handoff[-1]]
        t0 = time.perf_counter()
        copts = options.replace(tol=max(options.tol, sequencing.COARSE_TOL), verbose=False)
        record = {"value": float(nu_h), "grid": list(coarse.grid.shape), "nt": coarse.nt}
        where = f"{'x'.join(map(str, coarse.grid.shape))} x {coarse.nt}"
        try:
            rc = viscosity_continuation(coarse, None, copts, start=start, stop=stop, factor=factor, max_refine=max_refine, until=nu_h)
            record.update(status=rc.status, iterations=rc.iterations, stages=rc.diagnostics["continuation"]["steps"])
            if not (rc.converged and float(rc.problem.nu) == nu_h):
                raise RuntimeError(rc.diagnostics.get("message", f"the coarse continuation ended {rc.status!r}"))
            _, M = sequencing.prolong(coarse, problem, rc.U.reshape(coarse.nt + 1, -1),
                                      rc.m.reshape(coarse.nt + 1, -1))
            # one fine fixed-point sweep from the interpolated density, as in grid sequencing
            scheme = FDScheme(problem.replace(nu=float(nu_h)), linear_solver=options.linear_solver)
            U, _ = scheme.solve_hjb(M, tol=1e-8)
            current = (U, scheme.solve_fp(U, M_lag=M))
            # from the hand-off the fine grid descends by factor^2 (every other stage of the
            # plan): each stage there needs 2-6 Newton iterations at factor 3, twice as many
            # stages cost more than the larger steps (8-mode CNF 64^2 x 32: 23 -> 19 fine
            # iterations; skipping straight to nu = 0 was slower), and a stage that fails is
            # refined below as before. The hand-off viscosity itself is not solved again on the
            # fine grid: the swept interpolant starts the next stage (64^2 x 32: 19 -> 13 fine
            # iterations, 9.3 -> 7.5 s; 1D even), and if that stage fails, the hand-off stage
            # is solved first after all (``retry_handoff``).
            plan = plan[handoff[-1]:-1:FINE_STRIDE] + [plan[-1]]
            if len(plan) > 1:
                retry_handoff = plan.pop(0)
        except (ArithmeticError, ValueError, RuntimeError) as exc:
            # no coarse start: every stage on the fine grid, as without sequencing
            record.update(status="error" if record.get("status", "converged") == "converged" else record["status"],
                          message=str(exc))
            coarse = None
        record["time_s"] = time.perf_counter() - t0
        steps.append(record)
        if options.verbose:
            logger.info("viscosity continuation: stages down to nu = %.3g on the coarse grid %s: %s", nu_h, where,
                        record["status"])
    refinements = 0
    while plan:
        nu = plan[0]
        stage = options.replace(viscosity_continuation=False, grid_sequencing="auto",
                                tol=options.tol if nu == plan[-1] else max(options.tol, STAGE_TOL))
        r = solve_fd(problem.replace(nu=float(nu)), stage, initial=current)
        steps.append({"value": float(nu), "status": r.status, "iterations": r.iterations})
        if r.converged:
            plan.pop(0)
            current, last_ok, refinements = r, nu, 0
            continue
        if last_ok is None and retry_handoff is not None:
            # the first stage below the hand-off failed from the interpolant: solve the hand-off
            # stage on the fine grid first (the stride-only plan), from the same start
            plan.insert(0, retry_handoff)
            retry_handoff = None
            continue
        if last_ok is None and coarse is not None:
            # the coarse solution was no good start on the fine grid: every stage on the fine grid
            r = viscosity_continuation(problem, None, options, start=start, stop=stop, factor=factor,
                                       max_refine=max_refine, until=until, sequence=False)
            r.diagnostics["continuation"]["steps"][:0] = steps
            return r
        if last_ok is None or refinements >= max_refine:
            current = r
            break
        plan.insert(0, float(np.sqrt(last_ok * max(nu, 1e-3 * last_ok))))
        refinements += 1
    fields_nu = float(current.problem.nu)
    if until is None:
        current.problem = problem
    target = problem.nu if until is None else until
    current.diagnostics["continuation"] = {"parameter": "nu", "steps": steps}
    if fields_nu != target:
        # the continuation stopped short: the fields belong to a viscous stage, and the summary
        # (which describes the target problem, nu = problem.nu) must say so
        current.diagnostics.update(converged=False, status="continuation_stopped", fields_nu=fields_nu,
                                   message=f"viscosity continuation stopped at nu = {fields_nu:g} (the returned "
                                           f"fields are that stage's), target nu = {target:g}")
    return current


