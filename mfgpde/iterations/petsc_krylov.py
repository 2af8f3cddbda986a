"""The Newton system on PETSc: matrix-free Krylov with the sweep preconditioner as a shell PC.

Backends whose unknowns live in distributed PETSc vectors (the distributed finite-difference
scheme, the finite-element scheme) solve each Newton system ``J dz = rhs`` of
:func:`mfgpde.iterations.newton.newton` with this one object: a PETSc "python" matrix whose
product is the backend's matrix-free linearisation, a PETSc "python" preconditioner that runs
the backend's block-triangular sweep (backward HJB steps, the coupling block, forward FP
steps), and one persistent KSP under a fixed options prefix, so that ``-<prefix>ksp_type``,
``-<prefix>ksp_monitor`` ... in the options database override the defaults set here.
"""

from __future__ import annotations

import numpy as np


class ShellNewtonSystem:
    """``J dz = rhs`` by a PETSc Krylov method on a shell matrix with a shell preconditioner.

    The shell matrix, the KSP and its vectors live as long as the backend's scheme: each
    Newton step only swaps in its linearisation (creating them per step kept the freed Krylov
    basis of every step in the process's peak memory).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm or petsc4py.PETSc.Comm
    n_local : int
        This rank's number of unknowns (its slices of U and m, stacked as ``[U, m]``).
    matvec : callable
        ``matvec(lin, x) -> J x`` on this rank's slices (numpy arrays).
    precondition : callable
        ``precondition(lin, r) -> P^{-1} r``: one block-triangular sweep.
    prefix : str
        PETSc options prefix of the KSP.
    ksp_type : str
        ``"fgmres"`` where the preconditioner's step solves are themselves inexact Krylov
        solves (a preconditioner that varies between applications), ``"gmres"`` where they are
        fixed factorisations.
    restart : int
        Krylov restart length: each basis vector pair is ``2 n_local x 8`` bytes twice.
    atol : float
    n_global : int, optional
        Total number of unknowns (PETSc sums ``n_local`` when omitted).
    """

    def __init__(self, comm, n_local, matvec, precondition, prefix, *, ksp_type="fgmres", restart=30, atol=0.0,
                 n_global=None):
        from petsc4py import PETSc

        self.matvec, self.precondition, self.lin, self.atol = matvec, precondition, None, atol
        size = (n_local, PETSc.DECIDE if n_global is None else n_global)
        self.J = PETSc.Mat().createPython((size, size), _ShellMatrix(self), comm=comm)
        self.J.setUp()
        ksp = self.ksp = PETSc.KSP().create(comm=comm)
        ksp.setOptionsPrefix(prefix)
        ksp.setType(ksp_type)
        ksp.setGMRESRestart(restart)
        ksp.setOperators(self.J)
        pc = ksp.getPC()
        pc.setType(PETSc.PC.Type.PYTHON)
        pc.setPythonContext(_ShellPreconditioner(self))
        ksp.setFromOptions()
        self.b, self.x = self.J.createVecRight(), self.J.createVecLeft()

    def solve(self, lin, rhs, rtol, maxiter=400):
        """``(dz, krylov_iterations, converged, None)`` for ``J dz = rhs`` at the linearisation ``lin``.

        The last item stands for the reusable preconditioner of the SciPy path
        (:func:`mfgpde.fd.krylov.solve_newton_system`); here nothing is lagged.
        """
        self.lin = lin
        try:
            self.ksp.setTolerances(rtol=rtol, atol=self.atol, max_it=maxiter)
            self.b.getArray()[:] = rhs
            self.x.set(0.0)
            self.ksp.solve(self.b, self.x)
            ok = self.ksp.getConvergedReason() > 0
            return self.x.getArray(readonly=True).copy(), int(self.ksp.getIterationNumber()), ok, None
        finally:
            self.lin = None  # the linearisation is freed with the Newton step that made it

    def free(self):
        """Destroy the PETSc objects (not ``destroy``: PETSc calls a shell context's ``destroy(mat)``)."""
        for obj in (self.ksp, self.J, self.b, self.x):
            obj.destroy()


class _ShellMatrix:
    def __init__(self, owner):
        self.owner = owner

    def mult(self, mat, x, y):
        o = self.owner
        y.getArray()[:] = np.ravel(o.matvec(o.lin, x.getArray(readonly=True)))


class _ShellPreconditioner:
    def __init__(self, owner):
        self.owner = owner

    def apply(self, pc, r, z):
        o = self.owner
        z.getArray()[:] = np.ravel(o.precondition(o.lin, r.getArray(readonly=True)))
