"""The backends behind :func:`mfgpde.solve`: one Protocol, a registry, five registrations.

A backend turns one problem into one result: it knows which problems it accepts, refuses what
it cannot do before any work (:meth:`Backend.check`), and owns the lifetime of what it creates
(schemes, PETSc objects, MPI collectives). Strategies (grid sequencing, viscosity continuation,
Richardson extrapolation) wrap a backend's :meth:`Backend.solve`; none calls the public
``solve()``. A new discretisation (a GPU finite-difference backend, say) is one class with
``@register`` in its own module, imported before ``solve()`` runs.

Registered here: ``fd`` (serial finite differences), ``fd-distributed`` (the same scheme on a
PETSc DMDA over the ranks of ``comm``), ``fem`` (P1 finite elements on a DOLFINx mesh),
``ergodic-fd`` and ``ergodic-fem`` (the stationary problem on a grid and on a mesh).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Protocol, runtime_checkable

from .fd import solve as fd_solve
from .fd.ergodic import solve_ergodic
from .options import SolveOptions
from .problem import ErgodicMFGProblem, MFGProblem

#: the registered backends, in the order :func:`resolve` asks them
REGISTRY: dict[str, Backend] = {}


@runtime_checkable
class Backend(Protocol):
    """What :func:`mfgpde.solve` needs of a discretisation."""

    #: the name in diagnostics and messages
    name: ClassVar[str]
    #: whether the problem's grid halves into a Richardson ladder (order 2, error estimates)
    ladder: ClassVar[bool]

    def accepts(self, problem: Any, requested: str, comm: Any) -> bool:
        """Whether this backend solves ``problem`` for ``backend=requested`` over ``comm``."""

    def check(self, problem: Any, options: SolveOptions, comm: Any, initial: Any) -> None:
        """Refuse, with a message naming the option, what this backend cannot do: before any work."""

    def solve(self, problem: Any, options: SolveOptions, *, initial: Any = None, comm: Any = None,
              coarse_start: Any = None) -> Any:
        """Solve ``problem``; ``coarse_start`` is it solved on the next coarser grid, if known."""

    # A backend without a ladder may define ``estimate(problem, result, options)``: it puts the
    # result's error estimate (or why there is none) into ``result.diagnostics``.


def register(cls):
    """Class decorator: register (an instance of) a :class:`Backend`."""
    backend = cls()
    if not isinstance(backend, Backend):
        raise TypeError(f"{cls.__name__} does not implement the Backend protocol")
    REGISTRY[cls.name] = backend
    return cls


def _on_mesh(problem):
    return getattr(problem.grid, "is_mesh", False)


def _distributed(comm):
    return comm is not None and getattr(comm, "size", 1) > 1


def resolve(problem, options: SolveOptions, comm=None) -> Backend:
    """The registered backend for ``problem`` and ``options.backend`` over ``comm``."""
    if not isinstance(problem, (MFGProblem, ErgodicMFGProblem)):
        raise TypeError(f"problem must be an MFGProblem or ErgodicMFGProblem, got {type(problem).__name__}")
    if options.backend == "fd" and _on_mesh(problem):
        raise ValueError("backend='fd' needs a TensorGrid; this problem lives on a mesh, use backend='fem'")
    for backend in REGISTRY.values():
        if backend.accepts(problem, options.backend, comm):
            return backend
    raise ValueError(f"no backend solves a {type(problem).__name__} with backend={options.backend!r}"
                     + (f" over {comm.size} ranks" if _distributed(comm) else ""))


def _mesh_estimate(backend, result, options):
    """A mesh backend's error estimate (:mod:`mfgpde.fem.estimate`): ``result.problem`` (the
    problem on the mesh, also for a grid problem solved with backend="fem") re-solved quietly on
    the nested mesh with half the cells and steps.
    """
    from .fem.estimate import attach_estimate

    quiet = options.replace(verbose=False)
    return attach_estimate(result.problem, result, lambda p: backend.solve(p, quiet))


def _check_fem_request(comm, options):
    if comm is not None or options.petsc_options is not None:
        raise ValueError("comm and petsc_options are for the distributed finite-difference solve; a mesh is "
                         "distributed by the communicator it was built on, and the FEM solvers read the PETSc "
                         "options database under mfgpde_fem_newton_, mfgpde_fem_step_ and mfgpde_fem_sweep_")


def _check_newton(problem, options):
    if options.method == "newton" and not problem.hamiltonian.has_second_derivatives:
        raise ValueError("method='newton' needs a Hamiltonian with phi_SS; use method='fixed_point'")


@register
class FDBackend:
    """Monotone finite differences on a tensor grid, one process (:mod:`mfgpde.fd.solve`)."""

    name = "fd"
    ladder = True

    def accepts(self, problem, requested, comm):
        return isinstance(problem, MFGProblem) and not _on_mesh(problem) and requested in ("auto", "fd") \
            and not _distributed(comm)

    def check(self, problem, options, comm, initial):
        _check_newton(problem, options)
        if options.petsc_options:
            warnings.warn("petsc_options are used by a distributed solve (comm with more than one rank); this solve "
                          "is serial and does not use them", UserWarning, stacklevel=4)

    def solve(self, problem, options, *, initial=None, comm=None, coarse_start=None):
        return fd_solve.solve_fd(problem, options, initial=initial, coarse_start=coarse_start)


@register
class DistributedFDBackend:
    """The finite-difference scheme on a PETSc DMDA over the ranks of ``comm`` (:mod:`mfgpde.fd.distributed`)."""

    name = "fd-distributed"
    ladder = True

    def accepts(self, problem, requested, comm):
        return not _on_mesh(problem) and requested in ("auto", "fd") and _distributed(comm)

    def check(self, problem, options, comm, initial):
        from .fd.petsc import INSTALL_HINT, petsc_available  # petsc4py: the optional fem extra

        if not petsc_available():
            raise ImportError(INSTALL_HINT)
        if not isinstance(problem, MFGProblem):
            raise ValueError("a distributed finite-difference solve (mpiexec -n N, or comm=) is for time-dependent "
                             "problems; the ergodic problem on a grid is solved on one rank (on a mesh, backend='fem' "
                             "distributes it)")
        if options.method != "newton":
            raise ValueError(f"comm: a distributed solve uses method='newton', got method={options.method!r}")
        if initial is not None:
            raise ValueError("comm: a distributed solve starts from its own fixed-point start; initial is not "
                             "supported")
        if not problem.hamiltonian.has_second_derivatives:
            raise ValueError("method='newton' needs a Hamiltonian with phi_SS")
        if options.petsc_options:
            from .fd.petsc import check_options, probe_options

            probe_options(check_options(dict(options.petsc_options)), comm)

    def solve(self, problem, options, *, initial=None, comm=None, coarse_start=None):
        from .fd import distributed

        return distributed.solve_distributed(problem, comm, tol=options.tol, max_iter=options.iterations("newton"),
                                             verbose=options.verbose, petsc_options=options.petsc_options and
                                             dict(options.petsc_options),
                                             grid_sequencing=options.grid_sequencing is not False)


@register
class FEMBackend:
    """Monotone P1 finite elements on a DOLFINx mesh (:mod:`mfgpde.fem.solve`; the fem extra)."""

    name = "fem"
    ladder = False

    def accepts(self, problem, requested, comm):
        return isinstance(problem, MFGProblem) and (requested == "fem" or (requested == "auto" and _on_mesh(problem)))

    def check(self, problem, options, comm, initial):
        _check_fem_request(comm, options)

    def solve(self, problem, options, *, initial=None, comm=None, coarse_start=None):
        from .fem import require_dolfinx

        require_dolfinx()
        from .fem.solve import solve_fem

        return solve_fem(problem, method=options.method, tol=options.tol, max_iter=options.max_iter,
                         damping=options.damping, verbose=options.verbose, initial=initial,
                         linear_solver=options.linear_solver)

    def estimate(self, problem, result, options):
        """The two-mesh estimate: the problem on the nested mesh with half the cells and steps."""
        return _mesh_estimate(self, result, options)


@register
class ErgodicGridBackend:
    """The stationary problem on a tensor grid: pseudo-time to Newton on the bordered system
    (:mod:`mfgpde.fd.ergodic`).
    """

    name = "ergodic-fd"
    ladder = True

    def accepts(self, problem, requested, comm):
        return isinstance(problem, ErgodicMFGProblem) and not _on_mesh(problem) and requested in ("auto", "fd")

    def check(self, problem, options, comm, initial):
        if _distributed(comm):
            raise ValueError("a distributed finite-difference solve (mpiexec -n N, or comm=) is for time-dependent "
                             "problems; the ergodic problem on a grid is solved on one rank (on a mesh, backend='fem' "
                             "distributes it)")

    def solve(self, problem, options, *, initial=None, comm=None, coarse_start=None):
        return solve_ergodic(problem, tol=options.tol, max_iter=options.iterations("ergodic"),
                             verbose=options.verbose, initial=initial)


@register
class ErgodicMeshBackend:
    """The stationary problem on a DOLFINx mesh (:mod:`mfgpde.fem.ergodic`; the fem extra)."""

    name = "ergodic-fem"
    ladder = False

    def accepts(self, problem, requested, comm):
        return isinstance(problem, ErgodicMFGProblem) and (requested == "fem" or _on_mesh(problem))

    def check(self, problem, options, comm, initial):
        _check_fem_request(comm, options)
        if not _on_mesh(problem):
            raise ValueError("backend='fem' for an ergodic problem needs a mesh (mfgpde.fem.MeshDomain); "
                             "this one is on a TensorGrid: use backend='fd'")

    def solve(self, problem, options, *, initial=None, comm=None, coarse_start=None):
        from .fem import require_dolfinx

        require_dolfinx()
        from .fem.ergodic import solve_ergodic_mesh

        return solve_ergodic_mesh(problem, tol=options.tol, max_iter=options.iterations("ergodic"),
                                  verbose=options.verbose, initial=initial)

    def estimate(self, problem, result, options):
        """The two-mesh estimate of u, m and rho."""
        return _mesh_estimate(self, result, options)
