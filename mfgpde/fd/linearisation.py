"""The Newton linearisation of the FD scheme, applied matrix-free.

At ``z = (U, m)`` the Jacobian of :meth:`FDScheme.residual` is (``D_n = dS/dU`` at ``U^n``)

    (J z')_U^n     = A_n dU^n - dU^{n+1}/dt + (phi_m - f')(m^{n+1}) dm^{n+1},   n < N_t
    (J z')_U^{N_t} = dU^{N_t} - g'(m^{N_t}) dm^{N_t}
    (J z')_m^0     = dm^0
    (J z')_m^{n+1} = B_n^T dm^{n+1} - dm^n/dt + H_n dU^n,

with the HJB step operator ``A_n = I/dt + L_n + diag(phi_S) D_n``, the FP step operator
``B_n^T = (I/dt + L_n + diag(phi_S + m phi_Sm) D_n)^T`` and the Hessian block

    H_n = D_n^T diag(m phi_SS) D_n + sum_k G_k^-T diag(2 m phi_S 1[D_k^- U > 0]) G_k^-
                                   + G_k^+T diag(2 m phi_S 1[D_k^+ U < 0]) G_k^+.

Every piece is a ``(1 + 2d)``-point stencil per time step (``D_n^T diag D_n`` is applied as two
stencils), so a product ``J z'`` costs a few compiled passes over the space-time grid and the
linearisation stores ``O(N_t N)`` numbers: no sparse matrix is assembled (the assembled
:meth:`FDScheme.jacobian` is kept for the direct solver and as the reference of the tests).
"""

from __future__ import annotations

import numpy as np

from . import kernels


class Linearisation:
    """``J(U, m)`` of the FD scheme as stencils; see the module docstring for the blocks.

    Attributes
    ----------
    vals_uu : ndarray (N_t, N, s)
        Stencils of the HJB step operators ``A_n``.
    vals_mm : ndarray (N_t, N, s)
        Stencils of ``I/dt + L_n + diag(phi_S + m phi_Sm) D_n`` (the FP step solves with the
        transpose, whose stencils are ``vals_mmT``).
    """

    def __init__(self, scheme, U, M):
        self.scheme = scheme
        self.grid = grid = scheme.grid
        nt, N, dt = scheme.nt, scheme.N, scheme.dt
        self.nt, self.N, self.dt = nt, N, dt
        Hm = scheme.problem.hamiltonian
        Un, Mn1 = U[:-1], M[1:]
        S, ap, bm, _, phiS = scheme.hamiltonian_parts(Un, Mn1)
        Lv = scheme.linear_stencils(nt)
        self.vals_uu = Lv + kernels.dS_stencil(ap, bm, grid, phiS)
        self.vals_uu[:, :, 0] += 1.0 / dt
        self.vals_mm = Lv + kernels.dS_stencil(ap, bm, grid, phiS + Mn1 * Hm.phi_Sm(S, Mn1))
        self.vals_mm[:, :, 0] += 1.0 / dt
        self.vals_mmT = kernels.transpose_stencils(self.vals_mm, grid)
        self.d_um = np.ascontiguousarray(np.broadcast_to(Hm.phi_m(S, Mn1) - scheme.df(Mn1), Mn1.shape), dtype=float)
        self.d_terminal = scheme.dg(M[-1])
        # Hessian block: D^T diag(m phi_SS) D + upwind weighted Laplacians (one stencil W)
        self.D = kernels.dS_stencil(ap, bm, grid)
        self.DT = kernels.transpose_stencils(self.D, grid)
        self.c = np.ascontiguousarray(np.broadcast_to(Hm.phi_SS(S, Mn1) * Mn1, Mn1.shape), dtype=float)
        self.W = self._upwind_hessian(2.0 * phiS * Mn1, ap, bm)

    def _upwind_hessian(self, w, ap, bm):
        """Stencil of ``sum_k G_k^-T diag(w 1[ap > 0]) G_k^- + G_k^+T diag(w 1[bm < 0]) G_k^+``.

        ``(G^- x)_i = hm_i (x_i - x_{i-}) / h``: row j of ``G^-T diag(a) G^-`` is
        ``(hm_j a_j (x_j - x_{j-}) - hm_{j+} a_{j+} (x_{j+} - x_j)) / h^2`` (and the mirror image
        for ``G^+``); at a no-flux wall the mask of the wrapped neighbour is 0.
        """
        cols, hm, hp = self.grid.stencil
        W = np.zeros((self.nt, self.N, cols.shape[1]))
        for k, h in enumerate(self.grid.h):
            minus, plus = cols[:, 1 + 2 * k], cols[:, 2 + 2 * k]
            a = w * (ap[:, k, :] > 0) * hm[k] / h**2      # hm_j a_j / h^2
            b = w * (bm[:, k, :] < 0) * hp[k] / h**2      # hp_j b_j / h^2
            a_plus, b_minus = a[:, plus], b[:, minus]     # the same at j+ and j-
            W[:, :, 0] += a + a_plus + b + b_minus
            W[:, :, 1 + 2 * k] -= a + b_minus
            W[:, :, 2 + 2 * k] -= a_plus + b
        return W

    # ----------------------------------------------------------------- products
    def hessian(self, x):
        """``H_n x^n`` for a stack ``x`` of shape (N_t, N)."""
        return kernels.apply_hessian(self.D, self.DT, self.c, self.W, self.grid, x)

    def matvec(self, z):
        """``J z`` for ``z = (dU, dm)`` flattened, shape (2 (N_t + 1) N,)."""
        nt, N, dt, g = self.nt, self.N, self.dt, self.grid
        z = np.asarray(z, dtype=float).ravel()
        dU = z[: (nt + 1) * N].reshape(nt + 1, N)
        dM = z[(nt + 1) * N:].reshape(nt + 1, N)
        y = np.empty(2 * (nt + 1) * N)
        yU, yM = y[: (nt + 1) * N].reshape(nt + 1, N), y[(nt + 1) * N:].reshape(nt + 1, N)
        # one compiled pass over the time steps (the blocks' stencils read once, no temporaries)
        kernels.jacobian_product(self.vals_uu, self.vals_mmT, self.D, self.DT, self.c, self.W, self.d_um, g, dt,
                                 dU, dM, yU, yM)
        yU[nt] = dU[nt] - self.d_terminal * dM[nt]
        yM[0] = dM[0]
        return y
