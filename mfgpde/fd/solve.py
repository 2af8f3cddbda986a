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


def viscosity_plan(problem, *, start=0.1, stop=1e-5, factor=3.0, until=None):
    """The continuation's viscosities: ``nu_k = c_k L^2 / T`` for ``c = start, start / factor, ...``
    down to ``stop``, those above ``problem.nu``, then ``problem.nu`` (cut at ``until``).
    """
    scale = _viscous_scale(problem)
    plan, c = [], start
    while c >= stop * 0.999:
        if c * scale > problem.nu:
            plan.append(c * scale)
        c /= factor
    plan.append(problem.nu)
    return plan if until is None else [nu for nu in plan if nu >= until]


def _viscous_scale(problem):
    """``L^2 / T``, ``L`` the longest side of the box: the unit of the plan's viscosities."""
    L = max(b - a for a, b in problem.grid.bounds)
    return L * L / problem.T


def _descend(problem, plan, options, current, steps, *, max_refine, retry=None):
    """Solve the stages of ``plan`` in turn, each started from the last converged one.

    A stage that fails is retried at the geometric mean of the last converged and the failed
    viscosity, at most ``max_refine`` times in a row. If the first stage fails and ``retry`` is
    given, the stage ``retry`` is solved first (once). Every solve is recorded in ``steps``.
    Returns the last result and whether any stage converged (``False``: ``current`` was no start).
    """
    plan = list(plan)
    target, last_ok, refinements = plan[-1], None, 0
    while plan:
        nu = plan[0]
        stage = options.replace(viscosity_continuation=False, grid_sequencing="auto",
                                tol=options.tol if nu == target else max(options.tol, STAGE_TOL))
        r = solve_fd(problem.replace(nu=float(nu)), stage, initial=current)
        steps.append({"value": float(nu), "status": r.status, "iterations": r.iterations})
        if r.converged:
            plan.pop(0)
            current, last_ok, refinements = r, nu, 0
        elif last_ok is None and retry is not None:
            plan.insert(0, retry)
            retry = None
        elif last_ok is None or refinements >= max_refine:
            return r, last_ok is not None
        else:
            plan.insert(0, float(np.sqrt(last_ok * max(nu, 1e-3 * last_ok))))
            refinements += 1
    return current, True


def _prolonged_start(coarse, problem, rc, nu, options):
    """The coarse stage ``rc`` interpolated to ``problem``'s grid and swept once at viscosity ``nu``."""
    _, M = sequencing.prolong(coarse, problem, rc.U.reshape(coarse.nt + 1, -1), rc.m.reshape(coarse.nt + 1, -1))
    # one fine fixed-point sweep from the interpolated density, as in grid sequencing
    scheme = FDScheme(problem.replace(nu=float(nu)), linear_solver=options.linear_solver)
    U, _ = scheme.solve_hjb(M, tol=1e-8)
    return U, scheme.solve_fp(U, M_lag=M)


def _coarse_ladder(ladder, options, nu_h, steps, *, plan, max_refine):
    """Every stage down to the hand-off viscosity ``nu_h`` on the coarsest grid of ``ladder``
    (finest first), then ``nu_h`` alone on each finer one from the interpolated solution below
    it (all stages there if that start fails). Returns the hand-off stage on ``ladder[0]``.
    """
    r, below = None, None
    for level in reversed(ladder):
        level_plan = viscosity_plan(level, **plan, until=nu_h)
        start = None if r is None else _prolonged_start(below, level, r, nu_h, options)
        r, started = _descend(level, level_plan if start is None else [nu_h], options, start, steps,
                              max_refine=max_refine)
        if start is not None and not started:
            r, _ = _descend(level, level_plan, options, None, steps, max_refine=max_refine)
        for s in steps:
            s.setdefault("grid", list(level.grid.shape))
            s.setdefault("nt", level.nt)
        if not (r.converged and float(r.problem.nu) == nu_h):
            raise RuntimeError(r.diagnostics.get("message", f"the coarse continuation ended {r.status!r}"))
        below = level
    return r


def _handoff_start(problem, options, nu_h, *, plan, max_refine):
    """The fine grid's start at the hand-off viscosity ``nu_h`` from the coarser grids, and the
    record of that coarse work (``None`` as the start when it failed: the caller goes on without).
    """
    t0 = time.perf_counter()
    ladder = [sequencing.coarse_problem(problem)]
    while (coarser := sequencing.coarse_problem(ladder[-1])) is not None:
        ladder.append(coarser)
    copts = options.replace(tol=max(options.tol, sequencing.COARSE_TOL), verbose=False)
    coarse, stages, start = ladder[0], [], None
    record = {"value": float(nu_h), "grid": list(coarse.grid.shape), "nt": coarse.nt, "status": "converged"}
    try:
        rc = _coarse_ladder(ladder, copts, nu_h, stages, plan=plan, max_refine=max_refine)
        start = _prolonged_start(coarse, problem, rc, nu_h, options)
    except (ArithmeticError, ValueError, RuntimeError) as exc:
        # no coarse start: every stage on the fine grid, as without sequencing
        failed = [s["status"] for s in stages if s["status"] != "converged"]
        record.update(status=failed[-1] if failed else "error", message=str(exc))
    record.update(iterations=sum(s["iterations"] for s in stages), stages=stages, time_s=time.perf_counter() - t0)
    if options.verbose:
        logger.info("viscosity continuation: stages down to nu = %.3g on the coarse grid %s x %d: %s", nu_h,
                    "x".join(map(str, coarse.grid.shape)), coarse.nt, record["status"])
    return start, record


def viscosity_continuation(problem, initial, options, *, start=0.1, stop=1e-5, factor=3.0, max_refine=4, until=None,
                           sequence=True):
    """Adaptive continuation in nu down to ``problem.nu`` (see :func:`mfgpde.solve`).

    Viscosities ``nu_k = c_k L^2 / T`` from ``c = start`` down by ``factor`` to ``stop``, then the
    target (:func:`viscosity_plan`). A stage that fails is retried at the geometric mean of the
    last converged and the failed value (at most ``max_refine`` times in a row). ``until``: stop
    after the stage at this viscosity (one of the plan's), whose result is returned.

    Sequenced continuation (``sequence``, no ``initial``, a grid that coarsens: see
    :func:`mfgpde.iterations.sequencing.coarse_problem`): the stages with ``c >= HANDOFF_C``
    are solved on the coarser grids (:func:`_coarse_ladder`, to ``COARSE_TOL``) and the fine grid
    starts at the last of them from the interpolated coarse solution. Those viscous stages
    are where the iterations go (2D 8-mode CNF, 64^2 x 32: 81 of the 100 fine Newton
    iterations were at nu >= 0.1, 3 to 6 per stage below), and a coarse iteration costs a
    sixteenth of a fine one in 2D. The fine grid then solves every ``FINE_STRIDE``-th stage
    below the hand-off (viscosity steps of ``factor**2``; the hand-off stage itself only when
    the first of them fails), and the target ``nu`` to ``tol``: the answer is the fine problem's.
    If the fine grid cannot start from the coarse solution, every stage runs on the fine grid.
    """
    plan_args = dict(start=start, stop=stop, factor=factor)
    plan = viscosity_plan(problem, **plan_args, until=until)
    handoff = [nu for nu in plan if nu >= HANDOFF_C * _viscous_scale(problem)]
    steps, current, fine_plan, retry = [], initial, plan, None
    sequenced = bool(sequence and initial is None and handoff and sequencing.coarse_problem(problem) is not None)
    if sequenced:
        current, record = _handoff_start(problem, options, handoff[-1], plan=plan_args, max_refine=max_refine)
        steps.append(record)
        sequenced = current is not None
        if sequenced:
            # from the hand-off the fine grid descends by factor^2 (every other stage of the
            # plan): each stage there needs 2-6 Newton iterations at factor 3, twice as many
            # stages cost more than the larger steps (8-mode CNF 64^2 x 32: 23 -> 19 fine
            # iterations; skipping straight to nu = 0 was slower), and a stage that fails is
            # refined as before. The hand-off viscosity itself is not solved again on the
            # fine grid: the swept interpolant starts the next stage (64^2 x 32: 19 -> 13 fine
            # iterations, 9.3 -> 7.5 s; 1D even), and if that stage fails, the hand-off stage
            # is solved first after all (``retry``).
            fine_plan = plan[plan.index(handoff[-1]):-1:FINE_STRIDE] + [plan[-1]]
            retry = fine_plan.pop(0) if len(fine_plan) > 1 else None
    r, started = _descend(problem, fine_plan, options, current, steps, max_refine=max_refine, retry=retry)
    if sequenced and not started:
        # the coarse solution was no good start on the fine grid: every stage on the fine grid
        r, _ = _descend(problem, plan, options, None, steps, max_refine=max_refine)
    return _finish(r, problem, until, steps)


def _finish(current, problem, until, steps):
    """Record the stages; a continuation that stopped short says so (the fields are a stage's)."""
    fields_nu = float(current.problem.nu)
    if until is None:
        current.problem = problem
    target = problem.nu if until is None else until
    current.diagnostics["continuation"] = {"parameter": "nu", "steps": steps}
    if fields_nu != target:
        # the summary describes the target problem (nu = problem.nu) and must say so
        current.diagnostics.update(converged=False, status="continuation_stopped", fields_nu=fields_nu,
                                   message=f"viscosity continuation stopped at nu = {fields_nu:g} (the returned "
                                           f"fields are that stage's), target nu = {target:g}")
    return current
