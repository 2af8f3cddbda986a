"""The ergodic (stationary) MFG on a mesh: the P1 edge scheme for the driver of :mod:`mfgpde.iterations.pseudo_transient`.

Unknowns ``(u, m, rho)`` at the vertices; equations (lumped masses ``mu_i``, the operators of
:mod:`mfgpde.fem.scheme` at one time level)

    rho + nu (L u)_i + (B u)_i + phi(S_i(u), m_i) - f[m]_i = 0                    (HJB)
    nu (L^* m)_i + (B^* m)_i + (A(u)^* m)_i = 0,   except the last row:           (FP)
    sum_i mu_i m_i = 1                                                              (mass)
    sum_i mu_i u_i = 0                                                              (mean)

so the discrete operators, their monotonicity and adjoint structure are those of the
time-dependent mesh scheme. The globalisation (pseudo-transient continuation to Newton, floor
continuation for log couplings) is the one of :func:`mfgpde.iterations.pseudo_transient.pseudo_transient_newton`.

Parallel layout: each rank computes the residual and the Jacobian rows of its own vertices
(ghost exchange as in the time-dependent scheme); the iterate ``z`` is replicated (2N + 1
numbers), and the bordered Newton systems are gathered and factorised on rank 0, whose step is
broadcast. This keeps serial and ``mpiexec`` runs identical; the linear algebra is not
distributed (fine to ~10^5 vertices in 2D; a distributed bordered solve is future work).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp

from ..couplings import ZeroCoupling
from ..io import save_netcdf
from ..iterations.pseudo_transient import bordered_solve, pseudo_time_matrix, pseudo_transient_newton
from ..result import ErgodicResult
from .scheme import FEMScheme


def _local_csr(A, shift_cols=0, minus_identity=False, start=0):
    """The owned rows of a PETSc matrix as scipy CSR ``(n_local, ncols)`` with global columns."""
    indptr, cols, vals = A.getValuesCSR()
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    vals = np.array(vals, float)
    if minus_identity:                       # the step matrices carry I/dt with dt = 1
        vals[cols == rows + start] -= 1.0
    return rows, np.asarray(cols, np.int64) + shift_cols, vals


class MeshErgodic:
    """The ergodic system on a :class:`~mfgpde.fem.domain.MeshDomain` (see the module docstring)."""

    def __init__(self, problem):
        self.problem = problem
        self.dom = dom = problem.grid
        self.comm = dom.comm
        self.N, self.n, self.start = dom.size, dom.n, dom.start
        proxy = SimpleNamespace(grid=dom, nt=1, T=1.0, dt=1.0, nu=problem.nu, drift=problem.drift,
                                hamiltonian=problem.hamiltonian, coupling=problem.coupling, terminal=ZeroCoupling(),
                                m0=np.ones(dom.n))
        self.sc = FEMScheme(proxy)
        self.positive = problem.hamiltonian.needs_positive_density
        self.mu = dom.allgather(dom.mu)
        self.coords = dom.allgather(dom.coords)

    def integrate(self, values):
        return float(np.dot(self.mu, values))

    def _owned(self, z):
        s, n, N = self.start, self.n, self.N
        return z[s:s + n], z[N + s:N + s + n], z[-1]

    def residual(self, z):
        sc, dom = self.sc, self.dom
        u, m, rho = self._owned(z)
        _S, d, phi, phiS = self.sc._level(u, m)
        Ru = rho + sc._diffusion(d) + sc._transport(0, d) + phi - sc.f(m)
        me = dom.exchange(m)
        Rm = (sc._diffusion(me[dom.rows] - me[dom.cols]) + sc._transport_adjoint_m(0, me)
              + sc.transport_adjoint(d, phiS * m))
        # the sources at the owned dofs (lumped), as in the time-dependent mesh scheme
        if getattr(self.problem, "hjb_source", None) is not None:
            Ru = Ru - self.problem.hjb_source
        if getattr(self.problem, "fp_source", None) is not None:
            Rm = Rm - self.problem.fp_source
        Ru, Rm = self.dom.allgather(Ru), self.dom.allgather(Rm)
        Rm[-1] = self.integrate(z[self.N:2 * self.N]) - 1.0
        return np.concatenate([Ru, Rm, [self.integrate(z[:self.N])]])

    def jacobian(self, z):
        """The bordered Jacobian, assembled on rank 0 (None on the other ranks)."""
        sc, Hm, N, s = self.sc, self.problem.hamiltonian, self.N, self.start
        self.pin = int(np.argmax(z[N:2 * N]))   # the bordered solve pins the largest density
        u, m, _ = self._owned(z)
        S, d, _phi, phiS = self.sc._level(u, m)
        blocks = []
        # HJB rows: d/du (I/dt removed), d/dm (diagonal), d/drho = 1
        blocks.append(("hjb", _local_csr(sc.hjb_matrix(d, phiS), 0, True, s)))
        jum = Hm.phi_m(S, m) - sc.df(m)
        blocks.append(("hjb", (np.arange(self.n), N + s + np.arange(self.n), jum)))
        # FP rows: d/dm (I/dt removed), d/du (Hessian block; plus D^T c2 D when phi is nonlinear in S)
        blocks.append(("fp", _local_csr(sc.fp_matrix(d, phiS + m * Hm.phi_Sm(S, m)), N, True, s)))
        blocks.append(("fp", _local_csr(sc.hessian_matrix(d, phiS * m), 0, False, s)))
        c2 = Hm.phi_SS(S, m) * m
        D = _local_csr(sc.ds_matrix(d), 0, False, s)
        gathered = self.comm.gather((s, blocks, D, c2), root=0)
        if self.comm.rank != 0:
            return None
        size = 2 * N + 1
        rows, cols, vals = [], [], []
        Dr, Dc, Dv, c2g = [], [], [], []
        for start, blks, (dr, dc, dv), c2l in sorted(gathered, key=lambda t: t[0]):
            for kind, (r, c, v) in blks:
                rows.append(r + start + (N if kind == "fp" else 0))
                cols.append(c)
                vals.append(v)
            Dr.append(dr + start)
            Dc.append(dc)
            Dv.append(dv)
            c2g.append(c2l)
        rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        c2g = np.concatenate(c2g)
        # the Hessian of the FP transport when phi is nonlinear in S: mu^-1 D^T diag(c2 mu) D
        extra = None
        if np.any(c2g != 0):
            Dm = sp.csr_matrix((np.concatenate(Dv), (np.concatenate(Dr), np.concatenate(Dc))), shape=(N, N))
            extra = sp.diags(1.0 / self.mu) @ Dm.T @ sp.diags(c2g * self.mu) @ Dm
        keep = rows != 2 * N - 1                        # the last FP row becomes the mass row
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        ar = np.arange(N)
        rows = np.concatenate([rows, ar, np.full(N, 2 * N - 1), np.full(N, 2 * N)])
        cols = np.concatenate([cols, np.full(N, 2 * N), N + ar, ar])
        vals = np.concatenate([vals, np.ones(N), self.mu, self.mu])
        J = sp.csr_matrix((vals, (rows, cols)), shape=(size, size))
        if extra is not None:
            extra = extra.tolil()
            extra[N - 1, :] = 0.0
            J = J + sp.bmat([[sp.csr_matrix((N, N)), None, None], [extra.tocsr(), sp.csr_matrix((N, N)), None],
                             [None, None, sp.csr_matrix((1, 1))]])
        return J.tocsc()

    def solve(self, J, r, dtau):
        """The pseudo-transient step, factorised on rank 0 and broadcast."""
        out = None
        if self.comm.rank == 0:
            try:
                out = bordered_solve(pseudo_time_matrix(J, self.N, dtau), r, self.N, pin=self.pin)
            except RuntimeError as exc:
                out = exc
        out = self.comm.bcast(out, root=0)
        if isinstance(out, Exception):
            raise out
        return out

    def result(self, u, m, rho, history, diagnostics):
        diagnostics = dict(diagnostics, backend="fem", dofs=int(self.N), ranks=int(self.comm.size))
        return ErgodicMeshResult(self.problem, u, m, rho, self.coords, history, diagnostics)


class ErgodicMeshResult(ErgodicResult):
    """Solution ``(u, m, rho)`` of an ergodic MFG on a mesh; ``u``, ``m`` and ``coords`` hold
    every vertex (global dof order) on every rank.
    """

    backend = "fem-ergodic"

    def __init__(self, problem, u, m, rho, coords, history, diagnostics):
        super().__init__(problem, u, m, float(rho), history, diagnostics)
        self.coords = coords

    def save(self, path):
        """NetCDF with one ``vertex`` dimension: u, m and the coordinates (atomic write)."""
        import xarray as xr

        names = ["x", "y", "z"][: self.coords.shape[1]]
        data = {"u": ("vertex", self.u), "m": ("vertex", self.m)}
        data.update({k: ("vertex", self.coords[:, i]) for i, k in enumerate(names)})
        ds = xr.Dataset(data, attrs={"rho": self.rho, "mfgpde_diagnostics": json.dumps(self.diagnostics, default=float),
                                     "mfgpde_problem": json.dumps(self.problem.describe(), default=str)})
        return save_netcdf(ds, path)


def solve_ergodic_mesh(problem, *, tol=1e-10, max_iter=200, verbose=None, initial=None):
    """Solve an :class:`~mfgpde.ErgodicMFGProblem` on a mesh (see the module docstring).

    Returns
    -------
    ErgodicMeshResult
    """
    if problem.grid.comm.rank != 0:
        verbose = False
    return pseudo_transient_newton(problem, MeshErgodic, tol=tol, max_iter=max_iter, verbose=verbose,
                                   initial=initial)
