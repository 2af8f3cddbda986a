"""Newton homotopy: continue a start along its own path to a solution of ``R(z) = 0``.

For a start ``z_0`` the family

    H(z, s) = R(z) - (1 - s) R(z_0),      s in [0, 1],

is solved exactly by ``z_0`` at ``s = 0`` and is the target system at ``s = 1``. Stepping ``s``
from 0 to 1, each stage warm-started from the last, follows the solution curve through the
start itself. Unlike a continuation in a problem parameter (viscosity, coupling strength),
whose first stage is one common, often uniquely solvable problem, the path depends on the
start, so two starts that end at the same solution did not meet by construction. This is
what a multi-start uniqueness check needs (:func:`mfgpde.studies.wellposedness.multi_start`).

The homotopy shares ``R``'s Jacobian (the shift is constant), so each stage is an ordinary
Newton solve of :func:`mfgpde.iterations.newton.newton` on a scheme whose residual is shifted.
"""

from __future__ import annotations

import numpy as np

from .base import ConvergenceError
from .newton import newton


class ShiftedResidual:
    """A discretisation with residual ``R(z) - c R(z_0)``; everything else is the wrapped one's.

    Parameters
    ----------
    scheme : discretisation
        Provides ``residual``, ``linearisation`` / ``jacobian`` (see :func:`newton`).
    shift : tuple of ndarray
        ``(R_U(z_0), R_m(z_0))``.
    c : float
        ``1 - s``.
    """

    def __init__(self, scheme, shift, c):
        self._scheme, self._shift, self.c = scheme, shift, float(c)

    def __getattr__(self, name):
        return getattr(self._scheme, name)

    def residual(self, U, M):
        RU, Rm = self._scheme.residual(U, M)
        return RU - self.c * self._shift[0], Rm - self.c * self._shift[1]


def newton_homotopy(scheme, U0, M0, tol=1e-10, max_iter=30, first_step=0.25, min_step=1e-3, stage_tol=None,
                    verbose=False):
    """Follow ``R(z) = (1 - s) R(z_0)`` from ``s = 0`` (the start) to ``s = 1`` (the target).

    Parameters
    ----------
    scheme : discretisation
        As for :func:`newton`.
    U0, M0 : ndarray (N_t + 1, N)
        The start ``z_0``.
    tol : float
        Tolerance of the last stage (``s = 1``), in the max-norm of the residual.
    max_iter : int
        Newton iterations per stage.
    first_step, min_step : float
        Initial and smallest step in ``s``. A stage that fails halves the step; a stage
        that converges lets the next one grow by 1.5 (at most 0.5).
    stage_tol : float, optional
        Tolerance of the intermediate stages (default ``max(tol, 1e-6)``): they only need to
        stay on the path.

    Returns
    -------
    U, M : ndarray
        The last point reached (the solution when ``info["converged"]``).
    info : dict
        ``converged``, ``reached`` (the last ``s`` solved), ``stages`` (solves tried),
        ``iterations`` (Newton iterations in all), ``residual`` (of the target ``R`` at the
        returned point), ``message`` (why it stopped short, if it did).
    """
    if not 0 < min_step <= first_step <= 1:
        raise ValueError(f"need 0 < min_step <= first_step <= 1, got min_step={min_step}, first_step={first_step}")
    stage_tol = max(tol, 1e-6) if stage_tol is None else stage_tol
    U, M = np.array(U0, float), np.array(M0, float)
    shift = scheme.residual(U, M)
    s, ds, stages, its, message = 0.0, float(first_step), 0, 0, ""
    while s < 1.0:
        sn = min(1.0, s + ds)
        stages += 1
        try:
            Un, Mn, log, status = newton(ShiftedResidual(scheme, shift, 1.0 - sn), U, M,
                                         tol=tol if sn == 1.0 else stage_tol, max_iter=max_iter,
                                         globalize=False, verbose=verbose)
            its += len(log.records) - 1
        except (ConvergenceError, FloatingPointError, RuntimeError, np.linalg.LinAlgError) as exc:
            status, message = "error", str(exc)
        if status == "converged":
            U, M, s = Un, Mn, sn
            ds = min(0.5, 1.5 * ds)
            continue
        ds *= 0.5
        if ds < min_step:
            message = message or f"the stage at s = {sn:.4g} ended {status!r} with the step at its floor {min_step}"
            break
    RU, Rm = scheme.residual(U, M)
    res = float(max(np.abs(RU).max(), np.abs(Rm).max()))
    return U, M, {"converged": bool(s == 1.0 and res <= tol), "reached": float(s), "stages": stages,
                  "iterations": its, "residual": res, "message": "" if s == 1.0 else message}
