"""Newton on the coupled FEM system through PETSc SNES, and the damped fixed point.

The unknown is one distributed vector ``X = (U^0..U^{N_t}, m^0..m^{N_t})`` (each rank holds
its dofs at every time level). SNES (``newtonls`` with backtracking) calls

* :meth:`FEMNewton.function` for the residual of :class:`~mfgpde.fem.scheme.FEMScheme`,
* :meth:`FEMNewton.jacobian`, which assembles the per-level blocks of the Jacobian

      dR_U^n/dU^n = B_n,  dR_U^n/dU^{n+1} = -I/dt,  dR_U^n/dm^{n+1} = diag(phi_m - f')
      dR_m^{n+1}/dm^{n+1} = E_n,  dR_m^{n+1}/dm^n = -I/dt,  dR_m^{n+1}/dU^n = G_n

  into a matrix-free operator (a PETSc "python" Mat), and
* GMRES preconditioned by one backward sweep with the ``B_n`` and one forward sweep with the
  ``E_n`` (block-triangular in time, the coupling ``G_n`` kept), each step a sparse LU that
  is factorised once per Newton iteration and reused by every GMRES iteration.

The convergence test is the max-norm of the residual, as for the finite-difference solver.
"""

from __future__ import annotations

import numpy as np

from ..iterations.base import ConvergenceError, IterationLog


class _Operator:
    """Shared level data of the current Newton iterate."""

    def __init__(self, scheme):
        self.s = scheme
        self.ready = False

    def update(self, U, M):
        s = self.s
        Hm = s.problem.hamiltonian
        self.B, self.E, self.G, self.D, self.c2, self.cU = [], [], [], [], [], []
        dF = s.df(M[1:])
        nonlinear_S = False
        diffs = []
        for n in range(s.nt):
            S, d, phi, phiS = s._level(U[n], M[n + 1])
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
        self.ready = True

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


class _JacobianShell:
    def __init__(self, op, shape):
        self.op, self.shape = op, shape

    def mult(self, mat, x, y):
        s, op = self.op.s, self.op
        nt, dt = s.nt, s.dt
        X = x.array_r.reshape(self.shape)
        xU, xm = X[0], X[1]
        Y = np.empty(self.shape)
        for n in range(nt):
            Y[0, n] = op._mv(op.B[n], xU[n]) - xU[n + 1] / dt + op.cU[n] * xm[n + 1]
            Y[1, n + 1] = op.E_apply(n, xm[n + 1]) - xm[n] / dt + op.G_apply(n, xU[n])
        Y[0, nt] = xU[nt] - op.dg * xm[nt]
        Y[1, 0] = xm[0]
        y.array[:] = Y.ravel()


class _SweepPC:
    """Backward HJB sweep, forward FP sweep with the U -> m coupling, and (``symmetric``) a
    second backward HJB sweep with the m -> U coupling: block Gauss-Seidel in time."""

    def __init__(self, op, shape, symmetric=True):
        self.op, self.shape, self.symmetric = op, shape, symmetric

    def apply(self, pc, x, y):
        s, op = self.op.s, self.op
        nt, dt = s.nt, s.dt
        R = x.array_r.reshape(self.shape)
        Z = np.zeros(self.shape)
        # symmetric block Gauss-Seidel in (U, m): backward HJB, forward FP, then backward HJB
        # again with the m -> U coupling diag(phi_m - f') of the new m correction
        for sweep in range(2 if self.symmetric else 1):
            Z[0, nt] = R[0, nt] + op.dg * Z[1, nt]
            for n in range(nt - 1, -1, -1):
                Z[0, n] = s.solve_with(("B", n), op.B[n], R[0, n] + Z[0, n + 1] / dt - op.cU[n] * Z[1, n + 1])
            if sweep == 1:
                break
            Z[1, 0] = R[1, 0]
            for n in range(nt):
                rhs = R[1, n + 1] + Z[1, n] / dt - op.G_apply(n, Z[0, n])
                if op.separable:
                    # E_n = mu^{-1} B_n^T mu exactly when phi_S does not depend on m: one LU serves both
                    mu = s.dom.mu
                    Z[1, n + 1] = s.solve_with(("B", n), op.B[n], mu * rhs, transpose=True) / mu
                else:
                    Z[1, n + 1] = s.solve_with(("E", n), op.E[n], rhs)
        y.array[:] = Z.ravel()


#: PETSc options prefix of the FEM Newton solver (SNES and its KSP); the step solvers of its
#: preconditioner use :attr:`mfgpde.fem.scheme.FEMScheme.OPTIONS_PREFIXES`.
NEWTON_OPTIONS_PREFIX = "mfgpde_fem_newton_"


def newton_snes(scheme, U0, M0, tol=1e-10, max_iter=50, verbose=None, krylov_rtol=1e-11, globalize=True,
                progress=0.1, sweeps=4, damping=0.5, symmetric_pc=False):
    """Newton (PETSc SNES) on the FEM system from ``(U0, M0)``.

    Parameters
    ----------
    tol : float
        Stop when the max-norm of the residual is below ``tol``.
    krylov_rtol : float
        Smallest relative tolerance of GMRES on a Newton system; the tolerance used is
        ``max(krylov_rtol, min(1e-2, 1e-2 |R|))`` (inexact Newton).
    globalize : bool
        When two Newton steps in a row reduce the residual by less than ``progress`` (far
        from the solution), or the line search fails, leave SNES, take ``sweeps`` damped
        fixed-point sweeps (``damping``) and resume Newton from there.
    symmetric_pc : bool
        Add a second backward HJB sweep to the preconditioner (block symmetric Gauss-Seidel).
        Measured on the crowd room: fewer GMRES iterations but more time, so off by default.

    Returns
    -------
    U, M : ndarray (N_t + 1, n)
    log : IterationLog
    status : {"converged", "max_iter"}
    """
    from mpi4py import MPI
    from petsc4py import PETSc

    s = scheme
    comm = s.dom.comm
    shape = (2, s.nt + 1, s.n)
    nloc = 2 * (s.nt + 1) * s.n
    X = PETSc.Vec().createMPI((nloc, PETSc.DECIDE), comm=comm)
    X.array[:] = np.stack([U0, M0]).ravel()
    Fv = X.duplicate()
    log = IterationLog("newton (fem, SNES)", verbose)
    op = _Operator(s)
    state = {"iterations": 0}


    def function(snes, x, f):
        Xa = x.array_r.reshape(shape)
        with np.errstate(all="ignore"):  # trial points of the line search may leave the domain of H (m <= 0)
            RU, Rm = s.residual(Xa[0], Xa[1])
        f.array[:] = np.stack([RU, Rm]).ravel()

    def jacobian(snes, x, J, P):
        Xa = x.array_r.reshape(shape)
        op.update(Xa[0], Xa[1])
        # inexact Newton: the forcing term shrinks with the residual, so early steps are cheap
        # and the local rate stays quadratic down to the tolerance
        r = state.get("prev", np.inf)
        snes.getKSP().setTolerances(rtol=max(krylov_rtol, min(1e-2, 1e-2 * r)))

    J = PETSc.Mat().createPython(((nloc, PETSc.DECIDE), (nloc, PETSc.DECIDE)), _JacobianShell(op, shape), comm=comm)
    J.setUp()
    snes = PETSc.SNES().create(comm)
    snes.setType("newtonls")
    snes.setFunction(function, Fv)
    snes.setJacobian(jacobian, J, J)
    snes.getLineSearch().setType("bt")
    ksp = snes.getKSP()
    ksp.setType("gmres")
    ksp.setGMRESRestart(60)
    ksp.setTolerances(rtol=krylov_rtol, atol=1e-15, max_it=300)
    pc = ksp.getPC()
    pc.setType("python")
    pc.setPythonContext(_SweepPC(op, shape, symmetric=symmetric_pc))
    # a fixed, documented prefix: -mfgpde_fem_newton_snes_monitor, -mfgpde_fem_newton_ksp_type ... in the
    # options database override the choices above (nothing is set there by default)
    snes.setOptionsPrefix(NEWTON_OPTIONS_PREFIX)
    snes.setFromOptions()

    def converged(snes, it, norms):
        f = snes.getFunction()[0]
        Fa = f.array_r.reshape(shape)
        hjb, fp = s.dom.max_abs(Fa[0]), s.dom.max_abs(Fa[1])
        lin = snes.getKSP().getIterationNumber() if it > 0 else 0
        k = state["offset"] + it
        if it == 0 and state["offset"] > 0:
            return PETSc.SNES.ConvergedReason.ITERATING  # already recorded after the sweeps
        r = log.record(k, hjb, fp, gmres=lin, **({"step_cap": state.pop("capped")} if "capped" in state else {}))
        state["iterations"] = k
        if r <= tol:
            state["done"] = "converged"
            return PETSc.SNES.ConvergedReason.CONVERGED_FNORM_ABS
        if k > 2:
            log.check_divergence(k)
        if k >= max_iter:
            state["done"] = "max_iter"
            return PETSc.SNES.ConvergedReason.DIVERGED_MAX_IT
        prev = state.get("prev2", np.inf)
        state["prev"], state["prev2"] = r, norms[2]
        # progress is judged in the 2-norm, the merit function of the SNES line search
        state["stalls"] = state.get("stalls", 0) + 1 if (it > 0 and norms[2] > (1.0 - progress) * prev) else 0
        if globalize and state["stalls"] >= 2:
            state["stalls"] = 0
            # far from the solution (e.g. congestion with m close to 0) Newton takes tiny steps:
            # leave SNES, take damped fixed-point sweeps, and come back (as the FD Newton does)
            state["done"] = "globalize"
            return PETSc.SNES.ConvergedReason.CONVERGED_ITS
        return PETSc.SNES.ConvergedReason.ITERATING

    if s.problem.hamiltonian.needs_positive_density:
        def precheck(x, y):
            # fraction to the boundary: H is singular at m = 0, so no trial point may reach it
            # (SNES steps along -y)
            Xa, Ya = x.array_r.reshape(shape), y.array.reshape(shape)
            down = Ya[1] > 0
            cap = float(np.min(Xa[1][down] / Ya[1][down])) if np.any(down) else np.inf
            cap = comm.allreduce(cap, op=MPI.MIN)
            if cap < 1.0:
                y.scale(0.99 * cap)
                state["capped"] = 0.99 * cap

        snes.setLineSearchPreCheck(precheck)

    snes.setConvergenceTest(converged)
    snes.setTolerances(max_it=max_iter + 1)
    snes.setErrorIfNotConverged(False)
    state["offset"] = 0
    while True:
        state["done"] = None
        snes.solve(None, X)
        reason = snes.getConvergedReason()
        if state["done"] is None and globalize and reason == PETSc.SNES.ConvergedReason.DIVERGED_LINE_SEARCH:
            state["done"] = "globalize"  # the line search found no decrease: same remedy as a stall
        if state["done"] != "globalize" or state["iterations"] >= max_iter:
            if state["done"] == "globalize":
                state["done"] = "max_iter"
            break
        Xa = X.array.reshape(shape)
        U, M = s.damped_sweeps(Xa[1].copy(), sweeps, damping)
        Xa[0], Xa[1] = U, M
        RU, Rm = s.residual(U, M)
        k = state["iterations"] + 1
        state["prev"] = log.record(k, s.dom.max_abs(RU), s.dom.max_abs(Rm), fixed_point_sweeps=sweeps)
        state["prev2"] = np.inf
        state["iterations"] = state["offset"] = k
        if state["prev"] <= tol:
            state["done"], reason = "converged", 1
            break
    Xa = X.array_r.reshape(shape)
    U, M = Xa[0].copy(), Xa[1].copy()
    if state["done"] == "converged":
        status = "converged"
    elif state["done"] == "max_iter":
        status = "max_iter"
    else:
        raise ConvergenceError(f"newton (fem, SNES): stopped at iteration {state['iterations']} with SNES reason "
                               f"{reason} (line search or linear solve failed); last residuals: {log.summary_tail()}")
    for obj in (snes, J, X, Fv):
        obj.destroy()
    return U, M, log, status
