"""One rank's part of a distributed grid: its ghosted patch and the problem's data on it.

:class:`PatchGrid` is a box of the global tensor grid whose stencil stops at the box edge;
:class:`LocalProblem` holds what :class:`mfgpde.fd.scheme.FDScheme` reads of an
:class:`~mfgpde.problem.MFGProblem`, cut to the patch. With them every rank runs the serial
kernels unchanged on its patch (:mod:`mfgpde.fd.distributed`).
"""

from __future__ import annotations

import numpy as np

from ..grid import TensorGrid
from ..problem import _Drift


class PatchGrid(TensorGrid):
    """A rank's ghosted box of a :class:`TensorGrid`, as a grid of its own.

    Its spacing and coordinates are those of the global grid (periodic ghosts carry the wrapped
    coordinates); its stencil ends at the patch edge (no-flux there), which only the outermost
    ghost layer sees. Fields given as arrays on the global grid are cut to the patch
    (:meth:`restrict`).

    Attributes
    ----------
    global_shape : tuple
    index : tuple of ndarray
        Global index of the patch's points along each axis.
    """

    def __init__(self, parent, starts, stops):
        index = tuple(np.arange(a, b) % n for a, b, n in zip(starts, stops, parent.shape))
        object.__setattr__(self, "bounds", parent.bounds)
        object.__setattr__(self, "shape", tuple(len(i) for i in index))
        object.__setattr__(self, "boundary", ("noflux",) * parent.dim)
        object.__setattr__(self, "h", parent.h)
        object.__setattr__(self, "axes", tuple(ax[i] for ax, i in zip(parent.axes, index)))
        object.__setattr__(self, "global_shape", parent.shape)
        object.__setattr__(self, "index", index)

    def restrict(self, values):
        values = np.asarray(values)
        if values.shape[values.ndim - self.dim:] == tuple(self.global_shape):
            return values[(Ellipsis,) + np.ix_(*self.index)]
        return values


class LocalProblem:
    """The data of an :class:`MFGProblem` on one rank's patch (what :class:`FDScheme` reads)."""

    def __init__(self, problem, grid):
        self.grid = grid
        self.T, self.nt, self.nu, self.dt = problem.T, problem.nt, problem.nu, problem.dt
        self.hamiltonian, self.coupling, self.terminal = problem.hamiltonian, problem.coupling, problem.terminal
        self.m0 = grid.restrict(problem.m0)
        # a drift callable is evaluated on the patch (its periodic ghosts carry wrapped coordinates),
        # not on the global grid at every step; a drift array is cut to the patch
        b = None if problem.drift is None else problem.drift.b
        self.drift = None if b is None else _Drift(b if callable(b) else grid.restrict(np.asarray(b, float)), grid)
        self.name = problem.name
        # the sources at every level, cut to the patch from the global arrays the problem holds
        # (evaluated once on the global grid, so a callable sees the same points as the serial scheme)
        self.hjb_source, self.fp_source = (None if s is None else self._levels(s, grid)
                                           for s in (problem.hjb_source, problem.fp_source))

    @staticmethod
    def _levels(values, grid):
        """``(K, N)`` values on the global grid -> ``(K, N_patch)`` on the patch."""
        K = values.shape[0]
        return np.ascontiguousarray(grid.restrict(values.reshape((K,) + tuple(grid.global_shape))).reshape(K, -1))
