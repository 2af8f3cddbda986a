"""The ergodic (stationary) MFG: pseudo-transient continuation to Newton's method.

Unknowns ``(u, m, rho)`` on the grid; equations

    rho + L u + phi(S(u), m) - f[m] = 0                 (N rows, HJB)
    L^T m + A(u, m)^T m = 0                              (N - 1 rows, FP; one is redundant)
    h^d sum_i m_i = 1                                    (mass, replaces the last FP row)
    h^d sum_i u_i = 0                                    (fixes the additive constant of u)

with ``L = -nu Lap_h - b . grad_h`` and ``A = diag(phi_S) dS/du`` as in the time-dependent
scheme, so the same monotonicity and adjoint structure hold.

Globalisation. Plain Newton from a uniform density stalls on confining potentials over wide
boxes (the density must fall by tens of orders of magnitude in the tails). The solver
follows instead the pseudo-time flow

    du/dtau = -R_HJB(u, m, rho),      dm/dtau = -R_FP(u, m),

a *forward-forward* MFG: the HJB read forward in tau is a heat equation for u, the FP a
forward Fokker-Planck equation for m, and for monotone couplings its long-time limit is the
ergodic solution (Gomes, Nurbekyan & Sedjro, "One-dimensional forward-forward mean-field
games", 2016; Achdou & Capuzzo-Dolcetta 2010 solve the ergodic system the same way). Each
step is one implicit Euler step linearised at the iterate,

    (D / dtau_k + J(z_k)) dz = -R(z_k),    D = diag(1 on HJB and FP rows, 0 on mass and mean rows),

with dtau_k grown by switched evolution relaxation (``dtau_{k+1} = dtau_k |R_{k-1}| / |R_k|``,
Kelley & Keyes 1998), so the iteration becomes Newton's method (quadratic tail) once the
residual falls. A step that raises the residual more than twofold is retried with dtau / 4.

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

    def _plot_field(self, fig, ax, field):
        g = self.grid
        if g.dim == 1:
            ax.plot(g.axes[0], field)
        else:
            sec = field if g.dim == 2 else field[..., g.shape[2] // 2]
            im = ax.pcolormesh(g.axes[0], g.axes[1], sec.T, shading="auto")
            fig.colorbar(im, ax=ax)

    def plot(self, path=None):
        from .plotting import _mpl, save_figure

        plt = _mpl()
        fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
        for a, (field, name) in zip(ax[:2], ((self.m, "m"), (self.u, "u"))):
            self._plot_field(fig, a, field)
            a.set_title(f"{name} (ergodic, rho={self.rho:.4g})")
        ax[2].semilogy([r["residual"] for r in self.history], "o-")
        ax[2].set(xlabel="iteration (pseudo-transient Newton; each floor stage restarts)", title="residual")
        fig.tight_layout()
        return fig if path is None else save_figure(fig, path)


def _scheme(problem):
    proxy = SimpleNamespace(grid=problem.grid, nt=1, T=1.0, dt=1.0, nu=problem.nu, drift=problem.drift,
                            hamiltonian=problem.hamiltonian, coupling=problem.coupling, terminal=ZeroCoupling(),
                            m0=np.ones(problem.grid.shape))
    return FDScheme(proxy)


def _residual(sc, problem, u, m, rho):
    g = problem.grid
    _S, ap, bm, phi, phiS = sc.hamiltonian_parts(u[None], m[None])
    L = sc.linear_stencil(0)[None]
    f = problem.coupling.value(m.reshape(g.shape), g).ravel()
    Ru = rho + kernels.apply_stencil(L, g, u[None])[0] + phi[0] - f
    A = kernels.dS_stencil(ap, bm, g, phiS)
    Rm = kernels.apply_stencil(L, g, m[None], transpose=True)[0] + kernels.apply_stencil(A, g, m[None], transpose=True)[0]
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
    D = sc.csr(kernels.dS_stencil(ap, bm, g))
    w = (phiS * m[None]).ravel()
    # d/du of A(u, m)^T m: the Hessian block of the FP equation (upwind switches frozen)
    H2 = D.T @ sp.diags((Hm.phi_SS(S, m[None]) * m[None]).ravel()) @ D
    Gb, Gf = sc.difference_matrices()
    for kk in range(g.dim):
        H2 = H2 + Gb[kk].T @ sp.diags(2 * w * (ap[0, kk] > 0)) @ Gb[kk] + Gf[kk].T @ sp.diags(2 * w * (bm[0, kk] < 0)) @ Gf[kk]
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


def _bordered_solve(A, r, N, info=None, pin=None):
    """Solve ``A x = r`` for the bordered ergodic Jacobian by a sparse LU and a rank-3 update.

    The rho column (ones in every HJB row) and the mass and mean rows are dense; sparse LU
    with them fills badly (3D 12^3: 2.2e6 factor entries and 1.0 s, against 1.2e6 and 0.14 s
    without). ``A = K + U V^T`` with ``K`` the same matrix with the dense parts replaced by
    single entries (rho in one HJB row, mass row -> one density entry, mean row -> u_0), and
    Sherman-Morrison-Woodbury gives ``x = y - X (I + V^T X)^{-1} V^T y`` with ``y = K^{-1} r``,
    ``X = K^{-1} U``. A plain LU of ``A`` is the fallback when the update loses accuracy.
    Where the single entries sit matters. With a short pseudo-time step ``K`` is near
    ``I / dtau``: rho must stay in HJB row 0 (the row of the pinned ``u_0``) and the mass row
    must become ``m_{N-1}`` (the dropped FP row's own entry). Near Newton the HJB block's left
    null vector and the FP block's right null vector are the stationary density: both entries
    must sit where it is large, not in a corner of the box (m ~ 1e-8 there leaves ``K`` nearly
    singular). The first placement is tried, then the caller's ``pin`` (the index of the
    largest density) for both. The mass row (``2N - 1``) may carry the pseudo-time diagonal 0
    only, as built by :func:`pseudo_time_matrix`.
    ``info["path"]`` (when a dict is given) says which solve was used.
    """
    n = 2 * N + 1
    A = A.tocsr()
    rho_col = np.asarray(A[:N, n - 1].todense()).ravel()
    mean_row, mass_row = A[n - 1].toarray().ravel(), A[n - 2].toarray().ravel()
    # (HJB row keeping rho, density entry replacing the mass row): the first suits short
    # pseudo-time steps, the second Newton-like ones (see above)
    configs = [(0, N - 1)] + ([(int(pin), int(pin))] if pin is not None and int(pin) != N - 1 else [])
    for rho_row, mass_pin in configs:
        # the three rank-one corrections as columns of U and V (mean and mass rows read from A:
        # cell volumes on a grid, lumped masses mu_i on a mesh)
        U = np.zeros((n, 3))
        V = np.zeros((n, 3))
        U[:N, 0] = rho_col
        U[rho_row, 0] = 0.0
        V[n - 1, 0] = 1.0
        U[n - 1, 1] = 1.0
        V[:, 1] = mean_row
        V[0, 1] -= 1.0
        U[n - 2, 2] = 1.0
        V[:, 2] = mass_row
        V[N + mass_pin, 2] -= 1.0
        K = (A - sp.csr_matrix(U) @ sp.csr_matrix(V).T).tocsc()
        K.eliminate_zeros()
        try:
            lu = spla.splu(K)
            X = lu.solve(U)
            y = lu.solve(r)
            x = y - X @ np.linalg.solve(np.eye(3) + V.T @ X, V.T @ y)
        except (RuntimeError, np.linalg.LinAlgError):  # K singular with this choice
            continue
        if np.all(np.isfinite(x)) and np.abs(A @ x - r).max() <= 1e-8 * max(np.abs(r).max(), 1e-300) + 1e-13:
            if info is not None:
                info["path"] = "woodbury"
            return x
    if info is not None:
        info["path"] = "lu"
    return spla.splu(A.tocsc()).solve(r)


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
        return _bordered_solve(pseudo_time_matrix(J, self.N, dtau), r, self.N, pin=getattr(self, "pin", None))


#: largest growth of ``|R|_2`` a pseudo-time step may cause before it is retried with dtau / 4
GROWTH = 2.0
#: first pseudo-time step of a floor-continuation stage after the first
STAGE_DT = 0.1


def pseudo_time_matrix(J, N, dtau):
    """``D / dtau + J`` with ``D`` = 1 on the HJB and FP rows, 0 on the mass and mean rows."""
    if dtau >= 1e12:
        return J
    d = np.ones(2 * N + 1)
    d[2 * N - 1:] = 0.0             # the mass and mean-zero rows are constraints, not evolutions
    return J + sp.diags(d / dtau)


def pseudo_transient(disc, z, tol, max_iter, log, dtau, floor=None):
    """Pseudo-transient continuation from ``z = (u, m, rho)`` (one stack) until ``|R|_inf <= tol``.

    ``disc`` is a discretisation (:class:`GridErgodic` or the mesh one). Returns
    ``(z, status, message)``; iterations are recorded in ``log`` (their count is bounded by
    ``max_iter`` over all calls sharing the log).
    """
    N = disc.N
    R = disc.residual(z)
    best, best_at = np.inf, 0
    while True:
        # k counts linearised steps over all stages (a stage's first record repeats the step
        # count of the previous stage's last one: a new floor, no new step)
        k = getattr(log, "steps", 0)
        hjb, fp = np.abs(R[:N]).max(), np.abs(R[N:]).max()
        extra = {"pseudo_dt": float(dtau)}
        if floor is not None:
            extra["floor"] = floor
        res = log.record(k, hjb, fp, **extra)
        if res <= tol:
            return z, "converged", ""
        if k >= max_iter:
            return z, "max_iter", ""
        if res < 0.1 * best:
            best, best_at = res, k
        elif k - best_at >= 30:     # no tenfold progress in 30 steps: round-off or a stall
            return z, "stagnated", f"no tenfold decrease of the residual in 30 iterations (best {best:.2e})"
        log.check_divergence(k)
        J = disc.jacobian(z)
        norm = np.linalg.norm(R)
        while True:
            try:
                dz = disc.solve(J, -R, dtau)
            except RuntimeError as exc:  # exactly singular factor
                return z, "singular_jacobian", str(exc)
            step = 1.0
            if disc.positive:  # a Hamiltonian singular at m = 0 (congestion) needs m > 0 at every iterate
                dm, m = dz[N:2 * N], z[N:2 * N]
                neg = dm < 0
                if np.any(neg):
                    step = min(1.0, 0.95 * float(np.min(m[neg] / -dm[neg])))
            zc = z + step * dz
            with np.errstate(all="ignore"):
                Rc = disc.residual(zc)
                nc = np.linalg.norm(Rc)
            if np.all(np.isfinite(dz)) and np.isfinite(nc) and nc <= GROWTH * norm:
                break
            dtau *= 0.25        # too long a pseudo-time step: retry a shorter one
            if dtau < 1e-12:
                return z, "stagnated", "the pseudo-time step fell below 1e-12 without an acceptable step"
        # switched evolution relaxation: dtau grows as the residual falls (Newton in the limit)
        dtau = min(1e13, dtau * min(10.0, max(0.5, norm / max(nc, 1e-300))) * (1.0 if step > 0.5 else 0.5))
        z, R = zc, Rc
        log.steps = k + 1


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
        zs, st, _msg = pseudo_transient(make(staged), z.copy(), tol, max_iter, log, pseudo_dt, floor=floor)
        stage_floors.append({"floor": floor, "status": st, "iterations": getattr(log, "steps", 0)})
        if st != "converged":
            break                   # go to the target from the last good iterate
        z = zs
        if z[N:2 * N].min() > 100.0 * floor:
            break                   # the density never reached the floor: the target problem is this one
        pseudo_dt = max(pseudo_dt, STAGE_DT)
    z, status, message = pseudo_transient(disc, z, tol, max_iter, log, pseudo_dt, floor=target)
    u, m, rho = z[:N], z[N:2 * N], float(z[-1])
    if status == "stagnated" and target is not None and target < 1e-10 and m.min() < 1e3 * target:
        bound = np.finfo(float).eps * m.max() / target
        message += (f"; the density reaches the coupling's floor {target:g}. Round-off limits the HJB residual "
                    f"there: the density is known to about eps * max(m) in absolute terms and the log magnifies "
                    f"that by 1/m, up to 1/floor (worst case eps * max(m) / floor = {bound:.1e}). Use a larger floor "
                    "(LogCoupling(floor=1e-10), or floor = 1e-10 in a [[coupling]] table) or a box that does not "
                    "hold such deep tails")
    last = log.records[-1]
    diag = {"converged": status == "converged", "status": status, "method": "pseudo_transient_newton",
            "iterations": last["iteration"], "residual": last["residual"], "hjb_residual": last["hjb_residual"],
            "fp_residual": last["fp_residual"], "mass_error": abs(integrate(m) - 1.0), "min_density": float(m.min()),
            "wall_time_s": time.perf_counter() - t0}
    if stage_floors:
        diag["floor_continuation"] = stage_floors
    if message:
        diag["message"] = message
    if hasattr(disc, "result"):
        return disc.result(u, m, rho, log.records, diag)
    g = problem.grid
    return ErgodicResult(problem, u.reshape(g.shape), m.reshape(g.shape), rho, log.records, diag)
