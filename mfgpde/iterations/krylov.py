"""Block-triangular preconditioned GMRES for the Newton systems.

The Newton matrix has the forward-backward structure of an optimality system,

    [ J_UU  J_Um ] [dU]   [a]        J_UU: upper block-bidiagonal in time (backward HJB)
    [ J_mU  J_mm ] [dm] = [b],       J_mm: lower block-bidiagonal in time (forward FP),

so ``P = [[J_UU, 0], [J_mU, J_mm]]`` is inverted by one backward sweep of HJB steps and one
forward sweep of FP steps, each a spatial solve of size N. GMRES on ``J P^{-1}`` then only has
to resolve the coupling ``J_Um`` (the derivative of the coupling and of a congestion
Hamiltonian in m). Direct LU of the whole space-time matrix fills in like a
(d+1)-dimensional problem. Both ``J`` and ``P`` are applied matrix-free
(:class:`mfgpde.fd.linearisation.Linearisation`); the spatial step solves come from
:mod:`mfgpde.fd.steps` (exact tridiagonal in 1D; in 2D/3D a fixed linear approximate inverse
built on the FFT/DCT-diagonalised ``I/dt + nu(-Lap_h)``, or sparse LU on small grids and
transport-dominated steps).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from ..fd import kernels
from ..fd.steps import step_inverses

#: Memory for the GMRES basis: the restart length is capped so that it stays below this.
KRYLOV_BASIS_BYTES = 1024 * 2**20


class BlockTriangularPreconditioner(spla.LinearOperator):
    """``P^{-1}`` for ``P = [[J_UU, 0], [J_mU, J_mm]]`` of a :class:`Linearisation`.

    Parameters
    ----------
    lin : Linearisation
    step_solver : str
        Per-step solver in 2D/3D (see :func:`mfgpde.fd.steps.step_inverses`).
    sweeps : int
        Richardson sweeps of the spectral step inverses.
    """

    def __init__(self, lin, step_solver="auto", sweeps=3, reuse=None):
        self.lin = lin
        N, nt = lin.N, lin.nt
        self.N, self.nt = N, nt
        size = 2 * (nt + 1) * N
        super().__init__(dtype=float, shape=(size, size))
        self.one_d = lin.grid.dim == 1
        self.lagged = reuse is not None and not self.one_d
        if self.lagged:  # step inverses of an earlier Newton iterate, coupling of this one
            self.inv_u, self.inv_m, self.step_info = reuse.inv_u, reuse.inv_m, reuse.step_info
        elif not self.one_d:
            self.inv_u, self.inv_m, self.step_info = step_inverses(lin, step_solver, sweeps)

    def _matvec(self, r):
        N, nt, dt, lin = self.N, self.nt, self.lin.dt, self.lin
        r = np.asarray(r).ravel()
        a = np.ascontiguousarray(r[: (nt + 1) * N].reshape(nt + 1, N))
        b = r[(nt + 1) * N:].reshape(nt + 1, N).copy()
        if self.one_d:  # whole sweeps run compiled: cyclic tridiagonal solves, no factorisation
            x = kernels.tri_backward_sweep(lin.vals_uu, a, dt)
            b[1:] -= lin.hessian(x[:nt])
            y = kernels.tri_forward_sweep(lin.vals_mm, np.ascontiguousarray(b), dt)
            return np.concatenate([x.ravel(), y.ravel()])
        x = np.empty((nt + 1, N))
        x[nt] = a[nt]
        for n in range(nt - 1, -1, -1):
            x[n] = self.inv_u[n](a[n] + x[n + 1] / dt)
        b[1:] -= lin.hessian(x[:nt])
        y = np.empty((nt + 1, N))
        y[0] = b[0]
        for n in range(nt):
            y[n + 1] = self.inv_m[n](b[n + 1] + y[n] / dt)
        return np.concatenate([x.ravel(), y.ravel()])


def solve_newton_system(lin, rhs, rtol, maxiter=400, step_solver="auto", sweeps=3, reuse=None, lag_budget=None):
    """GMRES on ``J dz = rhs`` with the block-triangular preconditioner.

    Parameters
    ----------
    reuse : BlockTriangularPreconditioner, optional
        A preconditioner of an earlier Newton iterate whose step inverses are tried first
        (lagged set-up: the factorisations are the dominant cost on small 2D grids). If GMRES
        has not converged within ``lag_budget`` iterations it goes on, from where it stopped,
        with a fresh preconditioner.

    Returns
    -------
    x : ndarray
    iterations : int
    converged : bool
    P : BlockTriangularPreconditioner
        The preconditioner used last (pass it as ``reuse`` at the next Newton step).
    """
    J = spla.LinearOperator((rhs.size, rhs.size), matvec=lin.matvec, dtype=float)
    restart = int(max(10, min(60, KRYLOV_BASIS_BYTES // (8 * rhs.size))))
    count = [0]

    def cb(_):
        count[0] += 1

    x0 = None
    info = getattr(reuse, "step_info", {})
    # lagging pays only where the set-up is expensive (factorised steps); spectral steps cost
    # no set-up, and lagged ones cost GMRES iterations (LOG2D 64^2: 9.9 s -> 12.8 s)
    if reuse is not None and lin.grid.dim > 1 and (info.get("method") == "lu" or info.get("exact_steps", 0) > 0):
        P = BlockTriangularPreconditioner(lin, step_solver, sweeps, reuse=reuse)
        budget = lag_budget or 30
        x, info = spla.gmres(J, rhs, M=P, rtol=rtol, atol=0.0, restart=min(restart, budget),
                             maxiter=max(1, budget // min(restart, budget)), callback=cb, callback_type="pr_norm")
        if info == 0:
            return x, count[0], True, reuse
        x0 = x
    P = BlockTriangularPreconditioner(lin, step_solver, sweeps)
    # scipy's criterion is |r| <= rtol |rhs| whatever x0 is: the lagged attempt's progress counts
    x, info = spla.gmres(J, rhs, x0=x0, M=P, rtol=rtol, atol=0.0, restart=restart,
                         maxiter=maxiter // restart + 1, callback=cb, callback_type="pr_norm")
    return x, count[0], info == 0, P
