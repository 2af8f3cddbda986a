"""The monotone finite-difference discretisation of the time-dependent MFG system.

Unknowns ``U^n, m^n`` (n = 0..N_t) on the grid, ``dt = T / N_t``. With ``L_n = -nu Lap_h -
b(t_n) . grad_h`` (upwinded drift) and the numerical Hamiltonian ``H_h(U)_i = phi(S_i(U), m_i)``
(see :mod:`mfgpde.hamiltonians`), the discrete equations are (Achdou & Capuzzo-Dolcetta 2010)

    HJB, n < N_t:  (U^n - U^{n+1}) / dt + L_n U^n + phi(S(U^n), m^{n+1}) - f[m^{n+1}] = 0
    HJB, n = N_t:  U^{N_t} - g[m^{N_t}] = 0
    FP,  n = 0:    m^0 - m0 = 0
    FP,  n >= 0:   (m^{n+1} - m^n) / dt + L_n^T m^{n+1} + A_n^T m^{n+1} = 0,

where ``A_n = diag(phi_S(S(U^n), m^{n+1})) dS/dU(U^n)`` is the linearisation of
``U -> phi(S(U), m)`` at ``U^n``. The FP operator is the adjoint of the linearised HJB
operator: rows of ``L_n + A_n`` sum to zero (it only sees differences of U), so the columns of
the FP matrix sum to ``1/dt`` and ``sum_i m_i^{n+1} = sum_i m_i^n`` exactly; the FP matrix is
the transpose of an M-matrix, so ``m^{n+1} >= 0`` whenever ``m^n >= 0``.

This module produces residuals, Jacobians and the two half-sweeps (backward HJB, forward FP);
the iterations in :mod:`mfgpde.iterations` consume them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..iterations.implicit_step import MAX_NEWTON, check_sweep_data, round_off_tolerance, solve_implicit_step
from . import kernels
from .krylov import solve_newton_system
from .linear import ITERATIVE_RTOL, solve_stencil
from .linearisation import Linearisation
from .multigrid import Hierarchy
from .steps import SpectralInverse, stencil_matrix

#: A loose HJB sweep (``tol >= 1e-6``: a starting guess) solves its linear systems to this
#: factor times ``tol``, relative, instead of to 1e-13.
LOOSE_RTOL_FACTOR = 1e-3


class FDScheme:
    """Residuals, Jacobian and half-sweeps of the monotone scheme for an :class:`MFGProblem`.

    Parameters
    ----------
    problem : MFGProblem
    linear_solver : {"auto", "direct", "iterative"}
        Solver of the per-step spatial systems, in the half-sweeps and in the Newton
        preconditioner: sparse LU, or the FFT/DCT-preconditioned iterations of
        :mod:`mfgpde.fd.steps`. ``"auto"`` factorises small grids and iterates on large ones.
    """

    def __init__(self, problem, linear_solver="auto"):
        self.problem = problem
        self.grid = g = problem.grid
        self.N = g.size
        self.nt = problem.nt
        self.dt = problem.dt
        if linear_solver not in ("auto", "direct", "iterative"):
            raise ValueError(f"linear_solver must be 'auto', 'direct' or 'iterative', got {linear_solver!r}")
        self.linear_solver = linear_solver
        cols, hm, hp = g.stencil
        hm, hp = hm.astype(float), hp.astype(float)  # bool + bool would be a logical or
        self.cols = cols
        self.s = cols.shape[1]
        # -nu Lap: centre sum_k nu (hm + hp)/h^2, neighbours -nu/h^2 where they exist.
        lap = np.zeros((self.N, self.s))
        for k, h in enumerate(g.h):
            lap[:, 1 + 2 * k] = -problem.nu * hm[k] / h**2
            lap[:, 2 + 2 * k] = -problem.nu * hp[k] / h**2
            lap[:, 0] += problem.nu * (hm[k] + hp[k]) / h**2
        self._diffusion = lap
        self._linear_cache = {}
        self.x = g.coordinates()

    # ----------------------------------------------------------------- operators
    def linear_stencil(self, n):
        """Stencil of ``L_n = -nu Lap_h - b(t_n) . grad_h`` (drift upwinded), shape (N, s)."""
        drift = self.problem.drift
        if drift is None:
            return self._diffusion
        key = 0 if not drift.time_dependent else n
        if key not in self._linear_cache:
            b = drift.at(n * self.dt).reshape(self.grid.dim, self.N)
            _, hm, hp = self.grid.stencil
            hm, hp = hm.astype(float), hp.astype(float)
            vals = self._diffusion.copy()
            for k, h in enumerate(self.grid.h):
                bp, bn = np.maximum(b[k], 0) * hp[k], np.minimum(b[k], 0) * hm[k]
                # -b . grad u  ~  -b^+ D^+ u - b^- D^- u  (monotone upwinding)
                vals[:, 0] += (bp - bn) / h
                vals[:, 2 + 2 * k] -= bp / h
                vals[:, 1 + 2 * k] += bn / h
            if len(self._linear_cache) > 4 * self.nt + 8:
                self._linear_cache.clear()
            self._linear_cache[key] = vals
        return self._linear_cache[key]

    def linear_stencils(self, K):
        """Stacked ``L_n`` for n = 0..K-1, shape (K, N, s)."""
        if self.problem.drift is None:
            return np.broadcast_to(self._diffusion, (K, self.N, self.s))
        return np.stack([self.linear_stencil(n) for n in range(K)])

    def csr(self, vals):
        """Block-diagonal CSR matrix of a stack of stencil operators ``vals`` (K, N, s)."""
        return stencil_matrix(vals, self.cols)

    def difference_matrices(self):
        """Backward and forward difference matrices per axis (zero rows across walls)."""
        if not hasattr(self, "_diffs"):
            cols, hm, hp = self.grid.stencil
            hm, hp = hm.astype(float), hp.astype(float)
            rows = np.arange(self.N)
            Gb, Gf = [], []
            for k, h in enumerate(self.grid.h):
                Gb.append(sp.csr_matrix((np.r_[hm[k], -hm[k]] / h, (np.r_[rows, rows], np.r_[rows, cols[:, 1 + 2 * k]])),
                                        shape=(self.N, self.N)))
                Gf.append(sp.csr_matrix((np.r_[hp[k], -hp[k]] / h, (np.r_[rows, rows], np.r_[cols[:, 2 + 2 * k], rows])),
                                        shape=(self.N, self.N)))
            self._diffs = (Gb, Gf)
        return self._diffs

    # ----------------------------------------------------------------- couplings
    def f(self, m):
        return self.problem.coupling.value(m.reshape((-1,) + self.grid.shape), self.grid).reshape(m.shape)

    def df(self, m):
        return self.problem.coupling.derivative(m.reshape((-1,) + self.grid.shape), self.grid).reshape(m.shape)

    def g(self, mT):
        return self.problem.terminal.value(mT.reshape(self.grid.shape), self.grid).ravel()

    def dg(self, mT):
        return self.problem.terminal.derivative(mT.reshape(self.grid.shape), self.grid).ravel()

    # ----------------------------------------------------------------- residual
    def hamiltonian_parts(self, U, Mnext):
        """S, one-sided parts and phi, phi_S of ``H_h(U^n, m^{n+1})`` for stacked slices."""
        S, ap, bm = kernels.upwind_square(U, self.grid)
        Hm = self.problem.hamiltonian
        return S, ap, bm, Hm.phi(S, Mnext), Hm.phi_S(S, Mnext)

    def residual(self, U, M):
        """Residuals ``(R_U, R_m)`` of the discrete system, each of shape (N_t + 1, N)."""
        nt, dt = self.nt, self.dt
        Un, Mn1 = U[:-1], M[1:]
        _S, ap, bm, phi, phiS = self.hamiltonian_parts(Un, Mn1)
        Lv = self.linear_stencils(nt)
        RU = np.empty_like(U)
        RU[:-1] = (Un - U[1:]) / dt + kernels.apply_stencil(Lv, self.grid, Un) + phi - self.f(Mn1)
        if self.problem.hjb_source is not None:
            RU[:-1] -= self.problem.hjb_source[:-1]
        RU[-1] = U[-1] - self.g(M[-1])
        A = kernels.dS_stencil(ap, bm, self.grid, phiS)
        Rm = np.empty_like(M)
        Rm[0] = M[0] - self.problem.m0.ravel()
        Rm[1:] = (Mn1 - M[:-1]) / dt + kernels.apply_stencil(Lv, self.grid, Mn1, transpose=True) \
            + kernels.apply_stencil(A, self.grid, Mn1, transpose=True)
        if self.problem.fp_source is not None:
            Rm[1:] -= self.problem.fp_source[1:]
        return RU, Rm

    # ----------------------------------------------------------------- Jacobian
    def jacobian(self, U, M):
        """Analytic sparse Jacobian of ``(R_U, R_m)`` with respect to ``(U, m)`` (CSC).

        Blocks (slices n = 0..N_t-1 couple U^n, U^{n+1}, m^{n+1}):

        * dR_U^n/dU^n = I/dt + L_n + diag(phi_S) D_n,  dR_U^n/dU^{n+1} = -I/dt
        * dR_U^n/dm^{n+1} = diag(phi_m - f'(m^{n+1})),  dR_U^{N_t}/dm^{N_t} = -diag(g')
        * dR_m^{n+1}/dm^{n+1} = I/dt + L_n^T + D_n^T diag(phi_S + m phi_Sm),  dR_m^{n+1}/dm^n = -I/dt
        * dR_m^{n+1}/dU^n = D_n^T diag(phi_SS m) D_n + sum_k G_k^T diag(2 phi_S m 1[upwind]) G_k

        with ``D_n = dS/dU`` at ``U^n`` and ``G_k`` the one-sided difference matrices. A nonlocal
        coupling contributes only its local part (quasi-Newton). Newton-Krylov applies the same
        matrix without assembling it (:meth:`linearisation`); this assembled form serves the
        direct solver and the tests.
        """
        nt, dt, N = self.nt, self.dt, self.N
        Hm = self.problem.hamiltonian
        Un, Mn1 = U[:-1], M[1:]
        S, ap, bm, _phi, phiS = self.hamiltonian_parts(Un, Mn1)
        Lv = self.linear_stencils(nt)
        eye_c = np.zeros((1, N, self.s))
        eye_c[0, :, 0] = 1.0
        size = (nt + 1) * N

        # dR_U/dU: block-diagonal part, then the -I/dt super-diagonal
        vals_uu = Lv + kernels.dS_stencil(ap, bm, self.grid, phiS)
        vals_uu[:, :, 0] += 1.0 / dt
        JUU = self.csr(np.concatenate([vals_uu, eye_c])) - sp.diags(np.full(nt * N, 1.0 / dt), N, shape=(size, size))
        # dR_U/dm
        dUm = (Hm.phi_m(S, Mn1) - self.df(Mn1)).ravel()
        JUm = sp.diags([np.r_[np.zeros(nt * N), -self.dg(M[-1])], dUm], [0, N], shape=(size, size))
        # dR_m/dm
        c = phiS + Mn1 * Hm.phi_Sm(S, Mn1)
        vals_mm = kernels.dS_stencil(ap, bm, self.grid, c) + Lv
        vals_mm[:, :, 0] += 1.0 / dt
        B = self.csr(vals_mm).T
        Jmm = sp.block_diag([sp.identity(N), B], format="csr") - sp.diags(np.full(nt * N, 1.0 / dt), -N,
                                                                        shape=(size, size))
        # dR_m/dU: Hessian of the numerical Hamiltonian weighted by m
        JmU = sp.bmat([[None, sp.csr_matrix((N, N))], [self.hessian_matrix(S, ap, bm, phiS, Mn1), None]], format="csr")
        return sp.bmat([[JUU, JUm], [JmU, Jmm]], format="csc")

    def hessian_matrix(self, S, ap, bm, phiS, M):
        """The Hessian block ``d(A(U, m)^T m)/dU`` of the FP rows, assembled (sparse).

        Block-diagonal over the ``K`` slices of the Hamiltonian parts at ``(U, M)`` (``S``,
        ``phiS``, ``M``: (K, N); ``ap``, ``bm``: (K, d, N)), with the upwind switches frozen:

            D^T diag(phi_SS m) D + sum_k G_k^-T diag(2 phi_S m 1[D_k^- U > 0]) G_k^-
                                 + G_k^+T diag(2 phi_S m 1[D_k^+ U < 0]) G_k^+

        The time-dependent Jacobian (K = N_t) and the ergodic one (K = 1) use it;
        :class:`mfgpde.fd.linearisation.Linearisation` applies the same block matrix-free.
        """
        K = S.shape[0]
        D = self.csr(kernels.dS_stencil(ap, bm, self.grid))
        w = (phiS * M).ravel()
        H = D.T @ sp.diags((self.problem.hamiltonian.phi_SS(S, M) * M).ravel()) @ D
        Gb, Gf = self.difference_matrices()
        I_t = sp.identity(K, format="csr")
        for k in range(self.grid.dim):
            wa = 2.0 * w * (ap[:, k, :].ravel() > 0)
            wb = 2.0 * w * (bm[:, k, :].ravel() < 0)
            GbK, GfK = sp.kron(I_t, Gb[k], format="csr"), sp.kron(I_t, Gf[k], format="csr")
            H = H + GbK.T @ sp.diags(wa) @ GbK + GfK.T @ sp.diags(wb) @ GfK
        return H

    def linearisation(self, U, M):
        """The Jacobian at ``(U, M)`` as stencils, applied matrix-free (:mod:`.linearisation`)."""
        return Linearisation(self, U, M)

    #: the space-time Jacobian can be assembled, so Newton may factorise it (``linear="direct"``)
    assembles_jacobian = True

    def solve_newton_system(self, lin, rhs, rtol, *, maxiter=400, step_solver="auto", sweeps=3, reuse=None,
                            lag_budget=None):
        """``J dz = rhs`` by GMRES with the block-triangular sweep preconditioner
        (:func:`mfgpde.fd.krylov.solve_newton_system`, whose signature and returns every scheme's
        ``solve_newton_system`` shares).
        """
        return solve_newton_system(lin, rhs, rtol, maxiter=maxiter, step_solver=step_solver, sweeps=sweeps,
                                   reuse=reuse, lag_budget=lag_budget)

    def spectral_inverse(self, workers=None):
        """FFT/DCT inverse of ``a I + nu(-Lap_h)`` on this grid (cached; see :mod:`.steps`)."""
        if getattr(self, "_spectral", None) is None:
            self._spectral = SpectralInverse(self.grid, self.problem.nu, workers=workers)
        return self._spectral

    def hierarchy(self):
        """Aggregation multigrid levels of this grid (cached; see :mod:`.multigrid`)."""
        if getattr(self, "_hierarchy", None) is None:
            self._hierarchy = Hierarchy(self.grid.shape)
        return self._hierarchy

    # ----------------------------------------------------------------- sweeps
    def norm(self, R):
        """``max |R|`` (the serial grid's max-norm; distributed schemes reduce over ranks)."""
        return float(np.abs(R).max())

    def solve_hjb(self, M, *, U_init=None, tol=1e-12, max_newton=MAX_NEWTON):
        """Backward sweep: U solving the discrete HJB for a given density path M.

        Each implicit step is a nonlinear system solved by Newton with backtracking
        (``phi`` convex in S makes it converge from the previous step's value). Its linear
        solves are exact (or iterative to 1e-13) for the default ``tol``; for a loose ``tol``
        (a starting guess, ``tol >= 1e-6``) the iterative ones stop at ``1e-3 tol`` relative,
        which changes Newton's rate but not the level's stopping test on ``max |G_n|``.

        Returns
        -------
        U : ndarray (N_t + 1, N)
        newton_steps : int
            Total inner Newton steps.
        """
        nt, dt, N = self.nt, self.dt, self.N
        U = np.empty((nt + 1, N))
        U[-1] = self.g(M[-1])
        F = self.f(M[1:])
        if self.problem.hjb_source is not None:
            F = F + self.problem.hjb_source[:-1]  # level n sees s_U(t_n), as in the residual
        check_sweep_data(U[-1], F)
        rtol = LOOSE_RTOL_FACTOR * tol if tol >= 1e-6 else None
        total = 0
        for n in range(nt - 1, -1, -1):
            u = U[n + 1].copy() if U_init is None else U_init[n].copy()
            mnext = M[n + 1][None, :]
            L = self.linear_stencil(n)
            rhs = U[n + 1] / dt + F[n]
            op_scale = np.abs(L).sum(axis=1).max() + 1.0 / dt
            atol = round_off_tolerance(tol, max(np.abs(rhs).max(), op_scale * np.abs(u).max()))

            def res(v, L=L, mnext=mnext, rhs=rhs):  # (bound: the level's data)
                _S, ap, bm, phi, phiS = self.hamiltonian_parts(v[None, :], mnext)
                r = v / dt + kernels.apply_stencil(L[None], self.grid, v[None, :])[0] + phi[0] - rhs
                return r, (ap, bm, phiS)

            def solve(state, b, L=L):
                ap, bm, phiS = state
                vals = kernels.dS_stencil(ap, bm, self.grid, phiS) + L[None]
                vals[0, :, 0] += 1.0 / dt
                return self.step_solve(vals[0], b, rtol=rtol)

            U[n], steps = solve_implicit_step(u, res, solve, self.norm, atol, max_newton=max_newton, level=n, tol=tol)
            total += steps
        return U, total

    def step_solve(self, vals, rhs, *, transpose=False, rtol=None):
        """Solve ``A x = rhs`` (or ``A^T x = rhs``) for one stencil operator ``vals`` (N, s).

        1D: a cyclic tridiagonal solve compiled with Numba; 2D/3D: sparse LU (or BiCGSTAB
        for large grids, see :func:`mfgpde.fd.linear.solve_stencil`), to the relative
        residual ``rtol`` (default :data:`mfgpde.fd.linear.ITERATIVE_RTOL`).
        """
        vals = np.ascontiguousarray(vals)
        rhs = np.ascontiguousarray(rhs, dtype=float)
        if self.grid.dim == 1:
            try:
                return kernels.tri_solve(vals, rhs, transpose)
            except ZeroDivisionError:
                raise FloatingPointError(f"a step matrix is singular to working precision (a zero pivot) with dt = "
                                         f"{self.dt:.3g}, nu = {self.problem.nu:g}, h = {self.grid.h[0]:.3g}: check that "
                                         "T / nt and the data are of sensible size") from None
        spectral = self.spectral_inverse() if self.problem.nu > 0 else None
        return solve_stencil(vals, self.cols, rhs, transpose, self.linear_solver, self.csr, spectral=spectral, dt=self.dt,
                             rtol=ITERATIVE_RTOL if rtol is None else rtol)

    @property
    def step_solver(self):
        """The per-step solver of the Newton preconditioner (:func:`mfgpde.fd.steps.step_inverses`)."""
        return {"auto": "auto", "direct": "lu", "iterative": "spectral"}[self.linear_solver]

    def fp_stencil(self, U_n, m_lag, n):
        """Stencil of ``I/dt + L_n + A_n``; the implicit FP step solves with its transpose."""
        _S, ap, bm, _phi, phiS = self.hamiltonian_parts(U_n[None, :], m_lag[None, :])
        vals = kernels.dS_stencil(ap, bm, self.grid, phiS) + self.linear_stencil(n)[None]
        vals[0, :, 0] += 1.0 / self.dt
        return vals[0]

    def solve_fp(self, U, *, M_lag=None, rtol=None):
        """Forward sweep: m solving the discrete FP for the value function U.

        For congestion Hamiltonians (H depending on m) the drift uses ``M_lag[n+1]``; at a
        fixed point ``M_lag = m`` and the coupled equations hold exactly. ``rtol``: relative
        residual of the iterative step solves (default 1e-13; a starting guess may ask for
        less); the mass is restored exactly either way.
        """
        nt, dt = self.nt, self.dt
        M = np.empty((nt + 1, self.N))
        M[0] = self.problem.m0.ravel()
        source = self.problem.fp_source
        for n in range(nt):
            lag = M[n] if M_lag is None else M_lag[n + 1]
            rhs = M[n] / dt if source is None else M[n] / dt + source[n + 1]
            m = self.step_solve(self.fp_stencil(U[n], lag, n), rhs, transpose=True, rtol=rtol)
            if self.grid.dim > 1:
                # an iterative solve conserves mass only to its tolerance (~1e-13); the exact
                # solution conserves it (plus dt int s_m with a source: the columns of the FP
                # matrix sum to 1/dt) to round-off, so restore it (a relative change ~1e-13)
                total = m.sum()
                target = M[n].sum() + (0.0 if source is None else dt * source[n + 1].sum())
                if total > 0 and target > 0:
                    m *= target / total
            M[n + 1] = m
        return M
