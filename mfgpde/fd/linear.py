"""Sparse linear solves of the per-step stencil systems (2D and 3D grids).

The per-step matrices ``I/dt + L_n + A_n`` (HJB) and their transposes (FP) are M-matrices
with a dominant diagonal. Small systems are factorised (SuperLU); larger ones are solved by
a compiled Jacobi-preconditioned BiCGSTAB on the stencil (:func:`kernels.stencil_bicgstab`),
which needs no factorisation and no sparse-matrix construction. The iterative solve is run to
``rtol = 1e-13``; the FP step additionally restores the exact discrete mass afterwards
(see :meth:`FDScheme.solve_fp`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from . import kernels

#: Systems up to this many unknowns are factorised by SuperLU in ``"auto"`` mode.
DIRECT_LIMIT = 1600
ITERATIVE_RTOL = 1e-13

_METHODS = ("auto", "direct", "iterative")


def solve_stencil(vals, cols, rhs, transpose, method, to_csr):
    """Solve ``A x = rhs`` or ``A^T x = rhs`` for a stencil operator ``vals`` (N, s)."""
    if method not in _METHODS:
        raise ValueError(f"linear_solver must be one of {_METHODS}, got {method!r}")
    N = rhs.shape[0]
    if method == "direct" or (method == "auto" and N <= DIRECT_LIMIT):
        A = to_csr(vals[None])
        return spla.spsolve(sp.csc_matrix(A.T if transpose else A), rhs)
    op = kernels.transpose_stencil(vals, cols) if transpose else vals
    x0 = rhs / op[:, 0]
    x, its, ok = kernels.stencil_bicgstab(op, cols, rhs, x0, ITERATIVE_RTOL, 4000)
    if not ok:  # breakdown or stagnation: fall back to the factorisation
        A = to_csr(vals[None])
        x = spla.spsolve(sp.csc_matrix(A.T if transpose else A), rhs)
    if not np.all(np.isfinite(x)):
        raise FloatingPointError("per-step linear solve produced non-finite values")
    return x
