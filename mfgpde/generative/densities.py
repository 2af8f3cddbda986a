"""Densities for data and reference measures: Gaussians, mixtures, grid histograms of samples."""

from __future__ import annotations

import numpy as np

from ..couplings import gaussian_log_density


def gaussian(mean, cov):
    """Gaussian density ``N(mean, cov)`` as a callable of the coordinate arrays."""
    logp = gaussian_log_density(mean, cov)
    return lambda *xs: np.exp(logp(*xs))


def gaussian_mixture(weights, means, covs):
    """Density of ``sum_k w_k N(mu_k, S_k)`` as a callable of the coordinate arrays.

    Parameters
    ----------
    weights : sequence of float
        Non-negative, normalised here to sum to one.
    means : sequence of array_like
    covs : sequence of float or array_like
        Per component: a scalar variance (isotropic) or a covariance matrix.
    """
    w = np.asarray(weights, float)
    if w.ndim != 1 or w.size == 0 or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be a non-empty list of non-negative numbers with positive sum")
    if len(means) != w.size or len(covs) != w.size:
        raise ValueError(f"weights, means and covs must have the same length, got {w.size}, {len(means)}, {len(covs)}")
    w = w / w.sum()
    comps = []
    for mu, S in zip(means, covs):
        mu = np.atleast_1d(np.asarray(mu, float))
        S = np.asarray(S, float)
        S = S * np.eye(mu.size) if S.ndim == 0 else S
        comps.append(gaussian_log_density(mu, S))

    def density(*xs):
        return sum(wk * np.exp(c(*xs)) for wk, c in zip(w, comps))

    density.weights, density.means, density.covs = w, [np.atleast_1d(m) for m in means], covs
    return density


def density_from_samples(samples, grid, bandwidth=None):
    """Gaussian kernel density estimate of samples, evaluated at the grid points.

    Bandwidth per axis: Scott's rule ``h_k = std_k * n^(-1/(d+4))`` unless ``bandwidth`` is
    given (scalar or per axis). The estimate is evaluated at the grid points in chunks and
    renormalised to unit mass on the grid.

    Parameters
    ----------
    samples : ndarray (n, d)
    grid : TensorGrid
    bandwidth : float or sequence, optional
    """
    X = np.asarray(samples, float)
    if X.ndim != 2 or X.shape[1] != grid.dim:
        raise ValueError(f"samples must have shape (n, {grid.dim}), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("samples contain non-finite values")
    n, d = X.shape
    if bandwidth is None:
        bw = X.std(axis=0, ddof=1) * n ** (-1.0 / (d + 4))
    else:
        bw = np.broadcast_to(np.asarray(bandwidth, float), (d,))
    bw = np.maximum(bw, 0.5 * np.array(grid.h))  # never narrower than the grid resolves
    P = grid.points()
    out = np.zeros(len(P))
    for start in range(0, n, 2048):
        Z = (P[:, None, :] - X[None, start:start + 2048, :]) / bw
        out += np.exp(-0.5 * np.sum(Z * Z, axis=-1)).sum(axis=1)
    out = out.reshape(grid.shape)
    return out / (out.sum() * grid.cell_volume)
