"""Generative models as MFGs: thin compositions of dynamics and costs (no special solvers).

* :func:`cnf_problem` -- continuous normalizing flow: ``nu = 0``, kinetic cost
  ``(lambda/2)|v|^2``, terminal cost ``KL(m(T) || pi)``, data density at ``t = 0``.
* :class:`ScoreModel` -- score-based diffusion: forward noising FP, the exact grid score, and
  the density a given score generates through the reverse-time FP.
* :func:`score_mfg_problem` -- the control form of the generative diffusion: ``H = nu |p|^2``,
  ``U(T) = -log p_data``, whose optimal control ``2 nu grad log eta`` is a score.
* :func:`jko_step_problem`, :func:`jko_chain` -- Wasserstein gradient flows, one MFG per JKO step.
"""

from __future__ import annotations

import numpy as np

from ..couplings import gaussian_log_density
from ..grid import TensorGrid
from ..hamiltonians import QuadraticHamiltonian
from ..problem import MFGProblem, density_on_grid
from ..solver import solve
from .densities import density_from_samples
from .energies import KL, CrossEntropy, Energy
from .transport import evolve_density, grid_gradient


def standard_normal_log_density(dim):
    """``log N(0, I)`` in ``dim`` dimensions."""
    return gaussian_log_density(np.zeros(dim), np.eye(dim))


def data_on_grid(data, grid, *, tail_tol=1e-4, bandwidth=None):
    """Turn data into a normalised grid density, checking that it fits in the box.

    Parameters
    ----------
    data : callable, ndarray of ``grid.shape``, samples ``(n, d)``, or a toy data set
        A density (callable of the coordinates or grid array) or samples; samples are turned
        into a density by a Gaussian kernel density estimate (Scott's bandwidth
        ``n^(-1/(d+4))`` times the per-axis sample standard deviation unless ``bandwidth``
        is given), evaluated at the grid points and renormalised on the grid.
    tail_tol : float
        The density on the outermost cells of a no-flux axis must be below
        ``tail_tol * max(density)``: a density cut off by the box is refused.
    """
    if hasattr(data, "on_grid"):
        # a data set that knows its grid values (the checkerboard's exact cell averages)
        data = data.on_grid(grid)
    elif not callable(data):
        arr = np.asarray(data, float)
        if arr.ndim == 2 and arr.shape != grid.shape:  # samples (n, d)
            data = density_from_samples(arr, grid, bandwidth)
    values = density_on_grid(data, grid, name="data density", normalize=True)
    peak = values.max()
    for k, bc in enumerate(grid.boundary):
        if bc != "noflux":
            continue
        edge = max(np.take(values, 0, axis=k).max(), np.take(values, -1, axis=k).max())
        if edge > tail_tol * peak:
            raise ValueError(
                f"data density does not fit in the box along axis {k}: its value on the boundary is "
                f"{edge / peak:.2e} of its maximum (> tail_tol = {tail_tol:g}); enlarge grid bounds[{k}] "
                "or raise tail_tol")
    return values


def cnf_problem(grid, data, *, lam=1.0, T=1.0, nt=32, reference_log_density=None, tail_tol=1e-4, kl_eps=1e-6,
                name="cnf"):
    """Continuous normalizing flow as an MFG (OT-Flow / RNODE type).

    ``-dU/dt + |grad U|^2/(2 lambda) = 0``, ``U(T) = 1 + log m(T) - log pi``;
    ``dm/dt - div(m grad U)/lambda = 0``, ``m(0) = data``. Equivalent to one JKO step of
    ``KL(. || pi)`` with step ``T/lambda`` (so ``m(T)`` is not pi for lambda > 0).

    Parameters
    ----------
    grid : TensorGrid
    data : callable, ndarray or samples
        See :func:`data_on_grid`.
    lam : float
        Kinetic weight lambda > 0 (lambda = 0, the CNF without kinetic energy, is ill-posed).
    T : float
    nt : int
    reference_log_density : callable, optional
        ``log pi``; default ``N(0, I)``.
    tail_tol : float
    kl_eps : float
        Tail regularisation of the KL first variation (:class:`mfgpde.couplings.KLCoupling`).
    """
    lam = float(lam)
    if not (np.isfinite(lam) and lam > 0):
        raise ValueError(f"lam (kinetic weight lambda) must be > 0, got {lam}; lambda = 0 is the ill-posed "
                         "CNF without kinetic energy (see mfgpde.studies.wellposedness.cnf_lambda_study)")
    log_pi = reference_log_density or standard_normal_log_density(grid.dim)
    m0 = data_on_grid(data, grid, tail_tol=tail_tol)
    terminal = KL(log_pi, eps=kl_eps).first_variation()
    terminal.value(m0, grid)  # evaluates log pi now: a vanishing reference fails before any work
    return MFGProblem(grid, T, nt, 0.0, QuadraticHamiltonian(lam), m0, terminal=terminal, name=name)


def score_mfg_problem(grid, data_log_density, *, nu=1.0, T=1.0, nt=32, start=None, name="score_mfg"):
    """Generative diffusion in control form: ``dY = v dt + sigma dW``, cost
    ``int |v|^2/(2 sigma^2) dt - log p_data(Y_T)``.

    HJB ``-dU/dt - nu Lap U + nu |grad U|^2 = 0``, ``U(T) = -log p_data``: ``H = |p|^2/(2 lambda)``
    with ``lambda = 1/(2 nu)``. ``eta = exp(-U)`` solves the backward heat equation and the
    optimal control ``v* = 2 nu grad log eta`` is a score.
    """
    start = start if start is not None else np.exp(standard_normal_log_density(grid.dim)(*grid.coordinates()))
    return MFGProblem(grid, T, nt, nu, QuadraticHamiltonian(1.0 / (2.0 * nu)), start, normalize=True,
                      terminal=CrossEntropy(data_log_density).first_variation(), name=name)


class ScoreModel:
    """Score-based diffusion model on a grid.

    Forward SDE ``dX = b(X) dt + sigma dW`` with

    * ``"vp"`` (OU): ``b = -x``, ``sigma = sqrt(2)`` (``nu = 1``); stationary law ``N(0, I)``;
    * ``"ve"``: ``b = 0``, constant ``sigma`` (heat flow, variance grows like ``sigma^2 t``).

    Parameters
    ----------
    grid : TensorGrid
    sde : {"vp", "ve"}
    sigma : float
        Noise level for ``"ve"`` (``"vp"`` uses sqrt(2)).
    T : float
    nt : int
    transport : {"muscl", "upwind"}
        Scheme of the forward and reverse-time FP solves (:func:`evolve_density`). The default,
        second-order ``"muscl"``, regenerates the data from the exact score to L1 ~ 1e-2 on the
        shipped 1D case, where first-order upwinding smears the modes to L1 ~ 0.14 and cannot
        tell a good score model from a poor one.
    """

    def __init__(self, grid, *, sde="vp", sigma=1.0, T=1.0, nt=64, transport="muscl"):
        if sde not in ("vp", "ve"):
            raise ValueError(f"sde must be 'vp' or 've', got {sde!r}")
        if transport not in ("muscl", "upwind"):
            raise ValueError(f"transport must be 'muscl' or 'upwind', got {transport!r}")
        self.transport = transport
        if not isinstance(grid, TensorGrid):
            raise TypeError("grid must be a TensorGrid")
        self.grid, self.sde, self.T, self.nt = grid, sde, float(T), int(nt)
        self.sigma = np.sqrt(2.0) if sde == "vp" else float(sigma)
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.nu = 0.5 * self.sigma**2

    @property
    def times(self):
        return np.linspace(0, self.T, self.nt + 1)

    def drift(self, t, *xs):
        """Forward drift ``b``."""
        if self.sde == "vp":
            return [-x for x in xs]
        return [np.zeros_like(x) for x in xs]

    def forward(self, data):
        """Densities ``p_t`` of the forward (noising) process, shape ``(nt + 1,) + grid.shape``."""
        p0 = data_on_grid(data, self.grid)
        return evolve_density(self.grid, p0, self.drift, self.T, self.nt, nu=self.nu, scheme=self.transport)

    #: Below this fraction of a level's maximum density the grid score is capped (see grid_score).
    SCORE_CAP_FRACTION = 1e-12

    def grid_score(self, p, floor=1e-300):
        """Exact score on the grid ``s = grad log p_t`` (centred differences), ``(nt + 1, d) + shape``.

        Where ``p_t`` is below ``SCORE_CAP_FRACTION`` of its maximum (or a neighbour is: the
        centred difference reaches it) the magnitude of ``s`` is capped at the largest magnitude
        found elsewhere. There the density carries no mass a push-forward could see, but
        ``log p`` falls off a cliff where ``p`` underflows to ``floor``: the centred difference
        across it was 10-50x the score of the data, and the reverse-time transport's CFL
        substeps followed it (44,889 substeps instead of about 900 for a 64^2 toy reference,
        50 s instead of 1 s).
        """
        logp = np.log(np.maximum(p, floor))
        s = np.stack([grid_gradient(lp, self.grid) for lp in logp])
        for n in range(len(p)):
            live = p[n] >= self.SCORE_CAP_FRACTION * p[n].max()
            # a centred difference reaches one cell out: a live cell next to a low one is low too
            for k in range(self.grid.dim):
                pad = [(0, 0)] * live.ndim
                pad[k] = (1, 1)
                # a periodic axis wraps (its seam is a neighbour like any other); a wall has none
                wide = (np.pad(live, pad, mode="wrap") if self.grid.boundary[k] == "periodic"
                        else np.pad(live, pad, constant_values=True))
                n_k = live.shape[k]
                live = (live & np.take(wide, np.arange(0, n_k), axis=k)
                        & np.take(wide, np.arange(2, n_k + 2), axis=k))
            low = ~live
            if low.any() and not low.all():
                mag = np.sqrt(np.sum(s[n] ** 2, axis=0))
                cap = mag[~low].max()
                scale = np.where(low & (mag > cap), cap / np.maximum(mag, 1e-300), 1.0)
                s[n] *= scale[None]
        return s

    def reverse_drift(self, score):
        """Drift of the reverse SDE in reverse time ``tau = T - t``: ``-b + sigma^2 s``.

        ``score`` is an array ``(nt + 1, d) + shape`` indexed by forward time levels, or a
        callable ``s(t, x1, ..., xd)`` of forward time.
        """
        X = self.grid.coordinates()
        out = np.empty((self.nt + 1, self.grid.dim) + self.grid.shape)
        for j, tau in enumerate(self.times):
            t = self.T - tau
            s = score[self.nt - j] if not callable(score) else np.asarray(score(t, *X), float)
            b = np.asarray(self.drift(t, *X))
            out[j] = -b + self.sigma**2 * s
        return out

    def generate(self, score, start=None):
        """Density generated by a score through the reverse-time FP equation.

        ``dq/dtau - nu Lap q + div(q (-b + sigma^2 s)(., T - tau)) = 0`` from ``q(0) = start``
        (default: the noised density of the model's own reference, ``N(0, I)`` for VP).

        Returns
        -------
        ndarray ``(nt + 1,) + shape``: ``q`` at reverse times ``tau_j``; ``q[-1]`` approximates
        the data density.
        """
        if start is None:
            if self.sde != "vp":
                raise ValueError("start density is required for the VE process (it has no stationary law)")
            start = np.exp(standard_normal_log_density(self.grid.dim)(*self.grid.coordinates()))
        start = density_on_grid(start, self.grid, name="start density", normalize=True)
        return evolve_density(self.grid, start, self.reverse_drift(score), self.T, self.nt, nu=self.nu,
                              scheme=self.transport)


def jko_step_problem(grid, rho, energy, tau, *, nt=8, name="jko_step"):
    """One JKO step ``argmin W2^2(rho, .)/(2 tau) + E`` as the MFG on ``[0, tau]``.

    ``H = |p|^2/2``, ``nu = 0``, ``F = 0``, ``U(tau) = dE/dm``, ``m(0) = rho``.
    """
    if not isinstance(energy, Energy):
        raise TypeError("energy must be an mfgpde.generative.energies.Energy")
    if not tau > 0:
        raise ValueError(f"tau (JKO step) must be > 0, got {tau}")
    return MFGProblem(grid, tau, nt, 0.0, QuadraticHamiltonian(1.0), rho, terminal=energy.first_variation(), name=name)


def jko_chain(grid, rho0, energy, tau, steps, *, nt=8, tol=1e-9, verbose=False):
    """Iterated JKO steps, each an MFG solved by Newton.

    Step k+1 is warm-started from the value function of step k (the densities change by
    O(tau) per step); if that start fails, it is solved from scratch with viscosity
    continuation.

    Returns
    -------
    times : ndarray (steps + 1,)
    densities : ndarray (steps + 1,) + grid.shape
    results : list of MFGResult
    """
    rho = density_on_grid(rho0, grid, name="rho0", normalize=True)
    dens, results, prev = [rho], [], None
    for k in range(steps):
        p = jko_step_problem(grid, rho, energy, tau, nt=nt, name=f"jko_{k}")
        r = None
        if prev is not None:
            M0 = np.repeat(rho.ravel()[None], nt + 1, axis=0)
            r = solve(p, method="newton", tol=tol, verbose=verbose, initial=(prev.U, M0), max_iter=25)
        if r is None or not r.converged:
            r = solve(p, method="newton", tol=tol, verbose=verbose, error_estimate=False)
        if not r.converged:
            raise RuntimeError(f"JKO step {k}: the MFG did not converge ({r.status}, residual {r.diagnostics['residual']:.2e})")
        rho = np.maximum(r.m[-1], 0.0)
        rho = rho / grid.integrate(rho)
        dens.append(rho)
        results.append(r)
        prev = r
    return tau * np.arange(steps + 1), np.array(dens), results
