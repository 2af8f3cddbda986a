"""Sparse linear solves used by the half-sweeps and by Newton."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

#: Systems up to this size are solved by sparse LU; larger ones by preconditioned BiCGSTAB.
DIRECT_LIMIT = 40_000


def solve_sparse(A, b, method="auto", rtol=1e-13):
    """Solve ``A x = b``.

    Parameters
    ----------
    A : sparse matrix
    b : ndarray
    method : {"auto", "direct", "iterative"}
        ``"direct"`` is SuperLU; ``"iterative"`` is BiCGSTAB with an incomplete-LU
        preconditioner (the per-step matrices are diagonally dominant, ``I/dt`` plus an
        M-matrix, so a few iterations suffice); ``"auto"`` picks by size.
    """
    n = A.shape[0]
    if method == "direct" or (method == "auto" and n <= DIRECT_LIMIT):
        return spla.spsolve(sp.csc_matrix(A), b)
    if method not in ("auto", "iterative"):
        raise ValueError(f"linear_solver must be 'auto', 'direct' or 'iterative', got {method!r}")
    A = sp.csr_matrix(A)
    diag = A.diagonal()
    M = spla.LinearOperator(A.shape, matvec=lambda v: v / diag)
    x, info = spla.bicgstab(A, b, rtol=rtol, atol=0.0, M=M, maxiter=2000)
    if info != 0:
        try:
            ilu = spla.spilu(sp.csc_matrix(A), drop_tol=1e-5, fill_factor=10)
            x, info = spla.bicgstab(A, b, x0=x, rtol=rtol, atol=0.0, M=spla.LinearOperator(A.shape, ilu.solve),
                                    maxiter=2000)
        except RuntimeError:
            info = -1
        if info != 0:
            x = spla.spsolve(sp.csc_matrix(A), b)
    if not np.all(np.isfinite(x)):
        raise FloatingPointError("linear solve produced non-finite values")
    return x
