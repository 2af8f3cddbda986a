"""``solve(problem, method=...)``: the one entry point for time-dependent and ergodic MFGs."""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from .fd.scheme import FDScheme
from .iterations import fixed_point, newton
from .iterations.richardson import ORDERS, RichardsonLadder
from .problem import ErgodicMFGProblem, MFGProblem
from .result import MFGResult

METHODS = ("newton", "fixed_point", "fictitious_play")


def solve(problem: MFGProblem | ErgodicMFGProblem, method: str = "newton", tol: float = 1e-10,
          max_iter: int | None = None, damping: float = 0.5, backend: str = "auto", verbose: bool | None = None,
          initial: MFGResult | tuple | None = None, linear_solver: str = "auto",
          viscosity_continuation: bool | str = "auto", grid_sequencing: bool | str = "auto", comm: Any = None,
          petsc_options: dict | None = None, order: int = 1, error_estimate: bool | None = None) -> MFGResult:
    """Solve a mean-field game.

    Parameters
    ----------
    problem : MFGProblem or ErgodicMFGProblem
    method : {"newton", "fixed_point", "fictitious_play"}
        Newton on the coupled system (analytic Jacobian, started from one fixed-point
        sweep), damped fixed point, or fictitious play. The ergodic problem uses Newton.
    tol : float
        Residual tolerance (max-norm of the discrete HJB and FP equations).
    max_iter : int, optional
        Default 50 for Newton, 1000 for the fixed-point iterations.
    damping : float in (0, 1]
        Relaxation of the damped fixed point.
    backend : {"auto", "fd", "fem"}
        Discretisation: monotone finite differences on the tensor grid, or monotone P1 finite
        elements on a DOLFINx mesh (:mod:`mfgpde.fem`; needs the ``fem`` extra). ``"auto"`` is
        ``"fem"`` for a problem on a :class:`~mfgpde.fem.domain.MeshDomain`, else ``"fd"``; a TensorGrid problem with
        ``backend="fem"`` is solved on the matching structured mesh. Returns an
        :class:`~mfgpde.fem.result.FEMResult` then.
    verbose : bool or None
        Progress line per iteration; ``None`` prints only on solves longer than 2 s.
    initial : MFGResult or tuple (U, m), optional
        Initial guess (warm start, continuation, multi-start studies).
    linear_solver : {"auto", "direct", "iterative"}
        Solver of the per-step spatial systems (finite differences: in the half-sweeps and in
        Newton's sweep preconditioner; see :mod:`mfgpde.fd.steps`): sparse LU, or iterations
        preconditioned by the FFT/DCT inverse of ``I/dt + nu(-Lap_h)``. ``"auto"`` factorises
        small grids and iterates on large ones. With ``backend="fem"``: the step solver of the
        FEM preconditioner.
    viscosity_continuation : {"auto", True, False}
        First-order problems (``nu = 0``, e.g. CNF and JKO steps) are transport problems
        whose upwind Newton system is non-smooth and stiff: from a cold start Newton takes
        tiny steps. With continuation the problem is first solved with
        ``nu_k = c_k L^2 / T`` (``c_k`` from 0.1 down by factors of 3 to 1e-5, L the largest
        box side; a failing stage is retried at an intermediate value) and each solution
        warm-starts the next, down to ``nu = 0``. ``"auto"`` does this for Newton on
        ``nu = 0`` problems without an initial guess. With grid sequencing, the stages with
        ``c_k >= 1e-3`` run on the coarser grid and the fine grid starts at the last of them.
    grid_sequencing : {"auto", True, False}
        Start Newton from the problem solved on the next coarser grid (see
        :mod:`mfgpde.iterations.sequencing`), and run the viscous stages of a viscosity
        continuation there; ``"auto"`` from 40,000 space-time points on.
    comm : mpi4py.MPI.Comm, optional
        Distribute one finite-difference solve over the ranks of ``comm`` (PETSc DMDA; see
        :mod:`mfgpde.fd.distributed`; needs petsc4py, the ``fem`` extra). Collective: every rank
        calls ``solve`` and gets the gathered result. A communicator of one rank solves serially.
        Time-dependent problems with ``nu > 0``, local couplings, Newton.
    petsc_options : dict, optional
        With ``comm``: PETSc options for this solve under the prefix ``mfgpde_``
        (``step_*``: the preconditioner's step solves, which are then PETSc KSP solves instead
        of patch multigrid; ``sweep_*``: the half-sweeps' step
        solves, ``newton_*``: the Newton systems' FGMRES), e.g. ``{"step_pc_type": "gamg"}``;
        from the CLI ``--petsc-option step_pc_type=gamg``. Removed after the solve.
    order : {1, 2}
        1: the monotone first-order scheme. 2: Richardson extrapolation over the ladder of the
        problem's grid and the grids with 2 and 4 times fewer points per axis and time steps
        (:mod:`mfgpde.iterations.richardson`): U and m (u, m and rho for an ergodic problem)
        second-order accurate (third order once the ladder is asymptotic) on the problem's grid
        for smooth solutions, at about 1.1-1.3 times the cost. Needs every axis and ``nt``
        divisible by 4, at least 8 points per axis on the coarsest grid, and data that can be
        evaluated on other grids (functions, or an initial density array); finite differences.
    error_estimate : bool, optional
        Estimate the result's own discretisation error from the ladder (order 1: one extra
        solve on the grid with half the points and steps, 1/4 to 1/16 of the cost; order 2 has
        it for free) into ``result.error_estimate``. Default: yes, unless ``initial`` is given
        (warm starts inside continuations and studies). Where no ladder exists (a mesh, an odd
        grid) the estimate is ``None`` and ``diagnostics["error_estimate_unavailable"]`` says why.

    Returns
    -------
    MFGResult
    """
    backend = _resolve_backend(problem, method, tol, max_iter, damping, backend, linear_solver,
                               viscosity_continuation, grid_sequencing, comm, petsc_options)
    if isinstance(order, bool) or order not in ORDERS:
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    if error_estimate is not None and not isinstance(error_estimate, (bool, np.bool_)):
        raise TypeError(f"error_estimate must be True, False or None (automatic), got {error_estimate!r}")
    estimate = (initial is None) if error_estimate is None else bool(error_estimate)
    opts = dict(method=method, tol=tol, max_iter=max_iter, damping=damping, verbose=verbose, initial=initial,
                linear_solver=linear_solver)
    if backend == "fem":
        if order == 2:
            raise ValueError("order=2: Richardson extrapolation needs a tensor grid that halves; the FEM backend "
                             "has no ladder of nested meshes (use backend='fd' on a TensorGrid)")
        res = _solve_fem(problem, **opts)
        if estimate:
            res.diagnostics["error_estimate"] = None
            res.diagnostics["error_estimate_unavailable"] = "the FEM backend has no ladder of nested meshes"
        return res
    ladder = RichardsonLadder(order=order, estimate=estimate)
    ladder.check(problem)  # an impossible order=2 is refused here, before any solve

    def solve_level(p, coarser):
        start = initial if p is problem else None
        level_opts = dict(opts, initial=start, verbose=verbose if p is problem else False)
        if backend == "fd-distributed":
            return _solve_distributed(p, comm, petsc_options=petsc_options,
                                      grid_sequencing=grid_sequencing is not False, **level_opts)
        if isinstance(p, ErgodicMFGProblem):
            from .ergodic import solve_ergodic

            return solve_ergodic(p, tol=tol, max_iter=200 if max_iter is None else max_iter,
                                 verbose=level_opts["verbose"], initial=start)
        return _solve_fd(p, viscosity_continuation=viscosity_continuation, grid_sequencing=grid_sequencing,
                         coarse_start=coarser, **level_opts)

    return ladder.run(problem, solve_level)


def _resolve_backend(problem, method, tol, max_iter, damping, backend, linear_solver, viscosity_continuation,
                     grid_sequencing, comm, petsc_options):
    """Check every option of :func:`solve` before any work; the backend that will solve:
    ``"fem"``, ``"fd-distributed"`` (``comm`` of several ranks) or ``"fd"``.
    """
    if not isinstance(problem, (MFGProblem, ErgodicMFGProblem)):
        raise TypeError(f"problem must be an MFGProblem or ErgodicMFGProblem, got {type(problem).__name__}")
    _check_options(method, tol, max_iter, damping, linear_solver, viscosity_continuation)
    if not (grid_sequencing is True or grid_sequencing is False or grid_sequencing == "auto"):
        raise ValueError(f"grid_sequencing must be 'auto', True or False, got {grid_sequencing!r}")
    if backend not in ("auto", "fd", "fem"):
        raise ValueError(f"backend must be 'auto', 'fd' (finite differences) or 'fem' (P1 finite elements), got {backend!r}")
    on_mesh = getattr(problem.grid, "is_mesh", False)
    if backend == "auto":
        backend = "fem" if on_mesh else "fd"
    if backend == "fd" and on_mesh:
        raise ValueError("backend='fd' needs a TensorGrid; this problem lives on a mesh, use backend='fem'")
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be > 0, got {tol}")
    if backend == "fem":
        _check_fem_options(problem, comm, petsc_options)
        return "fem"
    if petsc_options is not None and not isinstance(petsc_options, dict):
        raise TypeError(f"petsc_options must be a dict of PETSc options, got {type(petsc_options).__name__}")
    distributed = comm is not None and getattr(comm, "size", 1) > 1
    if petsc_options and not distributed:
        warnings.warn("petsc_options are used by a distributed solve (comm with more than one rank); this solve is "
                      "serial and does not use them", UserWarning, stacklevel=3)
    return "fd-distributed" if distributed else "fd"


def _check_fem_options(problem, comm, petsc_options):
    if comm is not None or petsc_options is not None:
        raise ValueError("comm and petsc_options are for the distributed finite-difference solve; a mesh is "
                         "distributed by the communicator it was built on, and the FEM solvers read the PETSc "
                         "options database under mfgpde_fem_newton_, mfgpde_fem_step_ and mfgpde_fem_sweep_")
    if isinstance(problem, ErgodicMFGProblem) and not getattr(problem.grid, "is_mesh", False):
        raise ValueError("backend='fem' for an ergodic problem needs a mesh (mfgpde.fem.MeshDomain); "
                         "this one is on a TensorGrid: use backend='fd'")


def _solve_fem(problem, method, tol, max_iter, damping, verbose, initial, linear_solver):
    from .fem import require_dolfinx

    require_dolfinx()
    if isinstance(problem, ErgodicMFGProblem):
        from .fem.ergodic import solve_ergodic_mesh

        return solve_ergodic_mesh(problem, tol=tol, max_iter=200 if max_iter is None else max_iter,
                                  verbose=verbose, initial=initial)
    from .fem.solve import solve_fem

    return solve_fem(problem, method=method, tol=tol, max_iter=max_iter, damping=damping, verbose=verbose,
                     initial=initial, linear_solver=linear_solver)


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


def _solve_fd(problem, method, tol, max_iter, damping, verbose, initial, linear_solver, viscosity_continuation,
              grid_sequencing, coarse_start=None):
    """The serial finite-difference solve of a time-dependent problem.

    ``coarse_start``: this problem already solved on the next coarser grid (a Richardson ladder's
    level), used as the grid-sequencing start instead of a new coarse solve.
    """
    from .memory import FLOATS_PER_SPACE_TIME_POINT, require

    t0 = time.perf_counter()
    require(8 * FLOATS_PER_SPACE_TIME_POINT * (problem.nt + 1) * float(problem.grid.size),
            f"a solve on {problem.grid.size} grid points x {problem.nt + 1} time levels")
    scheme = FDScheme(problem, linear_solver=linear_solver)
    U0, M0 = _initial_arrays(problem, initial)
    if (viscosity_continuation is True or (viscosity_continuation == "auto" and problem.nu == 0.0
                                             and method == "newton" and initial is None)):
        # (grid sequencing is not used here: tried, Newton at nu = 0 from the interpolated coarse
        # nu = 0 solution stalled -- a 1D CNF, 400 x 100: 20 steps, max_iter -- and the fine
        # continuation was needed after all)
        res = _viscosity_continuation(problem, initial, dict(method=method, tol=tol, max_iter=max_iter,
                                                             damping=damping, verbose=verbose,
                                                             linear_solver=linear_solver),
                                      sequence=grid_sequencing is not False)
        res.diagnostics["wall_time_s"] = time.perf_counter() - t0
        return res
    sequenced = None
    if method == "newton":
        U, M, log, status, sequenced = _newton_fd(problem, scheme, U0, M0, tol, max_iter, linear_solver, verbose,
                                                  grid_sequencing, coarse_start)
    else:
        U, M, log, status = fixed_point(scheme, tol=tol, max_iter=1000 if max_iter is None else max_iter,
                                        damping=damping,
                                        fictitious=(method == "fictitious_play"), M0=M0, verbose=verbose)
    res = MFGResult.from_arrays(problem, U, M, log, status, method, time.perf_counter() - t0)
    if sequenced is not None:
        res.diagnostics["grid_sequencing"] = sequenced
    return res


def _newton_fd(problem, scheme, U0, M0, tol, max_iter, linear_solver, verbose, grid_sequencing, coarse_start=None):
    """Newton from ``(U0, M0)``, or from the coarse grid's solution (grid sequencing), or from
    the fixed-point start (:func:`mfgpde.iterations.sequencing.sequenced_newton`);
    ``(U, M, log, status, sequencing diagnostics or None)``.
    """
    from .iterations.sequencing import sequenced_newton

    if not problem.hamiltonian.has_second_derivatives:
        raise ValueError("method='newton' needs a Hamiltonian with phi_SS; use method='fixed_point'")
    n_max = 50 if max_iter is None else max_iter
    if U0 is not None:
        return (*newton(scheme, U0, M0, tol=tol, max_iter=n_max, verbose=verbose), None)

    def coarse_solve(coarse, coarse_tol):
        if (coarse_start is not None and coarse_start.converged and coarse_start.diagnostics["residual"] <= coarse_tol
                and coarse_start.problem.grid.shape == coarse.grid.shape and coarse_start.problem.nt == coarse.nt):
            return coarse_start  # the ladder solved this level already (to a tighter tolerance)
        return _solve_fd(coarse, method="newton", tol=coarse_tol, max_iter=n_max, damping=0.5, verbose=False,
                         initial=None, linear_solver=linear_solver, viscosity_continuation="auto",
                         grid_sequencing="auto")

    return sequenced_newton(problem, scheme, None if grid_sequencing is False else coarse_solve, tol, n_max,
                            verbose)


def _solve_distributed(problem, comm, method, tol, max_iter, verbose, initial, petsc_options, damping=None,
                       linear_solver=None, grid_sequencing=True):
    """``solve(..., comm=...)`` over several ranks: what it supports is checked before any work."""
    from .fd import distributed

    if not distributed.petsc_available():
        raise ImportError(distributed.INSTALL_HINT)
    if not isinstance(problem, MFGProblem):
        raise ValueError("a distributed finite-difference solve (mpiexec -n N, or comm=) is for time-dependent "
                         "problems; the ergodic problem on a grid is solved on one rank (on a mesh, backend='fem' "
                         "distributes it)")
    if method != "newton":
        raise ValueError(f"comm: a distributed solve uses method='newton', got method={method!r}")
    if initial is not None:
        raise ValueError("comm: a distributed solve starts from its own fixed-point start; initial is not supported")
    if not problem.hamiltonian.has_second_derivatives:
        raise ValueError("method='newton' needs a Hamiltonian with phi_SS")
    return distributed.solve_distributed(problem, comm, tol=tol, max_iter=50 if max_iter is None else max_iter,
                                         verbose=verbose, petsc_options=petsc_options, grid_sequencing=grid_sequencing)


def _check_options(method, tol, max_iter, damping, linear_solver, viscosity_continuation):
    """Refuse bad solver options, naming the option and its allowed values, before any work."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating, np.integer)):
        raise TypeError(f"tol must be a number > 0, got {tol!r}")
    if max_iter is not None and (isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer))
                                 or max_iter < 0):
        raise ValueError(f"max_iter must be an integer >= 0 (0: only evaluate the initial guess), got {max_iter!r}")
    if isinstance(damping, bool) or not isinstance(damping, (int, float, np.floating)) or not 0 < damping <= 1:
        raise ValueError(f"damping must be in (0, 1], got {damping!r}")
    if linear_solver not in ("auto", "direct", "iterative"):
        raise ValueError(f"linear_solver must be 'auto', 'direct' or 'iterative', got {linear_solver!r}")
    if not (viscosity_continuation is True or viscosity_continuation is False or viscosity_continuation == "auto"):
        raise ValueError(f"viscosity_continuation must be 'auto', True or False, got {viscosity_continuation!r}")


#: the viscous stages ``nu = c L^2 / T`` with ``c >= HANDOFF_C`` run on the next coarser grid
#: when there is one (see :func:`_viscosity_continuation`)
HANDOFF_C = 1e-3
#: tolerance of the intermediate viscous stages (the last stage of the plan gets ``tol``)
STAGE_TOL = 1e-3
#: after a coarse hand-off the fine grid solves every FINE_STRIDE-th stage of the plan
FINE_STRIDE = 2


def _viscosity_continuation(problem, initial, opts, start=0.1, stop=1e-5, factor=3.0, max_refine=4, until=None,
                            sequence=True):
    """Adaptive continuation in nu down to ``problem.nu`` (see :func:`solve`).

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
    from .iterations import sequencing

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
        copts = dict(opts, tol=max(opts["tol"], sequencing.COARSE_TOL), verbose=False)
        record = {"value": float(nu_h), "grid": list(coarse.grid.shape), "nt": coarse.nt}
        where = f"{'x'.join(map(str, coarse.grid.shape))} x {coarse.nt}"
        try:
            rc = _viscosity_continuation(coarse, None, copts, start, stop, factor, max_refine, until=nu_h)
            record.update(status=rc.status, iterations=rc.iterations, stages=rc.diagnostics["continuation"]["steps"])
            if not (rc.converged and float(rc.problem.nu) == nu_h):
                raise RuntimeError(rc.diagnostics.get("message", f"the coarse continuation ended {rc.status!r}"))
            _, M = sequencing.prolong(coarse, problem, rc.U.reshape(coarse.nt + 1, -1),
                                      rc.m.reshape(coarse.nt + 1, -1))
            # one fine fixed-point sweep from the interpolated density, as in grid sequencing
            p_h = copy.copy(problem)
            p_h.nu = float(nu_h)
            scheme = FDScheme(p_h, linear_solver=opts.get("linear_solver"))
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
        if opts.get("verbose"):
            print(f"[mfgpde] viscosity continuation: stages down to nu = {nu_h:.3g} on the coarse grid {where}: "
                  f"{record['status']}", flush=True)
    refinements = 0
    while plan:
        nu = plan[0]
        p = copy.copy(problem)
        p.nu = float(nu)
        stage_opts = opts if nu == plan[-1] else dict(opts, tol=max(opts["tol"], STAGE_TOL))
        r = _solve_fd(p, initial=current, viscosity_continuation=False, grid_sequencing="auto", **stage_opts)
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
            r = _viscosity_continuation(problem, None, opts, start, stop, factor, max_refine, until=until, sequence=False)
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


def continuation(problem: MFGProblem, parameter: str, values: Iterable[float], method: str = "newton",
                 **kwargs: Any) -> MFGResult:
    """Solve a sequence of problems along ``parameter``, each warm-started from the last.

    Parameters
    ----------
    problem : MFGProblem
        The target problem (its own parameter value is the last one solved).
    parameter : {"nu", "coupling_scale"}
        Continuation in the diffusion, or in a factor multiplying the coupling.
    values : sequence of float
        Intermediate values, e.g. ``[1.0, 0.3, 0.1]`` for nu; the target is appended.
    **kwargs
        Passed to :func:`solve`.

    Returns
    -------
    MFGResult
        The solution of the target problem; ``result.diagnostics["continuation"]`` lists
        the intermediate solves.
    """
    from .couplings import ScaledCoupling

    if parameter not in ("nu", "coupling_scale"):
        raise ValueError(f"parameter must be 'nu' or 'coupling_scale', got {parameter!r}")
    raw = None if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__") else list(values)
    if raw is None or any(isinstance(v, (str, bytes, bool, np.bool_)) for v in raw):
        raise TypeError(f"continuation values of {parameter} must be a sequence of numbers, got {values!r}")
    try:
        values = [float(v) for v in raw]
    except (TypeError, ValueError):
        raise TypeError(f"continuation values of {parameter} must be a sequence of numbers, got {values!r}") from None
    if parameter == "nu" and any(not np.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"continuation values of nu must be finite and >= 0, got {values}")
    if parameter == "coupling_scale" and any(not np.isfinite(v) for v in values):
        raise ValueError(f"continuation values of coupling_scale must be finite, got {values}")

    steps, result = [], kwargs.pop("initial", None)
    kwargs.setdefault("viscosity_continuation", False)
    target = problem.nu if parameter == "nu" else 1.0
    stages = list(values) + [target]
    for k, v in enumerate(stages):
        p = copy.copy(problem)
        if parameter == "nu":
            p.nu = float(v)
        else:
            p.coupling = ScaledCoupling(problem.coupling, float(v))
        # only the target's solve carries an error estimate (the stages are starts)
        last = k == len(stages) - 1
        result = solve(p, method=method, initial=result,
                       **dict(kwargs, error_estimate=kwargs.get("error_estimate") if last else False))
        steps.append({"value": float(v), "status": result.status, "iterations": result.iterations})
        if not result.converged:
            break
    result.problem = problem
    result.diagnostics["continuation"] = {"parameter": parameter, "steps": steps}
    return result
