"""Plain NumPy statements of the formulas in :mod:`mfgpde.fd.kernels`, for testing."""

from __future__ import annotations

import numpy as np


def _shift(u, grid, k, step):
    """The values ``u`` at the neighbour ``i + step`` along axis k, and a mask of where it exists."""
    v = np.roll(u, -step, axis=k)
    mask = np.ones(grid.shape, bool)
    if grid.boundary[k] == "noflux":
        idx = [slice(None)] * grid.dim
        idx[k] = -1 if step > 0 else 0
        mask[tuple(idx)] = False
    return v, mask


def upwind_square(u, grid):
    """``S = sum_k max(D^- u, 0)^2 + min(D^+ u, 0)^2`` on one grid function of ``grid.shape``."""
    S = np.zeros(grid.shape)
    for k, h in enumerate(grid.h):
        um, mm = _shift(u, grid, k, -1)
        up, mp = _shift(u, grid, k, +1)
        a = np.where(mm, (u - um) / h, 0.0)
        b = np.where(mp, (up - u) / h, 0.0)
        S += np.maximum(a, 0.0) ** 2 + np.minimum(b, 0.0) ** 2
    return S


def laplacian(u, grid):
    """Cell-centred / periodic 5-point (2d+1) Laplacian with zero flux across walls."""
    out = np.zeros(grid.shape)
    for k, h in enumerate(grid.h):
        um, mm = _shift(u, grid, k, -1)
        up, mp = _shift(u, grid, k, +1)
        out += (np.where(mp, up - u, 0.0) - np.where(mm, u - um, 0.0)) / h**2
    return out
