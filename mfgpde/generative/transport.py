"""Densities carried by a given velocity field: continuity / Fokker-Planck solves.

``dm/dt - nu Lap m + div(m v) = 0`` with v given on the grid (the drift of a flow model, or
``-b + sigma^2 s`` for the reverse-time diffusion driven by a score s). The discretisation is
the FP half of the monotone MFG scheme with ``U = 0`` and drift v: conservative, and
``m >= 0`` for any v (upwinding), so the densities a model generates are compared with the
MFG reference on the same footing.
"""

from __future__ import annotations

import numpy as np

from ..fd.muscl import evolve_muscl
from ..fd.scheme import FDScheme
from ..grid import centred_gradient
from ..hamiltonians import QuadraticHamiltonian
from ..problem import MFGProblem, density_on_grid


class FieldOnGrid:
    """A vector field sampled at the time levels ``t_n`` of a solve: array ``(nt + 1, d) + grid.shape``.

    Calling it at time ``t`` returns the sample of the nearest time level, which is what the
    implicit scheme uses at step ``n`` (``t = t_n``).
    """

    time_dependent = True

    def __init__(self, values, T):
        self.values, self.T = np.asarray(values, float), float(T)
        self.nt = self.values.shape[0] - 1

    def __call__(self, t, *xs):
        n = int(round(t / self.T * self.nt))
        return list(self.values[min(max(n, 0), self.nt)])


SCHEMES = ("upwind", "muscl")


def evolve_density(grid, m0, velocity, T, nt, *, nu=0.0, scheme="upwind"):
    """Solve ``dm/dt - nu Lap m + div(m v) = 0`` on ``[0, T]`` from ``m0``.

    Parameters
    ----------
    grid : TensorGrid
    m0 : callable or ndarray
        Initial density (not renormalised).
    velocity : callable or ndarray
        ``v(t, x1, ..., xd) -> (v1, ..., vd)`` or an array ``(nt + 1, d) + grid.shape``.
    T : float
    nt : int
    nu : float
        Diffusion ``sigma^2 / 2``.
    scheme : {"upwind", "muscl"}
        ``"upwind"``: the FP half of the monotone MFG scheme (first order, implicit Euler; the
        footing of an MFG reference). ``"muscl"``: the second-order positivity-preserving
        transport of :mod:`mfgpde.fd.muscl` (for push-forwards that must tell models apart);
        it needs the velocity as an array or a callable of ``(t, x1, ..., xd)``, sampled at the
        levels.

    Returns
    -------
    ndarray, shape ``(nt + 1,) + grid.shape``
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if scheme == "muscl":

        if callable(velocity):
            X = grid.coordinates()
            velocity = [np.asarray(velocity(t, *X), float) for t in np.linspace(0.0, T, nt + 1)]
        arr = np.asarray(velocity, float)
        if arr.shape != (nt + 1, grid.dim) + grid.shape:
            raise ValueError(f"velocity: array of shape {arr.shape}, expected {(nt + 1, grid.dim) + grid.shape}")
        if not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise ValueError(f"velocity: non-finite value at (time level, component, grid index) {tuple(bad)}")
        return evolve_muscl(grid, density_on_grid(m0, grid, name="m0"), arr, T, nu=nu)
    if not callable(velocity):
        arr = np.asarray(velocity, float)
        expect = (nt + 1, grid.dim) + grid.shape
        if arr.shape != expect:
            raise ValueError(f"velocity: array of shape {arr.shape}, expected {expect}")
        if not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise ValueError(f"velocity: non-finite value at (time level, component, grid index) {tuple(bad)}")
        velocity = FieldOnGrid(arr, T)
    p = MFGProblem(grid, T, nt, nu, QuadraticHamiltonian(), m0, drift=velocity, name="transport")
    sc = FDScheme(p)
    M = sc.solve_fp(np.zeros((nt + 1, grid.size)))
    return M.reshape((nt + 1,) + grid.shape)


def grid_gradient(field, grid):
    """Centred differences (one-sided at no-flux walls) of a field on the grid, shape ``(d,) + grid.shape``
    (:func:`mfgpde.grid.centred_gradient`).
    """
    return centred_gradient(field, grid)
