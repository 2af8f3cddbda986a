"""The ergodic (stationary) MFG: pseudo-transient continuation to Newton's method.

Unknowns ``(u, m, rho)`` on the grid; equations

    rho + L u + phi(S(u), m) - f[m] = 0                 (N rows, HJB)
    L^T m + A(u, m)^T m = 0                              (N - 1 rows, FP; one is redundant)
    h^d sum_i m_i = 1                                    (mass, replaces the last FP row)
    h^d sum_i u_i = 0                                    (fixes the additive constant of u)

with ``L = -nu Lap_h - b . grad_h`` and ``A = diag(phi_S) dS/du`` as in the time-dependent
scheme, so the same monotonicity and adjoint structure hold.

Globalisation. Plain Newton from a uniform density stalls on confining potentials over wide
boxes (the density must fall by tens of orders of magnitude in the tails). The solver runs the
Newton driver of the time-dependent solvers (:func:`mfgpde.iterations.newton.newton_iteration`)
with its pseudo-time globalisation: implicit Euler steps of the *forward-forward* MFG
``du/dtau = -R_HJB``, ``dm/dtau = -R_FP``, whose long-time limit is the ergodic solution for
monotone couplings (Gomes, Nurbekyan & Sedjro 2016; Achdou & Capuzzo-Dolcetta 2010), with
``dtau`` grown until the steps are Newton's. The bordered solve lives in
:mod:`mfgpde.iterations.pseudo_transient`; both are shared with :mod:`mfgpde.fem.ergodic`.

Couplings with a floor (``LogCoupling``: ``log max(m, floor)``) are continued in the floor,
1e-4, 1e-6, ... down to the coupling's own, when the density reaches it: the derivative jumps
from 1/floor to 0 there. With a floor of 1e-14 the HJB residual at the grid points just above
the floor is limited by round-off (the density is known to ``eps_mach * max(m)`` in absolute
terms, and the log magnifies that by 1/m, up to 1/floor): measured on [-12, 12] with 200
points it stalls near 1e-7, and the solve stops as ``stagnated`` with a message that says so
(a floor of 1e-10 converges there to 1e-12).
"""

from __future__ import annotations

import copy
import time
from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp

from .couplings import ZeroCoupling
from .fd import kernels
from .fd.scheme import FDScheme
from .iterations.base import IterationLog
from .iterations.newton import fraction_to_boundary, newton_iteration
from .iterations.pseudo_transient import bordered_solve, pseudo_time_matrix
from .result import SolutionBase, base_diagnostics, save_netcdf


class ErgodicResult(SolutionBase):
    """Solution ``(u, m, rho)`` of an ergodic MFG with its history and diagnostics."""

    def __init__(self, problem, u, m, rho, history, diagnostics):
        self.problem, self.grid = problem, problem.grid
        self.u, self.m, self.rho = u, m, rho
        self.history, self.diagnostics = history, diagnostics

    def summary(self):
        return dict(super().summary(), rho=float(self.rho))

    def __repr__(self):
        d = self.diagnostics
        return f"ErgodicResult(status={d['status']}, rho={self.rho:.6g}, iterations={d['iterations']}, residual={d['residual']:.2e})"

    def save(self, path):
        import json

        import xarray as xr

        names = ["x", "y", "z"][: self.grid.dim]
        ds = xr.Dataset({"u": (names, self.u), "m": (names, self.m)},
                        coords=dict(zip(names, self.grid.axes)),
                        attrs={"rho": float(self.rho), "mfgpde_diagnostics": json.dumps(self.diagnostics, default=float),
                               "mfgpde_problem": json.dumps(self.problem.describe(), default=str)})
        return save_netcdf(ds, path)

    def plot(self, path=None):
        """m, u and the residual history; saved atomically to ``path`` when given."""
        from .plotting import plot_ergodic

        return plot_ergodic(self, path)


def _scheme(problem):
    proxy = SimpleNamespace(grid=problem.grid, nt=1, T=1.0, dt=1.0, nu=problem.nu, drift=problem.drift,
                            hamiltonian=problem.hamiltonian, coupling=problem.coupling, terminal=ZeroCoupling(),
                            m0=np.ones(problem.grid.shape), hjb_source=None, fp_source=None)
    return FDScheme(proxy)


def _residual(sc, problem, u, m, rho):
    g = problem.grid
    _S, ap, bm, phi, phiS = sc.hamiltonian_parts(u[None], m[None])
    L = sc.linear_stencil(0)[None]
    f = problem.coupling.value(m.reshape(g.shape), g).ravel()
    Ru = rho + kernels.apply_stencil(L, g, u[None])[0] + phi[0] - f
    A = kernels.dS_stencil(ap, bm, g, phiS)
    Rm = kernels.apply_stencil(L, g, m[None], transpose=True)[0] + kernels.apply_stencil(A, g, m[None], transpose=True)[0]
    if getattr(problem, "hjb_source", None) is not None:
        Ru = Ru - problem.hjb_source
    if getattr(problem, "fp_source", None) is not None:
        Rm = Rm - problem.fp_source
    Rm[-1] = g.cell_volume * m.sum() - 1.0
    Rc = g.cell_volume * u.sum()
    return np.concatenate([Ru, Rm, [Rc]])


def _jacobian(sc, problem, u, m):
    """The bordered Jacobian of ``(R_HJB, R_FP + mass row, mean row)`` in ``(u, m, rho)``."""
    g = problem.grid
    N, hd = g.size, g.cell_volume
    Hm = problem.hamiltonian
    S, ap, bm, _phi, phiS = sc.hamiltonian_parts(u[None], m[None])
    Lv = sc.linear_stencil(0)[None]
    Juu = sc.csr(Lv + kernels.dS_stencil(ap, bm, g, phiS))
    Jum = sp.diags((Hm.phi_m(S, m[None]) - problem.coupling.derivative(m.reshape(g.shape), g).ravel()[None]).ravel())
    c = phiS + m[None] * Hm.phi_Sm(S, m[None])
    Jmm = sc.csr(Lv + kernels.dS_stencil(ap, bm, g, c)).T.tocsr()
    # d/du of A(u, m)^T m: the Hessian block of the FP equation (upwind switches frozen)
    H2 = sc.hessian_matrix(S, ap, bm, phiS, m[None])
    # the last FP row (redundant: the FP operator conserves mass) becomes the mass row
    keep = np.ones(N)
    keep[-1] = 0.0
    P = sp.diags(keep)
    ones = sp.csr_matrix((np.full(N, hd), (np.zeros(N, int), np.arange(N))), shape=(1, N))
    Jmm = P @ Jmm + sp.vstack([sp.csr_matrix((N - 1, N)), ones])
    H2 = P @ H2
    return sp.bmat([[Juu, Jum, np.ones((N, 1))], [H2, Jmm, None], [ones, None, None]], format="csc")


def _floors(coupling):
    """The density floors of a coupling tree (log-type couplings), smallest first."""
    if hasattr(coupling, "terms"):
        return sorted({f for t in coupling.terms for f in _floors(t)})
    if hasattr(coupling, "base"):
        return _floors(coupling.base)
    floor = getattr(coupling, "floor", None)
    # a KL coupling with eps > 0 regularises by eps, not by its floor
    return [] if floor is None or getattr(coupling, "eps", 0.0) > 0 else [float(floor)]


def _with_floor(coupling, floor):
    """A copy of ``coupling`` whose density floors are all ``max(own floor, floor)``."""
    c = copy.copy(coupling)
    if hasattr(c, "terms"):
        c.terms = [_with_floor(t, floor) for t in c.terms]
    elif hasattr(c, "base"):
        c.base = _with_floor(c.base, floor)
    elif getattr(c, "floor", None) is not None:
        c.floor = max(float(c.floor), floor)
    return c


class GridErgodic:
    """The finite-difference ergodic system on a tensor grid, as the driver consumes it.

    ``residual(z)`` and ``jacobian(z)`` act on the stacked unknown ``z = (u, m, rho)``
    (length ``2N + 1``); ``solve(J, r, dtau)`` returns the pseudo-transient step
    ``(D / dtau + J)^{-1} r``. :mod:`mfgpde.fem.ergodic` provides the same for meshes.
    """

    def __init__(self, problem):
        self.problem = problem
        self.N = problem.grid.size
        self.sc = _scheme(problem)
        self.positive = problem.hamiltonian.needs_positive_density

    def residual(self, z):
        N = self.N
        return _residual(self.sc, self.problem, z[:N], z[N:2 * N], z[-1])

    def jacobian(self, z):
        N = self.N
        self.pin = int(np.argmax(z[N:2 * N]))   # the bordered solve pins the largest density
        return _jacobian(self.sc, self.problem, z[:N], z[N:2 * N])

    def solve(self, J, r, dtau):
        return bordered_solve(pseudo_time_matrix(J, self.N, dtau), r, self.N, pin=getattr(self, "pin", None))


class BorderedSystem:
    """An ergodic discretisation (:class:`GridErgodic`, the mesh one) as the Newton driver consumes it.

    ``z = (u, m, rho)`` and its residual are replicated on every rank, so the driver's
    reductions are the identity; the HJB norm is over the HJB rows, the FP norm over the FP,
    mass and mean rows.
    """

    def __init__(self, disc):
        self.disc, self.N = disc, disc.N

    def allreduce(self, value, op="sum"):
        return value

    def residual(self, z):
        R = self.disc.residual(z)
        return R, np.abs(R[:self.N]).max(), np.abs(R[self.N:]).max()

    def norm2(self, R):
        return np.linalg.norm(R)

    def linearise(self, z):
        return self.disc.jacobian(z)

    def direction(self, J, R, res, dtau):
        return self.disc.solve(J, -R, dtau), {}

    def max_step(self, z, dz):
        """A Hamiltonian singular at m = 0 (congestion) needs m > 0 at every iterate."""
        if not self.disc.positive:
            return 1.0
        return fraction_to_boundary(z[self.N:2 * self.N], dz[self.N:2 * self.N], 0.95)


#: first pseudo-time step of a floor-continuation stage after the first
STAGE_DT = 0.1


def solve_ergodic(problem, tol=1e-10, max_iter=200, verbose=None, initial=None, pseudo_dt=0.1, discretisation=None):
    """Solve an :class:`ErgodicMFGProblem` by pseudo-transient continuation to Newton's method.

    Parameters
    ----------
    problem : ErgodicMFGProblem
    tol : float
        Stop when ``max(|R_HJB|_inf, |R_FP|_inf, mass and mean rows) <= tol``.
    max_iter : int
        Most linearised steps (over all floor-continuation stages together).
    verbose : bool or None
        Progress lines (``None``: only once the solve has lasted two seconds).
    initial : tuple (u, m, rho), optional
        Start; default ``u = 0``, uniform ``m``, ``rho = 0`` (a cold start).
    pseudo_dt : float
        First pseudo-time step; it grows as the residual falls. A start close to the solution
        may use a large one (Newton from the first step).
    discretisation : callable, optional
        ``problem -> discretisation`` (default :class:`GridErgodic`; meshes pass theirs).

    Returns
    -------
    ErgodicResult
        ``diagnostics["status"]`` is one of ``converged``, ``max_iter``, ``stagnated`` or
        ``singular_jacobian`` (the vocabulary of the time-dependent solvers).
    """
    t0 = time.perf_counter()
    make = GridErgodic if discretisation is None else discretisation
    disc = make(problem)
    N = disc.N
    integrate = disc.integrate if hasattr(disc, "integrate") else (lambda v: problem.grid.cell_volume * v.sum())
    if not (np.isfinite(pseudo_dt) and pseudo_dt > 0):
        raise ValueError(f"pseudo_dt must be > 0, got {pseudo_dt}")
    if initial is None:
        z = np.concatenate([np.zeros(N), np.full(N, 1.0 / integrate(np.ones(N))), [0.0]])
    else:
        z = np.concatenate([np.asarray(initial[0], float).ravel(), np.asarray(initial[1], float).ravel(),
                            [float(initial[2])]])
        if z.size != 2 * N + 1:
            raise ValueError(f"initial: u and m must have {N} values each, got sizes "
                             f"{np.size(initial[0])} and {np.size(initial[1])}")
    log = IterationLog("ergodic_newton", verbose)
    floors = _floors(problem.coupling)
    target = floors[0] if floors else None
    stages = []
    if target is not None and target < 1e-4:
        # floors 1e-4, 1e-6, ... above the coupling's own; the target floor comes last
        stages = [10.0**-e for e in range(4, 40, 2) if 10.0**-e > target * 10]
    status, message, stage_floors = "converged", "", []
    for floor in stages:
        staged = copy.copy(problem)
        staged.coupling = _with_floor(problem.coupling, floor)
        zs, st, _msg = newton_iteration(BorderedSystem(make(staged)), z, tol, max_iter, log, pseudo_dt, floor=floor)
        stage_floors.append({"floor": floor, "status": st, "iterations": getattr(log, "steps", 0)})
        if st != "converged":
            break                   # go to the target from the last good iterate
        z = zs
        if z[N:2 * N].min() > 100.0 * floor:
            break                   # the density never reached the floor: the target problem is this one
        pseudo_dt = max(pseudo_dt, STAGE_DT)
    z, status, message = newton_iteration(BorderedSystem(disc), z, tol, max_iter, log, pseudo_dt,
                                          **({} if target is None else {"floor": target}))
    u, m, rho = z[:N], z[N:2 * N], float(z[-1])
    if status == "stagnated" and target is not None and target < 1e-10 and m.min() < 1e3 * target:
        bound = np.finfo(float).eps * m.max() / target
        message += (f"; the density reaches the coupling's floor {target:g}. Round-off limits the HJB residual "
                    f"there: the density is known to about eps * max(m) in absolute terms and the log magnifies "
                    f"that by 1/m, up to 1/floor (worst case eps * max(m) / floor = {bound:.1e}). Use a larger floor "
                    "(LogCoupling(floor=1e-10), or floor = 1e-10 in a [[coupling]] table) or a box that does not "
                    "hold such deep tails")
    diag = base_diagnostics(log, status, "pseudo_transient_newton", time.perf_counter() - t0,
                            abs(integrate(m) - 1.0), m.min())
    if stage_floors:
        diag["floor_continuation"] = stage_floors
    if message:
        diag["message"] = message
    if hasattr(disc, "result"):
        return disc.result(u, m, rho, log.records, diag)
    g = problem.grid
    return ErgodicResult(problem, u.reshape(g.shape), m.reshape(g.shape), rho, log.records, diag)
