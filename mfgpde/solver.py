"""``solve(problem, method=...)``: the one entry point for time-dependent and ergodic MFGs.

``solve`` validates its options into a frozen :class:`~mfgpde.options.SolveOptions`, resolves a
registered backend (:mod:`mfgpde.backends`), lets it refuse what it cannot do, and runs it under
the Richardson strategy (:mod:`mfgpde.iterations.richardson`: one level, or a ladder of grids for
the error estimate and ``order=2``). :func:`continuation` is a composition of ``solve`` calls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import backends
from .couplings import ScaledCoupling
from .iterations.richardson import RichardsonLadder
from .options import SolveOptions
from .problem import ErgodicMFGProblem, MFGProblem
from .result import MFGResult

logger = logging.getLogger(__name__)


def solve(problem: MFGProblem | ErgodicMFGProblem, method: str = "newton", tol: float = 1e-10, *,
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
        (warm starts inside continuations and studies). On a structured mesh (interval,
        rectangle, box with an even number of cells per axis) the FEM backends solve the nested
        mesh with half the cells and steps instead (:mod:`mfgpde.fem.estimate`). Where neither
        exists (a gmsh mesh, an odd grid) the estimate is ``None`` and
        ``diagnostics["error_estimate_unavailable"]`` says why.

    Returns
    -------
    MFGResult
    """
    options = SolveOptions(method=method, tol=tol, max_iter=max_iter, damping=damping, backend=backend,
                           verbose=verbose, linear_solver=linear_solver, viscosity_continuation=viscosity_continuation,
                           grid_sequencing=grid_sequencing, petsc_options=petsc_options, order=order,
                           error_estimate=error_estimate)
    return _solve_with(problem, options, initial=initial, comm=comm)


def _solve_with(problem, options: SolveOptions, *, initial=None, comm=None):
    """One solve with validated options: the backend resolved and its refusals first, then its
    solve under the Richardson strategy (or the backend's own estimate).
    """
    chosen = backends.resolve(problem, options, comm)
    chosen.check(problem, options, comm, initial)
    estimate = options.estimate(warm_started=initial is not None)
    if not chosen.ladder:
        if options.order == 2:
            raise ValueError(f"order=2: Richardson extrapolation needs a tensor grid that halves; the {chosen.name} "
                             "backend has no ladder of nested meshes (use backend='fd' on a TensorGrid)")
        res = chosen.solve(problem, options, initial=initial, comm=comm)
        if estimate and hasattr(chosen, "estimate"):
            chosen.estimate(problem, res, options)       # e.g. the nested coarse mesh of a FEM solve
        elif estimate:
            res.diagnostics["error_estimate"] = None
            res.diagnostics["error_estimate_unavailable"] = f"the {chosen.name} backend has no error estimate"
        return res
    ladder = RichardsonLadder(order=options.order, estimate=estimate)  # (run() refuses an impossible order=2 first)
    coarse_options = options.replace(verbose=False)

    def solve_level(p, coarser):
        if p is problem:
            return chosen.solve(p, options, initial=initial, comm=comm, coarse_start=coarser)
        return chosen.solve(p, coarse_options, comm=comm, coarse_start=coarser)

    return ladder.run(problem, solve_level)


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

    steps, result, comm = [], kwargs.pop("initial", None), kwargs.pop("comm", None)
    kwargs.setdefault("viscosity_continuation", False)
    options = SolveOptions(method=method, **kwargs)   # validated once, before any stage
    target = problem.nu if parameter == "nu" else 1.0
    stages = list(values) + [target]
    for k, v in enumerate(stages):
        # each stage rebuilt through the problem's validating constructor
        p = problem.replace(nu=float(v)) if parameter == "nu" else \
            problem.replace(coupling=ScaledCoupling(problem.coupling, float(v)))
        # only the target's solve carries an error estimate (the stages are starts)
        last = k == len(stages) - 1
        result = _solve_with(p, options if last else options.replace(error_estimate=False), initial=result,
                             comm=comm)
        steps.append({"value": float(v), "status": result.status, "iterations": result.iterations})
        if not result.converged:
            break
    result.problem = problem
    result.diagnostics["continuation"] = {"parameter": parameter, "steps": steps}
    return result
