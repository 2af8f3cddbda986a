"""Block-triangular preconditioned GMRES for the finite-difference Newton systems.

The Newton matrix has the forward-backward structure of an optimality system,

    [ J_UU  J_Um ] [dU]   [a]        J_UU: upper block-bidiagonal in time (backward HJB)
    [ J_mU  J_mm ] [dm] = [b],       J_mm: lower block-bidiagonal in time (forward FP),

so ``P = [[J_UU, 0], [J_mU, J_mm]]`` is inverted by one backward sweep of HJB steps and one
forward sweep of FP steps (:func:`mfgpde.iterations.preconditioner.block_triangular_sweep`),
each a spatial solve of size N. GMRES on ``J P^{-1}`` then only has
to resolve the coupling ``J_Um`` (the derivative of the coupling and of a congestion
Hamiltonian in m). Direct LU of the whole space-time matrix fills in like a
(d+1)-dimensional problem. Both ``J`` and ``P`` are applied matrix-free
(:class:`mfgpde.fd.linearisation.Linearisation`); the spatial step solves come from
:mod:`mfgpde.fd.steps` and :mod:`mfgpde.fd.multigrid` (exact tridiagonal in 1D; in 2D/3D by
default two V-cycles of aggregation multigrid per step, both sweeps compiled whole; with
``linear_solver="iterative"`` or ``"direct"`` the FFT/DCT-preconditioned Richardson steps or
sparse LU factors).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from ..iterations.gmres import gmres
from ..iterations.preconditioner import block_triangular_sweep
from . import kernels
from .steps import DIRECT_LIMIT, StepOperator, resolve_step_solver, step_inverses

#: V-cycles per step in the multigrid sweeps of the preconditioner. Two: one V-cycle contracts
#: by ~0.14 on B2's steps, two by ~0.04, and GMRES then needs about half the iterations
#: (LOG2D 64^2: 7-13 instead of 13-25 per Newton step, 11.8 s against 14.1 s; B2 about even).
MG_CYCLES = 2
#: A step whose ``MG_CYCLES`` V-cycles leave more than this fraction of the residual is solved
#: exactly. Unsmoothed aggregation contracts by 0.05-0.3 per two cycles where diffusion dominates
#: at the grid scale (0.3 on thin or odd-sized grids, for the pure Laplacian too); on irregular
#: transport-dominated steps it can amplify the residual.
MG_CONTRACTION_LIMIT = 0.5

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

    def __init__(self, lin, *, step_solver="auto", sweeps=3, reuse=None):
        self.lin = lin
        N, nt = lin.N, lin.nt
        self.N, self.nt = N, nt
        size = 2 * (nt + 1) * N
        super().__init__(dtype=float, shape=(size, size))
        self.one_d = lin.grid.dim == 1
        self.lagged = reuse is not None and not self.one_d
        self.mg = self.inv_u = self.inv_m = None
        if self.lagged:  # step inverses of an earlier Newton iterate, coupling of this one
            self.inv_u, self.inv_m, self.step_info, self.mg = reuse.inv_u, reuse.inv_m, reuse.step_info, reuse.mg
        elif not self.one_d and resolve_step_solver(step_solver) == "multigrid":
            H = lin.scheme.hierarchy()
            self.mg = (H.operators(lin.vals_uu), H.operators(lin.vals_mmT))
            self.step_info = {"method": "multigrid", "cycles": MG_CYCLES, "levels": H.levels}
            self._exact_where_multigrid_fails(lin)
        elif not self.one_d:
            self.inv_u, self.inv_m, self.step_info = step_inverses(lin, method=step_solver, sweeps=sweeps)

    def _exact_where_multigrid_fails(self, lin):
        """Steps on which the V-cycles do not contract get exact solves.

        Aggregation multigrid contracts by ~0.04 per two cycles on the steps of B2 and LOG2D,
        but on steps where an irregular transport field dominates diffusion and 1/dt (a far
        iterate, a random start) the coarse corrections can amplify the error. Those steps are
        measured once (:meth:`Operators.contraction`) and solved by SuperLU factors (or, on large
        grids, the accurate BiCGSTAB of :class:`mfgpde.fd.steps.StepOperator`); the sweeps then
        run step by step in Python, the others staying V-cycles.
        """
        ou, om = self.mg
        bad_u = np.flatnonzero(~(ou.contraction(MG_CYCLES) <= MG_CONTRACTION_LIMIT))
        bad_m = np.flatnonzero(~(om.contraction(MG_CYCLES) <= MG_CONTRACTION_LIMIT))
        if bad_u.size + bad_m.size == 0:
            return
        def inverse(ops, vals, k, bad):
            if k not in bad:
                return lambda r: ops.vcycles(k, r, MG_CYCLES)
            op = StepOperator(vals[k], lin.scheme.cols, lin.scheme.spectral_inverse(), lin.dt)
            return op.lu() if self.N <= DIRECT_LIMIT else op.solve  # as the spectral steps' fallback

        bu, bm = set(bad_u.tolist()), set(bad_m.tolist())
        self.inv_u = [inverse(ou, lin.vals_uu, k, bu) for k in range(self.nt)]
        self.inv_m = [inverse(om, lin.vals_mmT, k, bm) for k in range(self.nt)]
        self.step_info["exact_steps"] = int(bad_u.size + bad_m.size)
        self.mg = None

    def _matvec(self, r):
        N, nt, dt, lin = self.N, self.nt, self.lin.dt, self.lin
        if not self.one_d and self.mg is None:  # step by step: factors, spectral or exact steps
            return block_triangular_sweep(r, nt, dt, lambda n, v: self.inv_u[n](v), lin.hessian,
                                          lambda n, v: self.inv_m[n](v))
        # the same recurrences compiled whole (block_triangular_sweep's docstring states them)
        r = np.asarray(r).ravel()
        a = np.ascontiguousarray(r[: (nt + 1) * N].reshape(nt + 1, N))
        b = r[(nt + 1) * N:].reshape(nt + 1, N).copy()
        if self.one_d:  # whole sweeps run compiled: cyclic tridiagonal solves, no factorisation
            x = kernels.tri_backward_sweep(lin.vals_uu, a, dt)
            b[1:] -= lin.hessian(x[:nt])
            y = kernels.tri_forward_sweep(lin.vals_mm, np.ascontiguousarray(b), dt)
            return np.concatenate([x.ravel(), y.ravel()])
        # whole sweeps compiled: V-cycles of every step, no Python between
        ou, om = self.mg
        x = ou.sweep(a, dt, cycles=MG_CYCLES, backward=True)
        b[1:] -= lin.hessian(x[:nt])
        y = om.sweep(b, dt, cycles=MG_CYCLES, backward=False)
        return np.concatenate([x.ravel(), y.ravel()])


def solve_newton_system(lin, rhs, rtol, *, maxiter=400, step_solver="auto", sweeps=3, reuse=None, lag_budget=None):
    """GMRES (:func:`mfgpde.iterations.gmres.gmres`, right-preconditioned) on ``J dz = rhs``
    with the block-triangular preconditioner, to ``|J dz - rhs| <= rtol |rhs|``.

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
    restart = int(max(10, min(60, KRYLOV_BASIS_BYTES // (8 * rhs.size))))
    x0, its = None, 0
    if reuse is not None and lin.grid.dim > 1 and _worth_lagging(reuse):
        P = BlockTriangularPreconditioner(lin, step_solver=step_solver, sweeps=sweeps, reuse=reuse)
        budget = lag_budget or 30
        x, its, ok = gmres(lin.matvec, P.matvec, rhs, rtol=rtol, restart=min(restart, budget), maxiter=budget)
        if ok:
            return x, its, True, reuse
        x0 = x
    P = BlockTriangularPreconditioner(lin, step_solver=step_solver, sweeps=sweeps)
    # the test is |r| <= rtol |rhs| whatever x0 is: the lagged attempt's progress counts
    x, more, ok = gmres(lin.matvec, P.matvec, rhs, x0=x0, rtol=rtol, restart=restart, maxiter=maxiter)
    its += more
    # a preconditioner that will not be lagged is not returned: it holds its linearisation and
    # its multigrid operators, which would otherwise stay alive while the next Newton step builds
    # its own (LOG2D 128^2: two linearisations and two operator sets at the peak)
    return x, its, ok, (P if lin.grid.dim > 1 and _worth_lagging(P) else None)


def _worth_lagging(P):
    """Lagging pays only where the set-up is expensive (factorised steps); spectral and multigrid
    steps cost little set-up, and lagged ones cost GMRES iterations (LOG2D 64^2: 9.9 s -> 12.8 s).
    """
    info = getattr(P, "step_info", {})
    return info.get("method") == "lu" or info.get("exact_steps", 0) > 0
