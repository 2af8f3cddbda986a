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
