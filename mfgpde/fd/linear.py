"""Sparse linear solves of the per-step stencil systems (2D and 3D grids).

The per-step matrices ``I/dt + L_n + A_n`` (HJB) and their transposes (FP) are M-matrices
with a dominant diagonal. Small systems are factorised (SuperLU); larger ones are solved by
BiCGSTAB preconditioned with the FFT/DCT inverse of ``a I + nu(-Lap_h)``
(:class:`mfgpde.fd.steps.StepOperator`: iteration counts independent of the grid, where the
Jacobi-preconditioned stencil BiCGSTAB needed 75-85 iterations at 128^2 and more on finer
grids), or, for ``nu = 0``, by the compiled Jacobi BiCGSTAB (:func:`kernels.stencil_bicgstab`).
The iterative solves run to ``rtol = 1e-13``; the FP step additionally restores the exact
discrete mass afterwards (see :meth:`FDScheme.solve_fp`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..iterations.base import ConvergenceError
from . import kernels
from .steps import StepOperator

#: Systems up to this many unknowns are factorised by SuperLU in ``"auto"`` mode. Above, the
#: compiled Jacobi BiCGSTAB (with SuperLU as the fallback if it stalls) is faster: a B2 step at
#: 25^2 took 4.9 ms by ``spsolve`` and 1.0 ms by BiCGSTAB to 1e-13, at 50^2 26.5 ms and 7.3 ms.
DIRECT_LIMIT = 400
ITERATIVE_RTOL = 1e-13
#: From this many unknowns the sweeps use the spectral preconditioner: below, the compiled
#: Jacobi BiCGSTAB is faster (B2, 50^2: 2.5 s against 4.9 s of spectral and 6.1 s of multigrid
#: sweep solves), above, its iteration count grows like 1/h (75-85 at 128^2, against 10-17
#: spectral iterations).
SPECTRAL_MIN = 8192

_METHODS = ("auto", "direct", "iterative")


def solve_stencil(vals, cols, rhs, transpose, method, to_csr, *, spectral=None, dt=None, rtol=ITERATIVE_RTOL):
    """Solve ``A x = rhs`` or ``A^T x = rhs`` for a stencil operator ``vals`` (N, s).

    ``rtol`` is the relative residual of the iterative solves (factorised solves are exact).

    ``spectral`` (a :class:`mfgpde.fd.steps.SpectralInverse`, only for ``nu > 0``) selects the
    spectrally preconditioned BiCGSTAB for the iterative solve (on large grids: at 128^2 a
    LOG2D step took 31 ms to 1e-13 with it, 49 ms with the V-cycle-preconditioned BiCGSTAB of
    :mod:`mfgpde.fd.multigrid` and 59 ms with Jacobi).
    """
    if method not in _METHODS:
        raise ValueError(f"linear_solver must be one of {_METHODS}, got {method!r}")
    N = rhs.shape[0]
    if method == "direct" or (method == "auto" and N <= DIRECT_LIMIT):
        A = to_csr(vals[None])
        return spla.spsolve(sp.csc_matrix(A.T if transpose else A), rhs)
    if spectral is not None and N >= SPECTRAL_MIN:
        x = StepOperator(vals, cols, spectral, dt, transpose=transpose).solve(rhs, rtol=rtol)
    else:
        op = kernels.transpose_stencil(vals, cols) if transpose else vals
        x, _its, ok = kernels.stencil_bicgstab(op, cols, rhs, rhs / op[:, 0], rtol, 4000)
        if not ok:  # breakdown or stagnation: fall back to the factorisation
            A = to_csr(vals[None])
            x = spla.spsolve(sp.csc_matrix(A.T if transpose else A), rhs)
    if not np.all(np.isfinite(x)):
        # (the exception every backend raises for a step that produced non-finite values)
        raise ConvergenceError("half-sweep: the per-step linear solve produced non-finite values")
    return x
