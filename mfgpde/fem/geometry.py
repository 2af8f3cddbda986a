"""Unstructured meshes generated with gmsh: rooms with obstacles (domains with holes).

The crowd-motion benchmark walks a crowd out of a rectangular room around obstacles
(holes in the mesh). gmsh meshes the domain with Delaunay-type triangles, so the P1
stiffness matrix is (nearly) an M-matrix; the rare obtuse pairs are stabilised by
:class:`~mfgpde.fem.domain.MeshDomain`.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from ..io import atomic_write
from . import require_dolfinx
from .domain import MeshDomain, gmsh_session
from .scheme import upwind_square


def room_msh(path, *, width=2.0, height=1.0, obstacles=((1.0, 0.5, 0.2),), h=0.02):
    """Write a gmsh ``.msh`` file of the room ``[0, width] x [0, height]`` minus disks.

    Parameters
    ----------
    path : str
        Output file (written atomically).
    width, height : float
        Room size, > 0.
    obstacles : sequence of (cx, cy, r)
        Disks cut out of the room (pillars); they must lie inside the room, apart.
    h : float
        Target mesh size (``h = 0.0105`` gives about 20,000 vertices for the default room).
    """
    import gmsh

    width, height, h = float(width), float(height), float(h)
    if not (width > 0 and height > 0):
        raise ValueError(f"room: width and height must be > 0, got {width}, {height}")
    if not (0 < h < min(width, height) / 4):
        raise ValueError(f"room: mesh size h must be in (0, {min(width, height) / 4:g}), got {h}")
    for k, (cx, cy, r) in enumerate(obstacles):
        if not (r > 0 and cx - r > 0 and cx + r < width and cy - r > 0 and cy + r < height):
            raise ValueError(f"room: obstacle {k} (centre ({cx}, {cy}), radius {r}) must lie strictly inside the room")

    def write(tmp):
        with gmsh_session():
            gmsh.model.add("room")
            occ = gmsh.model.occ
            room = occ.addRectangle(0, 0, 0, width, height)
            holes = [occ.addDisk(cx, cy, 0, r, r) for cx, cy, r in obstacles]
            if holes:
                occ.cut([(2, room)], [(2, d) for d in holes])
            occ.synchronize()
            surfaces = [s for _, s in gmsh.model.getEntities(2)]
            gmsh.model.addPhysicalGroup(2, surfaces, 1, "room")
            curves = [c for _, c in gmsh.model.getEntities(1)]
            gmsh.model.addPhysicalGroup(1, curves, 2, "walls")
            gmsh.option.setNumber("Mesh.CharacteristicLengthMin", h)
            gmsh.option.setNumber("Mesh.CharacteristicLengthMax", h)
            gmsh.option.setNumber("Mesh.Algorithm", 6)  # Frontal-Delaunay: well-shaped triangles
            gmsh.model.mesh.generate(2)
            gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
            gmsh.write(tmp)
            gmsh.model.remove()

    return atomic_write(path, write, ".msh")


def room(*, width=2.0, height=1.0, obstacles=((1.0, 0.5, 0.2),), h=0.02, comm=None, path=None):
    """A :class:`~mfgpde.fem.domain.MeshDomain` of a room with disk-shaped obstacles.

    The mesh is generated on rank 0 (into ``path`` or a temporary file) and distributed.
    """
    require_dolfinx()
    from mpi4py import MPI


    comm = MPI.COMM_WORLD if comm is None else comm
    tmpdir = None
    if path is None:
        tmpdir = tempfile.mkdtemp(prefix="mfgpde-mesh-") if comm.rank == 0 else None
        tmpdir = comm.bcast(tmpdir, root=0)
        path = os.path.join(tmpdir, "room.msh")
    err = None
    if comm.rank == 0:
        try:
            room_msh(path, width=width, height=height, obstacles=obstacles, h=h)
        except Exception as exc:
            err = exc
    err = comm.bcast(err, root=0)
    if err is not None:
        raise err
    dom = MeshDomain.from_file(path, comm=comm, gdim=2, name="room")
    dom.source.update({"mesh": "room", "width": float(width), "height": float(height),
                       "obstacles": [list(map(float, o)) for o in obstacles], "h_target": float(h)})
    comm.barrier()
    if tmpdir is not None and comm.rank == 0:
        for f in os.listdir(tmpdir):
            os.remove(os.path.join(tmpdir, f))
        os.rmdir(tmpdir)
    return dom


def hamiltonian_consistency(domain, directions=16):
    """Relative error of the upwind graph Hamiltonian on linear functions (a mesh-quality check).

    For ``u = p . x`` the numerical ``S_i`` should equal ``|p|^2``; returns the median and
    95th percentile of ``|S_i / |p|^2 - 1|`` over owned interior-ish dofs and unit vectors p.
    On structured right-diagonal meshes it is 0 (the scheme is the FD scheme there).
    """
    errs = []
    for a in np.linspace(0, np.pi, directions, endpoint=False):
        p = np.zeros(domain.dim)
        p[0], p[min(1, domain.dim - 1)] = np.cos(a), np.sin(a) if domain.dim > 1 else 0.0
        u = domain.coords @ p
        S = upwind_square(domain, domain.exchange(u))[0]
        errs.append(np.abs(S / np.dot(p, p) - 1.0))
    e = np.concatenate(errs)
    return {"median": float(np.median(e)), "p95": float(np.percentile(e, 95))}
