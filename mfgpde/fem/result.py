"""FEM solutions: diagnostics, gathered fields, XDMF output for ParaView, figures."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np

from ..io import atomic_write
from ..result import SolutionBase, base_diagnostics, mass_error


class FEMResult(SolutionBase):
    """The solution of a time-dependent MFG on a mesh.

    Every rank keeps its own dofs (``U_local``, ``m_local``, shape (N_t + 1, n)). Rank 0 also
    holds the gathered fields in the full P1 space, in global dof order: ``U``, ``m``
    (N_t + 1, N), ``coords`` (N, dim) and ``cells`` (ncells, dim + 1); these are ``None`` on
    the other ranks.

    Attributes
    ----------
    diagnostics : dict
        ``converged, status, iterations, residual, hjb_residual, fp_residual, mass_error,
        min_density, wall_time_s, method, backend, dofs, ranks``.
    history : list of dict
    """

    backend = "fem"

    def __init__(self, problem, U_local, m_local, history, diagnostics):
        self.problem = problem
        self.domain = self.grid = problem.grid
        self.times = problem.times
        self.U_local, self.m_local = U_local, m_local
        self.history = history
        self.diagnostics = diagnostics
        dom = self.domain
        self.coords = dom.gather()
        self.cells = dom.gather_cells()
        self.U = dom.gather(U_local)
        self.m = dom.gather(m_local)

    @classmethod
    def from_arrays(cls, problem, U, M, log, status, method, wall_time):
        from mpi4py import MPI

        dom = problem.grid
        masses = np.array([dom.integrate(m) for m in M])
        mloc = float(M.min()) if M.size else np.inf
        diag = base_diagnostics(log, status, method, wall_time, mass_error(masses, problem, dom.integrate),
                                dom.comm.allreduce(mloc, op=MPI.MIN))
        diag.update(backend="fem", dofs=int(dom.size), ranks=int(dom.comm.size))
        return cls(problem, U, M, log.records, diag)

    def mass(self):
        """``int m(t) dx`` at every time (collective)."""
        return np.array([self.domain.integrate(m) for m in self.m_local])

    def __repr__(self):
        d = self.diagnostics
        return (f"FEMResult({self.problem.name!r}, status={d['status']}, iterations={d['iterations']}, "
                f"residual={d['residual']:.2e}, mass_error={d['mass_error']:.1e}, dofs={d['dofs']}, ranks={d['ranks']})")

    # ------------------------------------------------------------------ output
    def write_xdmf(self, path, snapshots=None):
        """Write the mesh and ``U``, ``m`` at every time (or ``snapshots`` of them) to XDMF (+ .h5).

        Collective. The pair of files is written in a temporary folder next to ``path`` and
        moved into place, so an interrupted run leaves no half-written output.
        """
        import dolfinx
        from dolfinx.io import XDMFFile

        dom = self.domain
        comm = dom.comm
        path = os.path.abspath(os.fspath(path))
        base = os.path.splitext(os.path.basename(path))[0]
        tmpdir = tempfile.mkdtemp(prefix=".tmp-xdmf-", dir=os.path.dirname(path)) if comm.rank == 0 else None
        tmpdir = comm.bcast(tmpdir, root=0)
        idx = range(len(self.times)) if snapshots is None else np.unique(np.linspace(0, len(self.times) - 1,
                                                                                       snapshots).round().astype(int))
        fU = dolfinx.fem.Function(dom.V, name="U")
        fm = dolfinx.fem.Function(dom.V, name="m")
        try:
            with XDMFFile(comm, os.path.join(tmpdir, base + ".xdmf"), "w") as fh:
                fh.write_mesh(dom.mesh)
                for k in idx:
                    for f, arr in ((fU, self.U_local[k]), (fm, self.m_local[k])):
                        f.x.array[: dom.n_full] = dom.full_values(arr)
                        f.x.scatter_forward()
                        fh.write_function(f, float(self.times[k]))
            comm.barrier()
            if comm.rank == 0:
                for name in os.listdir(tmpdir):
                    os.replace(os.path.join(tmpdir, name), os.path.join(os.path.dirname(path), name))
        finally:
            comm.barrier()
            if comm.rank == 0:
                shutil.rmtree(tmpdir, ignore_errors=True)
        return path

    def save(self, path):
        """Rank 0 writes the gathered fields to ``.npz`` (atomic); other ranks do nothing."""
        if self.domain.comm.rank != 0:
            return None

        def w(tmp):
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, times=self.times, coords=self.coords, cells=self.cells, U=self.U, m=self.m,
                                    diagnostics=json.dumps(self.diagnostics, default=float),
                                    problem=json.dumps(self.problem.describe(), default=str))
        return atomic_write(path, w, ".npz")

    def plot(self, path=None, snapshots=4):
        """Density snapshots on the mesh, the value function at t = 0 and the residual history (rank 0)."""
        if self.domain.comm.rank != 0:
            return None
        from ..plotting import plot_mesh_result

        return plot_mesh_result(self, path=path, snapshots=snapshots)
