"""Block-triangular preconditioned GMRES for the Newton systems.

The Newton matrix has the forward-backward structure of an optimality system,

    [ J_UU  J_Um ] [dU]   [a]        J_UU: upper block-bidiagonal in time (backward HJB)
    [ J_mU  J_mm ] [dm] = [b],       J_mm: lower block-bidiagonal in time (forward FP),

so ``P = [[J_UU, 0], [J_mU, J_mm]]`` is inverted exactly by one backward sweep of HJB steps and
one forward sweep of FP steps, each a sparse solve of spatial size N with a factorisation
reused across the Krylov iterations. GMRES on ``J P^{-1}`` then only has to resolve the
coupling ``J_Um`` (the derivative of the coupling and of a congestion Hamiltonian in m).
Direct LU of the whole space-time matrix fills in like a (d+1)-dimensional problem; this
costs ``2 N_t`` spatial factorisations instead.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..fd import kernels
from ..fd.linear import ITERATIVE_RTOL

PRECONDITIONER_DIRECT_LIMIT = 20_000


class BlockTriangularPreconditioner(spla.LinearOperator):
    """``P^{-1}`` for ``P = [[J_UU, 0], [J_mU, J_mm]]`` built from :meth:`FDScheme.jacobian` blocks."""

    def __init__(self, scheme, blocks):
        self.scheme = scheme
        N, nt = scheme.N, scheme.nt
        self.N, self.nt = N, nt
        size = 2 * (nt + 1) * N
        super().__init__(dtype=float, shape=(size, size))
        self.JmU = blocks["JmU"]
        self.one_d = scheme.grid.dim == 1
        if self.one_d:  # whole sweeps run compiled: cyclic tridiagonal solves, no factorisation
            self.vals_uu = np.ascontiguousarray(blocks["vals_uu"])
            self.vals_mm = np.ascontiguousarray(blocks["vals_mm"])
            return
        # each step's matrix is solved once per GMRES iteration (15-25 times): factorising
        # (minimum degree on A + A^T, the pattern is symmetric) beats BiCGSTAB up to ~128^2
        self.direct = N <= PRECONDITIONER_DIRECT_LIMIT
        if self.direct:
            csr = scheme.csr
            opts = dict(permc_spec="MMD_AT_PLUS_A", options=dict(SymmetricMode=True))
            self.lu_u = [spla.splu(sp.csc_matrix(csr(blocks["vals_uu"][n:n + 1])), **opts).solve for n in range(nt)]
            self.lu_m = [spla.splu(sp.csc_matrix(csr(blocks["vals_mm"][n:n + 1]).T), **opts).solve for n in range(nt)]
        else:  # compiled BiCGSTAB on the stencils, no factorisation
            cols = scheme.cols
            vu = np.ascontiguousarray(blocks["vals_uu"])
            vm = [kernels.transpose_stencil(np.ascontiguousarray(blocks["vals_mm"][n]), cols) for n in range(nt)]
            self.lu_u = [self._iterative(vu[n], cols) for n in range(nt)]
            self.lu_m = [self._iterative(vm[n], cols) for n in range(nt)]

    @staticmethod
    def _iterative(vals, cols):
        def solve(rhs):
            rhs = np.ascontiguousarray(rhs)
            x, _, ok = kernels.stencil_bicgstab(vals, cols, rhs, rhs / vals[:, 0], ITERATIVE_RTOL, 4000)
            if not ok:
                raise RuntimeError("preconditioner: per-step BiCGSTAB did not converge")
            return x
        return solve

    def _matvec(self, r):
        N, nt, dt = self.N, self.nt, self.scheme.dt
        r = np.asarray(r).ravel()
        a = r[: (nt + 1) * N].reshape(nt + 1, N)
        b = r[(nt + 1) * N:]
        if self.one_d:
            x = kernels.tri_backward_sweep(self.vals_uu, np.ascontiguousarray(a), dt)
            b = (b - self.JmU @ x.ravel()).reshape(nt + 1, N)
            y = kernels.tri_forward_sweep(self.vals_mm, np.ascontiguousarray(b), dt)
            return np.concatenate([x.ravel(), y.ravel()])
        x = np.empty((nt + 1, N))
        x[nt] = a[nt]
        for n in range(nt - 1, -1, -1):
            x[n] = self.lu_u[n](a[n] + x[n + 1] / dt)
        b = (b - self.JmU @ x.ravel()).reshape(nt + 1, N)
        y = np.empty((nt + 1, N))
        y[0] = b[0]
        for n in range(nt):
            y[n + 1] = self.lu_m[n](b[n + 1] + y[n] / dt)
        return np.concatenate([x.ravel(), y.ravel()])


def solve_newton_system(scheme, J, blocks, rhs, rtol, maxiter=200):
    """GMRES on the Newton system with the block-triangular preconditioner.

    Returns
    -------
    x : ndarray
    iterations : int
    converged : bool
    """
    P = BlockTriangularPreconditioner(scheme, blocks)
    count = [0]

    def cb(_):
        count[0] += 1

    x, info = spla.gmres(J, rhs, M=P, rtol=rtol, atol=0.0, restart=60, maxiter=maxiter,
                         callback=cb, callback_type="pr_norm")
    return x, count[0], info == 0
