"""Newton's method for the ergodic (stationary) MFG.

Unknowns ``(u, m, rho)`` on the grid; equations

    rho + L u + phi(S(u), m) - f[m] = 0                 (N rows, HJB)
    L^T m + A(u, m)^T m = 0                              (N - 1 rows, FP; one is redundant)
    h^d sum_i m_i = 1                                    (mass, replaces the last FP row)
    h^d sum_i u_i = 0                                    (fixes the additive constant of u)

with ``L = -nu Lap_h - b . grad_h`` and ``A = diag(phi_S) dS/du`` as in the time-dependent
scheme, so the same monotonicity and adjoint structure hold.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .couplings import ZeroCoupling
from .fd import kernels
from .fd.scheme import FDScheme
from .iterations.base import IterationLog


class ErgodicResult:
    """Solution ``(u, m, rho)`` of an ergodic MFG with its history and diagnostics."""

    def __init__(self, problem, u, m, rho, history, diagnostics):
        self.problem, self.grid = problem, problem.grid
        self.u, self.m, self.rho = u, m, rho
        self.history, self.diagnostics = history, diagnostics

    @property
    def converged(self):
        return self.diagnostics["converged"]

    def summary(self):
        out = dict(self.diagnostics)
        out["rho"] = float(self.rho)
        out["problem"] = self.problem.describe()
        return out

    def __repr__(self):
        d = self.diagnostics
        return f"ErgodicResult(status={d['status']}, rho={self.rho:.6g}, iterations={d['iterations']}, residual={d['residual']:.2e})"

    def save(self, path):
        import json

        import xarray as xr

        from .result import save_netcdf

        names = ["x", "y", "z"][: self.grid.dim]
        ds = xr.Dataset({"u": (names, self.u), "m": (names, self.m)},
                        coords=dict(zip(names, self.grid.axes)),
                        attrs={"rho": float(self.rho), "mfgpde_diagnostics": json.dumps(self.diagnostics, default=float),
                               "mfgpde_problem": json.dumps(self.problem.describe(), default=str)})
        return save_netcdf(ds, path)

    def plot(self, path=None):
        from .plotting import _mpl, save_figure

        plt = _mpl()
        fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
        g = self.grid
        for a, (field, name) in zip(ax[:2], ((self.m, "m"), (self.u, "u"))):
            if g.dim == 1:
                a.plot(g.axes[0], field)
            else:
                sec = field if g.dim == 2 else field[..., g.shape[2] // 2]
                im = a.pcolormesh(g.axes[0], g.axes[1], sec.T, shading="auto")
                fig.colorbar(im, ax=a)
            a.set_title(f"{name} (ergodic, rho={self.rho:.4g})")
        ax[2].semilogy([r["residual"] for r in self.history], "o-")
        ax[2].set(xlabel="Newton iteration", title="residual")
        fig.tight_layout()
        return fig if path is None else save_figure(fig, path)


def _scheme(problem):
    proxy = SimpleNamespace(grid=problem.grid, nt=1, T=1.0, dt=1.0, nu=problem.nu, drift=problem.drift,
                            hamiltonian=problem.hamiltonian, coupling=problem.coupling, terminal=ZeroCoupling(),
                            m0=np.ones(problem.grid.shape))
    return FDScheme(proxy)


def _residual(sc, problem, u, m, rho):
    g = problem.grid
    S, ap, bm, phi, phiS = sc.hamiltonian_parts(u[None], m[None])
    L = sc.linear_stencil(0)[None]
    f = problem.coupling.value(m.reshape(g.shape), g).ravel()
    Ru = rho + kernels.apply_stencil(L, g, u[None])[0] + phi[0] - f
    A = kernels.dS_stencil(ap, bm, g, phiS)
    Rm = kernels.apply_stencil(L, g, m[None], transpose=True)[0] + kernels.apply_stencil(A, g, m[None], transpose=True)[0]
    Rm[-1] = g.cell_volume * m.sum() - 1.0
    Rc = g.cell_volume * u.sum()
    return Ru, Rm, Rc


def solve_ergodic(problem, tol=1e-10, max_iter=50, verbose=None, initial=None):
    """Solve an :class:`ErgodicMFGProblem` by Newton's method.

    Returns
    -------
    ErgodicResult
    """
    t0 = time.perf_counter()
    g = problem.grid
    N, hd = g.size, g.cell_volume
    sc = _scheme(problem)
    Hm = problem.hamiltonian
    if initial is None:
        u, m, rho = np.zeros(N), np.full(N, 1.0 / (N * hd)), 0.0
    else:
        u, m, rho = (np.asarray(initial[0], float).ravel(), np.asarray(initial[1], float).ravel(), float(initial[2]))
    log = IterationLog("ergodic_newton", verbose)
    Ru, Rm, Rc = _residual(sc, problem, u, m, rho)
    status = "max_iter"
    ones = np.full((1, N), hd)
    for k in range(max_iter + 1):
        res = log.record(k, np.abs(Ru).max(), max(np.abs(Rm).max(), abs(Rc)))
        if res <= tol:
            status = "converged"
            break
        if k == max_iter:
            break
        S, ap, bm, phi, phiS = sc.hamiltonian_parts(u[None], m[None])
        Lv = sc.linear_stencil(0)[None]
        Juu = sc.csr(Lv + kernels.dS_stencil(ap, bm, g, phiS))
        Jum = sp.diags((Hm.phi_m(S, m[None]) - problem.coupling.derivative(m.reshape(g.shape), g).ravel()[None]).ravel())
        c = phiS + m[None] * Hm.phi_Sm(S, m[None])
        Jmm = sc.csr(Lv + kernels.dS_stencil(ap, bm, g, c)).T.tolil()
        D = sc.csr(kernels.dS_stencil(ap, bm, g))
        w = (phiS * m[None]).ravel()
        H2 = D.T @ sp.diags((Hm.phi_SS(S, m[None]) * m[None]).ravel()) @ D
        Gb, Gf = sc.difference_matrices()
        for kk in range(g.dim):
            H2 = H2 + Gb[kk].T @ sp.diags(2 * w * (ap[0, kk] > 0)) @ Gb[kk] + Gf[kk].T @ sp.diags(2 * w * (bm[0, kk] < 0)) @ Gf[kk]
        H2 = H2.tolil()
        Jmm[N - 1, :] = ones
        H2[N - 1, :] = 0.0
        col1 = np.ones((N, 1))
        J = sp.bmat([[Juu, Jum, col1], [H2.tocsr(), Jmm.tocsr(), None], [ones, None, None]], format="csc")
        R = np.concatenate([Ru, Rm, [Rc]])
        dz = spla.spsolve(J, -R)
        if not np.all(np.isfinite(dz)):
            status = "singular_jacobian"
            break
        du, dm, dr = dz[:N], dz[N:2 * N], dz[-1]
        step = 1.0
        neg = dm < 0
        if np.any(neg):  # keep m > 0: needed by log couplings, and a density anyway
            step = min(1.0, 0.95 * float(np.min(m[neg] / -dm[neg])))
        merit = np.sqrt(np.sum(R**2))
        while True:
            uc, mc, rc = u + step * du, m + step * dm, rho + step * dr
            Ruc, Rmc, Rcc = _residual(sc, problem, uc, mc, rc)
            if np.sqrt(np.sum(Ruc**2) + np.sum(Rmc**2) + Rcc**2) <= (1 - 1e-4 * step) * merit:
                break
            step *= 0.5
            if step < 2.0**-14:
                status = "stagnated"
                break
        if status == "stagnated":
            break
        u, m, rho, Ru, Rm, Rc = uc, mc, rc, Ruc, Rmc, Rcc
    last = log.records[-1]
    diag = {"converged": status == "converged", "status": status, "method": "newton",
            "iterations": last["iteration"], "residual": last["residual"], "hjb_residual": last["hjb_residual"],
            "fp_residual": last["fp_residual"], "mass_error": abs(hd * m.sum() - 1.0), "min_density": float(m.min()),
            "wall_time_s": time.perf_counter() - t0}
    return ErgodicResult(problem, u.reshape(g.shape), m.reshape(g.shape), float(rho), log.records, diag)
