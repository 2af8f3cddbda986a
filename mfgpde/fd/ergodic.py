"""The ergodic (stationary) MFG on a tensor grid: the finite-difference bordered system.

Unknowns ``(u, m, rho)`` on the grid; equations

    rho + L u + phi(S(u), m) - f[m] = s_u                 (N rows, HJB)
    L^T m + A(u, m)^T m = s_m                              (N - 1 rows, FP; one is redundant)
    h^d sum_i m_i = 1                                      (mass, replaces the last FP row)
    h^d sum_i u_i = 0                                      (fixes the additive constant of u)

with ``L = -nu Lap_h - b . grad_h`` and ``A = diag(phi_S) dS/du`` as in the time-dependent
scheme (:class:`mfgpde.fd.scheme.FDScheme`, which builds the stencils), so the same
monotonicity and adjoint structure hold. The globalisation, pseudo-transient continuation to
Newton with a continuation in the density floor of log couplings, is
:func:`mfgpde.iterations.pseudo_transient.pseudo_transient_newton`, shared with
:mod:`mfgpde.fem.ergodic`.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp

from ..couplings import ZeroCoupling
from ..iterations.pseudo_transient import bordered_solve, pseudo_time_matrix, pseudo_transient_newton
from ..result import ErgodicResult
from . import kernels
from .scheme import FDScheme


def _scheme(problem):
    proxy = SimpleNamespace(grid=problem.grid, nt=1, T=1.0, dt=1.0, nu=problem.nu, drift=problem.drift,
                            hamiltonian=problem.hamiltonian, coupling=problem.coupling, terminal=ZeroCoupling(),
                            m0=np.ones(problem.grid.shape), hjb_source=None, fp_source=None)
    return FDScheme(proxy)


def _residual(sc, problem, u, m, rho):
    g = problem.grid
    _S, ap, bm, phi, phiS = sc.hamiltonian_parts(u[None], m[None])
    L = sc.linear_stencil(0)[None]
    f = problem.coupling.value(m.reshape(g.shape), g).ravel()
    Ru = rho + kernels.apply_stencil(L, g, u[None])[0] + phi[0] - f
    A = kernels.dS_stencil(ap, bm, g, phiS)
    Rm = kernels.apply_stencil(L, g, m[None], transpose=True)[0] + kernels.apply_stencil(A, g, m[None], transpose=True)[0]
    if getattr(problem, "hjb_source", None) is not None:
        Ru = Ru - problem.hjb_source
    if getattr(problem, "fp_source", None) is not None:
        Rm = Rm - problem.fp_source
    Rm[-1] = g.cell_volume * m.sum() - 1.0
    Rc = g.cell_volume * u.sum()
    return np.concatenate([Ru, Rm, [Rc]])


def _jacobian(sc, problem, u, m):
    """The bordered Jacobian of ``(R_HJB, R_FP + mass row, mean row)`` in ``(u, m, rho)``."""
    g = problem.grid
    N, hd = g.size, g.cell_volume
    Hm = problem.hamiltonian
    S, ap, bm, _phi, phiS = sc.hamiltonian_parts(u[None], m[None])
    Lv = sc.linear_stencil(0)[None]
    Juu = sc.csr(Lv + kernels.dS_stencil(ap, bm, g, phiS))
    Jum = sp.diags((Hm.phi_m(S, m[None]) - problem.coupling.derivative(m.reshape(g.shape), g).ravel()[None]).ravel())
    c = phiS + m[None] * Hm.phi_Sm(S, m[None])
    Jmm = sc.csr(Lv + kernels.dS_stencil(ap, bm, g, c)).T.tocsr()
    # d/du of A(u, m)^T m: the Hessian block of the FP equation (upwind switches frozen)
    H2 = sc.hessian_matrix(S, ap, bm, phiS, m[None])
    # the last FP row (redundant: the FP operator conserves mass) becomes the mass row
    keep = np.ones(N)
    keep[-1] = 0.0
    P = sp.diags(keep)
    ones = sp.csr_matrix((np.full(N, hd), (np.zeros(N, int), np.arange(N))), shape=(1, N))
    Jmm = P @ Jmm + sp.vstack([sp.csr_matrix((N - 1, N)), ones])
    H2 = P @ H2
    return sp.bmat([[Juu, Jum, np.ones((N, 1))], [H2, Jmm, None], [ones, None, None]], format="csc")


class GridErgodic:
    """The finite-difference ergodic system on a tensor grid, as the driver consumes it.

    ``residual(z)`` and ``jacobian(z)`` act on the stacked unknown ``z = (u, m, rho)``
    (length ``2N + 1``); ``solve(J, r, dtau)`` returns the pseudo-transient step
    ``(D / dtau + J)^{-1} r``. :mod:`mfgpde.fem.ergodic` provides the same for meshes.
    """

    def __init__(self, problem):
        self.problem = problem
        self.N = problem.grid.size
        self.sc = _scheme(problem)
        self.positive = problem.hamiltonian.needs_positive_density

    def residual(self, z):
        N = self.N
        return _residual(self.sc, self.problem, z[:N], z[N:2 * N], z[-1])

    def jacobian(self, z):
        N = self.N
        self.pin = int(np.argmax(z[N:2 * N]))   # the bordered solve pins the largest density
        return _jacobian(self.sc, self.problem, z[:N], z[N:2 * N])

    def solve(self, J, r, dtau):
        return bordered_solve(pseudo_time_matrix(J, self.N, dtau), r, self.N, pin=getattr(self, "pin", None))

    def integrate(self, values):
        """``h^d sum_i v_i``, the grid's quadrature."""
        return self.problem.grid.cell_volume * np.sum(values)

    def result(self, u, m, rho, history, diagnostics):
        g = self.problem.grid
        return ErgodicResult(self.problem, u.reshape(g.shape), m.reshape(g.shape), rho, history, diagnostics)


def solve_ergodic(problem, *, tol=1e-10, max_iter=200, verbose=None, initial=None, pseudo_dt=0.1):
    """Solve an :class:`~mfgpde.ErgodicMFGProblem` on a tensor grid (:class:`GridErgodic`).

    The parameters are those of :func:`mfgpde.iterations.pseudo_transient.pseudo_transient_newton`
    (``tol`` on the max-norm of every row, ``max_iter`` over all floor stages, ``initial`` a
    ``(u, m, rho)`` start, cold by default; a start close to the solution may take a large
    ``pseudo_dt``: Newton from the first step).

    Returns
    -------
    ErgodicResult
        ``diagnostics["status"]`` is one of ``converged``, ``max_iter``, ``stagnated`` or
        ``singular_jacobian`` (the vocabulary of the time-dependent solvers).
    """
    return pseudo_transient_newton(problem, GridErgodic, tol=tol, max_iter=max_iter, verbose=verbose,
                                   initial=initial, pseudo_dt=pseudo_dt)
