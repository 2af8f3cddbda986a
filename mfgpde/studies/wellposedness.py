"""Numerical well-posedness studies: multi-start uniqueness, refinement, the CNF lambda -> 0 limit,
and Lasry-Lions monotonicity.

What each study measures, and why:

* :func:`multi_start` -- solves from several distinct initial guesses, each at the target
  problem or along its own Newton-homotopy path (never through a problem common to all
  starts, such as the first stage of a viscosity continuation, which would make every start
  agree by construction). For a well-posed (Lasry-Lions monotone) MFG every start converges
  to the same discrete solution; starts that end at different solutions prove
  non-uniqueness. :func:`run_controls` calibrates the check on :func:`aggregation_control`
  (provably several solutions) and its monotone twin (one solution).
* :func:`refinement` -- solves on nested grids and fits the observed order of the Cauchy
  differences ``|m_h - R m_{h/2}|`` (no closed form needed).
* :func:`cnf_lambda_study` -- the CNF family as lambda -> 0. For lambda > 0 the minimiser is
  unique (strictly convex); at lambda = 0 any flow to pi composed with a pi-preserving flow is
  optimal. We report (i) the condition number of the Newton Jacobian at the solution, which
  grows like 1/lambda (the kinetic energy is the only term that pins down the path, so as its
  weight vanishes the linearised problem becomes singular: this is the numerical signature of
  lost uniqueness), (ii) the multi-start spread at fixed tolerance, and (iii) in 2D, a direct
  exhibit of non-uniqueness at lambda = 0: the optimal flow plus a rotation ``v = c B x``
  (B skew, a pi-preserving field for pi = N(0, I)) reaches the same terminal KL.
* :func:`lasry_lions_check` -- samples pairs of densities and evaluates
  ``int (f[m1] - f[m2]) (m1 - m2)``, which must be >= 0 for a monotone coupling.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..couplings import PowerCoupling
from ..fd.scheme import FDScheme
from ..generative.energies import KL
from ..generative.presets import cnf_problem, standard_normal_log_density
from ..generative.transport import evolve_density, grid_gradient
from ..grid import TensorGrid
from ..hamiltonians import QuadraticHamiltonian
from ..iterations.deflation import Deflation
from ..iterations.fixed_point import fixed_point
from ..iterations.homotopy import newton_homotopy
from ..iterations.newton import newton
from ..logs import Progress
from ..problem import MFGProblem
from ..solver import solve

log = logging.getLogger(__name__)


def _smooth_random_field(grid, rng, modes=3):
    X = grid.coordinates()
    out = np.zeros(grid.shape)
    for _ in range(modes):
        phase = rng.uniform(0, 2 * np.pi)
        arg = sum(rng.integers(1, 4) * 2 * np.pi * (x - a) / (b - a) for x, (a, b) in zip(X, grid.bounds))
        out += rng.standard_normal() * np.cos(arg + phase)
    return out


def initial_guesses(problem, starts, *, seed=0, amplitude=1.0):
    """Distinct initial guesses ``(U, M)``: smooth random value functions and density paths."""
    rng = np.random.default_rng(seed)
    g, nt = problem.grid, problem.nt
    out = []
    for _ in range(starts):
        U = np.stack([amplitude * _smooth_random_field(g, rng) * (1 - n / (nt + 1)) for n in range(nt + 1)])
        bump = np.exp(_smooth_random_field(g, rng) * 0.5)
        bump /= g.integrate(bump)
        M = np.stack([(1 - s) * problem.m0 + s * bump * g.integrate(problem.m0) for s in np.linspace(0, 1, nt + 1)])
        out.append((U.reshape(nt + 1, -1), M.reshape(nt + 1, -1)))
    return out


def _relative_distance(a, b):
    """Sup-norm distance of two solutions ``(U, m)``: ``(|m_a - m_b| / max m, |U_a - U_b| / max(1, max |U|))``."""
    mref = max(np.abs(a[1]).max(), np.abs(b[1]).max(), 1e-300)
    uref = max(1.0, np.abs(a[0]).max(), np.abs(b[0]).max())
    return float(np.abs(a[1] - b[1]).max() / mref), float(np.abs(a[0] - b[0]).max() / uref)


#: multi-start runs with at most this many unknowns take exact Newton steps (see solve_from_start)
EXACT_NEWTON_MAX_UNKNOWNS = 200_000
#: the viscous homotopy's added viscosity at s = 0, in units of L^2 / T (L the longest side of the box)
VISCOUS_HOMOTOPY_C = 1e-3
#: Newton iterations per stage of the homotopies of :func:`solve_from_start`
STAGE_MAX_ITER = 15
#: iterations of a deflated search (:func:`deflated_search`): as many as a stage of a start's homotopy
DEFLATED_MAX_ITER = 15


def _linear(problem, method="newton"):
    """The linear solver of a start's Newton steps: exact below ``EXACT_NEWTON_MAX_UNKNOWNS``.

    Exact Newton steps (sparse LU of the space-time Jacobian) make which solution a start reaches
    a property of Newton's path from it, not of the Krylov solver's tolerance. With inexact steps
    (GMRES to 1e-2 far from a solution) the path, and so the basin, depends on the Krylov method:
    on the aggregation control, scipy's left-preconditioned GMRES took 27 iterations per early
    step and its starts reached 2-3 of the solutions, a right-preconditioned GMRES stopped after
    1-3 and every start reached the uniform one. Above the threshold: the Newton-Krylov of
    :func:`mfgpde.solve` (its fast path; B2 from a random start: 11-15 iterations).
    """
    return "direct" if 2 * (problem.nt + 1) * problem.grid.size <= EXACT_NEWTON_MAX_UNKNOWNS else "auto"


def consistent_start(scheme, U0, M0):
    """``U = HJB(M0)``, then ``m = FP(U)``: a start that solves the HJB and the FP exactly.

    Its residual is only the coupling's mismatch ``f(M0) - f(m)`` (and ``g`` at the final time),
    so a homotopy from it starts on the family of MFG systems. It depends on the random path
    ``M0`` through ``U`` (a different density path, a different value function, a different flow).
    """
    U, _ = scheme.solve_hjb(np.asarray(M0, float))
    return U, scheme.solve_fp(U)


def _viscous_family(problem):
    """``s -> FDScheme`` of the problem at viscosity ``nu + (1 - s) nu_0``, ``nu_0 = c L^2 / T``."""
    L = max(b - a for a, b in problem.grid.bounds)
    nu0 = VISCOUS_HOMOTOPY_C * L * L / problem.T
    cache = {}

    def at(s):
        if s not in cache:
            cache.clear()   # one stage alive at a time
            cache[s] = FDScheme(problem.replace(nu=problem.nu + (1.0 - s) * nu0))
        return cache[s]

    return at, nu0


def _paths(problem, method):
    """The cascade of :func:`solve_from_start`, ordered by what succeeds (measured in its docstring)."""
    if method != "newton":
        return ("direct",)
    if problem.nu == 0:
        return ("viscous_homotopy", "fictitious_play", "homotopy")
    return ("direct", "viscous_homotopy", "fictitious_play", "homotopy")


def solve_from_start(problem, U0, M0, *, method="newton", tol=1e-9, max_iter=60):
    """Solve ``problem`` from the start ``(U0, M0)`` without any stage common to all starts.

    The paths, each at the target problem or along a path of the start's own, in the order in
    which they succeed (:func:`_paths`):

    1. ``"direct"`` (``nu > 0``, or a method other than Newton): Newton at the target problem
       from the start (line search and fixed-point globalisation; exact linear solves up to
       ``EXACT_NEWTON_MAX_UNKNOWNS`` unknowns, the Newton-Krylov of :func:`mfgpde.solve` above).
       B2 (2D, 50^2 x 50) from random starts: 11-15 iterations; the aggregation control: 6-12.
    2. ``"viscous_homotopy"`` (first for ``nu = 0``): from the :func:`consistent_start` of the
       start, the two-way homotopy ``R_s(z) = (1 - s) R_0(z_0)`` with ``R_s`` the problem at
       viscosity ``nu + (1 - s) nu_0``, ``nu_0 = VISCOUS_HOMOTOPY_C L^2 / T``
       (:func:`mfgpde.iterations.homotopy.newton_homotopy`). Each stage is viscous (smooth) and
       carries the start's own shift, so the path is the start's. At ``nu = 0`` Newton at the
       target from a random start does not converge (C1, 200 x 48: 60 iterations, residual 1e3);
       this path reached the solution from four random starts in 3-5 stages, 39-59 iterations
       (``nu_0 = 1e-3 L^2 / T = 0.1``; 3e-4 L^2 / T took twice as many iterations, 3e-3 L^2 / T stalled
       from three of the four starts).
    3. ``"fictitious_play"``: fictitious play at the target problem from the start's density
       path, in rounds of ``FP_ROUNDS`` iterations, each followed by Newton from the averaged
       iterate (converges for monotone potential problems, Cardaliaguet & Hadikhanloo 2017).
    4. ``"homotopy"``: the Newton homotopy ``R(z) = (1 - s) R(z_0)`` from the start itself.

    Viscosity continuation is never used: its first stage is one uniquely solvable problem
    shared by every start, which would erase the starts' differences before the target
    problem is reached.

    Returns
    -------
    U, M : ndarray (N_t + 1, N) or None
        The solution (``None`` when no path converged).
    record : dict
        ``path``, ``converged``, ``status``, ``iterations``, ``residual``, ``message``; the
        paths tried before it and why they failed (by name); ``launch``, the iterate from which
        the final Newton solve started (the start of a deflated search along the same path, and
        of the pairwise distances of :func:`multi_start`; removed there); for fictitious play
        ``played`` and ``handoff_residual``; for the homotopies ``stages`` and ``reached``.
    """
    shape = (problem.nt + 1, problem.grid.size)
    U0, M0 = np.reshape(U0, shape), np.reshape(M0, shape)
    rec = {}
    errors = (FloatingPointError, RuntimeError, np.linalg.LinAlgError)
    for path in _paths(problem, method):
        rec["path"] = path
        try:
            if path == "direct" and method == "newton":
                U, M, log, status = newton(FDScheme(problem), U0, M0, tol=tol, max_iter=max_iter, verbose=False,
                                           linear=_linear(problem))
                its, res = int(log.records[-1]["iteration"]), float(log.records[-1]["residual"])
                rec.update(status=status, converged=status == "converged", iterations=its, residual=res,
                           message="", launch=(U0, M0))
            elif path == "direct":
                r = solve(problem, method=method, tol=tol, max_iter=max_iter, initial=(U0, M0), verbose=False,
                          viscosity_continuation=False, error_estimate=False)
                U, M, status = r.U.reshape(shape), r.m.reshape(shape), r.status
                rec.update(status=status, converged=bool(r.converged), iterations=int(r.iterations),
                           residual=float(r.diagnostics["residual"]), message="", launch=(U0, M0))
                return ((U, M) if r.converged else (None, None)), rec
            elif path == "fictitious_play":
                sol, fp_rec = _fictitious_play_path(problem, U0, M0, tol, max_iter)
                if sol is not None:
                    rec.update(fp_rec)
                    return sol, rec
                rec[path] = fp_rec["message"]
                continue
            else:
                scheme = FDScheme(problem)
                family, start = None, (U0, M0)
                if path == "viscous_homotopy":
                    family, nu0 = _viscous_family(problem)
                    start = consistent_start(family(0.0), U0, M0)
                    rec["nu0"] = nu0
                U, M, info = newton_homotopy(scheme, *start, tol=tol, max_iter=STAGE_MAX_ITER, family=family,
                                             linear=_linear(problem))
                status = "converged" if info["converged"] else "homotopy_stopped"
                rec.update(status=status, converged=info["converged"], iterations=info["iterations"],
                           residual=info["residual"], reached=info["reached"], stages=info["stages"],
                           message=info["message"], launch=info["launch"])
        except errors as exc:
            rec[path] = f"failed: {exc}"
            continue
        if rec["converged"]:
            return (U, M), rec
        rec[path] = f"ended {rec['status']!r} after {rec['iterations']} iterations (residual {rec['residual']:.2e})"
    rec.update(converged=False, status=rec.get("status", "error"), message="no path converged")
    rec.setdefault("iterations", None)
    rec.setdefault("residual", None)
    rec.pop("launch", None)
    return (None, None), rec


#: fictitious-play iterations before each Newton attempt of :func:`solve_from_start` (1400 in all)
FP_ROUNDS = (100, 300, 1000)


def _fictitious_play_path(problem, U0, M0, tol, max_iter):
    """Fictitious play at the target problem from ``M0``, handing over to Newton after each round.

    Returns ``((U, M) or None, record)``; see :func:`solve_from_start`.
    """
    scheme = FDScheme(problem)
    U, M, played = U0, M0, 0
    message = ""
    for rounds in FP_ROUNDS:
        try:
            U, M, log, status = fixed_point(scheme, tol=tol, max_iter=rounds, fictitious=True, M0=M, played=played,
                                            verbose=False, stagnation_window=rounds + 1)
        except (FloatingPointError, RuntimeError, np.linalg.LinAlgError) as exc:
            return None, {"message": f"fictitious play failed after {played} iterations: {exc}"}
        played += len(log.records) - 1
        handoff = log.records[-1]["residual"]
        rec = {"path": "fictitious_play", "played": played, "handoff_residual": float(handoff), "launch": (U, M),
               "message": ""}
        if status == "converged":
            rec.update(status="converged", converged=True, iterations=0, residual=float(handoff))
            return (U, M), rec
        try:
            Un, Mn, nlog, status = newton(scheme, U, M, tol=tol, max_iter=max_iter, linear=_linear(problem), verbose=False)
        except (FloatingPointError, RuntimeError, np.linalg.LinAlgError) as exc:
            message = f"Newton after {played} fictitious-play iterations failed: {exc}"
            continue
        if status == "converged":
            rec.update(status=status, converged=True, iterations=len(nlog.records) - 1,
                       residual=float(nlog.records[-1]["residual"]))
            return (Un, Mn), rec
        message = f"Newton after {played} fictitious-play iterations ended {status!r}"
    return None, {"message": message}


def _deflation(known):
    """The :class:`~mfgpde.iterations.deflation.Deflation` of solutions ``(U, M)`` (flat ``(U, m)``, two blocks)."""
    return Deflation([np.concatenate([U.ravel(), M.ravel()]) for U, M in known])


def deflated_search(problem, launch, known, *, tol=1e-9, max_iter=DEFLATED_MAX_ITER, agree=1e-6, globalize=True):
    """Newton at the target problem from ``launch`` with the ``known`` solutions deflated.

    :class:`~mfgpde.iterations.deflation.Deflation` (``p = 2``, shift 1) makes every known
    solution repel the iteration, so a converged search is a new solution; it is checked as a
    solution of the undeflated system (the convergence test is on the undeflated residual) and
    against the known ones (relative sup distance above ``agree``). ``globalize``: the fixed-point
    sweeps of :func:`~mfgpde.iterations.newton.newton` when the line search stalls (on the
    aggregation control they let repeated deflation from one start find all three solutions
    more often; without them a failing search stops sooner).

    Returns
    -------
    (U, M) or None, record
        ``status``, ``iterations``, ``residual``, ``found`` and, when found, ``distance`` (the
        relative sup distance, m and U, to the nearest known solution).
    """
    defl = _deflation(known)
    rec = {"deflated": len(known)}
    try:
        U, M, log, status = newton(FDScheme(problem), *launch, tol=tol, max_iter=max_iter, deflation=defl,
                                   verbose=False, globalize=globalize, linear=_linear(problem))
    except (FloatingPointError, RuntimeError, np.linalg.LinAlgError) as exc:
        rec.update(status="error", iterations=None, residual=None, found=False, message=str(exc))
        return None, rec
    rec.update(status=status, iterations=len(log.records) - 1, residual=float(log.records[-1]["residual"]))
    if status != "converged":
        rec["found"] = False
        return None, rec
    dist = min((_relative_distance((U, M), k) for k in known), key=max)
    rec["distance"] = [float(d) for d in dist]
    rec["found"] = bool(max(dist) >= agree)
    return ((U, M) if rec["found"] else None), rec


#: a deflated search of :func:`deflated_solutions` also starts from each known solution moved this
#: fraction of the way back to the start
RELAUNCH_FRACTION = 0.1


def deflated_solutions(problem, U0, M0, *, max_solutions=6, tol=1e-9, agree=1e-6, max_iter=40):
    """Every solution that repeated deflation finds from one start.

    The start is solved (:func:`solve_from_start`); then, deflating every solution found so
    far, Newton is restarted from the start's launch point and from each solution found, moved
    ``RELAUNCH_FRACTION`` of the way back towards the start (Farrell, Birkisson & Funke 2015,
    section 4, restart from the initial guess; the second launch is this package's: a found
    solution's neighbourhood is where a nearby branch is likeliest), until every launch has
    failed or ``max_solutions`` are known (``max_iter`` Newton iterations each). On the aggregation control (64 x 40) from six random
    starts (amplitude 0.3, seeds 0-5) it found three solutions from five of them: the uniform one
    (J = -0.8), a wall-concentrated one (J = -1.707) and either its mirror image (seeds 1, 5) or a
    fourth solution (J = -1.046, seeds 0, 2, 4); two from seed 3. 4-6 s each.

    Returns
    -------
    solutions : list of (U, M)
    records : list of dict
        The first solve's record, then one per deflated search.
    """
    (U, M), first = solve_from_start(problem, U0, M0, tol=tol)
    launch = first.pop("launch", None)
    if U is None:
        return [], [first]
    sols, records = [(U, M)], [first]

    def towards_start(z):
        e = RELAUNCH_FRACTION
        return (1 - e) * z[0] + e * np.reshape(U0, z[0].shape), (1 - e) * z[1] + e * np.reshape(M0, z[1].shape)

    queue = [launch, towards_start(sols[0])]
    while queue and len(sols) < max_solutions:
        sol, rec = deflated_search(problem, queue.pop(0), sols, tol=tol, agree=agree, max_iter=max_iter)
        records.append(rec)
        if sol is not None:
            sols.append(sol)
            queue += [launch, towards_start(sol)]
    return sols, records


#: the tasks of the running :func:`_run_parallel` (forked workers inherit them: problems hold
#: callables, such as lambdas, that cannot be pickled)
_TASKS = None


def _run_parallel(fn, tasks, workers, deadline=None, what="tasks"):
    """``[fn(*t) for t in tasks]`` on ``workers`` processes (forked: the kernels are already loaded).

    A task not started before ``deadline`` (``time.monotonic()``) returns ``None``. Each result
    is logged as progress (``what: k of n, elapsed, about ... left``) as it comes in.
    """
    global _TASKS
    progress = Progress(log, what, len(tasks))
    if workers <= 1 or len(tasks) <= 1 or not _fork_is_safe():
        out = []
        for t in tasks:
            out.append(None if deadline is not None and time.monotonic() > deadline else fn(*t))
            progress.done("not run: time limit" if out[-1] is None else "")
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _TASKS = (fn, tasks, deadline)
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)),
                                 mp_context=multiprocessing.get_context("fork")) as pool:
            out = []
            for result in pool.map(_run_task, range(len(tasks))):   # (in order, as they finish)
                out.append(result)
                progress.done()
            return out
    finally:
        _TASKS = None


def _fork_is_safe():
    """Whether this process may fork: not once GNU OpenMP runs here (Numba's ``omp`` threading layer,
    started by the first parallel kernel), which aborts a forked child ("fork() called from a
    process already using GNU OpenMP"). The starts then run one after the other.
    """
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:      # no parallel kernel has run in this process
        return True
    if layer == "omp":
        log.info("multi-start: the starts run one after the other (OpenMP is running in this process)")
        return False
    return True


def _run_task(k):
    import numba

    # one thread per worker: the workers already fill the cores (Numba's parallel kernels in
    # each would oversubscribe them)
    numba.set_num_threads(1)
    fn, tasks, deadline = _TASKS
    if deadline is not None and time.monotonic() > deadline:
        return None
    return fn(*tasks[k])


def _start_task(problem, U0, M0, method, tol, max_iter):
    return solve_from_start(problem, U0, M0, method=method, tol=tol, max_iter=max_iter)


def _search_task(problem, launch, known, tol, max_iter, agree, globalize):
    return deflated_search(problem, launch, known, tol=tol, max_iter=max_iter, agree=agree, globalize=globalize)


def _pairwise_min(points):
    return min(max(_relative_distance(a, b)) for i, a in enumerate(points) for b in points[i + 1:])


def _deflation_rounds(problem, launches, known, tol, agree, workers, deadline, max_known, seed=0):
    """Phase 2 of :func:`multi_start`: deflated searches, in rounds.

    The first round launches from every converged start's launch point (line search only: a
    failing search stops early) and from every known solution moved by ``LAUNCH_PERTURBATION``
    (with the fixed-point sweeps: near a solution they let the deflated iteration leave it; on
    the aggregation control with amplitude-1 starts, which all reach the uniform solution, this
    search found a concentrated one in 15 iterations where the line search alone stagnated). A
    round repeats from the launches that found something and from the new solutions. ``known``
    grows in place. Returns the searches' records and what did not run (past the deadline).
    """
    rng = np.random.default_rng(seed)
    searches, not_run = [], []
    pending = [(f"start {k}", launch, False) for k, launch in launches]
    pending += [(f"solution {i} (perturbed)", _perturbed(problem, z, rng), True) for i, z in enumerate(known)]
    while pending:
        # a search near a known solution gets twice the budget: it has to leave the solution first
        tasks = [(problem, launch, list(known), tol, DEFLATED_MAX_ITER * (2 if sweeps else 1), agree, sweeps)
                 for _, launch, sweeps in pending]
        again = []
        outcomes = _run_parallel(_search_task, tasks, workers, deadline, "multi-start: deflated searches")
        for (label, launch, sweeps), out in zip(pending, outcomes):
            if out is None:
                not_run.append(f"deflated search from {label}")
                continue
            sol, rec = out
            rec["launch"] = label
            if sol is not None and all(max(_relative_distance(sol, z)) >= agree for z in known):
                known.append(sol)
                again += [(label, launch, sweeps),
                          (f"solution {len(known) - 1} (perturbed)", _perturbed(problem, sol, rng), True)]
            elif sol is not None:
                rec["found"], rec["note"] = False, "another search of this round found the same solution"
            searches.append(rec)
        log.info("multi-start: %d deflated searches, %d solution(s) known", len(searches), len(known))
        pending = again if len(known) < max_known else []
    return searches, not_run


def _collect_starts(guesses, outcomes):
    """The converged starts' solutions, every start's record, the launch points of the converged
    ones (for the deflated searches) and the starts that did not run.
    """
    sols, runs, launches, not_run = [], [], [], []
    for k, ((U0, M0), out) in enumerate(zip(guesses, outcomes)):
        if out is None:
            not_run.append(f"start {k}")
            runs.append({"path": None, "converged": False, "status": "not_run", "message": "time limit"})
            continue
        (U, M), rec = out
        launch = rec.pop("launch", None)
        if U is not None:
            rec["moved_m"], rec["moved_U"] = _relative_distance((U, M), (U0, M0))
            sols.append((U, M))
            launches.append((k, launch))
        runs.append(rec)
    return sols, runs, launches, not_run


def _clusters(sols, agree):
    """Group the solutions whose relative sup distances in m and U are below ``agree`` (indices)."""
    clusters = []
    for i, z in enumerate(sols):
        for c in clusters:
            if max(_relative_distance(z, sols[c[0]])) < agree:
                c.append(i)
                break
        else:
            clusters.append([i])
    return clusters


def _verdict(distinct, from_starts, converged, starts, searches, not_run, deflated):
    """The multi-start verdict and its evidence in words (see :func:`multi_start`)."""
    failed = sum(not r.get("found") for r in searches)
    if distinct >= 2:
        return "several solutions", (f"{distinct} distinct solutions: {from_starts} from {converged} converged "
                                     f"starts, {distinct - from_starts} more by {len(searches)} deflated searches")
    if converged >= 2 and (not deflated or (searches and failed == len(searches) and not not_run)):
        return "unique", (f"unique on this evidence: {converged} of {starts} starts converged to one solution"
                          + (f"; {len(searches)} deflated searches (from each converged start and from the "
                             f"solution perturbed, the solution deflated) found no other" if searches else
                             "; no deflated search was run"))
    if converged >= 2:
        return "inconclusive", (f"{converged} of {starts} starts converged to one solution, but the deflated "
                                f"searches did not all run ({len(not_run)} left at the time limit): uniqueness "
                                "is not established")
    return "inconclusive", f"{converged} of {starts} starts converged; a verdict needs two"


def multi_start(problem, *, starts=4, seed=0, method="newton", tol=1e-9, max_iter=60, amplitude=1.0, agree=1e-6,
                guesses=None, return_solutions=False, deflation=True, workers=1, deadline=None):
    """Solve from ``starts`` distinct initial guesses, then search for more solutions by deflation.

    *Phase 1.* Each start is solved by :func:`solve_from_start`: at the target problem, or along
    its own homotopy path, never through a problem common to all starts. For each start the
    report gives how far the iterate moved from it; ``start_spread`` is the smallest distance
    between two starts and ``launch_spread`` between the points from which their final Newton
    solves began, so a reader can see that the starts were still distinct then.

    *Phase 2* (``deflation``, Newton only). From every start's launch point, Newton with every
    solution found so far deflated (:func:`deflated_search`): it cannot converge back to a known
    solution, so it either finds a new one (checked as a solution of the undeflated system) or
    fails. Rounds repeat while a round finds something. The verdict rests on it: ``"several
    solutions"`` when two distinct solutions are known; ``"unique"`` (on this evidence: the
    report says how many searches) when at least two starts converged, all to one solution, and
    every deflated search failed.

    Parameters
    ----------
    problem : MFGProblem
    starts : int
        Number of starts (>= 2).
    seed, amplitude : int, float
        Random smooth starts of :func:`initial_guesses`.
    method : {"newton", "fixed_point", "fictitious_play"}
    tol, max_iter : float, int
        Solver tolerance (residual, max-norm) and iteration budget per solve.
    agree : float
        Two solutions are the same when their relative sup distances in m and U are both
        below ``agree``. The differences of two solutions at tolerance ``tol`` are about the
        Jacobian's condition number times ``tol``, so ``agree`` sits far above ``tol``.
    guesses : list of (U, M), optional
        Explicit starts instead of random ones.
    return_solutions : bool
        Add ``solutions``, the distinct ``(U, M)`` found (not JSON-serialisable).
    deflation : bool
        Run phase 2.
    workers : int
        Processes that solve the starts (and the deflated searches) side by side; the verdict
        and the solutions are those of a serial run.
    deadline : float, optional
        ``time.monotonic()`` after which no start or search begins; what did not run is
        listed in ``not_run`` and the result is marked ``incomplete``.

    Returns
    -------
    dict
        ``starts``, ``converged``, ``distinct_solutions``, ``verdict`` (``"unique"``,
        ``"several solutions"``, ``"inconclusive"``), ``evidence`` (the verdict in words, with
        the number of starts and deflated searches it rests on), ``spread_m`` / ``spread_U``
        (largest pairwise relative sup distance of the converged starts), ``start_spread``,
        ``launch_spread``, ``runs`` (per start: path, status, iterations, residual,
        ``moved_m``, ``moved_U``), ``deflation`` (per search: start, status, iterations,
        ``found``), ``incomplete`` and ``not_run``.
    """
    if isinstance(starts, bool) or not isinstance(starts, (int, np.integer)) or starts < 2:
        raise ValueError(f"starts must be an integer >= 2, got {starts!r}")
    if not agree > 0:
        raise ValueError(f"agree must be > 0, got {agree!r}")
    shape = (problem.nt + 1, problem.grid.size)
    if guesses is None:
        guesses = initial_guesses(problem, starts, seed=seed, amplitude=amplitude)
    guesses = [(np.reshape(U, shape), np.reshape(M, shape)) for U, M in guesses]
    outcomes = _run_parallel(_start_task, [(problem, U0, M0, method, tol, max_iter) for U0, M0 in guesses],
                             workers, deadline, "multi-start: starts")
    sols, runs, launches, not_run = _collect_starts(guesses, outcomes)
    clusters = _clusters(sols, agree)
    known = [sols[c[0]] for c in clusters]
    log.info("multi-start: %d of %d starts converged, %d distinct solution(s)", len(sols), len(guesses), len(known))
    searches = []
    if deflation and method == "newton" and known:
        searches, skipped = _deflation_rounds(problem, launches, known, tol, agree, workers, deadline,
                                              max_known=4 * len(guesses), seed=seed)
        not_run += skipped
    start_spread = _pairwise_min(guesses)
    spread_m = spread_u = float("nan")
    if len(sols) >= 2:
        d = [_relative_distance(a, b) for i, a in enumerate(sols) for b in sols[i + 1:]]
        spread_m, spread_u = max(x[0] for x in d), max(x[1] for x in d)
    distinct = len(known)
    verdict, evidence = _verdict(distinct, len(clusters), len(sols), len(guesses), searches, not_run,
                                 deflation and method == "newton")
    out = {"starts": len(guesses), "converged": len(sols), "distinct_solutions": distinct, "verdict": verdict,
           "evidence": evidence, "agree": agree, "spread_m": float(spread_m), "spread_U": float(spread_u),
           "start_spread": float(start_spread), "runs": runs, "deflated_searches": len(searches),
           "deflation": searches, "incomplete": bool(not_run), "not_run": not_run}
    if len(launches) >= 2:
        # how far apart the starts still were when their final Newton solves began (after a
        # homotopy or fictitious play): agreement at the end is not inherited from there
        out["launch_spread"] = _pairwise_min([launch for _, launch in launches])
    if return_solutions:
        out["solutions"] = known
    return out


#: relative size of the perturbation that launches a deflated search of :func:`deflated_continuation`
#: from a known solution (it breaks the symmetry a uniform solution's Newton iterates would keep)
LAUNCH_PERTURBATION = 0.05


def _diagram_scalars(problem, M):
    """The scalars a branch diagram plots: the mean position of m(T) along the first axis (mirror
    images sit on either side of a symmetric solution) and max m(T).
    """
    g = problem.grid
    mT = np.reshape(M[-1], g.shape)
    mass = g.integrate(mT)
    x = g.coordinates()[0]
    return float(g.integrate(x * mT) / mass), float(mT.max())


def _perturbed(problem, z, rng):
    """``z`` moved by ``LAUNCH_PERTURBATION`` (relative) along smooth random fields, m kept positive."""
    U, M = z
    g = problem.grid
    du = np.tile(_smooth_random_field(g, rng).ravel(), (U.shape[0], 1))   # one field at every time level
    dm = _smooth_random_field(g, rng).ravel()
    scale_u = max(1.0, float(np.abs(U).max()))
    return (U + LAUNCH_PERTURBATION * scale_u * du / max(np.abs(du).max(), 1e-300),
            M * np.exp(LAUNCH_PERTURBATION * dm / max(np.abs(dm).max(), 1e-300)))


class _Branches:
    """The branches of a deflated continuation: each one's values and diagram scalars."""

    def __init__(self, agree):
        self.records, self.agree = [], agree

    def add(self, b, v, p, z):
        pos, mx = _diagram_scalars(p, z[1])
        self.records[b]["values"].append(v)
        self.records[b]["mean_position"].append(pos)
        self.records[b]["max_m"].append(mx)

    def new(self, v, p, z):
        """Open a branch born at ``v`` with the solution ``z``; returns its index."""
        self.records.append({"born": v, "values": [], "mean_position": [], "max_m": [], "ended": None})
        self.add(len(self.records) - 1, v, p, z)
        return len(self.records) - 1

    def distinct(self, z, here):
        return all(max(_relative_distance(z, s)) >= self.agree for _, s in here)


def _continue_branches(p, v, previous, branches, tol, max_iter, rng):
    """Newton at ``v`` from each branch's solution at the previous value, the solutions already
    found at ``v`` deflated; a branch whose step fails or lands on a known solution ends.
    """
    here, launches = [], []
    for b, z in previous:
        defl = _deflation([s for _, s in here]) if here else None
        try:
            U, M, _log, status = newton(FDScheme(p), *z, tol=tol, max_iter=max_iter, deflation=defl,
                                        verbose=False, linear=_linear(p))
        except (FloatingPointError, RuntimeError, np.linalg.LinAlgError) as exc:
            status, U, M = f"error: {exc}", None, None
        if status == "converged" and branches.distinct((U, M), here):
            here.append((b, (U, M)))
            branches.add(b, v, p, (U, M))
        else:
            branches.records[b]["ended"] = f"continuation to {v:g} ended {status!r}"
        launches.append(_perturbed(p, z, rng))
    return here, launches


def _seed_branches(p, v, here, branches, starts, seed, tol, rng):
    """The first value's branches from random starts; returns the launch points of its searches."""
    launches = []
    for U0, M0 in initial_guesses(p, starts, seed=seed, amplitude=0.3):
        (U, M), rec = solve_from_start(p, U0, M0, tol=tol)
        if U is not None and branches.distinct((U, M), here):
            here.append((branches.new(v, p, (U, M)), (U, M)))
        if rec.get("launch") is not None:
            launches.append(rec["launch"])
    return launches + [_perturbed(p, s, rng) for _, s in here]


def deflated_continuation(make_problem, values, *, starts=2, seed=0, tol=1e-9, agree=1e-6, max_branches=8,
                          max_iter=30, deadline=None):
    """Follow every solution branch of a one-parameter family and look for new ones by deflation.

    Deflated continuation (Farrell, Beentjes & Birkisson 2016). At each parameter value:

    1. *continuation*: every branch alive at the previous value is continued by Newton from its
       last solution, with the solutions already found at this value deflated (two branches
       cannot land on one solution);
    2. *deflation*: from every solution of the previous value, moved by ``LAUNCH_PERTURBATION``
       along smooth random fields (a symmetric solution's Newton iterates keep its symmetry),
       deflated Newton searches with every solution known at this value deflated, repeated
       while they find new ones; each new solution starts a branch.

    At the first value the branches are seeded from ``starts`` random starts
    (:func:`solve_from_start`) and deflated searches from them.

    Parameters
    ----------
    make_problem : callable ``value -> MFGProblem``
    values : sequence of float
        The parameter values, in the order to follow them.
    starts, seed : int
    tol, agree : float
        As for :func:`multi_start`.
    max_branches : int
        Stop looking for new branches at a value once this many solutions are known there.
    max_iter : int
        Newton iterations per continuation step and per deflated search.
    deadline : float, optional
        ``time.monotonic()`` after which no further value is started (the rest is listed in
        ``not_run``).

    Returns
    -------
    dict
        ``values``; ``solutions_per_value``; ``branches`` (per branch: ``born`` (the value it was
        found at), ``values``, ``mean_position`` and ``max_m`` of m(T) (the diagram's scalars),
        ``ended`` (why it stopped, if it did)); ``first_value_with_several`` (the first value
        with two or more solutions, or None); ``incomplete``, ``not_run``.
    """
    values = [float(v) for v in values]
    if len(values) < 2:
        raise ValueError(f"deflated continuation needs at least two parameter values, got {values}")
    rng = np.random.default_rng(seed)
    branches = _Branches(agree)
    previous, counts, not_run = [], [], []
    progress = Progress(log, "deflated continuation", len(values))
    for k, v in enumerate(values):
        if deadline is not None and time.monotonic() > deadline:
            not_run.append(v)
            continue
        p = make_problem(v)
        # 1. continuation of every branch; (branch, solution) found at v, launch points of the searches
        here, launches = _continue_branches(p, v, previous, branches, tol, max_iter, rng)
        if k == 0:                       # seed the branches
            launches += _seed_branches(p, v, here, branches, starts, seed, tol, rng)
        for launch in launches:          # 2. deflation: new branches
            while here and len(here) < max_branches:
                sol, _rec = deflated_search(p, launch, [s for _, s in here], tol=tol, agree=agree, max_iter=max_iter)
                if sol is None:
                    break
                here.append((branches.new(v, p, sol), sol))
        counts.append(len(here))
        progress.done(f"value {v:g}: {len(here)} solution(s), {len(branches.records)} branch(es) so far")
        previous = here
    branches = branches.records
    several = [v for v, c in zip(values, counts) if c >= 2]
    return {"values": values[:len(counts)], "solutions_per_value": counts, "branches": branches,
            "first_value_with_several": several[0] if several else None, "incomplete": bool(not_run),
            "not_run": not_run}


def branch_diagram(study, path, parameter="parameter"):
    """Draw the branches of :func:`deflated_continuation`: mean position of m(T) against the parameter."""
    from ..plotting import _mpl, save_figure

    plt = _mpl()
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for i, b in enumerate(study["branches"]):
        ax[0].plot(b["values"], b["mean_position"], "o-", ms=3, label=f"branch {i} (from {b['born']:g})")
        ax[1].plot(b["values"], b["max_m"], "o-", ms=3)
    ax[0].set(xlabel=parameter, ylabel="mean position of m(T)", title="solution branches (deflated continuation)")
    ax[1].set(xlabel=parameter, ylabel="max m(T)", title=f"solutions per value: {study['solutions_per_value']}")
    if study["branches"]:
        ax[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def aggregation_control(*, n=64, nt=40, alpha=0.4, nu=0.1, T=4.0):
    r"""A problem with provably several solutions: aggregation on a no-flux interval.

    ``[0, 1]`` with no-flux boundaries, ``H(p) = |p|^2/2``, the aggregating coupling
    ``f(m) = -alpha m`` (:class:`~mfgpde.couplings.PowerCoupling` with ``scale = -alpha``), no
    terminal cost, ``m0 = 1``, ``nu > 0``.

    *The uniform path solves it.* ``m = 1`` with ``U(t, x) = -alpha (T - t)`` (constant in x):
    the HJB ``-dU/dt - nu U_xx + |U_x|^2/2 = f(m) = -alpha`` holds and ``U_x = 0`` leaves the FP
    at its uniform start. The discrete scheme reproduces this exactly.

    *It is not the minimiser when* ``alpha > nu^2 pi^2`` *and T is long enough.* The system is the
    optimality condition of ``J(m, v) = int_0^T int m |v|^2/2 - alpha m^2/2 dx dt`` under
    ``m_t - nu m_xx + (m v)_x = 0, m(0) = 1``. Take ``m = 1 + eps a(t) cos(pi x)`` with ``a(0) = 0``,
    ``a = 1`` after a ramp; the FP is met to first order by ``v = eps b(t) sin(pi x)``,
    ``b = -(a' + nu pi^2 a)/pi``, and
    ``J - J(1, 0) = (eps^2/4) int (a' + nu pi^2 a)^2/pi^2 - alpha a^2 dt + O(eps^3)``: per unit time
    after the ramp, ``(eps^2/4)(nu^2 pi^2 - alpha) < 0``. Minimisers exist in this mass-subcritical
    case (power 1 < 2/d in 1D; Cirant & Tonon 2019) and solve the system, so for long T a
    second, non-uniform solution exists. The mirror ``x -> 1 - x`` maps it to a third one
    unless it is symmetric.

    Defaults: ``alpha = 0.4 = 4.05 nu^2 pi^2``; Newton from random starts finds the uniform and
    a wall-concentrated solution (max m about 9). ``alpha < 0`` gives the monotone (Lasry-Lions)
    negative control with the same grid, horizon and starts: a unique solution.
    """
    g = TensorGrid([(0.0, 1.0)], n, "noflux")
    return MFGProblem(g, T, nt, nu, QuadraticHamiltonian(), np.ones(g.shape), coupling=PowerCoupling(1.0, -alpha),
                      name=f"aggregation-control-alpha{alpha:g}")


def run_controls(*, n=64, nt=40, starts=4, seed=0, tol=1e-9, alpha=0.4, workers=1, deadline=None):
    """Run the positive (aggregating, several solutions) and negative (monotone) controls.

    Returns a dict per control with the multi-start summary (with its deflated searches), and
    for the positive one the residual of the mirror image of every non-uniform solution found (a
    solution too, by the symmetry of the problem) and the potential ``J`` of each distinct
    solution. ``workers`` and ``deadline``: see :func:`multi_start`.
    """
    out = {}
    for name, a in (("positive", alpha), ("negative", -alpha)):
        p = aggregation_control(n=n, nt=nt, alpha=a)
        ms = multi_start(p, starts=starts, seed=seed, tol=tol, amplitude=0.3, return_solutions=True, workers=workers,
                         deadline=deadline)
        sols = ms.pop("solutions")
        row = {"alpha": a, "coupling": f"f(m) = {-a:g} m", "multi_start": ms,
               "expected": "several solutions" if a > 0 else "unique"}
        if a > 0 and sols:

            sc = FDScheme(p)
            mirrors, energies = [], []
            for U, M in sols:
                RU, Rm = sc.residual(U[:, ::-1].copy(), M[:, ::-1].copy())
                mirrors.append(float(max(np.abs(RU).max(), np.abs(Rm).max())))
                energies.append(_aggregation_potential(p, U, M, a))
            row["mirror_residuals"] = mirrors
            row["potential_J"] = energies
        row["passed"] = ms["verdict"] == row["expected"]
        out[name] = row
    return out


def _aggregation_potential(problem, U, M, alpha):
    """``J = sum dt h [m |U_x|^2/2 - alpha m^2/2]`` on the implicit levels (v = -U_x)."""
    g, dt = problem.grid, problem.T / problem.nt
    h = g.h[0]
    J = 0.0
    for n in range(problem.nt):
        m = M[n + 1]
        ux = np.diff(U[n]) / h
        mf = 0.5 * (m[1:] + m[:-1])
        J += dt * (h * np.sum(mf * ux**2) / 2 - alpha * h * np.sum(m**2) / 2)
    return float(J)


def restrict(fine, fine_grid, coarse_grid):
    """Restrict a grid function to a grid coarser by a factor 2 per axis.

    Periodic axes: node 2i of the fine grid is node i of the coarse one (injection).
    No-flux axes: fine cells 2i, 2i+1 make coarse cell i (average).
    """
    out = np.asarray(fine)
    for k in range(fine_grid.dim):
        if fine_grid.shape[k] != 2 * coarse_grid.shape[k]:
            raise ValueError("restrict: grids must be nested with refinement factor 2 per axis")
        sl0 = [slice(None)] * out.ndim
        sl1 = [slice(None)] * out.ndim
        ax = out.ndim - fine_grid.dim + k
        sl0[ax] = slice(0, None, 2)
        sl1[ax] = slice(1, None, 2)
        out = out[tuple(sl0)] if fine_grid.boundary[k] == "periodic" else 0.5 * (out[tuple(sl0)] + out[tuple(sl1)])
    return out


#: the support of m in :func:`refinement`: where ``m > SUPPORT * max m`` at that time
SUPPORT = 1e-3


def refinement(make_problem, sizes, *, method="newton", tol=1e-9, support=SUPPORT):
    """Refinement study on nested grids: Cauchy differences and their observed order.

    Differences of successive solutions (the finer one restricted to the coarser grid, at the
    common times), each in a norm named in ``norms``:

    * ``m``: L1 in space, max over time;
    * ``U_support``: sup of ``|U_h - R U_{h/2}|`` over the support of m
      (``m_h > support * max m_h`` at that time), max over time;
    * ``U_weighted``: ``(int m_h |U_h - R U_{h/2}|^2 / int m_h)^(1/2)``, max over time;
    * ``U`` (kept as it was): sup over the whole box. Far from the density U is set by the
      terminal cost's tails (a KL terminal clips ``log m`` there), so this order can say little
      about the solution where it matters: on C1 it was 0.37 while the order on the support
      was about 0.95.

    Parameters
    ----------
    make_problem : callable ``n -> MFGProblem``
        Grid with ``n`` points per axis; ``nt`` should scale with ``n``; sizes double.
    sizes : sequence of int
    support : float

    Returns
    -------
    dict with ``h``, ``differences_m``, ``differences_U_support``, ``differences_U_weighted``,
    ``differences_U`` and their fitted orders ``order_m``, ``order_U_support``,
    ``order_U_weighted``, ``order_U``, and ``norms`` (what each difference measures).
    """
    sols = []
    progress = Progress(log, "refinement", len(sizes))
    for n in sizes:
        p = make_problem(n)
        r = solve(p, method=method, tol=tol, error_estimate=False)
        if not r.converged:
            raise RuntimeError(f"refinement: the solve with n = {n} did not converge ({r.status})")
        progress.done(f"n = {n}, {r.iterations} iterations")
        sols.append(r)
    dm, du, dus, duw, hs = [], [], [], [], []
    for a, b in zip(sols[:-1], sols[1:]):
        ratio = b.problem.nt // a.problem.nt
        mb = restrict(b.m[::ratio], b.grid, a.grid)
        ub = restrict(b.U[::ratio], b.grid, a.grid)
        dm.append(float(max(a.grid.integrate(np.abs(x - y)) for x, y in zip(a.m, mb))))
        du.append(float(np.abs(a.U - ub).max()))
        e = np.abs(a.U - ub)
        m = np.maximum(a.m, 0.0)
        dus.append(float(max(e[n][m[n] > support * m[n].max()].max() for n in range(len(m)))))
        duw.append(float(max(np.sqrt(a.grid.integrate(m[n] * e[n] ** 2) / a.grid.integrate(m[n]))
                             for n in range(len(m)))))
        hs.append(float(max(a.grid.h)))
    fit = lambda e: float(np.polyfit(np.log(hs), np.log(e), 1)[0]) if len(e) >= 2 else float("nan")
    return {"sizes": list(sizes), "h": hs, "differences_m": dm, "differences_U_support": dus,
            "differences_U_weighted": duw, "differences_U": du, "order_m": fit(dm),
            "order_U_support": fit(dus), "order_U_weighted": fit(duw), "order_U": fit(du),
            "norms": {"m": "L1 in space, max over time",
                      "U_support": f"sup over the support of m (m > {support:g} max m), max over time",
                      "U_weighted": "L2 weighted by m, (int m e^2 / int m)^(1/2), max over time",
                      "U": "sup over the whole box, max over time"}}


def lasry_lions_check(coupling, grid, *, samples=32, seed=0):
    """Sample ``int (f[m1] - f[m2]) (m1 - m2) / |m1 - m2|^2`` over random density pairs.

    Returns
    -------
    dict with the minimum and median of the normalised pairing and ``monotone``
    (min >= -1e-12); a negative value is a counterexample to monotonicity.
    """
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(samples):
        m1 = np.exp(_smooth_random_field(grid, rng))
        m2 = np.exp(_smooth_random_field(grid, rng))
        m1 /= grid.integrate(m1)
        m2 /= grid.integrate(m2)
        num = grid.integrate((coupling.value(m1, grid) - coupling.value(m2, grid)) * (m1 - m2))
        vals.append(num / grid.integrate((m1 - m2) ** 2))
    vals = np.array(vals)
    return {"samples": samples, "min_pairing": float(vals.min()), "median_pairing": float(np.median(vals)),
            "monotone": bool(vals.min() >= -1e-12), "declared_monotone": bool(coupling.monotone)}


def jacobian_condition(problem, result, *, lam=None, support=None, max_unknowns=600_000, tol=1e-6):
    """2-norm condition number and smallest singular value of the Newton Jacobian, sparse.

    ``sigma_max`` by ARPACK on ``J`` (matrix-vector products); ``sigma_min = 1/||J^{-1}||_2`` by
    ARPACK on ``J^{-1}`` applied through one sparse LU factorisation of ``J`` (shift-invert at
    zero), so no dense SVD is formed and the C1 configuration (20,400 unknowns) or a 2D CNF
    (10^5 unknowns) are in reach. Checked against the dense SVD in the tests.

    With ``lam`` given, the Jacobian is taken in the velocity-potential variables
    ``phi = U / lambda`` (so ``v = -grad phi`` does not depend on lambda) with the HJB rows
    divided by lambda: ``A = diag(1/lam, 1) J diag(lam, 1)``. In these variables the kinetic
    energy carries the weight lambda and the terminal KL weight 1, so the conditioning shows
    how much the path is still pinned down as lambda -> 0.

    With ``support`` given, only the unknowns ``U, m`` at the space-time points where
    ``m > support * max m`` are kept (the others frozen): the principal submatrix on the
    support of the density. Where ``m`` is ~1e-30 (Gaussian tails) the FP rows hardly depend
    on U, so the full Jacobian is near-singular there for every lambda (condition 1e12 to
    1e18 on C1), which hides the lambda dependence; on the support the smallest singular
    value measures how firmly the transport itself is determined.

    Returns
    -------
    (condition_number, smallest_singular_value) : tuple of float
    """
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla


    sc = FDScheme(problem)
    J = sc.jacobian(result.U.reshape(problem.nt + 1, -1), result.m.reshape(problem.nt + 1, -1)).tocsc()
    N = J.shape[0]
    if N > max_unknowns:
        raise ValueError(f"jacobian_condition: {N} unknowns is more than max_unknowns = {max_unknowns} for the "
                         "sparse LU of the Jacobian; study a coarser grid")
    if lam is not None:
        d = np.ones(N)
        d[: N // 2] = lam
        J = (sp.diags(1.0 / d) @ J @ sp.diags(d)).tocsc()
    if support is not None:
        m = result.m.reshape(-1)
        keep = np.flatnonzero(m > support * m.max())
        keep = np.concatenate([keep, N // 2 + keep])
        J = J[keep][:, keep].tocsc()
        N = J.shape[0]
    lu = spla.splu(J)
    inv = spla.LinearOperator(J.shape, matvec=lu.solve, rmatvec=lambda y: lu.solve(y, trans="T"), dtype=float)
    v0 = np.random.default_rng(0).standard_normal(N)
    smax = spla.svds(J, k=1, which="LM", tol=tol, v0=v0, return_singular_vectors=False)[0]
    inv_norm = spla.svds(inv, k=1, which="LM", tol=tol, v0=v0, return_singular_vectors=False)[0]
    return float(smax * inv_norm), float(1.0 / inv_norm)


def cnf_lambda_study(grid, data, lambdas, *, T=1.0, nt=16, starts=3, tol=1e-9, seed=0, support=1e-3, workers=1,
                     deadline=None):
    """The CNF family as lambda -> 0 (see the module docstring for what is measured and why).

    Returns
    -------
    dict with one entry per lambda: condition number and smallest singular value of the
    Newton Jacobian at the solution (sparse, :func:`jacobian_condition`), in U, in
    ``phi = U/lambda``, and in phi on the support ``m > support * max m`` (the indicator that
    follows lambda: its smallest singular value falls and its condition grows as lambda -> 0);
    Newton iterations; terminal KL; and, with ``starts >= 2``, the multi-start verdict, spread
    and the distance between the starts (``starts = 0`` skips it).
    """
    if starts == 1 or starts < 0:
        raise ValueError(f"starts must be 0 (no multi-start) or >= 2, got {starts}")
    if any(not lam > 0 for lam in lambdas):
        raise ValueError(f"lambdas must be > 0 (lambda = 0 is the ill-posed limit the study approaches), got {lambdas}")
    rows, progress = [], Progress(log, "cnf lambda study", len(lambdas))
    for lam in lambdas:
        if rows:
            progress.done(f"lambda = {rows[-1]['lam']:g}: {rows[-1]['status']}")
        if deadline is not None and time.monotonic() > deadline:
            rows.append({"lam": float(lam), "converged": False, "status": "not_run", "incomplete": True})
            continue
        t0 = time.perf_counter()
        p = cnf_problem(grid, data, lam=lam, T=T, nt=nt)
        try:
            r = solve(p, tol=tol, max_iter=80, error_estimate=False)
        except (FloatingPointError, RuntimeError) as exc:   # recorded; the other lambdas still run
            rows.append({"lam": float(lam), "converged": False, "iterations": None, "status": "error",
                         "message": str(exc), "wall_time_s": time.perf_counter() - t0})
            continue
        row = {"lam": float(lam), "converged": r.converged, "iterations": r.iterations, "status": r.status}
        if r.converged:
            cond, smin = jacobian_condition(p, r)
            cond_phi, smin_phi = jacobian_condition(p, r, lam=lam)
            cond_b, smin_b = jacobian_condition(p, r, lam=lam, support=support)
            kl = KL(standard_normal_log_density(grid.dim)).value(np.maximum(r.m[-1], 0), grid)
            row.update(condition_number=cond, smallest_singular_value=smin, condition_number_phi=cond_phi,
                       smallest_singular_value_phi=smin_phi, condition_number_support_phi=cond_b,
                       smallest_singular_value_support_phi=smin_b, support=support, terminal_kl=float(kl))
            if starts:
                ms = multi_start(p, starts=starts, seed=seed, tol=tol, max_iter=80, amplitude=0.3, workers=workers,
                                 deadline=deadline)
                row.update(spread_m=ms["spread_m"], spread_U=ms["spread_U"], starts_converged=ms["converged"],
                           starts=starts, verdict=ms["verdict"], evidence=ms["evidence"],
                           start_spread=ms["start_spread"], deflated_searches=ms["deflated_searches"],
                           incomplete=ms["incomplete"],
                           paths=[r["path"] for r in ms["runs"]],
                           runs=[{k: r[k] for k in ("path", "converged", "status", "iterations", "played")
                                  if k in r} for r in ms["runs"]])
                if "launch_spread" in ms:
                    row["launch_spread"] = ms["launch_spread"]
        row["wall_time_s"] = time.perf_counter() - t0
        rows.append(row)
    progress.done(f"lambda = {rows[-1]['lam']:g}: {rows[-1]['status']}")
    return {"lambdas": [float(x) for x in lambdas], "rows": rows}


def rotation_nonuniqueness(grid, data, *, lam=0.05, T=1.0, nt=32, rotation=1.0):
    """2D exhibit of non-uniqueness at lambda = 0.

    Solves the CNF at a small lambda, giving the path ``m*(t)`` and velocity ``v*``. The
    rotated path ``R_{c t} # m*(t)`` (``R`` the rotation about the mean of pi = N(0, I),
    which preserves pi) is generated by ``v~(x, t) = R v*(R^{-1} x, t) + c B x`` with
    ``B = [[0, -1], [1, 0]]``. Both paths start at the data and end at densities with the
    same KL to pi (KL is rotation invariant): at lambda = 0 the objective is that KL alone,
    so both are optimal while the paths differ. Both are re-transported on the grid with
    :func:`evolve_density`, so the comparison includes the discretisation error.
    """
    from scipy.interpolate import RegularGridInterpolator


    if grid.dim != 2:
        raise ValueError("rotation_nonuniqueness needs a 2D grid")
    p = cnf_problem(grid, data, lam=lam, T=T, nt=nt)
    r = solve(p, tol=1e-9, error_estimate=False)
    v = np.stack([-grid_gradient(u, grid) / lam for u in r.U])
    X, Y = grid.coordinates()
    vt = np.empty_like(v)
    for n, t in enumerate(r.times):
        th = rotation * t
        c, s_ = np.cos(th), np.sin(th)
        xb, yb = c * X + s_ * Y, -s_ * X + c * Y          # R^{-1} x
        pts = np.stack([xb.ravel(), yb.ravel()], axis=1)
        comp = [RegularGridInterpolator(grid.axes, v[n, k], bounds_error=False, fill_value=0.0)(pts)
                .reshape(grid.shape) for k in range(2)]
        vt[n, 0] = c * comp[0] - s_ * comp[1] - rotation * Y
        vt[n, 1] = s_ * comp[0] + c * comp[1] + rotation * X
    kl = KL(standard_normal_log_density(2))
    m_opt = evolve_density(grid, p.m0, v, T, nt)
    m_rot = evolve_density(grid, p.m0, vt, T, nt)
    path_gap = max(grid.integrate(np.abs(a - b)) for a, b in zip(m_opt, m_rot))
    return {"lam": lam, "rotation": rotation, "kl_optimal_flow": float(kl.value(m_opt[-1], grid)),
            "kl_rotated_flow": float(kl.value(m_rot[-1], grid)),
            "terminal_L1_gap": float(grid.integrate(np.abs(m_opt[-1] - m_rot[-1]))),
            "max_path_L1_gap": float(path_gap)}

