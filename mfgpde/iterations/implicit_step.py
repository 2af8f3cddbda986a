"""Newton with backtracking on one implicit HJB time step, for every backend.

The backward half-sweep solves, level after level ``n = N_t - 1, ..., 0``, the nonlinear system

    G_n(u) = u / dt + L_n u + H_h(x, Du, m^{n+1}) - (U^{n+1} / dt + f[m^{n+1}]) = 0,

with the convex discrete Hamiltonian ``H_h``. Newton from ``u = U^{n+1}`` with a backtracking
line search on ``max |G_n|`` converges (G_n is a monotone M-function: its Jacobian is an
M-matrix). The finite-difference, distributed finite-difference and finite-element schemes
each supply ``G_n`` and the solve with its Jacobian; the iteration and its stopping rule live
here, once.
"""

from __future__ import annotations

import numpy as np

from .base import ConvergenceError

#: inner Newton steps allowed per time level. Far from the coupled solution the data of a
#: level can be rough and the Hamiltonian steep (a first-order CNF with lambda = 0.001 from a
#: random density path: ``H = |p|^2 / (2 lambda)``), and the line search then takes steps of 1/16
#: to 1/32 for a while before the quadratic phase; one such level needed 179 steps. With 50
#: those sweeps failed; a converging level usually needs 2-10, so the cap costs nothing there.
MAX_NEWTON = 200


def round_off_tolerance(tol, size):
    """The inner tolerance: ``tol``, floored at what round-off allows for terms of size ``size``.

    The residual cannot be computed more accurately than eps times the size of its terms (the
    right-hand side and the operator applied to u), so asking for less would never stop.
    """
    return max(tol, 64 * np.finfo(float).eps * max(1.0, size))


def solve_implicit_step(u, residual, solve, norm, atol, *, max_newton=MAX_NEWTON, level=None, tol=None):
    """Solve ``G(u) = 0`` by Newton with backtracking, from ``u``.

    Parameters
    ----------
    u : ndarray
        Start (the value at the next time level).
    residual : callable
        ``residual(v) -> (G(v), state)``; ``state`` is what ``solve`` needs to build the
        Jacobian at ``v`` (gradients, ``phi_S``).
    solve : callable
        ``solve(state, rhs) -> du`` with ``G'(v) du = rhs``.
    norm : callable
        ``max |.|`` (collective on distributed data, so every rank takes the same steps).
    atol : float
        Absolute tolerance on ``max |G|`` (see :func:`round_off_tolerance`).
    max_newton : int
    level : int, optional
        The time level, for messages.
    tol : float, optional
        The requested tolerance, for messages (default ``atol``).

    Returns
    -------
    u : ndarray
    steps : int
        Newton steps taken.

    Raises
    ------
    ConvergenceError
        A non-finite residual, or no convergence in ``max_newton`` steps.
    """
    where = f"HJB step n={level}" if level is not None else "HJB step"
    r, state = residual(u)
    prev = np.inf
    for it in range(max_newton):
        rn = norm(r)
        if not np.isfinite(rn):
            raise ConvergenceError(f"{where}: the residual became non-finite at inner Newton iteration {it}")
        # converged, or stagnating at round-off level
        if rn <= atol or (it > 2 and rn < 1e3 * atol and rn > 0.5 * prev):
            return u, it
        prev = rn
        du = solve(state, -r)
        step = 1.0
        while True:
            cand = u + step * du
            rc, sc = residual(cand)
            if norm(rc) < rn or step < 1e-4:
                break
            step *= 0.5
        u, r, state = cand, rc, sc
    raise ConvergenceError(f"{where}: Newton did not reach {atol if tol is None else tol:g} in {max_newton} steps "
                           f"(residual {norm(r):.3e})")


def check_sweep_data(terminal, coupling, all_finite=None):
    """Refuse a backward sweep whose data ``g[m(T)]`` or ``f[m]`` is non-finite.

    ``all_finite(array) -> bool`` is collective on distributed data; every rank then raises the
    same message (where the bad value is differs between ranks, so it is not named).
    """
    for name, arr in (("terminal cost g[m(T)]", terminal), ("coupling f[m]", coupling)):
        if all_finite is not None:
            if not all_finite(arr):
                raise ConvergenceError(f"HJB sweep: the {name} is non-finite on some rank; check the coupling for "
                                       "the densities reached by the iteration")
        elif not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(np.atleast_2d(arr)))[0]
            raise ConvergenceError(f"HJB sweep: the {name} is non-finite (first at time slice/point "
                                   f"{tuple(int(i) for i in bad)}); check the coupling for the densities reached by "
                                   "the iteration")
