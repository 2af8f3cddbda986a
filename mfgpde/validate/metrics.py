"""Distances between grid densities and between fields.

W2: exact in 1D (quantile functions of the piecewise-constant densities); in 2D/3D the exact
discrete optimal transport (network simplex, ``ot.emd2`` from POT) between the histograms of
the two densities aggregated into blocks of at most ``max_bins`` cells, with squared
Euclidean cost between block centres. Aggregation to ``max_bins`` adds at most about half a
block diagonal to W2; ``max_bins`` is returned with the value.
"""

from __future__ import annotations

import numpy as np


def kl_divergence(p, q, grid, floor=1e-300):
    """``KL(p || q) = int p log(p / q)`` on the grid (terms with p = 0 vanish)."""
    p = np.maximum(p, 0.0)
    q = np.maximum(q, 0.0)
    mask = p > floor
    return float(grid.cell_volume * np.sum(p[mask] * (np.log(p[mask]) - np.log(np.maximum(q[mask], floor)))))


def _w2_1d(p, q, x, h):
    # CDFs on cell edges, quantile functions on a common fine level set
    edges = np.concatenate([[x[0] - h / 2], x + h / 2])
    Fp = np.concatenate([[0], np.cumsum(p) * h])
    Fq = np.concatenate([[0], np.cumsum(q) * h])
    Fp /= Fp[-1]
    Fq /= Fq[-1]
    levels = np.linspace(0, 1, 20 * len(x) + 1)
    levels = 0.5 * (levels[1:] + levels[:-1])
    Qp = np.interp(levels, Fp, edges)
    Qq = np.interp(levels, Fq, edges)
    return float(np.sqrt(np.mean((Qp - Qq) ** 2)))


def _block(values, grid, factor):
    out = values
    centres = []
    for k in range(grid.dim):
        n = grid.shape[k] // factor * factor
        sl = [slice(None)] * out.ndim
        sl[k] = slice(0, n)
        out = out[tuple(sl)]
        shp = list(out.shape)
        shp[k:k + 1] = [n // factor, factor]
        out = out.reshape(shp).sum(axis=k + 1)
        centres.append(grid.axes[k][:n].reshape(-1, factor).mean(axis=1))
    return out, centres


def wasserstein2(p, q, grid, max_bins=2500):
    """W2 distance between two densities on the grid (see the module docstring).

    Returns
    -------
    float
    """
    if grid.dim == 1:
        return _w2_1d(np.maximum(p, 0), np.maximum(q, 0), grid.axes[0], grid.h[0])
    import ot

    factor = 1
    while np.prod([n // factor for n in grid.shape]) > max_bins:
        factor += 1
    a, centres = _block(np.maximum(p, 0) * grid.cell_volume, grid, factor)
    b, _ = _block(np.maximum(q, 0) * grid.cell_volume, grid, factor)
    X = np.stack([c.ravel() for c in np.meshgrid(*centres, indexing="ij")], axis=1)
    a, b = a.ravel() / a.sum(), b.ravel() / b.sum()
    M = ot.dist(X, X, metric="sqeuclidean")
    return float(np.sqrt(max(ot.emd2(a, b, M, numItermax=2_000_000), 0.0)))


def density_metrics(p, q, grid, w2=True):
    """L1, L2, KL both ways and W2 between a model density p and a reference q."""
    out = {"L1": float(grid.integrate(np.abs(p - q))), "L2": float(np.sqrt(grid.integrate((p - q) ** 2))),
           "KL_model_reference": kl_divergence(p, q, grid), "KL_reference_model": kl_divergence(q, p, grid)}
    if w2:
        out["W2"] = wasserstein2(p, q, grid)
    return out


def weighted_field_error(v, w, weight, grid, times):
    """``sqrt( (1/T) int_0^T int weight |v - w|^2 dx dt )`` (trapezoid in time)."""
    sq = np.sum((v - w) ** 2, axis=1) * weight
    per_t = sq.reshape(len(times), -1).sum(axis=1) * grid.cell_volume
    T = times[-1] - times[0]
    return float(np.sqrt(np.trapezoid(per_t, times) / T))
