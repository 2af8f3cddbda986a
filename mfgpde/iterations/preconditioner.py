"""The sweep preconditioner of the Newton systems: one backward HJB sweep, one forward FP sweep.

The Newton matrix has the forward-backward structure of an optimality system,

    [ J_UU  J_Um ] [dU]   [a]        J_UU: upper block-bidiagonal in time (backward HJB)
    [ J_mU  J_mm ] [dm] = [b],       J_mm: lower block-bidiagonal in time (forward FP),

so ``P = [[J_UU, 0], [J_mU, J_mm]]`` is inverted by one backward sweep of HJB steps and one
forward sweep of FP steps. :func:`block_triangular_sweep` is that inverse with the step solves
given as callables; each discretisation supplies its own (:mod:`mfgpde.fd.krylov`,
:mod:`mfgpde.fd.distributed`, :mod:`mfgpde.fem.linearisation`). Nothing here knows a grid.
"""

from __future__ import annotations

import numpy as np


def block_triangular_sweep(r, nt, dt, solve_u, couple, solve_m):
    """``P^{-1} r`` for ``P = [[J_UU, 0], [J_mU, J_mm]]``, with the step solves as callables.

    The one sweep preconditioner of the Newton systems, for every backend: the serial FD scheme
    (above; its 1D and multigrid paths run the same recurrences compiled whole), the distributed
    FD scheme (patch multigrid or PETSc steps) and the FEM scheme (LU or Schwarz steps). With
    ``r = [a, b]``, each ``(N_t + 1, N)`` (``N`` points, dofs or a rank's owned points):

        x^{N_t} = a^{N_t},   x^n = A_n^{-1} (a^n + x^{n+1} / dt)        n = N_t - 1, ..., 0
        b'^{n+1} = b^{n+1} - C_n x^n                                     n = 0, ..., N_t - 1
        y^0 = b^0,           y^{n+1} = B_n^{-T} (b'^{n+1} + y^n / dt)    n = 0, ..., N_t - 1

    Parameters
    ----------
    r : ndarray (2 (N_t + 1) N,)
    nt : int
    dt : float
    solve_u, solve_m : callable
        ``solve_u(n, v) ~ A_n^{-1} v`` (HJB step n), ``solve_m(n, v) ~ B_n^{-T} v`` (FP step n + 1).
    couple : callable
        ``couple(X) -> (C_n X^n)_n`` for ``X = x[:N_t]``, shape ``(N_t, N)``: the U -> m block.

    Returns
    -------
    ndarray (2 (N_t + 1) N,)
        ``[x, y]`` stacked.
    """
    r = np.asarray(r).ravel()
    a = r[: r.size // 2].reshape(nt + 1, -1)
    b = r[r.size // 2:].reshape(nt + 1, -1)
    x = np.empty_like(a)
    x[nt] = a[nt]
    for n in range(nt - 1, -1, -1):
        x[n] = solve_u(n, a[n] + x[n + 1] / dt)
    C = couple(x[:nt])
    y = np.empty_like(b)
    y[0] = b[0]
    for n in range(nt):
        # (b + y/dt) - C x: the order the FEM sweep summed in before it shared this function, so
        # its iterates stay the same to the last digit (crowd room: residual 9.913492249324918e-11)
        y[n + 1] = solve_m(n, b[n + 1] + y[n] / dt - C[n])
    return np.concatenate([x.ravel(), y.ravel()])
