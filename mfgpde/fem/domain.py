"""Meshes and the P1 dof graph the finite-element scheme works on.

A :class:`MeshDomain` wraps a DOLFINx mesh (built-in interval / rectangle / box, a gmsh file
read through ``dolfinx.io.gmsh``, or a generated room with obstacles) and reduces the P1
Lagrange space to what the monotone scheme of :mod:`mfgpde.fem.scheme` needs:

* the lumped masses ``mu_i = int phi_i dx`` (row sums of the consistent mass matrix), so that
  ``int m dx = sum_i mu_i m_i`` is the conserved discrete mass;
* the edge weights ``w_ij = -K_ij >= 0`` of the P1 stiffness matrix ``K_ij = int grad phi_j .
  grad phi_i dx``. On Delaunay triangulations (2D) and non-obtuse meshes (3D) every
  off-diagonal ``K_ij`` is <= 0 and ``K`` is used as is. Edges with ``K_ij > 0`` would break
  the discrete maximum principle; their weight is set to zero and moved to the diagonal
  (row sums stay zero), which adds the smallest artificial diffusion that restores an
  M-matrix (discrete upwinding, Kuzmin). The count is reported as ``stabilised_edges``.

Periodic axes of a box are identified algebraically: the full P1 space is folded by a
prolongation ``P`` (one 1 per row, slave dof -> master dof) and ``K_per = P^T K P``,
``mu_per = P^T mu``.

In parallel (``mpiexec -n N``) each rank owns a contiguous range of dofs. Rows of the scheme
are computed rank-locally; the values at neighbouring dofs owned by other ranks come from a
ghosted PETSc vector (:meth:`MeshDomain.exchange`).
"""

from __future__ import annotations

import contextlib
import itertools
import os

import numpy as np

from . import require_dolfinx

#: Serial numbers of the domains built in this process: caches key a mesh by it, never by
#: ``id()``, which a freed mesh hands on to the next one (of another size)
_SERIAL = itertools.count()


@contextlib.contextmanager
def gmsh_session():
    """Gmsh initialised (quietly) for the block; finalised afterwards if this block started it."""
    import gmsh

    init = not gmsh.isInitialized()
    if init:
        gmsh.initialize()
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        yield gmsh
    finally:
        if init:
            gmsh.finalize()


class MeshDomain:
    """P1 dof graph of a DOLFINx mesh, the mesh counterpart of :class:`~mfgpde.TensorGrid`.

    Parameters
    ----------
    mesh : dolfinx.mesh.Mesh
    periodic : sequence of (axis, lower, upper), optional
        Axes of a box-shaped mesh whose faces ``x_axis = lower`` and ``x_axis = upper`` are
        identified.
    name : str
        Label for output files.
    source : dict, optional
        How the mesh was made (for ``describe()`` and result files).

    Attributes
    ----------
    dim : int
        Geometric dimension.
    n : int
        Number of dofs owned by this rank; ``shape = (n,)``.
    size : int
        Global number of dofs.
    mu : ndarray (n,)
        Lumped masses of the owned dofs.
    rows, cols, w : ndarray
        Owned edges: ``rows`` (local owned index), ``cols`` (index into the exchanged vector:
        owned dofs first, then ghosts), weights ``w > 0``.
    """

    is_mesh = True

    def __init__(self, mesh, *, periodic=None, name="mesh", source=None):
        require_dolfinx()
        import dolfinx.fem.petsc
        import ufl
        from petsc4py import PETSc

        self.mesh = mesh
        self.comm = mesh.comm
        self.uid = next(_SERIAL)
        self.name = str(name)
        self.source = dict(source or {})
        self.dim = mesh.geometry.dim
        self.tdim = mesh.topology.dim
        self.periodic = [tuple(p) for p in (periodic or [])]
        self.V = V = dolfinx.fem.functionspace(mesh, ("Lagrange", 1))
        imap = V.dofmap.index_map
        self.n_full = imap.size_local
        self.size_full = imap.size_global
        self.full_start = imap.local_range[0]
        self.full_coords = V.tabulate_dof_coordinates()[: self.n_full, : self.dim].copy()

        u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
        K = dolfinx.fem.petsc.assemble_matrix(dolfinx.fem.form(ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx))
        K.assemble()
        mu = dolfinx.fem.petsc.assemble_vector(dolfinx.fem.form(v * ufl.dx))
        mu.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        mu_full = PETSc.Vec().createMPI((self.n_full, self.size_full), comm=self.comm)
        mu_full.array[:] = mu.array_r[: self.n_full]

        self.P = None
        if self.periodic:
            self.P, red_coords = self._periodic_prolongation()
            K = K.ptap(self.P)
            mu_red = self.P.createVecRight()
            self.P.multTranspose(mu_full, mu_red)
            self.coords = red_coords
            mu_arr = mu_red.array.copy()
        else:
            self.coords = self.full_coords
            mu_arr = mu_full.array.copy()
        self.mu = mu_arr
        self.n = self.mu.size
        self.shape = (self.n,)
        self.start = K.getOwnershipRange()[0]
        self.size = K.getSize()[0]
        self._graph(K)
        self._hmax = self._compute_h()  # collective: computed once here, so describe() is local

    # ------------------------------------------------------------------ construction
    def _periodic_prolongation(self):
        """Fold the dofs on ``x_k = upper`` onto ``x_k = lower``: the matrix ``P`` (full x reduced)."""
        from mpi4py import MPI
        from petsc4py import PETSc

        X = self.full_coords
        lengths = [hi - lo for _, lo, hi in self.periodic]
        tol = 1e-8 * max(lengths)
        wrapped = X.copy()
        on_lower = np.zeros(len(X), bool)
        for axis, lo, hi in self.periodic:
            wrapped[np.abs(X[:, axis] - hi) < tol, axis] = lo
            on_lower |= np.abs(X[:, axis] - lo) < tol
        master = np.all(wrapped == X, axis=1)
        nm = int(master.sum())
        offset = self.comm.exscan(nm, op=MPI.SUM) or 0
        red = np.full(len(X), -1, np.int64)
        red[master] = offset + np.arange(nm)

        def key(x):
            return tuple(np.round(x / tol).astype(np.int64))

        candidates = [(key(x), int(r)) for x, r, lower in zip(X, red, on_lower & master) if lower]
        table = {}
        for part in self.comm.allgather(candidates):
            table.update(part)
        for i in np.flatnonzero(~master):
            k = key(wrapped[i])
            if k not in table:
                raise ValueError(f"periodic: no matching dof for the point {X[i]} on the face being identified; "
                                 "the mesh must be conforming across opposite faces")
            red[i] = table[k]
        size_red = self.comm.allreduce(nm, op=MPI.SUM)
        P = PETSc.Mat().createAIJ(((self.n_full, self.size_full), (nm, size_red)), nnz=(1, 1), comm=self.comm)
        indptr = np.arange(self.n_full + 1, dtype=PETSc.IntType)
        P.setValuesCSR(indptr, red.astype(PETSc.IntType), np.ones(self.n_full))
        P.assemble()
        return P, X[master].copy()

    def _graph(self, K):
        """Edge weights from the (folded) stiffness matrix, with M-matrix stabilisation."""
        from mpi4py import MPI

        indptr, gcols, vals = K.getValuesCSR()
        nrow = len(indptr) - 1
        rows = np.repeat(np.arange(nrow), np.diff(indptr))
        off = gcols != rows + self.start
        diag_scale = np.zeros(nrow)
        np.maximum.at(diag_scale, rows[~off], np.abs(vals[~off]))
        rows, gcols, vals = rows[off], gcols[off], vals[off]
        # K_ij of order round-off on right-angled cells are structural zeros, not obtuse edges
        tiny = 1e-10 * diag_scale[rows]
        positive = vals > tiny
        self.stabilised_edges = int(self.comm.allreduce(int(positive.sum()), op=MPI.SUM) // 2)
        keep = vals < -tiny
        rows, gcols, w = rows[keep], gcols[keep], -vals[keep]
        owned = (gcols >= self.start) & (gcols < self.start + self.n)
        ghosts = np.unique(gcols[~owned])
        cols = np.empty(gcols.size, np.int64)
        cols[owned] = gcols[owned] - self.start
        cols[~owned] = self.n + np.searchsorted(ghosts, gcols[~owned])
        order = np.lexsort((cols, rows))
        self.rows, self.cols, self.w, self.gcols = rows[order], cols[order], w[order], gcols[order]
        self.ghosts = ghosts
        self.rowptr = np.r_[0, np.cumsum(np.bincount(self.rows, minlength=self.n))]
        self._ghost_vec = None

    # ------------------------------------------------------------------ grid-like interface
    def coordinates(self):
        """Coordinates of the owned dofs, one array per axis (the interface of ``TensorGrid``)."""
        return tuple(self.coords[:, k].copy() for k in range(self.dim))

    def integrate(self, values):
        """``int v dx = sum_i mu_i v_i`` over the whole (distributed) mesh."""
        from mpi4py import MPI

        local = float(np.dot(self.mu, np.asarray(values, float).reshape(-1)))
        return self.comm.allreduce(local, op=MPI.SUM)

    def max_abs(self, values):
        """``max |v|`` over the whole (distributed) mesh."""
        from mpi4py import MPI

        values = np.asarray(values)
        return self.comm.allreduce(float(np.abs(values).max()) if values.size else 0.0, op=MPI.MAX)

    @property
    def bounds(self):
        """Bounding box of the mesh, per axis ``(lower, upper)``."""
        # (allgather, not allreduce with MPI.MIN: mpi4py reduces pickled arrays with Python's min,
        # which cannot compare two coordinate arrays on one rank while the others wait)
        lo = np.min(self.comm.allgather(self.full_coords.min(axis=0) if self.n_full else np.full(self.dim, np.inf)), axis=0)
        hi = np.max(self.comm.allgather(self.full_coords.max(axis=0) if self.n_full else np.full(self.dim, -np.inf)), axis=0)
        return tuple((float(a), float(b)) for a, b in zip(lo, hi))

    @property
    def h(self):
        """Largest cell diameter (global)."""
        return self._hmax

    def _compute_h(self):
        from mpi4py import MPI

        cmap = self.mesh.topology.index_map(self.tdim)
        cells = np.arange(cmap.size_local, dtype=np.int32)
        hloc = self.mesh.h(self.tdim, cells).max() if cells.size else 0.0
        return float(self.comm.allreduce(hloc, op=MPI.MAX))

    def describe(self) -> dict:
        return {"type": "mesh", "name": self.name, "dim": self.dim, "dofs": int(self.size),
                "cells": int(self.mesh.topology.index_map(self.tdim).size_global), "h_max": self.h,
                "periodic_axes": [int(a) for a, _, _ in self.periodic], "stabilised_edges": self.stabilised_edges,
                "ranks": int(self.comm.size), **self.source}

    # ------------------------------------------------------------------ parallel helpers
    def exchange(self, values):
        """Owned values -> owned followed by ghost values (the neighbours owned elsewhere)."""
        values = np.asarray(values, float)
        if self.comm.size == 1 or self.ghosts.size == 0:
            return values
        from petsc4py import PETSc

        if self._ghost_vec is None:
            self._ghost_vec = PETSc.Vec().createGhost(self.ghosts.astype(PETSc.IntType), size=(self.n, self.size),
                                                      comm=self.comm)
        v = self._ghost_vec
        v.array[:] = values
        v.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        with v.localForm() as lf:
            return lf.array.copy()

    def allgather(self, values, axis=0):
        """Owned (reduced) values of every rank, concatenated in global dof order along ``axis``,
        on every rank (collective). ``values`` has this rank's dofs along ``axis``.
        """
        parts = self.comm.allgather((self.start, np.asarray(values)))
        return np.concatenate([p for _, p in sorted(parts, key=lambda t: t[0])], axis=axis)

    def full_values(self, values):
        """Owned reduced values -> owned values of the full P1 space (unfolds periodic axes)."""
        if self.P is None:
            return np.asarray(values, float)
        x, y = self.P.createVecs()
        x.array[:] = values
        self.P.mult(x, y)
        return y.array.copy()

    def gather(self, values=None, root=0):
        """Gather owned full-space values on ``root`` in global dof order (None elsewhere).

        ``values`` has shape (..., n) (reduced, owned). With ``values=None`` the coordinates
        (N_full, dim) are gathered.
        """
        if values is None:
            data = self.full_coords
        else:
            values = np.asarray(values, float)
            lead = values.shape[:-1]
            flat = values.reshape(-1, self.n)
            data = np.stack([self.full_values(v) for v in flat], axis=-1) if flat.shape[0] else np.zeros((self.n_full, 0))
            data = data.reshape(self.n_full, *lead) if lead else data.reshape(self.n_full)
        parts = self.comm.gather((self.full_start, data), root=root)
        if self.comm.rank != root:
            return None
        out = np.concatenate([p for _, p in sorted(parts, key=lambda t: t[0])], axis=0)
        if values is not None and values.ndim > 1:
            out = np.moveaxis(out, 0, -1)
        return out

    def gather_cells(self, root=0):
        """Cells as global full-dof indices (ncells, d+1) on ``root`` (None elsewhere)."""
        cmap = self.mesh.topology.index_map(self.tdim)
        local = self.V.dofmap.list[: cmap.size_local]
        glob = self.V.dofmap.index_map.local_to_global(local.reshape(-1).astype(np.int32)).reshape(local.shape)
        parts = self.comm.gather(glob, root=root)
        return None if self.comm.rank != root else np.concatenate(parts, axis=0)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def interval(cls, n, *, bounds=(0.0, 1.0), comm=None, periodic=False, name="interval"):
        """Uniform interval mesh with ``n`` cells."""
        dolfinx = require_dolfinx()
        comm = _comm(comm)
        _check_cells(n, 1)
        msh = dolfinx.mesh.create_interval(comm, int(n), [float(bounds[0]), float(bounds[1])])
        per = [(0, float(bounds[0]), float(bounds[1]))] if periodic else None
        return cls(msh, periodic=per, name=name, source={"mesh": "interval", "cells_per_axis": [int(n)]})

    @classmethod
    def rectangle(cls, n, *, bounds=((0.0, 1.0), (0.0, 1.0)), comm=None, periodic=(False, False), diagonal="right",
                  name="rectangle"):
        """Structured triangle mesh of a rectangle with ``n = (nx, ny)`` cells per axis.

        With ``diagonal="right"`` the P1 stiffness matrix is the 5-point Laplacian and the
        scheme coincides with the finite-difference scheme at the nodes.
        """
        dolfinx = require_dolfinx()
        comm = _comm(comm)
        n = _check_cells(n, 2)
        diag = {"right": dolfinx.mesh.DiagonalType.right, "left": dolfinx.mesh.DiagonalType.left,
                "crossed": dolfinx.mesh.DiagonalType.crossed}
        if diagonal not in diag:
            raise ValueError(f"diagonal must be one of {sorted(diag)}, got {diagonal!r}")
        (x0, x1), (y0, y1) = bounds
        msh = dolfinx.mesh.create_rectangle(comm, [[x0, y0], [x1, y1]], list(n), dolfinx.mesh.CellType.triangle,
                                            diagonal=diag[diagonal])
        per = [(k, float(b[0]), float(b[1])) for k, (p, b) in enumerate(zip(periodic, bounds)) if p]
        return cls(msh, periodic=per, name=name, source={"mesh": "rectangle", "cells_per_axis": list(n), "diagonal": diagonal})

    @classmethod
    def box(cls, n, *, bounds=((0.0, 1.0),) * 3, comm=None, periodic=(False, False, False), name="box"):
        """Structured tetrahedral mesh of a box with ``n = (nx, ny, nz)`` cells per axis."""
        dolfinx = require_dolfinx()
        comm = _comm(comm)
        n = _check_cells(n, 3)
        lo = [b[0] for b in bounds]
        hi = [b[1] for b in bounds]
        msh = dolfinx.mesh.create_box(comm, [lo, hi], list(n), dolfinx.mesh.CellType.tetrahedron)
        per = [(k, float(b[0]), float(b[1])) for k, (p, b) in enumerate(zip(periodic, bounds)) if p]
        return cls(msh, periodic=per, name=name, source={"mesh": "box", "cells_per_axis": list(n)})

    @classmethod
    def from_grid(cls, grid, comm=None):
        """The structured mesh matching a :class:`~mfgpde.TensorGrid`.

        Periodic axes get ``n`` cells (so the ``n`` folded dofs are the grid nodes); no-flux
        axes get ``n - 1`` cells spanning the box (``n`` vertices, not the cell centres of
        the finite-difference grid).
        """
        cells = [n if bc == "periodic" else n - 1 for n, bc in zip(grid.shape, grid.boundary)]
        per = [bc == "periodic" for bc in grid.boundary]
        if grid.dim == 1:
            return cls.interval(cells[0], bounds=grid.bounds[0], comm=comm, periodic=per[0], name="grid")
        if grid.dim == 2:
            return cls.rectangle(cells, bounds=grid.bounds, comm=comm, periodic=per, name="grid")
        return cls.box(cells, bounds=grid.bounds, comm=comm, periodic=per, name="grid")

    @classmethod
    def from_file(cls, path, *, comm=None, gdim=None, name=None):
        """Read a gmsh ``.msh`` file (through ``dolfinx.io.gmsh``) or a DOLFINx XDMF mesh.

        Raises
        ------
        FileNotFoundError
            The file does not exist.
        ValueError
            The file is not a mesh this reader understands.
        """
        require_dolfinx()
        comm = _comm(comm)
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"mesh file {path!r} does not exist")
        ext = os.path.splitext(path)[1].lower()
        name = name or os.path.splitext(os.path.basename(path))[0]
        if ext == ".msh":
            msh = _read_msh(path, comm, gdim)
        elif ext in (".xdmf", ".h5"):
            from dolfinx.io import XDMFFile

            try:
                with XDMFFile(comm, path, "r") as fh:
                    msh = fh.read_mesh(name="mesh")
            except Exception as exc:
                raise ValueError(f"mesh file {path!r} is not a readable XDMF mesh (grid named 'mesh'): {exc}") from None
        else:
            raise ValueError(f"mesh file {path!r}: unknown format {ext!r}; allowed: .msh (gmsh), .xdmf (DOLFINx)")
        return cls(msh, periodic=None, name=name, source={"mesh": "file", "path": os.path.abspath(path)})


def _comm(comm):
    from mpi4py import MPI

    return MPI.COMM_WORLD if comm is None else comm


def _check_cells(n, d):
    n = [int(v) for v in np.broadcast_to(np.atleast_1d(n), (d,))]
    for k, v in enumerate(n):
        if v < 2:
            raise ValueError(f"mesh: need at least 2 cells along axis {k}, got {v}")
    return n


def _read_msh(path, comm, gdim):
    """Gmsh file -> DOLFINx mesh on ``comm``; anything unreadable becomes a ValueError."""
    import gmsh
    from dolfinx.io import gmsh as gmshio

    with open(path, "rb") as fh:
        head = fh.read(64)
    if not head.lstrip().startswith(b"$MeshFormat"):
        raise ValueError(f"mesh file {path!r} is not a gmsh mesh (no $MeshFormat header)")
    if gdim is None:
        gdim = _msh_dimension(path)
    try:
        data = gmshio.read_from_msh(path, comm, rank=0, gdim=gdim)
    except Exception as exc:
        raise ValueError(f"mesh file {path!r} could not be read as a gmsh mesh: {exc}") from None
    finally:
        if gmsh.isInitialized():
            gmsh.finalize()
    return data.mesh if hasattr(data, "mesh") else data[0]


def _msh_dimension(path):
    """Geometric dimension of a gmsh file: 3 if any z coordinate is non-zero, else 2 (or 1)."""
    try:
        with gmsh_session() as gmsh:
            gmsh.open(path)
            _, coords, _ = gmsh.model.mesh.getNodes()
            xyz = np.asarray(coords).reshape(-1, 3)
            top = max((d for d, _ in gmsh.model.getEntities()), default=0)
    except Exception as exc:
        raise ValueError(f"mesh file {path!r} could not be read as a gmsh mesh: {exc}") from None
    if xyz.size == 0:
        raise ValueError(f"mesh file {path!r} has no nodes")
    return 3 if np.any(np.abs(xyz[:, 2]) > 0) else max(1, min(top, 2))
