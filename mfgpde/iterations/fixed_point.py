"""Damped fixed point and fictitious play.

One sweep solves the HJB backward for the current density path ``m^k`` and the FP forward
for the resulting value function, then relaxes

    m^{k+1} = (1 - theta_k) m^k + theta_k FP(HJB(m^k)),

with a constant ``theta_k = damping`` (damped fixed point) or ``theta_k = 1/(k+2)``
(fictitious play, Cardaliaguet & Hadikhanloo 2017), which converges for Lasry-Lions monotone
couplings where plain Picard (``theta = 1``) may oscillate. The reported residual is that of
the coupled system at ``(U^{k+1}, m^k)``: the HJB part is the inner tolerance, the FP part
measures how far ``m^k`` is from a fixed point.
"""

from __future__ import annotations

import numpy as np

from .base import IterationLog, residual_norms


def fixed_point(scheme, *, tol=1e-8, max_iter=500, damping=0.5, fictitious=False, M0=None, verbose=None,
                stagnation_window=50, played=0):
    """Run the damped fixed point (or fictitious play) on a discretised MFG.

    Parameters
    ----------
    scheme : Discretisation
        Any :class:`~mfgpde.iterations.contract.Discretisation` (``solve_hjb``, ``solve_fp``,
        ``residual``, ``norm`` collective on distributed data, ``nt``, ``problem.m0``): the
        finite-difference and the finite-element schemes both run this one iteration.
    tol : float
        Stop when ``max(|R_HJB|_inf, |R_FP|_inf) <= tol``.
    max_iter : int
    damping : float in (0, 1]
        Relaxation theta for the damped fixed point.
    fictitious : bool
        Use ``theta_k = 1/(k+2)`` instead.
    M0 : ndarray, optional
        Initial density path (default: ``m0`` frozen in time).
    verbose : bool or None
    stagnation_window : int
        Stop as ``"stagnated"`` after this many iterations without a 0.1 % decrease of the residual.
    played : int
        Fictitious play only: rounds already averaged into ``M0``, so that a resumed run
        continues with ``theta_k = 1/(k + 2 + played)`` instead of restarting the average.

    Returns
    -------
    U, M : ndarray (N_t + 1, N)
    log : IterationLog
    status : str
        ``"converged"``, ``"max_iter"`` or ``"stagnated"``.
    """
    if not 0 < damping <= 1:
        raise ValueError(f"damping must be in (0, 1], got {damping}")
    log = IterationLog("fictitious_play" if fictitious else "fixed_point", verbose)
    M = np.tile(scheme.problem.m0.ravel(), (scheme.nt + 1, 1)) if M0 is None else np.array(M0, float)
    U = None
    best, since_best = np.inf, 0
    for k in range(max_iter + 1):
        U, inner = scheme.solve_hjb(M, U_init=None if U is None else U, tol=min(1e-12, tol * 1e-2))
        hjb, fp, _, _ = residual_norms(scheme, U, M)
        res = log.record(k, hjb, fp, inner_newton=inner)
        if res <= tol:
            return U, M, log, "converged"
        log.check_divergence(k)
        if res < 0.999 * best:
            best, since_best = res, 0
        else:
            since_best += 1
            if since_best >= stagnation_window:
                return U, M, log, "stagnated"
        if k == max_iter:
            break
        M_new = scheme.solve_fp(U, M_lag=M)
        theta = 1.0 / (k + 2 + played) if fictitious else damping
        M = (1.0 - theta) * M + theta * M_new
    return U, M, log, "max_iter"


def damped_sweeps(scheme, M, count, damping=0.5):
    """``count`` damped fixed-point sweeps, then ``U = HJB(M)``: Newton's start and globalisation.

    ``M <- (1 - damping) M + damping FP(HJB(M))``; the forward half uses the scheme's cheaper
    inexact sweep where it has one (``solve_fp_inexact``; mass is restored there).

    Returns
    -------
    U, M : ndarray (N_t + 1, N)
    """
    forward = getattr(scheme, "solve_fp_inexact", scheme.solve_fp)
    for _ in range(count):
        Us, _ = scheme.solve_hjb(M)
        M = (1.0 - damping) * M + damping * forward(Us, M_lag=M)
    U, _ = scheme.solve_hjb(M)
    return U, M
