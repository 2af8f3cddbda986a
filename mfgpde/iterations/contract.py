"""What the iterations need of a discretisation: the contract FD and FEM schemes implement.

The iterations of this package see residuals, half-sweeps and linearisations, never a grid or
a mesh. :class:`Discretisation` is what the damped fixed point / fictitious play
(:func:`mfgpde.iterations.fixed_point`), the residual bookkeeping
(:func:`mfgpde.iterations.base.residual_norms`) and grid sequencing's sweeps consume; both
:class:`mfgpde.fd.scheme.FDScheme` and :class:`mfgpde.fem.scheme.FEMScheme` implement it, so
one fixed point serves both backends. :class:`NewtonKrylovDiscretisation` adds what the one Newton-Krylov driver
(:func:`mfgpde.iterations.newton`) consumes: a matrix-free linearisation whose per-step solves
build the block-triangular sweep preconditioner, and ``solve_newton_system`` (the signature of
:func:`mfgpde.fd.krylov.solve_newton_system`): each scheme brings its own linear algebra, so the
iterations import nothing from :mod:`mfgpde.fd` or :mod:`mfgpde.fem`. The serial FD scheme
solves with SciPy (:mod:`mfgpde.fd.krylov`) and, as it sets ``assembles_jacobian``, may instead
factorise its assembled ``jacobian``; the distributed FD scheme and the FEM scheme solve on PETSc
(:class:`mfgpde.iterations.petsc_krylov.ShellNewtonSystem`) and add ``allreduce(value, op)`` for
the driver's scalar reductions.

For stacked unknowns ``U, M`` of shape ``(N_t + 1, N)`` (``N`` points or owned dofs):

* ``residual(U, M) -> (R_U, R_m)``: the discrete HJB and FP equations, same shapes;
* ``norm(R) -> float``: ``max |R|`` over the whole discretisation (collective over MPI ranks);
* ``solve_hjb(M, U_init=None, tol=1e-12, max_newton=200) -> (U, inner_steps)``: the backward
  sweep, U solving the discrete HJB for the density path M;
* ``solve_fp(U, M_lag=None) -> M``: the forward sweep, M solving the discrete FP for U (the
  drift lagged at ``M_lag`` for congestion Hamiltonians); the tensor-grid schemes, which grid
  sequencing (:func:`mfgpde.iterations.sequencing.sequenced_newton`) serves, also take ``rtol``
  (of their iterative step solves: a starting guess asks for less);
* ``problem`` (``m0``, ``hamiltonian``, ``coupling``) and ``nt``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Discretisation(Protocol):
    """Residual, norm and the two half-sweeps of a discretised time-dependent MFG."""

    problem: Any
    nt: int

    def residual(self, U, M):
        """``(R_U, R_m)`` of the discrete system at ``(U, M)``."""

    def norm(self, R) -> float:
        """``max |R|`` over the whole discretisation (collective on distributed data)."""

    def solve_hjb(self, M, *, U_init=None, tol=1e-12, max_newton=200):
        """Backward sweep: ``(U, inner_newton_steps)`` for the density path ``M``."""

    def solve_fp(self, U, M_lag=None):
        """Forward sweep: the density path for the value function ``U``."""


@runtime_checkable
class NewtonKrylovDiscretisation(Discretisation, Protocol):
    """A :class:`Discretisation` that also offers what Newton-Krylov with the sweep preconditioner needs."""

    step_solver: str

    def linearisation(self, U, M):
        """The Jacobian at ``(U, M)`` applied matrix-free, with per-step operators for the preconditioner."""

    def solve_newton_system(self, lin, rhs, rtol, *, maxiter=400, step_solver=None, reuse=None, lag_budget=None):
        """``(dz, iterations, converged, preconditioner to reuse)`` for ``J dz = rhs`` to ``rtol``."""
