"""The linearisation of the coupled FEM system: the Jacobian applied matrix-free, and the sweep.

Newton on the FEM system is the one driver of :func:`mfgpde.iterations.newton.newton`; this
module gives it what it needs of the mesh discretisation. The unknown is one distributed
vector ``X = (U^0..U^{N_t}, m^0..m^{N_t})`` (each rank holds its dofs at every time level), and
the Jacobian has the per-level blocks

    dR_U^n/dU^n = B_n,  dR_U^n/dU^{n+1} = -I/dt,  dR_U^n/dm^{n+1} = diag(phi_m - f')
    dR_m^{n+1}/dm^{n+1} = E_n,  dR_m^{n+1}/dm^n = -I/dt,  dR_m^{n+1}/dU^n = G_n

(:class:`FEMLinearisation`, applied by :func:`jacobian_product`). Each Newton system is solved
by PETSc GMRES (:class:`mfgpde.iterations.petsc_krylov.ShellNewtonSystem`) preconditioned by
one backward sweep with the ``B_n`` and one forward sweep with the ``E_n`` (block-triangular in
time, the coupling ``G_n`` kept; :func:`sweep`), each step a sparse LU that is factorised once
per Newton iteration and reused by every GMRES iteration.
"""

from __future__ import annotations

import numpy as np

from ..iterations.preconditioner import block_triangular_sweep


class FEMLinearisation:
    """The level blocks of the Jacobian of :class:`~mfgpde.fem.scheme.FEMScheme` at ``(U, M)``."""

    def __init__(self, scheme, U, M):
        self.s = scheme
        self.update(U, M)

    def update(self, U, M):
        s = self.s
        Hm = s.problem.hamiltonian
        self.B, self.E, self.G, self.D, self.c2, self.cU = [], [], [], [], [], []
        dF = s.df(M[1:])
        nonlinear_S = False
        diffs = []
        for n in range(s.nt):
            S, d, _phi, phiS = s._level(U[n], M[n + 1])
            m = M[n + 1]
            self.B.append(s.hjb_matrix(d, phiS, key=n, level=n))
            self.E.append(None if not Hm.depends_on_m else s.fp_matrix(d, phiS + m * Hm.phi_Sm(S, m), key=n, level=n))
            self.G.append(s.hessian_matrix(d, phiS * m, key=n))
            c2 = Hm.phi_SS(S, m) * m
            self.c2.append(c2)
            nonlinear_S |= bool(np.any(c2 != 0))
            self.cU.append(Hm.phi_m(S, m) - dF[n])
            diffs.append(d)
        from mpi4py import MPI

        self.nonlinear_S = s.dom.comm.allreduce(nonlinear_S, op=MPI.LOR)
        self.separable = not Hm.depends_on_m
        if self.nonlinear_S:
            self.D = [s.ds_matrix(d, key=n) for n, d in enumerate(diffs)]
        self.dg = s.dg(M[-1])

    def _vecs(self, A):
        # every level matrix has the same layout: one pair of work vectors serves all
        # (creating PETSc vectors is collective and costs more than the product itself)
        if not hasattr(self, "_work"):
            self._work = A.createVecs()
        return self._work

    def _mv(self, A, x):
        xv, yv = self._vecs(A)
        xv.array[:] = x
        A.mult(xv, yv)
        return yv.array_r.copy()

    def _mvT(self, A, x):
        xv, yv = self._vecs(A)
        xv.array[:] = x
        A.multTranspose(xv, yv)
        return yv.array_r.copy()

    def E_apply(self, n, x):
        if self.E[n] is None:
            mu = self.s.dom.mu
            return self._mvT(self.B[n], mu * x) / mu
        return self._mv(self.E[n], x)

    def G_apply(self, n, x):
        y = self._mv(self.G[n], x)
        if self.nonlinear_S:
            y += self._mvT(self.D[n], self.c2[n] * self.s.dom.mu * self._mv(self.D[n], x)) / self.s.dom.mu
        return y



def jacobian_product(lin, x):
    """``J x`` for the stacked ``x = [dU, dm]`` on this rank's dofs."""
    s = lin.s
    nt, dt = s.nt, s.dt
    X = np.asarray(x).reshape(2, nt + 1, s.n)
    xU, xm = X[0], X[1]
    Y = np.empty_like(X)
    for n in range(nt):
        Y[0, n] = lin._mv(lin.B[n], xU[n]) - xU[n + 1] / dt + lin.cU[n] * xm[n + 1]
        Y[1, n + 1] = lin.E_apply(n, xm[n + 1]) - xm[n] / dt + lin.G_apply(n, xU[n])
    Y[0, nt] = xU[nt] - lin.dg * xm[nt]
    Y[1, 0] = xm[0]
    return Y.ravel()


def sweep(lin, r):
    """The block-triangular preconditioner (:func:`mfgpde.iterations.preconditioner.block_triangular_sweep`):
    backward HJB sweep with the ``B_n``, then the forward FP sweep with the ``E_n`` and the
    U -> m coupling ``G_n`` of the new U correction (block Gauss-Seidel in time).
    """
    s = lin.s

    def solve_m(n, rhs):
        if lin.separable:
            # E_n = mu^{-1} B_n^T mu exactly when phi_S does not depend on m: one LU serves both
            mu = s.dom.mu
            return s.solve_with(("B", n), lin.B[n], mu * rhs, transpose=True) / mu
        return s.solve_with(("E", n), lin.E[n], rhs)

    return block_triangular_sweep(r, s.nt, s.dt, lambda n, v: s.solve_with(("B", n), lin.B[n], v),
                                  lambda X: np.stack([lin.G_apply(n, X[n]) for n in range(s.nt)]), solve_m)
