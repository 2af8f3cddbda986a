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

A *family* ``R_s`` of discretisations (``R_1 = R``) makes it the two-way homotopy

    H(z, s) = R_s(z) - (1 - s) R_0(z_0),

still solved by the start at ``s = 0``. With ``R_s`` the problem at the viscosity
``nu + (1 - s) nu_0`` (:func:`mfgpde.studies.wellposedness.solve_from_start`), the
intermediate problems are viscous, so smooth, and the start's own shift keeps the path the
start's: a first-order problem (``nu = 0``), whose Newton residual is only semismooth, is
reached from far-away starts in a few stages (C1, 200 x 48, four random starts: 3-5 stages,
39-59 Newton iterations, against 22-31 stages and 222-342 iterations for the plain homotopy).
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


def newton_homotopy(scheme, U0, M0, *, tol=1e-10, max_iter=30, first_step=0.25, min_step=1e-3, stage_tol=None,
                    verbose=False, family=None, linear="auto"):
    """Follow ``R_s(z) = (1 - s) R_0(z_0)`` from ``s = 0`` (the start) to ``s = 1`` (the target).

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
        Initial and smallest step in ``s``. A stage that fails halves the step; a stage that
        converges lets the next one grow by how easily it did: x2 after at most 3 Newton
        iterations, x1.5 after at most ``max_iter / 2``, else unchanged (at most 0.5).
    stage_tol : float, optional
        Tolerance of the intermediate stages (default ``max(tol, 1e-6)``): they only need to
        stay on the path.
    family : callable ``s -> discretisation``, optional
        ``R_s`` (``family(1)`` the target); default ``scheme`` at every ``s``.
    linear : str
        Linear solver of the stages' Newton steps (:func:`newton`).

    Returns
    -------
    U, M : ndarray
        The last point reached (the solution when ``info["converged"]``).
    info : dict
        ``converged``, ``reached`` (the last ``s`` solved), ``stages`` (solves tried),
        ``iterations`` (Newton iterations in all), ``residual`` (of the target ``R`` at the
        returned point), ``message`` (why it stopped short, if it did), ``launch`` (the
        iterate from which the last stage started, ``(U, M)``: the start of a deflated search
        along the same path).
    """
    if not 0 < min_step <= first_step <= 1:
        raise ValueError(f"need 0 < min_step <= first_step <= 1, got min_step={min_step}, first_step={first_step}")
    stage_tol = max(tol, 1e-6) if stage_tol is None else stage_tol
    U, M = np.array(U0, float), np.array(M0, float)
    at = (lambda s: scheme) if family is None else family
    shift = at(0.0).residual(U, M)
    launch = (U, M)
    s, ds, stages, its, message = 0.0, float(first_step), 0, 0, ""
    while s < 1.0:
        sn = min(1.0, s + ds)
        stages += 1
        taken = max_iter
        try:
            Un, Mn, log, status = newton(ShiftedResidual(scheme if sn == 1.0 else at(sn), shift, 1.0 - sn), U, M,
                                         tol=tol if sn == 1.0 else stage_tol, max_iter=max_iter,
                                         globalize=False, verbose=verbose, linear=linear)
            taken = len(log.records) - 1
            its += taken
        except (ConvergenceError, FloatingPointError, RuntimeError, np.linalg.LinAlgError) as exc:
            status, message = "error", str(exc)
        if status == "converged":
            launch = (U, M)
            U, M, s = Un, Mn, sn
            ds = min(0.5, ds * (2.0 if taken <= 3 else 1.5 if taken <= max_iter // 2 else 1.0))
            continue
        ds *= 0.5
        if ds < min_step:
            message = message or f"the stage at s = {sn:.4g} ended {status!r} with the step at its floor {min_step}"
            break
    RU, Rm = scheme.residual(U, M)
    res = float(max(np.abs(RU).max(), np.abs(Rm).max()))
    return U, M, {"converged": bool(s == 1.0 and res <= tol), "reached": float(s), "stages": stages,
                  "iterations": its, "residual": res, "message": "" if s == 1.0 else message,
                  "launch": launch if s == 1.0 else (U, M)}
