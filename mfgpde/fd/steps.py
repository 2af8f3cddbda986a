"""Solvers for the per-step systems of the time-implicit scheme (2D and 3D tensor grids).

Every implicit time step of the scheme solves one spatial system with a stencil operator

    A = I/dt + L_n + A_n,    L_n = -nu Lap_h - b . grad_h (upwind),  A_n = diag(phi_S) dS/dU,

(HJB steps) or its transpose (FP steps). ``A`` is an M-matrix: a positive diagonal that
dominates, non-positive neighbours. A Newton step of the coupled system needs ``2 N_t`` such
solves per Krylov iteration (the block-triangular sweep preconditioner of
:mod:`mfgpde.fd.krylov`), a sweep of the fixed point ``N_t`` of them.

Why a spectral preconditioner and not sparse LU
-----------------------------------------------
Measured on the 2D LOG2D case (quadratic H, log coupling, nu = 0.1) on this project's 2-core
machine: a SuperLU factorisation of one step costs 20 ms at 64^2 and 110 ms at 128^2 (fill-in
grows like ``N^{3/2}``), the stored factors of all steps took 9 GB at 128^2 x 128, and the
factorisations were 55-70 % of the solve. The operator differs from

    P = (1/dt + c) I + nu (-Lap_h)

only by the first-order upwind transport (``|p|/h`` against ``nu/h^2``) and the variation of
the diagonal, and ``P`` is diagonalised exactly by the discrete Fourier transform on periodic
axes and by the DCT-II on no-flux axes (the no-flux Laplacian of :class:`TensorGrid` is the
cell-centred Neumann one). So ``P^{-1}`` costs two real transforms, ``O(N log N)`` with no
set-up, no memory beyond the grid function, and threads over the grid lines (``workers``).
Measured at 128^2: ``P``-preconditioned BiCGSTAB reaches 1e-10 in 10-17 iterations on every
step of LOG2D, where Jacobi needs 75-85 and ILU(0) 50; the preconditioned Richardson
iteration contracts by a factor ~0.1-0.3 per sweep, so two or three sweeps of it are an
accurate, *linear* approximate inverse for the Newton preconditioner (GMRES needs a fixed
preconditioner).

Where the transport dominates (``nu = 0`` first-order problems, coarse grids with a strong
drift) ``P`` degenerates to a multiple of the identity and the contraction is lost: the
solver measures it on each step (:meth:`StepOperator.contraction`) and falls back to sparse
LU (``N`` up to :data:`DIRECT_LIMIT`) or to BiCGSTAB for those steps. On 1D grids the cyclic
tridiagonal solve of :mod:`mfgpde.fd.kernels` is exact and ``O(N)``, and stays.

Measured and rejected: replacing every step by its spectral model at once (one transform of
all time slices, a scalar recurrence in time per mode, then Richardson sweeps on the whole
space-time block) is batched and threadable, but its corrections do not propagate along the
sweep: at 128^2 x 128 it needed twice the GMRES iterations and took 277 s against 98 s for
the per-step sweeps.

The same design distributes: ``P`` is the operator a geometric multigrid cycle inverts on a
PETSc DMDA, which is what the distributed solver uses in place of the transforms.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.fft as sfft
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from . import kernels

#: Systems up to this many unknowns may be factorised by SuperLU when the spectral
#: preconditioner does not contract (transport-dominated steps).
DIRECT_LIMIT = 40_000
#: Relative tolerance of the accurate step solves (half-sweeps of the fixed point, Newton's
#: globalisation): the FP step conserves mass to this accuracy before it is restored exactly.
ACCURATE_RTOL = 1e-13
#: Iterations of the spectrally preconditioned BiCGSTAB before the accurate solve gives up on it.
SPECTRAL_MAXITER = 30
#: A step whose Richardson sweep contracts by more than this is solved otherwise.
CONTRACTION_LIMIT = 0.5
#: Threads of the transforms (``scipy.fft`` workers); the environment variable
#: ``MFGPDE_THREADS`` sets it, as ``NUMBA_NUM_THREADS`` does for the compiled kernels. One by
#: default: on a loaded 2-core machine threads of small transforms cost more than they save.
FFT_WORKERS = max(1, int(os.environ.get("MFGPDE_THREADS", "1") or 1))


class SpectralInverse:
    """Exact inverse of ``P = a I + nu (-Lap_h)`` on a tensor grid by FFT / DCT-II.

    Parameters
    ----------
    grid : TensorGrid
    nu : float
        Diffusion coefficient (>= 0).
    workers : int, optional
        Threads of :mod:`scipy.fft` (default :data:`FFT_WORKERS`).

    Notes
    -----
    Along a periodic axis with ``n`` nodes the eigenvalues of ``-D^2_h`` are
    ``(2 - 2 cos(2 pi j / n)) / h^2``; along a no-flux (cell-centred, reflecting) axis they are
    ``(2 - 2 cos(pi j / n)) / h^2`` with the DCT-II eigenvectors. ``P^{-1}`` is the transform,
    a division by ``a + nu sum_k lambda_k``, and the inverse transform.
    """

    def __init__(self, grid, nu, workers=None):
        self.shape = grid.shape
        self.workers = FFT_WORKERS if workers is None else int(workers)
        self.noflux = tuple(k for k, bc in enumerate(grid.boundary) if bc == "noflux")
        self.periodic = tuple(k for k, bc in enumerate(grid.boundary) if bc == "periodic")
        lam = np.zeros(())
        for k, (n, h) in enumerate(zip(grid.shape, grid.h)):
            if grid.boundary[k] == "periodic":
                # the last periodic axis is the one rfftn halves
                j = np.arange(n // 2 + 1) if k == self.periodic[-1] else np.arange(n)
                ev = (2.0 - 2.0 * np.cos(2.0 * np.pi * j / n)) / h**2
            else:
                ev = (2.0 - 2.0 * np.cos(np.pi * np.arange(n) / n)) / h**2
            lam = np.add.outer(lam, nu * ev)
        self.lam = lam
        self._periodic_shape = [self.shape[k] for k in self.periodic]
        #: mean diagonal of ``nu (-Lap_h)``: ``2 nu sum_k 1/h_k^2`` less the wall rows' deficit
        self.diagonal = float(nu * sum((2.0 - (grid.boundary[k] == "noflux") * 2.0 / n) / h**2
                                       for k, (n, h) in enumerate(zip(grid.shape, grid.h))))

    def inverse_eigenvalues(self, a):
        """``1 / (a + lambda)`` in the layout of the transformed grid function."""
        return 1.0 / (a + self.lam)

    def solve(self, rhs, *, a=None, inv=None):
        """``P^{-1} rhs`` for ``P = a I + nu (-Lap_h)``; ``rhs`` of shape (N,).

        ``inv`` (from :meth:`inverse_eigenvalues`) may replace ``a`` when the same shift is
        used many times.
        """
        inv = self.inverse_eigenvalues(a) if inv is None else inv
        x = rhs.reshape(self.shape)
        w = self.workers
        if self.noflux:
            x = sfft.dctn(x, type=2, axes=self.noflux, norm="ortho", workers=w)
        if self.periodic:
            x = sfft.rfftn(x, axes=self.periodic, workers=w)
            x *= inv
            x = sfft.irfftn(x, s=self._periodic_shape, axes=self.periodic, workers=w)
        else:
            x *= inv
        if self.noflux:
            x = sfft.idctn(x, type=2, axes=self.noflux, norm="ortho", workers=w)
        return np.ascontiguousarray(x).ravel()


def stencil_matrix(vals, cols):
    """Block-diagonal CSR matrix of a stack of stencil operators ``vals`` (K, N, s)."""
    K, N, s = vals.shape
    indices = (cols[None, :, :] + (np.arange(K) * N)[:, None, None]).ravel()
    return sp.csr_matrix((np.ascontiguousarray(vals).ravel(), indices, np.arange(K * N + 1) * s), shape=(K * N, K * N))


def stencil_csc(vals, cols, transpose=False):
    """The sparse matrix (CSC) of one stencil operator ``vals`` (N, s), or of its transpose."""
    A = stencil_matrix(vals[None], cols)
    return sp.csc_matrix(A.T if transpose else A)


class StepOperator:
    """One step's operator ``A`` (or ``A^T``) with a spectral preconditioner.

    Parameters
    ----------
    vals : ndarray (N, s)
        Stencil of ``A``.
    cols : ndarray (N, s)
        Neighbour table of the grid.
    spectral : SpectralInverse
    dt : float
    transpose : bool
        Solve with ``A^T`` (FP steps).
    """

    def __init__(self, vals, cols, spectral, dt, transpose=False):
        vals = np.ascontiguousarray(vals)
        self.cols = cols
        self.vals = kernels.transpose_stencil(vals, cols) if transpose else vals
        self.spectral = spectral
        # shift: the mean diagonal of A beyond that of I/dt + nu(-Lap_h), so P matches A's
        # average diagonal (transport and the Hamiltonian add to the diagonal of A)
        self.a = max(float(self.vals[:, 0].mean()) - spectral.diagonal, 1.0 / dt)
        self._inv = spectral.inverse_eigenvalues(self.a)
        self._lu = None

    def matvec(self, x):
        y = np.empty_like(x)
        kernels._matvec1(self.vals, self.cols, x, y)
        return y

    def precondition(self, r):
        return self.spectral.solve(r, inv=self._inv)

    def richardson(self, rhs, sweeps):
        """``sweeps`` preconditioned Richardson sweeps from ``x = P^{-1} rhs``: a fixed linear map."""
        x = self.precondition(rhs)
        for _ in range(sweeps - 1):
            x += self.precondition(rhs - self.matvec(x))
        return x

    def contraction(self, probes=2, seed=0):
        """Estimated contraction ``|r_{j+1}| / |r_j|`` of the preconditioned Richardson sweep."""
        rng = np.random.default_rng(seed)
        rhs = rng.standard_normal(self.vals.shape[0])
        x = self.precondition(rhs)
        r = rhs - self.matvec(x)
        rates = []
        for _ in range(probes):
            r0 = np.linalg.norm(r)
            x += self.precondition(r)
            r = rhs - self.matvec(x)
            rates.append(np.linalg.norm(r) / max(r0, 1e-300))
        return float(max(rates))

    def lu(self):
        if self._lu is None:
            self._lu = spla.splu(stencil_csc(self.vals, self.cols), permc_spec="MMD_AT_PLUS_A",
                                 options=dict(SymmetricMode=True)).solve
        return self._lu

    def solve(self, rhs, *, rtol=ACCURATE_RTOL, x0=None, maxiter=SPECTRAL_MAXITER):
        """Accurate solve: spectrally preconditioned BiCGSTAB (10-20 iterations where diffusion
        dominates); where it has not converged after ``maxiter`` iterations (transport-dominated
        steps) the compiled Jacobi BiCGSTAB goes on from its iterate, and sparse LU if that stalls.
        """
        N = rhs.size
        A = spla.LinearOperator((N, N), matvec=self.matvec, dtype=float)
        P = spla.LinearOperator((N, N), matvec=self.precondition, dtype=float)
        x, info = spla.bicgstab(A, rhs, x0=self.precondition(rhs) if x0 is None else x0, rtol=rtol, atol=0.0,
                                maxiter=maxiter, M=P)
        if info == 0:
            return x
        if not np.all(np.isfinite(x)):
            x = rhs / self.vals[:, 0]
        x, _, ok = kernels.stencil_bicgstab(self.vals, self.cols, rhs, x, rtol, 4000)
        if not ok:
            x = self.lu()(rhs)
        return x


def step_inverses(lin, *, method="auto", sweeps=2):
    """Approximate inverses of every step operator of a linearisation, for the preconditioner.

    Parameters
    ----------
    lin : Linearisation
    method : {"auto", "lu", "spectral", "bicgstab"}
        ``"lu"``: SuperLU factors of each step (exact; memory and set-up grow like
        ``N^{3/2}``). ``"spectral"``: ``sweeps`` Richardson sweeps preconditioned by the
        FFT/DCT inverse (a fixed linear map, no set-up). ``"bicgstab"``: accurate solves.
        ``"auto"``: LU up to :data:`LU_PRECONDITIONER_LIMIT` unknowns, else spectral (the
        preconditioner itself maps ``"auto"`` to ``"multigrid"``, see
        :func:`resolve_step_solver`, and calls this function only for the other methods). A
        spectral step whose measured contraction exceeds :data:`CONTRACTION_LIMIT` is solved
        exactly instead (LU, or BiCGSTAB above :data:`DIRECT_LIMIT` unknowns).

    Returns
    -------
    inv_u, inv_m : list of callables
        ``inv_u[n](r) ~ A_n^{-1} r`` and ``inv_m[n](r) ~ B_n^{-T} r``.
    info : dict
    """
    if method not in STEP_METHODS:
        raise ValueError(f"step_solver must be one of {STEP_METHODS}, got {method!r}")
    scheme = lin.scheme
    N, cols = lin.N, scheme.cols
    if method == "auto":
        method = "lu" if N <= LU_PRECONDITIONER_LIMIT else "spectral"
    if method == "lu":
        opts = dict(permc_spec="MMD_AT_PLUS_A", options=dict(SymmetricMode=True))
        inv_u = [spla.splu(stencil_csc(lin.vals_uu[n], cols), **opts).solve for n in range(lin.nt)]
        inv_m = [spla.splu(stencil_csc(lin.vals_mmT[n], cols), **opts).solve for n in range(lin.nt)]
        return inv_u, inv_m, {"method": "lu"}
    spectral = scheme.spectral_inverse()
    ops_u = [StepOperator(lin.vals_uu[n], cols, spectral, lin.dt) for n in range(lin.nt)]
    ops_m = [StepOperator(lin.vals_mmT[n], cols, spectral, lin.dt) for n in range(lin.nt)]
    if method == "bicgstab":
        return [op.solve for op in ops_u], [op.solve for op in ops_m], {"method": method}
    fallback = [0]

    def approximate(op):
        # a step whose Richardson sweep does not contract (transport-dominated: nu = 0,
        # congestion where m ~ 0) gets an exact solve instead; measured once per step
        if op.contraction(probes=1) <= CONTRACTION_LIMIT:
            return lambda r: op.richardson(r, sweeps)
        fallback[0] += 1
        return op.lu() if N <= DIRECT_LIMIT else op.solve

    inv_u = [approximate(op) for op in ops_u]
    inv_m = [approximate(op) for op in ops_m]
    return inv_u, inv_m, {"method": method, "sweeps": sweeps, "exact_steps": fallback[0]}


STEP_METHODS = ("auto", "lu", "spectral", "bicgstab")


def resolve_step_solver(method):
    """The step solver of the Newton preconditioner that ``method`` stands for.

    ``"auto"`` is the aggregation multigrid of :mod:`mfgpde.fd.multigrid` on 2D/3D grids: no
    set-up beyond the Galerkin stencils and ``O(N)`` work per step where its V-cycles contract
    (B2: 27 s with LU-preconditioned sweeps, 16-18 s with multigrid; LOG2D 64^2: 19.3 s
    spectral, 11.8 s multigrid; same Newton iterations). Steps where they do not contract are
    solved exactly by the preconditioner. The other methods are those of :func:`step_inverses`.
    """
    if method not in STEP_METHODS + ("multigrid",):
        raise ValueError(f"step_solver must be one of {STEP_METHODS + ('multigrid',)}, got {method!r}")
    return "multigrid" if method == "auto" else method
#: Below this many unknowns per step the preconditioner factorises (SuperLU is faster there).
LU_PRECONDITIONER_LIMIT = 2500
