"""The linear algebra of a pseudo-time step of the bordered ergodic system.

For a stacked unknown ``z`` of length ``2N + 1`` (``N`` HJB rows, ``N - 1`` FP rows, a mass
row and a row fixing the additive constant of ``u``, the bordered system of
:mod:`mfgpde.ergodic`) the pseudo-time-globalised Newton driver
(:func:`mfgpde.iterations.newton.newton_iteration`) solves

    (D / dtau_k + J(z_k)) dz = -R(z_k),    D = diag(1 on HJB and FP rows, 0 on mass and mean rows),

one implicit Euler step of the pseudo-time flow ``dz/dtau = -R(z)`` linearised at ``z_k``.
:func:`pseudo_time_matrix` builds ``D / dtau + J`` and :func:`bordered_solve` solves it; the
finite-difference (:class:`mfgpde.ergodic.GridErgodic`) and finite-element
(:mod:`mfgpde.fem.ergodic`) ergodic systems both use them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


def pseudo_time_matrix(J, N, dtau):
    """``D / dtau + J`` with ``D`` = 1 on the HJB and FP rows, 0 on the mass and mean rows."""
    if dtau >= 1e12:
        return J
    d = np.ones(2 * N + 1)
    d[2 * N - 1:] = 0.0             # the mass and mean-zero rows are constraints, not evolutions
    return J + sp.diags(d / dtau)


def bordered_solve(A, r, N, info=None, pin=None):
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
