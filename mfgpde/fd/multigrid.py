"""Aggregation multigrid for the per-step stencil systems, compiled end to end.

Every implicit step of the scheme solves ``A x = r`` with ``A = I/dt + L_n + A_n`` (HJB) or its
transpose (FP): an M-matrix on the ``1 + 2d`` point stencil of the tensor grid. Newton's sweep
preconditioner (:mod:`mfgpde.fd.krylov`) needs ``2 N_t`` of these solves per Krylov
iteration, one after the other.

Why this solver
---------------
Measured on B2 (50^2 x 50, congestion, this project's 2-core machine): one SuperLU
factorisation of a step costs 9-12 ms and a solve with the factors 0.35-0.5 ms, PETSc's LU with
nested dissection 6.4 ms and 0.16 ms; a Newton step refactorises all 100 steps (about 1 s) and
each Krylov iteration pays 100 sparse triangular solves from Python. The FFT/DCT preconditioner
of :mod:`mfgpde.fd.steps` is cheap but stops contracting where transport dominates diffusion
(congestion where m is small, ``nu = 0``), which is where B2's steps live.

Aggregation multigrid on the tensor grid has no factorisation at all, costs ``O(N)`` per cycle,
keeps the M-matrix structure on every level, and its work is a few compiled passes over the
grid, so whole preconditioner sweeps run in one Numba call with no Python between the steps:

* **Coarse grids**: ``2^d`` blocks of cells are aggregated (axes shorter than 4 are not
  coarsened), down to at most :data:`COARSEST` points. Prolongation ``P`` is piecewise
  constant and restriction is ``P^T``, so the Galerkin operator ``P^T A P`` of a ``1 + 2d``
  point stencil is again a ``1 + 2d`` point stencil on the coarse tensor grid (a coupling to a
  neighbour inside the same aggregate moves to the diagonal), an M-matrix whose columns (FP)
  or rows (HJB) keep summing to ``1/dt``: the coarse problems are the same kind of step.
* **Smoother**: symmetric Gauss-Seidel (a forward and a backward lexicographic sweep), which
  converges for every M-matrix and is exact for upwind transport along the sweep directions.
* **Coarsest level**: its dense inverse, computed once per step operator.

A fixed number of V-cycles from a zero guess is a fixed *linear* map, as GMRES needs of its
preconditioner. The same hierarchy is what PETSc's PCMG builds on a DMDA, which is how the
design distributes.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_JIT = dict(cache=True, nogil=True)

#: The coarsest level has at most this many points (then its dense inverse is cheap).
COARSEST = 64


class Hierarchy:
    """Aggregation levels of a tensor grid: shapes, neighbour tables and fine-to-coarse maps.

    Parameters
    ----------
    shape : tuple of int
        Grid shape (C order, as :class:`mfgpde.grid.TensorGrid`).
    coarsest : int
        Stop coarsening at this many points.

    Attributes
    ----------
    shapes : list of tuple
    sizes : ndarray of int64 (levels,)
    offsets : ndarray of int64 (levels + 1,)
        Offsets of each level in the flat point arrays (``cols``, ``agg``, work vectors).
    cols : ndarray of int32 (sum of sizes, 1 + 2d)
        Per-level neighbour tables (local indices, wrapped on every axis as in
        :attr:`TensorGrid.stencil`; entries across a no-flux wall carry zero values).
    agg : ndarray of int32 (sum of sizes,)
        For each point of level ``l`` its aggregate (a local index on level ``l + 1``).
    """

    def __init__(self, shape, coarsest=COARSEST):
        shape = tuple(int(n) for n in shape)
        self.dim = len(shape)
        self.s = 1 + 2 * self.dim
        shapes = [shape]
        while int(np.prod(shapes[-1])) > coarsest:
            cur = shapes[-1]
            nxt = tuple((n + 1) // 2 if n >= 4 else n for n in cur)
            if nxt == cur:
                break
            shapes.append(nxt)
        self.shapes = shapes
        self.sizes = np.array([int(np.prod(sh)) for sh in shapes], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        cols, agg = [], []
        for lvl, sh in enumerate(shapes):
            idx = np.arange(int(np.prod(sh))).reshape(sh)
            c = np.empty((idx.size, self.s), dtype=np.int64)
            c[:, 0] = idx.ravel()
            for k in range(self.dim):
                c[:, 1 + 2 * k] = np.roll(idx, 1, axis=k).ravel()
                c[:, 2 + 2 * k] = np.roll(idx, -1, axis=k).ravel()
            cols.append(c)
            if lvl + 1 < len(shapes):
                coarse = shapes[lvl + 1]
                parts = np.meshgrid(*[np.arange(n) // 2 if nc < n else np.arange(n)
                                      for n, nc in zip(sh, coarse)], indexing="ij")
                agg.append(np.ravel_multi_index(tuple(parts), coarse).ravel().astype(np.int64))
            else:
                agg.append(np.zeros(idx.size, dtype=np.int64))
        # int32 indices: the V-cycle is bound by memory traffic, and the stencil's column
        # indices are as many as its values (2 cycles per 128^2 step: 3.5 -> 3.0 ms)
        self.cols = np.ascontiguousarray(np.concatenate(cols), dtype=np.int32)
        self.agg = np.ascontiguousarray(np.concatenate(agg), dtype=np.int32)
        self.levels = len(shapes)
        #: floats per operator on all levels (stencil values)
        self.value_offsets = np.concatenate([[0], np.cumsum(self.sizes * self.s)]).astype(np.int64)

    def operators(self, vals):
        """Galerkin hierarchies of a stack of fine stencils ``vals`` (K, N, s): a :class:`Operators`."""
        vals = np.ascontiguousarray(vals, dtype=float)
        if vals.ndim == 2:
            vals = vals[None]
        K = vals.shape[0]
        flat = np.zeros((K, int(self.value_offsets[-1])))
        nc = int(self.sizes[-1])
        cinv = np.empty((K, nc, nc))
        dinv = np.empty((K, int(self.offsets[-1])))
        _setup(vals, flat, dinv, cinv, self.cols, self.agg, self.sizes, self.offsets, self.value_offsets, self.s)
        return Operators(self, flat, dinv, cinv)


class Operators:
    """Multigrid data of ``K`` step operators on one :class:`Hierarchy` (see :meth:`Hierarchy.operators`)."""

    def __init__(self, hierarchy, flat, dinv, cinv):
        self.h = hierarchy
        self.flat = flat
        self.dinv = dinv
        self.cinv = cinv
        n = int(hierarchy.offsets[-1])
        self._work = (np.empty(n), np.empty(n))

    def __len__(self):
        return self.flat.shape[0]

    def vcycles(self, k, rhs, cycles=1):
        """``cycles`` V-cycles from ``x = 0`` on operator ``k``: a fixed linear approximation of ``A_k^{-1} rhs``."""
        h = self.h
        x = np.empty(int(h.sizes[0]))
        _from_zero(self.flat[k], self.dinv[k], self.cinv[k], h.cols, h.agg, h.sizes, h.offsets, h.value_offsets, h.s,
                   np.ascontiguousarray(rhs, dtype=float), x, cycles, self._work[0], self._work[1])
        return x

    def sweep(self, r, dt, *, cycles=2, backward=True):
        """One half of the block-triangular sweep preconditioner over all ``K`` operators, compiled
        whole: see :func:`sweep` (``r`` of shape (K + 1, N)).
        """
        h = self.h
        return sweep(self.flat, self.dinv, self.cinv, h.cols, h.agg, h.sizes, h.offsets, h.value_offsets, h.s,
                     np.ascontiguousarray(r, dtype=float), dt, cycles, self._work[0], self._work[1], backward)

    def contraction(self, cycles=2):
        """Residual reduction ``|b - A_k x| / |b|`` of ``cycles`` V-cycles from zero on a fixed
        random right-hand side, for every operator ``k`` (one compiled pass).
        """
        h = self.h
        return _probe(self.flat, self.dinv, self.cinv, h.cols, h.agg, h.sizes, h.offsets, h.value_offsets, h.s,
                      cycles, self._work[0], self._work[1])


# --------------------------------------------------------------------------- compiled kernels
@nb.njit(**_JIT)
def _galerkin(fine, cols, agg, n, co, s, coarse):
    """``coarse += P^T A P`` for the stencil ``fine`` of a level with ``n`` points (piecewise constant P)."""
    for i in range(n):
        ci = agg[co + i]
        for j in range(s):
            v = fine[i * s + j]
            if v == 0.0:
                continue
            cj = agg[co + cols[co + i, j]]
            if cj == ci:
                coarse[ci * s] += v
            else:
                coarse[ci * s + j] += v


@nb.njit(**_JIT)
def _setup_one(fine, flat, dinv, cinv, cols, agg, sizes, offsets, voff, s):
    N0 = sizes[0]
    for p in range(N0 * s):
        flat[p] = fine[p]
    L = sizes.shape[0]
    for lvl in range(L - 1):
        _galerkin(flat[voff[lvl]:voff[lvl + 1]], cols, agg, sizes[lvl], offsets[lvl], s,
                  flat[voff[lvl + 1]:voff[lvl + 2]])
    # a neighbour that is the point itself (an axis of length 1 or 2 seen from a wrap) is part of
    # the diagonal: fold it in, so that the smoother needs no test per entry
    for lvl in range(L):
        o, vo = offsets[lvl], voff[lvl]
        for i in range(sizes[lvl]):
            for j in range(1, s):
                if cols[o + i, j] == i:
                    flat[vo + i * s] += flat[vo + i * s + j]
                    flat[vo + i * s + j] = 0.0
            dinv[o + i] = 1.0 / flat[vo + i * s]
    # dense matrix of the coarsest level and its inverse
    nc = sizes[L - 1]
    co = offsets[L - 1]
    vo = voff[L - 1]
    dense = np.zeros((nc, nc))
    for i in range(nc):
        for j in range(s):
            dense[i, cols[co + i, j]] += flat[vo + i * s + j]
    cinv[:, :] = np.linalg.inv(dense)


@nb.njit(**_JIT)
def _setup(vals, flat, dinv, cinv, cols, agg, sizes, offsets, voff, s):
    K = vals.shape[0]
    for k in range(K):
        _setup_one(vals[k].ravel(), flat[k], dinv[k], cinv[k], cols, agg, sizes, offsets, voff, s)


@nb.njit(**_JIT)
def _gauss_seidel(v, vo, dinv, cols, o, n, s, b, x, forward):
    """One lexicographic Gauss-Seidel sweep on the level at point offset ``o`` (values at ``vo``).

    ``dinv`` holds the inverse diagonals (self-references already folded in at set-up), so the
    sweep's dependency chain is multiply-adds only.
    """
    if forward:
        for i in range(n):
            acc = b[o + i]
            for j in range(1, s):
                acc -= v[vo + i * s + j] * x[o + cols[o + i, j]]
            x[o + i] = acc * dinv[o + i]
    else:
        for i in range(n - 1, -1, -1):
            acc = b[o + i]
            for j in range(1, s):
                acc -= v[vo + i * s + j] * x[o + cols[o + i, j]]
            x[o + i] = acc * dinv[o + i]


@nb.njit(**_JIT)
def _vcycle(v, dinv, cinv, cols, agg, sizes, offsets, voff, s, wx, wb, pre, post):
    """One V-cycle on ``A wx[level 0] = wb[level 0]`` (both in the work vectors), in place."""
    L = sizes.shape[0]
    for lvl in range(L - 1):
        o, n, oc, nc = offsets[lvl], sizes[lvl], offsets[lvl + 1], sizes[lvl + 1]
        vo = voff[lvl]
        if lvl > 0:
            for i in range(n):
                wx[o + i] = 0.0
        for _ in range(pre):
            _gauss_seidel(v, vo, dinv, cols, o, n, s, wb, wx, True)
        for i in range(nc):
            wb[oc + i] = 0.0
        for i in range(n):
            r = wb[o + i]
            for j in range(s):
                r -= v[vo + i * s + j] * wx[o + cols[o + i, j]]
            wb[oc + agg[o + i]] += r
    o, n = offsets[L - 1], sizes[L - 1]
    if L == 1:  # the grid is its own coarsest level: the exact inverse
        for i in range(n):
            acc = 0.0
            for j in range(n):
                acc += cinv[i, j] * wb[o + j]
            wx[o + i] = acc
        return
    for i in range(n):
        acc = 0.0
        for j in range(n):
            acc += cinv[i, j] * wb[o + j]
        wx[o + i] = acc
    for lvl in range(L - 2, -1, -1):
        o, n, oc = offsets[lvl], sizes[lvl], offsets[lvl + 1]
        vo = voff[lvl]
        for i in range(n):
            wx[o + i] += wx[oc + agg[o + i]]
        for _ in range(post):
            _gauss_seidel(v, vo, dinv, cols, o, n, s, wb, wx, False)


@nb.njit(**_JIT)
def _matvec(v, cols, n, s, x, y):
    for i in range(n):
        acc = 0.0
        for j in range(s):
            acc += v[i * s + j] * x[cols[i, j]]
        y[i] = acc


@nb.njit(**_JIT)
def _from_zero(v, dinv, cinv, cols, agg, sizes, offsets, voff, s, rhs, out, cycles, wx, wb):
    """``out <- cycles`` V-cycles on ``A out = rhs`` from ``out = 0``: a fixed linear map of ``rhs``."""
    n = sizes[0]
    for i in range(n):
        wx[i] = 0.0
        wb[i] = rhs[i]
    for _ in range(cycles):
        _vcycle(v, dinv, cinv, cols, agg, sizes, offsets, voff, s, wx, wb, 1, 1)
    for i in range(n):
        out[i] = wx[i]


@nb.njit(**_JIT)
def _probe(flat, dinv, cinv, cols, agg, sizes, offsets, voff, s, cycles, wx, wb):
    K = flat.shape[0]
    n = sizes[0]
    # (Numba compiles the legacy global-state API, not np.random.Generator)
    np.random.seed(12345)  # noqa: NPY002
    b = np.random.standard_normal(n)  # noqa: NPY002
    bn = np.sqrt(np.sum(b * b))
    out = np.empty(K)
    r = np.empty(n)
    x = np.empty(n)
    for k in range(K):
        _from_zero(flat[k], dinv[k], cinv[k], cols, agg, sizes, offsets, voff, s, b, x, cycles, wx, wb)
        _matvec(flat[k], cols[:n], n, s, x, r)
        acc = 0.0
        for i in range(n):
            acc += (b[i] - r[i]) ** 2
        out[k] = np.sqrt(acc) / bn
    return out


@nb.njit(**_JIT)
def sweep(flat, dinv, cinv, cols, agg, sizes, offsets, voff, s, r, dt, cycles, wx, wb, backward):
    """One half of the block-triangular preconditioner, ``cycles`` V-cycles per step.

    ``backward`` (HJB): ``z^{N_t} = r^{N_t}``, ``z^n = V(A_n; r^n + z^{n+1}/dt)`` for
    n = N_t-1..0; otherwise (FP): ``z^0 = r^0``, ``z^{n+1} = V(B_n^T; r^{n+1} + z^n/dt)``, where
    operator ``n`` of ``flat`` is ``A_n`` or ``B_n^T``.
    """
    nt = flat.shape[0]
    n0 = sizes[0]
    z = np.empty((nt + 1, n0))
    first = nt if backward else 0
    z[first] = r[first]
    rhs = np.empty(n0)
    for j in range(nt):
        n = nt - 1 - j if backward else j
        known, new = (n + 1, n) if backward else (n, n + 1)
        for i in range(n0):
            rhs[i] = r[new, i] + z[known, i] / dt
        _from_zero(flat[n], dinv[n], cinv[n], cols, agg, sizes, offsets, voff, s, rhs, z[new], cycles, wx, wb)
    return z
