"""The monotone P1 finite-element discretisation of the time-dependent MFG system.

Lumped P1 on the edge graph of :class:`~mfgpde.fem.domain.MeshDomain` (masses ``mu_i``,
edge weights ``w_ij = -K_ij >= 0``). With ``d_ij = U_i - U_j``:

* diffusion ``(L U)_i = mu_i^{-1} sum_j w_ij d_ij`` (lumped P1 stiffness, ``-Lap``);
* the upwind square of the gradient

      S_i(U) = mu_i^{-1} sum_j w_ij ((d_ij)^+)^2,

  non-decreasing in ``U_i`` and non-increasing in every neighbour ``U_j``: the numerical
  Hamiltonian ``phi(S_i, m_i)`` is monotone. On a 1D mesh and on right-diagonal rectangle
  meshes ``S`` is exactly the Engquist-Osher square of the finite-difference scheme, so the
  two discretisations coincide at the nodes. On unstructured meshes ``S`` is consistent up
  to the asymmetry of the vertex stars (see :func:`mfgpde.fem.geometry.hamiltonian_consistency`).

Discrete system (``dt = T / N_t``, ``n = 0..N_t-1``), as in :mod:`mfgpde.fd.scheme`:

    HJB:  (U^n - U^{n+1}) / dt + nu L U^n + phi(S(U^n), m^{n+1}) - f[m^{n+1}] = 0,  U^{N_t} = g[m^{N_t}]
    FP:   (m^{n+1} - m^n) / dt + nu L^* m^{n+1} + A_n^* m^{n+1} = 0,                 m^0 = m0

with ``A_n = diag(phi_S) dS/dU`` the linearised Hamiltonian and ``X^* = mu^{-1} X^T mu`` the
adjoint in the lumped inner product. Sources (``MFGProblem(hjb_source=, fp_source=)``) enter at
the dofs, as lumped loads: ``- s_U(t_n)`` in the HJB step n and ``- s_m(t_{n+1})`` in the FP step
to n + 1, as in the finite-difference scheme. Written as fluxes along edges,

    (A_n^* m)_i = 2 mu_i^{-1} sum_j w_ij ( c_i (d_ij)^+ - c_j (d_ij)^- ),   c = phi_S m,

which is antisymmetric in (i, j): ``sum_i mu_i m_i`` is conserved exactly, and the FP matrix
is the transpose of an M-matrix, so ``m^{n+1} >= 0`` whenever ``m^n >= 0``.

A drift ``b(t, x)`` adds ``-b . grad U`` to the HJB equation, upwinded on the edge graph,

    (B_n U)_i = mu_i^{-1} sum_j a_ij (U_i - U_j),    a_ij = w_ij (b(t_n, x_i) . (x_j - x_i))^+ >= 0,

(monotone: diagonal >= 0, off-diagonal <= 0), and its adjoint ``B_n^* = mu^{-1} B_n^T mu`` to
the FP equation, ``(B_n^* m)_i = mu_i^{-1} sum_j (a_ij m_i - a_ji m_j)``: again fluxes
antisymmetric in (i, j), so mass is conserved and positivity kept. Consistency: on a vertex
star symmetric under x -> -x, ``sum_j w_ij (x_j - x_i)(x_j - x_i)^T = 2 mu_i I`` (the lumped
Laplacian is exact on quadratics), and the pairs ``+-e`` give ``mu_i^{-1} sum_j a_ij (U_j - U_i)
= b . grad U + O(h)``. On 1D meshes and right-diagonal rectangles (diagonal edges have
``w_ij = 0``) ``a_ij / mu_i = b_k^+ / h`` along axis k: the finite-difference upwinding.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..iterations.base import ConvergenceError
from ..iterations.implicit_step import MAX_NEWTON, check_sweep_data, round_off_tolerance, solve_implicit_step
from ..iterations.petsc_krylov import ShellNewtonSystem
from .linearisation import FEMLinearisation, jacobian_product, sweep


def upwind_square(dom, u_ext):
    """``S_i`` and the edge differences ``d_ij`` for exchanged values ``u_ext``."""
    d = u_ext[dom.rows] - u_ext[dom.cols]
    dp = np.maximum(d, 0.0)
    S = np.bincount(dom.rows, dom.w * dp * dp, minlength=dom.n) / dom.mu
    return S, d


class StepMatrices:
    """Persistent PETSc matrices on the fixed pattern ``diag + edges`` of a domain."""

    def __init__(self, dom):
        from petsc4py import PETSc

        self.dom = dom
        n = dom.n
        counts = np.diff(dom.rowptr) + 1
        self.indptr = np.r_[0, np.cumsum(counts)].astype(PETSc.IntType)
        self.diag_pos = self.indptr[:-1]
        self.edge_pos = (self.indptr[dom.rows] + 1 + (np.arange(dom.rows.size) - dom.rowptr[dom.rows])).astype(np.int64)
        cols = np.empty(self.indptr[-1], PETSc.IntType)
        cols[self.diag_pos] = dom.start + np.arange(n)
        cols[self.edge_pos] = dom.gcols
        self.cols = cols
        self.nnz = int(self.indptr[-1])

    def values(self, diag, off):
        v = np.empty(self.nnz)
        v[self.diag_pos] = diag
        v[self.edge_pos] = off
        return v

    def create(self, diag, off):
        from petsc4py import PETSc

        dom = self.dom
        A = PETSc.Mat().createAIJ(((dom.n, dom.size), (dom.n, dom.size)),
                                  csr=(self.indptr, self.cols, self.values(diag, off)), comm=dom.comm)
        A.assemble()
        return A

    def update(self, A, diag, off):
        from petsc4py import PETSc

        if A is None:
            return self.create(diag, off)
        A.setValuesCSR(self.indptr, self.cols, self.values(diag, off), addv=PETSc.InsertMode.INSERT_VALUES)
        A.assemble()
        return A


class FEMScheme:
    """Residuals, Jacobian blocks and half-sweeps of the monotone P1 scheme.

    Parameters
    ----------
    problem : MFGProblem
        A problem whose ``grid`` is a :class:`~mfgpde.fem.domain.MeshDomain`.
    linear_solver : {"auto", "direct", "iterative"}
        Per-step systems of the Newton preconditioner: sparse LU serially, additive Schwarz
        (overlap 2) with a sparse LU per rank in parallel; or ILU-BiCGStab (``"iterative"``).
        ``"auto"`` is direct. The half-sweeps use ILU-BiCGStab for the HJB steps.
    parallel_step : {"asm", "mumps"}
        Step solves of the Newton preconditioner on several ranks: additive Schwarz with a
        sparse LU per rank (default), or a distributed LU (MUMPS). Measured on the 20k-vertex
        crowd room, 2 ranks: ASM (overlap 16) 24 s of Newton, MUMPS 50 s.
    asm_overlap : int
        Overlap (in mesh layers) of the Schwarz subdomains: 2 -> 39 s, 8 -> 27 s, 16 -> 24 s,
        32 -> 27 s of Newton on that problem (fewer GMRES iterations against bigger local LUs).
    """

    def __init__(self, problem, *, linear_solver="auto", parallel_step="asm", asm_overlap=16):
        self.problem = problem
        self.dom = dom = problem.grid
        self.n, self.nt, self.dt, self.nu = dom.n, problem.nt, problem.dt, problem.nu
        self.pattern = StepMatrices(dom)
        self.sum_w = np.bincount(dom.rows, dom.w, minlength=dom.n) / dom.mu
        self.m0 = problem.m0.reshape(-1)
        if linear_solver not in ("auto", "direct", "iterative"):
            raise ValueError(f"linear_solver must be 'auto', 'direct' or 'iterative', got {linear_solver!r}")
        self.linear_solver = "direct" if linear_solver == "auto" else linear_solver
        self._ksps = {}
        self._newton = None
        self._set_options = set()
        self._mats = {}
        if parallel_step not in ("asm", "mumps"):
            raise ValueError(f"parallel_step must be 'asm' or 'mumps', got {parallel_step!r}")
        if int(asm_overlap) < 0:
            raise ValueError(f"asm_overlap must be >= 0, got {asm_overlap}")
        self.parallel_pc, self.asm_overlap = parallel_step, int(asm_overlap)
        self._drift_cache = {}
        if problem.drift is not None:
            # edge vectors x_j - x_i (minimum image across periodic axes), for the drift upwinding
            X = [dom.exchange(dom.coords[:, k]) for k in range(dom.dim)]
            self._edges = np.stack([X[k][dom.cols] - X[k][dom.rows] for k in range(dom.dim)])
            for axis, lo, hi in dom.periodic:
                period = hi - lo
                self._edges[axis] -= period * np.round(self._edges[axis] / period)

    # ------------------------------------------------------------------ drift
    def drift_weights(self, n):
        """Upwind drift weights per edge at level n: ``(a_ij, a_ji)``, both >= 0; None without drift."""
        drift = self.problem.drift
        if drift is None:
            return None
        key = 0 if not drift.time_dependent else n
        if key not in self._drift_cache:
            dom = self.dom
            b = drift.at(n * self.dt).reshape(dom.dim, self.n)
            be = [dom.exchange(b[k]) for k in range(dom.dim)]
            bi = sum(be[k][dom.rows] * self._edges[k] for k in range(dom.dim))   # b(x_i) . (x_j - x_i)
            bj = sum(be[k][dom.cols] * self._edges[k] for k in range(dom.dim))   # b(x_j) . (x_j - x_i)
            if len(self._drift_cache) > 2 * self.nt + 4:
                self._drift_cache.clear()
            self._drift_cache[key] = (dom.w * np.maximum(bi, 0.0), dom.w * np.maximum(-bj, 0.0))
        return self._drift_cache[key]

    def _transport(self, n, d):
        """``(B_n U)_i = mu_i^{-1} sum_j a_ij d_ij`` (0 without drift)."""
        ab = self.drift_weights(n)
        if ab is None:
            return 0.0
        return np.bincount(self.dom.rows, ab[0] * d, minlength=self.n) / self.dom.mu

    def _transport_adjoint_m(self, n, me):
        """``(B_n^* m)_i = mu_i^{-1} sum_j (a_ij m_i - a_ji m_j)`` for exchanged m (0 without drift)."""
        ab = self.drift_weights(n)
        if ab is None:
            return 0.0
        dom = self.dom
        return np.bincount(dom.rows, ab[0] * me[dom.rows] - ab[1] * me[dom.cols], minlength=self.n) / dom.mu

    def _drift_diag_off(self, n, adjoint=False):
        """Diagonal and edge entries that ``B_n`` (or ``B_n^*``) adds to a step matrix."""
        ab = self.drift_weights(n)
        if ab is None:
            return 0.0, 0.0
        dom = self.dom
        return np.bincount(dom.rows, ab[0], minlength=self.n) / dom.mu, -ab[1 if adjoint else 0] / dom.mu[dom.rows]

    # ------------------------------------------------------------------ couplings
    def f(self, m):
        return self.problem.coupling.value(m, self.dom)

    def df(self, m):
        return self.problem.coupling.derivative(m, self.dom)

    def g(self, mT):
        return self.problem.terminal.value(mT, self.dom)

    def dg(self, mT):
        return self.problem.terminal.derivative(mT, self.dom)

    # ------------------------------------------------------------------ level pieces
    def _level(self, u, mnext):
        """Upwind pieces of ``phi(S(u), m)`` at one time level (u owned values)."""
        dom = self.dom
        ue = dom.exchange(u)
        S, d = upwind_square(dom, ue)
        Hm = self.problem.hamiltonian
        return S, d, Hm.phi(S, mnext), Hm.phi_S(S, mnext)

    def _diffusion(self, d):
        return self.nu * np.bincount(self.dom.rows, self.dom.w * d, minlength=self.n) / self.dom.mu

    def transport_adjoint(self, d, c_owned):
        """``mu^{-1} dS/dU^T (mu c)`` as edge fluxes: ``2 mu_i^{-1} sum_j w_ij (c_i d_ij^+ - c_j d_ij^-)``."""
        dom = self.dom
        ce = dom.exchange(c_owned)
        flux = dom.w * (ce[dom.rows] * np.maximum(d, 0.0) - ce[dom.cols] * np.maximum(-d, 0.0))
        return 2.0 * np.bincount(dom.rows, flux, minlength=self.n) / dom.mu

    def residual(self, U, M):
        """Residuals ``(R_U, R_m)``, each (N_t + 1, n) on this rank's dofs."""
        nt, dt = self.nt, self.dt
        RU, Rm = np.empty_like(U), np.empty_like(M)
        F = self.f(M[1:])
        for n in range(nt):
            _S, d, phi, phiS = self._level(U[n], M[n + 1])
            RU[n] = (U[n] - U[n + 1]) / dt + self._diffusion(d) + self._transport(n, d) + phi - F[n]
            me = self.dom.exchange(M[n + 1])
            dm = me[self.dom.rows] - me[self.dom.cols]
            Rm[n + 1] = ((M[n + 1] - M[n]) / dt + self._diffusion(dm) + self._transport_adjoint_m(n, me)
                         + self.transport_adjoint(d, phiS * M[n + 1]))
        RU[-1] = U[-1] - self.g(M[-1])
        Rm[0] = M[0] - self.m0
        # sources at the dofs (lumped: the nodal value is the load), at the levels the FD scheme
        # uses: s_U(t_n) in the HJB step n, s_m(t_{n+1}) in the FP step to n + 1
        hjb, fp = self.sources()
        if hjb is not None:
            RU[:-1] -= hjb[:-1]
        if fp is not None:
            Rm[1:] -= fp[1:]
        return RU, Rm

    def sources(self):
        """``(s_U, s_m)`` at this rank's dofs and every time level, ``(N_t + 1, n)`` each, or None."""
        return getattr(self.problem, "hjb_source", None), getattr(self.problem, "fp_source", None)

    # ------------------------------------------------------------------ matrices
    def hjb_matrix(self, d, phiS, *, key=None, level=0):
        """``I/dt + nu L + B_n + diag(phi_S) dS/dU`` (the HJB step Jacobian at time level ``level``)
        as a PETSc matrix.
        """
        dom = self.dom
        dp = np.maximum(d, 0.0)
        bd, bo = self._drift_diag_off(level)
        diag = (1.0 / self.dt + self.nu * self.sum_w + bd
                + 2.0 * phiS * np.bincount(dom.rows, dom.w * dp, minlength=self.n) / dom.mu)
        off = -(self.nu * dom.w + 2.0 * phiS[dom.rows] * dom.w * dp) / dom.mu[dom.rows] + bo
        return self._matrix(("B", key), diag, off)

    def fp_matrix(self, d, q, *, key=None, level=0):
        """``I/dt + nu L^* + B_n^* + mu^{-1} dS/dU^T diag(mu q)``: the FP step (q = phi_S) or its
        Jacobian (q = phi_S + m phi_Sm), at time level ``level``.
        """
        dom = self.dom
        qe = dom.exchange(q)
        bd, bo = self._drift_diag_off(level, adjoint=True)
        diag = (1.0 / self.dt + self.nu * self.sum_w + bd
                + 2.0 * q * np.bincount(dom.rows, dom.w * np.maximum(d, 0.0), minlength=self.n) / dom.mu)
        off = -(self.nu * dom.w + 2.0 * qe[dom.cols] * dom.w * np.maximum(-d, 0.0)) / dom.mu[dom.rows] + bo
        return self._matrix(("E", key), diag, off)

    def hessian_matrix(self, d, c, key=None):
        """``d/dU [mu^{-1} dS/dU^T (mu c)]`` at fixed c = phi_S m: a weighted graph Laplacian."""
        dom = self.dom
        ce = dom.exchange(c)
        W = 2.0 * dom.w * np.where(d > 0, ce[dom.rows], 0.0) + 2.0 * dom.w * np.where(d < 0, ce[dom.cols], 0.0)
        diag = np.bincount(dom.rows, W, minlength=self.n) / dom.mu
        return self._matrix(("G", key), diag, -W / dom.mu[dom.rows])

    def ds_matrix(self, d, key=None):
        """``dS/dU`` (needed only when phi is nonlinear in S)."""
        dom = self.dom
        dp = np.maximum(d, 0.0)
        diag = 2.0 * np.bincount(dom.rows, dom.w * dp, minlength=self.n) / dom.mu
        return self._matrix(("D", key), diag, -2.0 * dom.w * dp / dom.mu[dom.rows])

    def _matrix(self, key, diag, off):
        if key[1] is None:
            return self.pattern.create(diag, off)
        A = self.pattern.update(self._mats.get(key), diag, off)
        self._mats[key] = A
        return A

    #: PETSc options prefixes of the step solvers: the half-sweeps' steps, and the Newton
    #: preconditioner's steps (``-mfgpde_fem_step_pc_type gamg`` on the command line, or
    #: ``PETSc.Options()["mfgpde_fem_step_pc_type"] = "gamg"`` before the solve, overrides the
    #: defaults below, which are set only where the user has not set the option).
    OPTIONS_PREFIXES: ClassVar[dict] = {"sweep": "mfgpde_fem_sweep_", "step": "mfgpde_fem_step_"}

    def ksp(self, key, A):
        """A persistent solver for the step matrix ``A`` (refactorised when A changes)."""
        from petsc4py import PETSc

        ksp = self._ksps.get(key)
        if ksp is None:
            ksp = PETSc.KSP().create(self.dom.comm)
            parallel = self.dom.comm.size > 1
            sweep = key in ("hjb_sweep", "fp_sweep_ilu")  # iterative; the exact FP sweep ("fp_sweep") factorises
            opts = PETSc.Options()
            prefix = self.OPTIONS_PREFIXES["sweep" if key in ("hjb_sweep", "fp_sweep", "fp_sweep_ilu") else "step"]
            ksp.setOptionsPrefix(prefix)

            def default(name, value):  # an option of ours, unless the user set it; removed by destroy()
                if not opts.hasName(prefix + name):
                    opts[prefix + name] = value
                    self._set_options.add(prefix + name)

            if self.linear_solver == "direct" and not sweep:
                ksp.setType("preonly")
                if parallel and self.parallel_pc == "mumps":
                    ksp.getPC().setType("lu")
                    ksp.getPC().setFactorSolverType("mumps")
                elif parallel:
                    # a distributed LU (MUMPS) of every step matrix scales poorly on a few ranks; the
                    # Newton preconditioner only needs a good approximate step inverse: additive
                    # Schwarz with a wide overlap and a sparse LU per rank (GMRES absorbs the rest)
                    ksp.getPC().setType("asm")
                    ksp.getPC().setASMOverlap(self.asm_overlap)
                    default("sub_ksp_type", "preonly")
                    default("sub_pc_type", "lu")
                else:
                    ksp.getPC().setType("lu")
            else:
                # the HJB half-sweep refactorises at every inner Newton step: ILU-BiCGStab is ~5x cheaper
                # there than a sparse LU (upwind transport suits ILU)
                ksp.setType("gmres" if parallel else "bcgs")  # BiCGStab + ASM stalls on some FP steps
                if parallel:
                    ksp.getPC().setType("asm")
                    ksp.getPC().setASMOverlap(1)
                    default("sub_pc_type", "ilu")
                else:
                    ksp.getPC().setType("ilu")
                # inexact inner Newton (the HJB step residual is checked) and an initial guess (FP): 1e-9 suffices
                ksp.setTolerances(rtol=1e-9, atol=1e-300, max_it=2000)
            ksp.setFromOptions()
            self._ksps[key] = ksp
        ksp.setOperators(A)
        return ksp

    def destroy(self):
        """Free the step solvers and remove the PETSc options this scheme set."""
        from petsc4py import PETSc

        for ksp in self._ksps.values():
            ksp.destroy()
        self._ksps = {}
        if self._newton is not None:
            self._newton.free()
            self._newton = None
        opts = PETSc.Options()
        for name in self._set_options:
            opts.delValue(name)
        self._set_options = set()

    def solve_with(self, key, A, rhs, transpose=False):
        ksp = self.ksp(key, A)
        if not hasattr(self, "_bx"):
            self._bx = A.createVecs()
        x, b = self._bx
        b.array[:] = rhs
        if transpose:
            ksp.solveTranspose(b, x)
        else:
            ksp.solve(b, x)
        if ksp.getConvergedReason() < 0:
            raise ConvergenceError(f"FEM step solve {key}: the linear solver failed (reason {ksp.getConvergedReason()})")
        return x.array_r.copy()

    # ------------------------------------------------------------------ Newton
    #: PETSc options prefix of the Newton systems' GMRES (``-mfgpde_fem_newton_ksp_monitor``)
    NEWTON_OPTIONS_PREFIX = "mfgpde_fem_newton_"
    #: what :func:`mfgpde.iterations.newton.newton` passes as the preconditioner's step solver
    step_solver = "petsc"

    def linearisation(self, U, M):
        """The Jacobian at ``(U, M)``: :class:`~mfgpde.fem.linearisation.FEMLinearisation`."""
        return FEMLinearisation(self, U, M)

    def solve_newton_system(self, lin, rhs, rtol, *, maxiter=300, step_solver=None, reuse=None, lag_budget=None):
        """PETSc GMRES on ``J dz = rhs`` with the block-triangular sweep preconditioner.

        Same signature and returns as :func:`mfgpde.fd.krylov.solve_newton_system`
        (``reuse`` is ignored: the step LUs are refactorised once per Newton step).
        """
        if self._newton is None:

            # GMRES (not FGMRES): the preconditioner's step solves are fixed factorisations
            self._newton = ShellNewtonSystem(self.dom.comm, 2 * (self.nt + 1) * self.n, jacobian_product, sweep,
                                             self.NEWTON_OPTIONS_PREFIX, ksp_type="gmres", restart=60, atol=1e-15)
        return self._newton.solve(lin, rhs, rtol, maxiter)

    def allreduce(self, value, op="sum"):
        """Scalar reduction over the mesh's ranks (``"sum"``, ``"min"`` or ``"max"``)."""
        from mpi4py import MPI

        return self.dom.comm.allreduce(value, op={"sum": MPI.SUM, "min": MPI.MIN, "max": MPI.MAX}[op])

    # ------------------------------------------------------------------ sweeps
    def norm(self, R):
        """``max |R|`` over the whole distributed mesh (collective)."""
        return self.dom.max_abs(R)

    def solve_hjb(self, M, *, U_init=None, tol=1e-12, max_newton=MAX_NEWTON):
        """Backward sweep: U for a given density path M (Newton with backtracking per step).

        ``U_init`` is accepted for the common sweep contract and not used: each step starts
        from the value at the next time level.
        """
        from mpi4py import MPI

        nt, dt, comm = self.nt, self.dt, self.dom.comm
        U = np.empty((nt + 1, self.n))
        U[-1] = self.g(M[-1])
        F = self.f(M[1:])
        hjb = self.sources()[0]
        if hjb is not None:
            F = F + hjb[:-1]  # level n sees s_U(t_n), as in the residual
        check_sweep_data(U[-1], F, lambda a: comm.allreduce(bool(np.all(np.isfinite(a))), op=MPI.LAND))
        op_scale = 1.0 / dt + self.nu * float(self.dom.max_abs(self.sum_w))
        total = 0
        for n in range(nt - 1, -1, -1):
            u = U[n + 1].copy()
            rhs = U[n + 1] / dt + F[n]
            atol = round_off_tolerance(tol, max(self.dom.max_abs(rhs), self.dom.max_abs(u) * op_scale))

            def res(v, n=n, rhs=rhs):  # (bound: the level's data)
                _S, d, phi, phiS = self._level(v, M[n + 1])
                return v / dt + self._diffusion(d) + self._transport(n, d) + phi - rhs, (d, phiS)

            def solve(state, b, n=n):
                return self.solve_with("hjb_sweep", self.hjb_matrix(*state, key="sweep", level=n), b)

            U[n], steps = solve_implicit_step(u, res, solve, self.dom.max_abs, atol, max_newton=max_newton, level=n, tol=tol)
            total += steps
        return U, total

    def solve_fp(self, U, *, M_lag=None, exact=True):
        """Forward sweep: m for the value function U (drift lagged in m for congestion H).

        ``exact=False`` solves the steps by ILU-BiCGStab (relative tolerance 1e-12, mass
        restored), which is cheaper than a sparse LU per step; enough for globalisation sweeps.
        """
        M = np.empty((self.nt + 1, self.n))
        M[0] = self.m0
        source = self.sources()[1]
        for n in range(self.nt):
            lag = M[n] if M_lag is None else M_lag[n + 1]
            _S, d, _phi, phiS = self._level(U[n], lag)
            rhs = M[n] / self.dt if source is None else M[n] / self.dt + source[n + 1]
            m = self.solve_with("fp_sweep" if exact else "fp_sweep_ilu", self.fp_matrix(d, phiS, key="sweep", level=n),
                                rhs)
            # the exact step conserves sum mu m (plus dt sum mu s_m with a source: the FP operator's
            # columns sum to zero in the lumped inner product); the iterative solve only to its
            # tolerance: restore it
            total = self.dom.integrate(m)
            if total > 0:
                target = self.dom.integrate(M[n]) + (0.0 if source is None else self.dt * self.dom.integrate(source[n + 1]))
                m *= target / total
            M[n + 1] = m
        return M

    def solve_fp_inexact(self, U, M_lag=None):
        """:meth:`solve_fp` with ILU-BiCGStab steps: the globalisation sweeps' forward half."""
        return self.solve_fp(U, M_lag=M_lag, exact=False)
