"""Pseudo-transient continuation to Newton's method for the bordered ergodic system.

For a stacked unknown ``z`` of length ``2N + 1`` (``N`` HJB rows, ``N - 1`` FP rows, a mass
row and a row fixing the additive constant of ``u``: the bordered systems of
:mod:`mfgpde.fd.ergodic` and :mod:`mfgpde.fem.ergodic`) the pseudo-time-globalised Newton driver
(:func:`mfgpde.iterations.newton.newton_iteration`) solves

    (D / dtau_k + J(z_k)) dz = -R(z_k),    D = diag(1 on HJB and FP rows, 0 on mass and mean rows),

one implicit Euler step of the pseudo-time flow ``dz/dtau = -R(z)`` linearised at ``z_k``.
:func:`pseudo_time_matrix` builds ``D / dtau + J`` and :func:`bordered_solve` solves it; the
finite-difference (:class:`mfgpde.fd.ergodic.GridErgodic`) and finite-element
(:class:`mfgpde.fem.ergodic.MeshErgodic`) ergodic systems both use them.

:func:`pseudo_transient_newton` is the solve both backends run. Plain Newton from a uniform
density stalls on confining potentials over wide boxes (the density must fall by tens of orders
of magnitude in the tails), so it takes implicit Euler steps of the *forward-forward* MFG
``du/dtau = -R_HJB``, ``dm/dtau = -R_FP``, whose long-time limit is the ergodic solution for
monotone couplings (Gomes, Nurbekyan & Sedjro 2016; Achdou & Capuzzo-Dolcetta 2010), with
``dtau`` grown until the steps are Newton's.

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

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..result import base_diagnostics
from .base import IterationLog
from .newton import fraction_to_boundary, newton_iteration


def pseudo_time_matrix(J, N, dtau):
    """``D / dtau + J`` with ``D`` = 1 on the HJB and FP rows, 0 on the mass and mean rows."""
    if dtau >= 1e12:
        return J
    d = np.ones(2 * N + 1)
    d[2 * N - 1:] = 0.0             # the mass and mean-zero rows are constraints, not evolutions
    return J + sp.diags(d / dtau)


def bordered_solve(A, r, N, *, info=None, pin=None):
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


def _start(disc, initial):
    """The stacked start ``z = (u, m, rho)``: cold (``u = 0``, uniform ``m``) unless given."""
    N = disc.N
    if initial is None:
        return np.concatenate([np.zeros(N), np.full(N, 1.0 / disc.integrate(np.ones(N))), [0.0]])
    if isinstance(initial, (str, bytes)) or not hasattr(initial, "__len__") or len(initial) != 3:
        raise ValueError("initial: an ergodic start is a triple (u, m, rho) (or an ErgodicResult's (r.u, r.m, "
                         f"r.rho)), got {type(initial).__name__}"
                         + (f" of length {len(initial)}" if isinstance(initial, (tuple, list)) else ""))
    z = np.concatenate([np.asarray(initial[0], float).ravel(), np.asarray(initial[1], float).ravel(),
                        [float(initial[2])]])
    if z.size != 2 * N + 1:
        raise ValueError(f"initial: u and m must have {N} values each, got sizes "
                         f"{np.size(initial[0])} and {np.size(initial[1])}")
    return z


def _floor_stages(problem, make, N, z, tol, max_iter, log, pseudo_dt, target):
    """Continue in the density floor, 1e-4, 1e-6, ... above ``target`` (the coupling's own).

    Each stage is the problem rebuilt with the floored coupling (``problem.replace``, through
    the validating constructor). Returns the start for the target solve, its first pseudo-time
    step and one record per stage.
    """
    records = []
    for floor in [10.0**-e for e in range(4, 40, 2) if 10.0**-e > target * 10]:
        staged = problem.replace(coupling=_with_floor(problem.coupling, floor))
        zs, st, _msg = newton_iteration(BorderedSystem(make(staged)), z, tol, max_iter, log, pseudo_dt=pseudo_dt, floor=floor)
        records.append({"floor": floor, "status": st, "iterations": getattr(log, "steps", 0)})
        if st != "converged":
            break                   # go to the target from the last good iterate
        z = zs
        if z[N:2 * N].min() > 100.0 * floor:
            break                   # the density never reached the floor: the target problem is this one
        pseudo_dt = max(pseudo_dt, STAGE_DT)
    return z, pseudo_dt, records


def _floor_round_off(target, m):
    """Why a solve whose density sits on a tiny floor stagnates, and what to do about it."""
    bound = np.finfo(float).eps * m.max() / target
    return (f"; the density reaches the coupling's floor {target:g}. Round-off limits the HJB residual "
            f"there: the density is known to about eps * max(m) in absolute terms and the log magnifies "
            f"that by 1/m, up to 1/floor (worst case eps * max(m) / floor = {bound:.1e}). Use a larger floor "
            "(LogCoupling(floor=1e-10), or floor = 1e-10 in a [[coupling]] table) or a box that does not "
            "hold such deep tails")


def pseudo_transient_newton(problem, make, *, tol=1e-10, max_iter=200, verbose=None, initial=None, pseudo_dt=0.1):
    """Solve an ergodic problem by pseudo-transient continuation to Newton's method.

    Parameters
    ----------
    problem : ErgodicMFGProblem
    make : callable
        ``problem -> discretisation``: an object with ``N``, ``residual(z)``, ``jacobian(z)``,
        ``solve(J, r, dtau)``, ``integrate(values)``, ``positive`` and
        ``result(u, m, rho, history, diagnostics)`` (:class:`mfgpde.fd.ergodic.GridErgodic`,
        :class:`mfgpde.fem.ergodic.MeshErgodic`).
    tol : float
        Stop when ``max(|R_HJB|_inf, |R_FP|_inf, mass and mean rows) <= tol``.
    max_iter : int
        Most linearised steps (over all floor-continuation stages together).
    verbose : bool or None
        Progress lines (``None``: only once the solve has lasted two seconds).
    initial : tuple (u, m, rho), optional
        Start; default ``u = 0``, uniform ``m``, ``rho = 0`` (a cold start).
    pseudo_dt : float
        First pseudo-time step; it grows as the residual falls.

    Returns
    -------
    The discretisation's result; ``diagnostics["status"]`` is one of ``converged``,
    ``max_iter``, ``stagnated`` or ``singular_jacobian``.
    """
    t0 = time.perf_counter()
    if not (np.isfinite(pseudo_dt) and pseudo_dt > 0):
        raise ValueError(f"pseudo_dt must be > 0, got {pseudo_dt}")
    disc = make(problem)
    N = disc.N
    z = _start(disc, initial)
    log = IterationLog("ergodic_newton", verbose)
    floors = _floors(problem.coupling)
    target = floors[0] if floors else None
    stages = []
    if target is not None and target < 1e-4:
        z, pseudo_dt, stages = _floor_stages(problem, make, N, z, tol, max_iter, log, pseudo_dt, target)
    z, status, message = newton_iteration(BorderedSystem(disc), z, tol, max_iter, log, pseudo_dt=pseudo_dt,
                                          **({} if target is None else {"floor": target}))
    u, m, rho = z[:N], z[N:2 * N], float(z[-1])
    if status == "stagnated" and target is not None and target < 1e-10 and m.min() < 1e3 * target:
        message += _floor_round_off(target, m)
    diag = base_diagnostics(log, status, "pseudo_transient_newton", time.perf_counter() - t0,
                            abs(disc.integrate(m) - 1.0), m.min())
    if stages:
        diag["floor_continuation"] = stages
    if message:
        diag["message"] = message
    return disc.result(u, m, rho, log.records, diag)
