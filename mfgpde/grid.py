"""Tensor-product grids on boxes in 1, 2 or 3 dimensions.

Periodic axes use nodes ``x_i = a + i h`` with ``h = (b - a) / n`` (the point ``b`` is
identified with ``a``). No-flux axes use cell centres ``x_i = a + (i + 1/2) h``: the
one-sided difference across the wall is zero, which is the cell-centred discretisation of a
homogeneous Neumann condition for U and of a zero normal flux for m.

Every discrete operator in :mod:`mfgpde.fd` is written on a fixed ``1 + 2 d`` point stencil
(centre, then the minus and plus neighbour along each axis) stored in
:attr:`TensorGrid.stencil`; at a no-flux wall the missing neighbour is replaced by the
periodic one and given the weight ``0`` so that every operator shares one sparsity pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import memory

BOUNDARY_TYPES = ("periodic", "noflux")
MIN_POINTS = 4


def _as_tuple(value, d, name, kind):
    if np.isscalar(value) or isinstance(value, str):
        return (value,) * d
    value = tuple(value)
    if len(value) != d:
        raise ValueError(f"{name} must have one {kind} per axis ({d}), got {len(value)}")
    return value


@dataclass(frozen=True)
class TensorGrid:
    """A uniform tensor grid on the box ``prod_k [lower_k, upper_k]``.

    Parameters
    ----------
    bounds : sequence of (float, float)
        Lower and upper end of each axis; its length (1, 2 or 3) is the dimension.
    shape : int or sequence of int
        Number of grid points per axis (at least 4).
    boundary : str or sequence of str
        ``"periodic"`` or ``"noflux"`` per axis.

    Examples
    --------
    >>> g = TensorGrid([(0.0, 1.0)], 200, "periodic")
    >>> g.size, g.h
    (200, (0.005,))
    """

    bounds: tuple
    shape: tuple
    boundary: tuple
    h: tuple = field(init=False)
    axes: tuple = field(init=False, repr=False)

    def __init__(self, bounds: Sequence[Sequence[float]], shape: int | Sequence[int],
                 boundary: str | Sequence[str] = "noflux") -> None:
        try:
            arr = np.atleast_2d(np.asarray(bounds, float))
        except (TypeError, ValueError):
            raise ValueError(f"bounds must be [lower, upper] pairs of numbers, one per axis, got {bounds!r}") from None
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"bounds must be [lower, upper] pairs, one per axis (e.g. [[0, 1], [0, 2]]), got {bounds!r}")
        bounds = tuple(tuple(float(v) for v in b) for b in arr)
        d = len(bounds)
        if d not in (1, 2, 3):
            raise ValueError(f"bounds: the domain must be 1-, 2- or 3-dimensional, got {d} axes")
        for k, (a, b) in enumerate(bounds):
            if not (np.isfinite(a) and np.isfinite(b) and b > a):
                raise ValueError(f"bounds[{k}] must satisfy lower < upper (finite), got ({a}, {b})")
        raw = _as_tuple(shape, d, "shape", "point count")
        for k, n in enumerate(raw):
            # 50.7 used to become 50 silently
            if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer, float, np.floating)) \
                    or not float(n).is_integer():
                raise ValueError(f"shape[{k}] must be an integer point count, got {n!r}")
        shape = tuple(int(n) for n in raw)
        for k, n in enumerate(shape):
            if n < MIN_POINTS:
                raise ValueError(
                    f"shape[{k}] = {n}: the grid is too coarse, need at least {MIN_POINTS} points per axis"
                )
        boundary = tuple(str(b).lower() for b in _as_tuple(boundary, d, "boundary", "boundary type"))
        for k, b in enumerate(boundary):
            if b not in BOUNDARY_TYPES:
                raise ValueError(f"boundary[{k}] = {b!r} is unknown; allowed: {BOUNDARY_TYPES}")

        memory.require(8 * memory.FLOATS_PER_GRID_POINT * int(np.prod(shape, dtype=float)), f"a grid of shape {shape}")
        h = tuple((b - a) / n for (a, b), n in zip(bounds, shape))
        for k, hk in enumerate(h):
            # the scheme divides by h^2: a spacing whose square underflows (bounds [[0, 1e-300]])
            # or that round-off cannot resolve next to the coordinates would give inf/NaN stencils
            scale = max(abs(bounds[k][0]), abs(bounds[k][1]))
            if not (hk**2 > 0 and np.isfinite(1.0 / hk**2) and hk > 1e3 * np.finfo(float).eps * scale):
                raise ValueError(f"bounds[{k}] = {bounds[k]} with {shape[k]} points gives the spacing h = {hk:.3g}, "
                                 f"too small to difference (1/h^2 must be finite and h > 1e3 eps |x|); "
                                 "rescale the coordinates")
        axes = []
        for (a, _), n, hk, bc in zip(bounds, shape, h, boundary):
            offset = 0.0 if bc == "periodic" else 0.5
            axes.append(a + (np.arange(n) + offset) * hk)
        object.__setattr__(self, "bounds", bounds)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "boundary", boundary)
        object.__setattr__(self, "h", h)
        object.__setattr__(self, "axes", tuple(axes))

    # ------------------------------------------------------------------ geometry
    @property
    def dim(self) -> int:
        """Spatial dimension d."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of grid points N."""
        return int(np.prod(self.shape))

    @property
    def cell_volume(self) -> float:
        """Quadrature weight ``prod_k h_k`` of every point."""
        return float(np.prod(self.h))

    @property
    def periodic(self) -> np.ndarray:
        """Boolean array, True where an axis is periodic."""
        return np.array([b == "periodic" for b in self.boundary])

    def coordinates(self) -> tuple:
        """Coordinate arrays (``indexing="ij"``), each of :attr:`shape`."""
        return tuple(np.meshgrid(*self.axes, indexing="ij"))

    def points(self) -> np.ndarray:
        """All grid points as an ``(N, d)`` array in C order."""
        return np.stack([c.ravel() for c in self.coordinates()], axis=1)

    def restrict(self, values):
        """A field given on this grid, as seen by this grid (the identity; a distributed
        rank's :class:`~mfgpde.fd.patch.PatchGrid` cuts global arrays to its patch).
        """
        return values

    def integrate(self, values) -> float:
        """Midpoint/trapezoid quadrature ``sum_i values_i h^d`` (exact mass functional)."""
        return float(np.sum(values) * self.cell_volume)

    # ------------------------------------------------------------------ stencil
    @property
    def stencil(self):
        """Neighbour table and wall masks of the ``1 + 2 d`` point stencil.

        Returns
        -------
        cols : ndarray of int64, shape (N, 1 + 2 d)
            Column ``0`` is the point itself, ``1 + 2k`` its minus and ``2 + 2k`` its plus
            neighbour along axis ``k`` (wrapped periodically everywhere).
        has_minus, has_plus : ndarray of bool, shape (d, N)
            False where the neighbour lies across a no-flux wall.
        """
        cache = self.__dict__.get("_stencil")
        if cache is None:
            cache = self._build_stencil()
            object.__setattr__(self, "_stencil", cache)
        return cache

    def _build_stencil(self):
        d, N = self.dim, self.size
        idx = np.arange(N).reshape(self.shape)
        cols = np.empty((N, 1 + 2 * d), dtype=np.int64)
        has_minus = np.ones((d, N), dtype=bool)
        has_plus = np.ones((d, N), dtype=bool)
        cols[:, 0] = idx.ravel()
        for k in range(d):
            cols[:, 1 + 2 * k] = np.roll(idx, 1, axis=k).ravel()
            cols[:, 2 + 2 * k] = np.roll(idx, -1, axis=k).ravel()
            if self.boundary[k] == "noflux":
                first = [slice(None)] * d
                first[k] = 0
                last = [slice(None)] * d
                last[k] = -1
                hm = has_minus[k].reshape(self.shape)
                hp = has_plus[k].reshape(self.shape)
                hm[tuple(first)] = False
                hp[tuple(last)] = False
        return cols, has_minus, has_plus

    def describe(self) -> dict:
        """JSON-friendly description."""
        return {"bounds": [list(b) for b in self.bounds], "shape": list(self.shape), "boundary": list(self.boundary)}


def centred_gradient(F, grid):
    """Centred differences of a grid function (one-sided at no-flux walls, wrapped on periodic axes).

    ``F`` has shape ``lead + grid.shape`` (any leading axes, e.g. time); returns
    ``(d,) + F.shape``.
    """
    F = np.asarray(F, float)
    lead = F.ndim - grid.dim
    out = []
    for k, h in enumerate(grid.h):
        ax = k + lead
        if grid.boundary[k] == "periodic":
            out.append((np.roll(F, -1, axis=ax) - np.roll(F, 1, axis=ax)) / (2 * h))
        else:
            out.append(np.gradient(F, h, axis=ax, edge_order=1))
    return np.stack(out)
