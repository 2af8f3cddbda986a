"""Numba kernels of the monotone finite-difference scheme.

The kernels work on a batch of K grid functions (time slices) stored as a C-contiguous
``(K, N)`` float64 array and on the neighbour table of :attr:`TensorGrid.stencil`, so one
compiled kernel serves 1D, 2D and 3D grids. Compiled code is cached on disk
(``cache=True``) and the thin wrappers normalise dtypes and layouts, so a given kernel
compiles once per machine rather than once per call or per shape.

Each kernel has a plain NumPy statement of the same formula in :mod:`mfgpde.fd.reference`,
against which the test-suite checks it.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_JIT = dict(cache=True, fastmath=False, nogil=True)

#: Below this many points a call runs the serial build of a kernel: starting threads costs more
#: than it saves on small arrays (one time slice of a 1D grid), and on a loaded machine
#: oversubscribed threads make it much worse.
PARALLEL_MIN_POINTS = 32_768


def _serial_and_parallel(func):
    """Compile ``func`` twice (serial and threaded); the caller picks by problem size."""
    return nb.njit(parallel=False, **_JIT)(func), nb.njit(parallel=True, **_JIT)(func)


def _pick(pair, points):
    return pair[1] if points >= PARALLEL_MIN_POINTS else pair[0]


def _upwind_square_py(u, cols, has_minus, has_plus, inv_h, S, ap, bm):
    K, N = u.shape
    d = inv_h.shape[0]
    for t in nb.prange(K):
        for p in range(N):
            s = 0.0
            up = u[t, p]
            for k in range(d):
                a = 0.0
                if has_minus[k, p]:
                    a = (up - u[t, cols[p, 1 + 2 * k]]) * inv_h[k]
                    if a < 0.0:
                        a = 0.0
                b = 0.0
                if has_plus[k, p]:
                    b = (u[t, cols[p, 2 + 2 * k]] - up) * inv_h[k]
                    if b > 0.0:
                        b = 0.0
                ap[t, k, p] = a
                bm[t, k, p] = b
                s += a * a + b * b
            S[t, p] = s


_upwind_square = _serial_and_parallel(_upwind_square_py)


def upwind_square(u, grid):
    """Engquist-Osher upwinded squared gradient of each row of ``u``.

    ``S_i = sum_k max(D_k^- u_i, 0)^2 + min(D_k^+ u_i, 0)^2`` with one-sided differences
    set to zero across no-flux walls.

    Parameters
    ----------
    u : ndarray, shape (K, N)
    grid : TensorGrid

    Returns
    -------
    S : ndarray (K, N)
    ap, bm : ndarray (K, d, N)
        ``max(D^- u, 0)`` and ``min(D^+ u, 0)`` per axis.
    """
    u = np.ascontiguousarray(u, dtype=np.float64)
    K, N = u.shape
    cols, hm, hp = grid.stencil
    inv_h = np.array([1.0 / h for h in grid.h])
    S = np.empty((K, N))
    ap = np.empty((K, grid.dim, N))
    bm = np.empty((K, grid.dim, N))
    _pick(_upwind_square, K * N)(u, cols, hm, hp, inv_h, S, ap, bm)
    return S, ap, bm


def _dS_stencil_py(ap, bm, inv_h, scale, out):
    K, d, N = ap.shape
    for t in nb.prange(K):
        for p in range(N):
            c = 0.0
            sc = scale[t, p]
            for k in range(d):
                wa = 2.0 * ap[t, k, p] * inv_h[k] * sc
                wb = 2.0 * bm[t, k, p] * inv_h[k] * sc
                c += wa - wb
                out[t, p, 1 + 2 * k] = -wa
                out[t, p, 2 + 2 * k] = wb
            out[t, p, 0] = c


_dS_stencil = _serial_and_parallel(_dS_stencil_py)


def dS_stencil(ap, bm, grid, scale=None):
    """Stencil values of ``diag(scale) dS/du`` (the linearised numerical Hamiltonian).

    Row ``p`` holds ``scale_p * dS_p/du_j`` for ``j`` in the stencil of ``p``: the centre
    weight is ``sum_k 2 (ap_k - bm_k) / h_k >= 0`` and the neighbour weights are ``<= 0``
    (monotone); rows sum to zero, which is what makes the adjoint FP operator conservative.

    Returns
    -------
    ndarray, shape (K, N, 1 + 2 d)
    """
    K, d, N = ap.shape
    inv_h = np.array([1.0 / h for h in grid.h])
    scale = np.ones((K, N)) if scale is None else np.ascontiguousarray(np.broadcast_to(scale, (K, N)), dtype=np.float64)
    out = np.empty((K, N, 1 + 2 * d))
    _pick(_dS_stencil, K * N)(np.ascontiguousarray(ap), np.ascontiguousarray(bm), inv_h, scale, out)
    return out


def _apply_py(vals, cols, x, y):
    K, N, s = vals.shape
    for t in nb.prange(K):
        for p in range(N):
            acc = 0.0
            for j in range(s):
                acc += vals[t, p, j] * x[t, cols[p, j]]
            y[t, p] = acc


_apply = _serial_and_parallel(_apply_py)


@nb.njit(**_JIT)
def _apply_transpose(vals, cols, x, y):
    K, N, s = vals.shape
    for t in range(K):
        for p in range(N):
            y[t, p] = 0.0
        for p in range(N):
            xp = x[t, p]
            for j in range(s):
                y[t, cols[p, j]] += vals[t, p, j] * xp


def apply_stencil(vals, grid, x, transpose=False):
    """``y_t = A_t x_t`` (or ``A_t^T x_t``) for the stencil operators ``A_t`` of ``vals``."""
    vals = np.ascontiguousarray(vals, dtype=np.float64)
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.empty_like(x)
    kernel = _apply_transpose if transpose else _pick(_apply, x.size)
    kernel(vals, grid.stencil[0], x, y)
    return y


def _hessian_py(D, DT, c, W, cols, x, y):
    K, N, s = D.shape
    for t in nb.prange(K):
        v = np.empty(N)
        for p in range(N):
            acc = 0.0
            for j in range(s):
                acc += D[t, p, j] * x[t, cols[p, j]]
            v[p] = c[t, p] * acc
        for p in range(N):
            acc = 0.0
            for j in range(s):
                q = cols[p, j]
                acc += DT[t, p, j] * v[q] + W[t, p, j] * x[t, q]
            y[t, p] = acc


_hessian = _serial_and_parallel(_hessian_py)


def apply_hessian(D, DT, c, W, grid, x):
    """``y_t = D_t^T diag(c_t) D_t x_t + W_t x_t`` for stacks of stencils, in one compiled pass.

    The same as three :func:`apply_stencil` calls and two array operations, but each time
    step's intermediate ``diag(c) D x`` stays in cache: the stencils are read once and no
    temporaries of the whole stack are written (B2 at 50^2 x 50, inside the preconditioner:
    4.3 ms -> 1.8 ms per application).
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.empty_like(x)
    _pick(_hessian, x.size)(D, DT, c, W, grid.stencil[0], x, y)
    return y


def _jacobian_product_py(A, BT, D, DT, c, W, d_um, cols, dt, dU, dM, yU, yM):
    K, N, s = A.shape
    for t in nb.prange(K):
        v = np.empty(N)
        for p in range(N):
            acc = 0.0
            dacc = 0.0
            for j in range(s):
                xq = dU[t, cols[p, j]]
                acc += A[t, p, j] * xq
                dacc += D[t, p, j] * xq
            yU[t, p] = acc - dU[t + 1, p] / dt + d_um[t, p] * dM[t + 1, p]
            v[p] = c[t, p] * dacc
        for p in range(N):
            acc = 0.0
            for j in range(s):
                q = cols[p, j]
                acc += BT[t, p, j] * dM[t + 1, q] + DT[t, p, j] * v[q] + W[t, p, j] * dU[t, q]
            yM[t + 1, p] = acc - dM[t, p] / dt


_jacobian_product = _serial_and_parallel(_jacobian_product_py)


def jacobian_product(A, BT, D, DT, c, W, d_um, grid, dt, dU, dM, yU, yM):
    """The time-stepping rows of ``J z'`` (:class:`mfgpde.fd.linearisation.Linearisation`) in one pass.

    For ``n < N_t``: ``yU^n = A_n dU^n - dU^{n+1}/dt + d_um^n dm^{n+1}`` and
    ``yM^{n+1} = B_n^T dm^{n+1} - dm^n/dt + (D_n^T diag(c_n) D_n + W_n) dU^n``, written into
    ``yU`` and ``yM`` (shape (N_t + 1, N)); rows ``yU^{N_t}`` and ``yM^0`` are left to the caller.
    """
    _pick(_jacobian_product, A.shape[0] * A.shape[1])(A, BT, D, DT, c, W, d_um, grid.stencil[0], float(dt),
                                                       dU, dM, yU, yM)


# --------------------------------------------------------------------------- 1D direct solves
@nb.njit(**_JIT)
def _cyclic_tridiag(lower, diag, upper, rhs, out, work_b, work_z):
    """Solve a cyclic tridiagonal system (Sherman-Morrison + Thomas, no pivoting).

    Row p reads ``lower[p] x[p-1] + diag[p] x[p] + upper[p] x[p+1]`` with indices wrapped.
    Safe without pivoting for the (transposed) M-matrices of the scheme, which are
    diagonally dominant.
    """
    n = diag.shape[0]
    beta = lower[0]        # row 0, column n-1
    alpha = upper[n - 1]   # row n-1, column 0
    gamma = -diag[0]
    for i in range(n):
        work_b[i] = diag[i]
    work_b[0] = diag[0] - gamma
    work_b[n - 1] = diag[n - 1] - alpha * beta / gamma
    # Thomas on the modified matrix for two right-hand sides: rhs and u = (gamma, 0, .., alpha)
    c_prime = work_z
    d1 = out
    d2 = np.empty(n)
    denom = work_b[0]
    c_prime[0] = upper[0] / denom
    d1[0] = rhs[0] / denom
    d2[0] = gamma / denom
    for i in range(1, n):
        denom = work_b[i] - lower[i] * c_prime[i - 1]
        c_prime[i] = upper[i] / denom if i < n - 1 else 0.0
        u_i = alpha if i == n - 1 else 0.0
        d1[i] = (rhs[i] - lower[i] * d1[i - 1]) / denom
        d2[i] = (u_i - lower[i] * d2[i - 1]) / denom
    for i in range(n - 2, -1, -1):
        d1[i] -= c_prime[i] * d1[i + 1]
        d2[i] -= c_prime[i] * d2[i + 1]
    fact = (d1[0] + beta * d1[n - 1] / gamma) / (1.0 + d2[0] + beta * d2[n - 1] / gamma)
    for i in range(n):
        out[i] = d1[i] - fact * d2[i]


@nb.njit(**_JIT)
def _tri_coeffs(vals, transpose, lower, diag, upper):
    n = vals.shape[0]
    for p in range(n):
        diag[p] = vals[p, 0]
        if transpose:
            lower[p] = vals[(p - 1) % n, 2]
            upper[p] = vals[(p + 1) % n, 1]
        else:
            lower[p] = vals[p, 1]
            upper[p] = vals[p, 2]


@nb.njit(**_JIT)
def tri_solve(vals, rhs, transpose):
    """Solve ``A x = rhs`` (or ``A^T x = rhs``) for a 1D 3-point stencil operator ``vals`` (N, 3)."""
    n = vals.shape[0]
    lower, diag, upper = np.empty(n), np.empty(n), np.empty(n)
    _tri_coeffs(vals, transpose, lower, diag, upper)
    out = np.empty(n)
    _cyclic_tridiag(lower, diag, upper, rhs, out, np.empty(n), np.empty(n))
    return out


@nb.njit(**_JIT)
def tri_backward_sweep(vals, a, dt):
    """``x^{N_t} = a^{N_t}``; ``A_n x^n = a^n + x^{n+1}/dt`` for n = N_t-1..0 (1D stencils)."""
    nt = vals.shape[0]
    x = np.empty_like(a)
    x[nt] = a[nt]
    for n in range(nt - 1, -1, -1):
        x[n] = tri_solve(vals[n], a[n] + x[n + 1] / dt, False)
    return x


@nb.njit(**_JIT)
def tri_forward_sweep(vals, b, dt):
    """``y^0 = b^0``; ``A_n^T y^{n+1} = b^{n+1} + y^n/dt`` for n = 0..N_t-1 (1D stencils)."""
    nt = vals.shape[0]
    y = np.empty_like(b)
    y[0] = b[0]
    for n in range(nt):
        y[n + 1] = tri_solve(vals[n], b[n + 1] + y[n] / dt, True)
    return y


# --------------------------------------------------------------------------- stencil Krylov solves
@nb.njit(**_JIT)
def transpose_stencil(vals, cols):
    """Stencil of ``A^T`` for a ``(1 + 2d)``-point stencil operator ``A`` (N, s).

    The minus neighbour q of p along axis k has p as its plus neighbour, so
    ``(A^T)_{p, q} = A_{q, p}`` is the plus weight of row q (and vice versa).
    """
    N, s = vals.shape
    out = np.empty_like(vals)
    for p in range(N):
        out[p, 0] = vals[p, 0]
        for k in range((s - 1) // 2):
            out[p, 1 + 2 * k] = vals[cols[p, 1 + 2 * k], 2 + 2 * k]
            out[p, 2 + 2 * k] = vals[cols[p, 2 + 2 * k], 1 + 2 * k]
    return out


@nb.njit(**_JIT)
def _matvec1(vals, cols, x, y):
    N, s = vals.shape
    for p in range(N):
        acc = 0.0
        for j in range(s):
            acc += vals[p, j] * x[cols[p, j]]
        y[p] = acc


@nb.njit(**_JIT)
def stencil_bicgstab(vals, cols, b, x0, rtol, maxiter):
    """Jacobi-preconditioned BiCGSTAB (van der Vorst 1992) for one stencil operator.

    The per-step matrices ``I/dt + L + A`` are M-matrices with a dominant diagonal, so a
    few tens of iterations reach round-off without any factorisation.

    Returns
    -------
    x : ndarray
    iterations : int
    converged : bool
    """
    N = b.shape[0]
    dinv = 1.0 / vals[:, 0]
    x = x0.copy()
    r = np.empty(N)
    _matvec1(vals, cols, x, r)
    for i in range(N):
        r[i] = b[i] - r[i]
    bnorm = np.sqrt(np.dot(b, b))
    if bnorm == 0.0:
        return np.zeros(N), 0, True
    if np.sqrt(np.dot(r, r)) <= rtol * bnorm:
        return x, 0, True
    rhat = r.copy()
    p = np.zeros(N)
    v = np.zeros(N)
    phat = np.empty(N)
    shat = np.empty(N)
    t = np.empty(N)
    rho, alpha, omega = 1.0, 1.0, 1.0
    for it in range(1, maxiter + 1):
        rho_new = np.dot(rhat, r)
        if rho_new == 0.0 or omega == 0.0:
            return x, it, False
        beta = (rho_new / rho) * (alpha / omega)
        for i in range(N):
            p[i] = r[i] + beta * (p[i] - omega * v[i])
            phat[i] = dinv[i] * p[i]
        _matvec1(vals, cols, phat, v)
        alpha = rho_new / np.dot(rhat, v)
        for i in range(N):
            r[i] -= alpha * v[i]          # r is now s
            x[i] += alpha * phat[i]
        if np.sqrt(np.dot(r, r)) <= rtol * bnorm:
            return x, it, True
        for i in range(N):
            shat[i] = dinv[i] * r[i]
        _matvec1(vals, cols, shat, t)
        tt = np.dot(t, t)
        omega = np.dot(t, r) / tt if tt > 0 else 0.0
        for i in range(N):
            x[i] += omega * shat[i]
            r[i] -= omega * t[i]
        if np.sqrt(np.dot(r, r)) <= rtol * bnorm:
            return x, it, True
        rho = rho_new
    return x, maxiter, False


def _transpose_stencils_py(vals, cols, out):
    K, N, s = vals.shape
    for t in nb.prange(K):
        for p in range(N):
            out[t, p, 0] = vals[t, p, 0]
            for k in range((s - 1) // 2):
                out[t, p, 1 + 2 * k] = vals[t, cols[p, 1 + 2 * k], 2 + 2 * k]
                out[t, p, 2 + 2 * k] = vals[t, cols[p, 2 + 2 * k], 1 + 2 * k]


_transpose_stencils = _serial_and_parallel(_transpose_stencils_py)


def transpose_stencils(vals, grid):
    """Stencils of ``A_t^T`` for a stack of stencil operators ``vals`` (K, N, s).

    The transpose of a ``(1 + 2d)``-point operator is again one (see :func:`transpose_stencil`),
    so ``A^T x`` can use the threaded gather kernel instead of a serial scatter.
    """
    vals = np.ascontiguousarray(vals, dtype=np.float64)
    out = np.empty_like(vals)
    _pick(_transpose_stencils, vals.shape[0] * vals.shape[1])(vals, grid.stencil[0], out)
    return out
