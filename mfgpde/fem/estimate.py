"""The error estimate of a mesh solution: the same problem on the nested mesh with half the cells.

The P1 edge scheme is first order, like the finite-difference one: for a smooth solution and a
fixed ratio ``dt / h`` the discrete solution at the vertices expands as ``u_h = u + h e_1 +
O(h^2)``. The structured meshes (:meth:`MeshDomain.interval`, ``rectangle``, ``box``) with ``n``
cells per axis contain, vertex for vertex, the mesh with ``n / 2`` cells per axis, so with half
the time steps

    u_h - u_2h = -h e_1 + O(h^2) = (u - u_h) + O(h^2)                               (1)

at the coarse mesh's vertices and time levels: the difference of the two solutions estimates
the error of the fine one to leading order, as the two-grid estimate of the finite-difference
ladder does (:mod:`mfgpde.iterations.richardson`). It costs one solve with 1/4 (1D), 1/8 (2D)
or 1/16 (3D) of the unknowns.

The estimate is reported in the norms of the grid estimate, evaluated on the coarse mesh with
its lumped masses ``mu_i`` (``int v ~ sum_i mu_i v_i``) and its cellwise P1 gradients:
``m_L1_final``, ``m_L1_max``, ``m_max_rel_final``, ``U_max_support``, ``grad_U_weighted``
(ergodic: ``m_L1``, ``m_max_rel``, ``u_max_support``, ``grad_u_weighted``, ``rho``). It can be
trusted where (1) holds: a smooth solution resolved on the coarse mesh. A mesh read from a file
(gmsh) has no nested coarse mesh here, and its result says so instead of guessing.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..iterations.richardson import SUPPORT_FRACTION
from ..problem import ErgodicMFGProblem
from .domain import MeshDomain

#: the structured meshes whose half-resolution mesh is nested in them
NESTED = ("interval", "rectangle", "box")


def coarse_problem(problem):
    """The problem on the nested mesh with half the cells per axis (and half the time steps).

    Raises ``ValueError`` with the reason when there is none: a mesh from a file, an odd number
    of cells or steps, fewer than 4 cells per axis, or data given as arrays on the fine mesh.
    """
    dom = problem.grid
    src = dom.source
    if src.get("mesh") not in NESTED:
        raise ValueError(f"a mesh of kind {src.get('mesh', 'unknown')!r} has no nested coarse mesh "
                         "(the estimate halves the structured interval, rectangle and box meshes)")
    cells = [int(n) for n in src["cells_per_axis"]]
    if any(n % 2 or n < 4 for n in cells):
        raise ValueError(f"the estimate halves the mesh: every axis needs an even number of cells >= 4, got {cells}")
    nt = getattr(problem, "nt", None)
    if nt is not None and (nt % 2 or nt < 4):
        raise ValueError(f"the estimate halves the time steps: nt must be even and >= 4, got {nt}")
    for key in ("hjb_source", "fp_source"):
        if getattr(problem, key, None) is not None and not callable(getattr(problem, key + "_spec", None)):
            raise ValueError(f"the {key} is given as an array on the mesh; the estimate needs it as a function")
    if problem.drift is not None and not callable(problem.drift.b):
        raise ValueError("the drift is given as an array on the mesh; the estimate needs it as a function of x")
    if nt is not None and not callable(problem.m0_source):
        raise ValueError("m0 is given as an array on the mesh; the estimate needs it as a function of x")
    bounds = dom.bounds
    periodic = {a for a, _, _ in dom.periodic}
    per = [k in periodic for k in range(dom.dim)]
    half = [n // 2 for n in cells]
    name = f"{dom.name} (1/2)"
    if src["mesh"] == "interval":
        coarse = MeshDomain.interval(half[0], bounds=bounds[0], comm=dom.comm, periodic=per[0], name=name)
    elif src["mesh"] == "rectangle":
        coarse = MeshDomain.rectangle(half, bounds=bounds, comm=dom.comm, periodic=per,
                                      diagonal=src.get("diagonal", "right"), name=name)
    else:
        coarse = MeshDomain.box(half, bounds=bounds, comm=dom.comm, periodic=per, name=name)
    if isinstance(problem, ErgodicMFGProblem):
        return problem.replace(grid=coarse)
    return problem.replace(grid=coarse, nt=nt // 2)


def _lumped_masses(coords, cells):
    """``mu_i = sum over the cells at vertex i of |cell| / (d + 1)`` (full P1 space)."""
    d = coords.shape[1]
    x = coords[cells]                                 # (ncells, d + 1, d)
    edges = x[:, 1:, :] - x[:, :1, :]                 # (ncells, d, d)
    vol = np.abs(np.linalg.det(edges)) / np.prod(np.arange(1, d + 1))
    mu = np.zeros(len(coords))
    np.add.at(mu, cells.ravel(), np.repeat(vol / (d + 1), d + 1))
    return mu, vol, edges


def _cell_gradients(values, cells, edges):
    """The P1 gradient on every cell of the vertex values (``(..., N) -> (..., ncells, d)``)."""
    dv = values[..., cells[:, 1:]] - values[..., cells[:, :1]]          # (..., ncells, d)
    # edges g = dv on each cell: g = edges^{-1} dv
    inv = np.linalg.inv(edges)                                          # (ncells, d, d)
    return np.einsum("cij,...cj->...ci", inv, dv)


def _matching(fine_coords, coarse_coords):
    """For every coarse vertex, the fine vertex at the same place (nested meshes)."""
    scale = float(np.ptp(fine_coords, axis=0).max()) or 1.0
    dist, idx = cKDTree(fine_coords).query(coarse_coords)
    if dist.max() > 1e-9 * scale:
        raise ValueError("the coarse mesh's vertices are not vertices of the fine mesh")
    return idx


def _full_fields(result):
    """The result's fields in the full P1 space, global dof order, on rank 0 (collective).

    A time-dependent result gathered them already; an ergodic one holds the folded (periodic)
    dofs of every rank, which are unfolded here.
    """
    dom = result.grid
    if not hasattr(result, "rho"):
        return None if dom.comm.rank else {"coords": result.coords, "cells": result.cells, "U": result.U,
                                           "m": result.m, "times": result.times}
    own = slice(dom.start, dom.start + dom.n)
    fields = {"coords": dom.gather(), "cells": dom.gather_cells(), "u": dom.gather(np.asarray(result.u)[own]),
              "m": dom.gather(np.asarray(result.m)[own]), "rho": float(result.rho)}
    return None if dom.comm.rank else fields


def error_norms(fine, coarse):
    """The estimated errors of the fine fields from the pair (see :func:`_full_fields`).

    The fine fields are restricted to the coarse mesh's vertices (and every other time level)
    and the norms are evaluated on the coarse mesh.
    """
    idx = _matching(np.asarray(fine["coords"]), np.asarray(coarse["coords"]))
    cells = np.asarray(coarse["cells"])
    mu, vol, edges = _lumped_masses(np.asarray(coarse["coords"]), cells)
    if "rho" in fine:
        return _ergodic_norms(fine, coarse, idx, mu, vol, edges, cells)
    U, m = np.asarray(fine["U"])[::2, idx], np.asarray(fine["m"])[::2, idx]
    cU, cm = np.asarray(coarse["U"]), np.asarray(coarse["m"])
    dm = m - cm
    L1 = np.abs(dm) @ mu
    support = m > SUPPORT_FRACTION * m.max(axis=1, keepdims=True)
    dU = np.abs(U - cU)
    grad = _cell_gradients(U - cU, cells, edges)                         # (nt + 1, ncells, d)
    m_cell = np.maximum(m[:, cells].mean(axis=2), 0.0)                   # (nt + 1, ncells)
    per_t = np.sum(np.sum(grad**2, axis=2) * m_cell * vol, axis=1)
    times = np.asarray(coarse["times"])
    return {"m_L1_final": float(L1[-1]), "m_L1_max": float(L1.max()),
            "m_max_rel_final": float(np.abs(dm[-1]).max() / np.abs(m[-1]).max()),
            "U_max_support": float(max(dU[i][support[i]].max() for i in range(len(times)))),
            "grad_U_weighted": float(np.sqrt(np.trapezoid(per_t, times) / (times[-1] - times[0])))}


def _ergodic_norms(fine, coarse, idx, mu, vol, edges, cells):
    u, m = np.asarray(fine["u"])[idx], np.asarray(fine["m"])[idx]
    cu, cm = np.asarray(coarse["u"]), np.asarray(coarse["m"])
    support = m > SUPPORT_FRACTION * m.max()
    du = u - cu
    du = du - du[support].mean()          # u is defined up to a constant
    grad = _cell_gradients(u - cu, cells, edges)
    m_cell = np.maximum(m[cells].mean(axis=1), 0.0)
    return {"m_L1": float(np.abs(m - cm) @ mu), "m_max_rel": float(np.abs(m - cm).max() / np.abs(m).max()),
            "u_max_support": float(np.abs(du[support]).max()),
            "grad_u_weighted": float(np.sqrt(np.sum(np.sum(grad**2, axis=1) * m_cell * vol))),
            "rho": float(abs(fine["rho"] - coarse["rho"]))}


def attach_estimate(problem, result, solve_coarse):
    """Solve ``problem`` on the nested coarse mesh and put the two-mesh estimate on ``result``.

    ``solve_coarse(coarse_problem) -> result``. Collective: every rank calls it; rank 0
    computes the norms from the gathered fields and every rank gets them. Where there is no
    estimate, ``diagnostics["error_estimate"]`` is None and ``error_estimate_unavailable``
    says why.
    """
    d = result.diagnostics
    comm = problem.grid.comm
    coarse, why = None, None
    try:
        coarse_p = coarse_problem(problem)
        coarse = solve_coarse(coarse_p)
    except (ArithmeticError, ValueError, RuntimeError) as exc:
        why = str(exc)
    # every rank learns whether any failed (a refusal raised on one rank only must not leave the
    # others waiting in the next collective call)
    why = next((w for w in comm.allgather(why) if w is not None), None)
    if why is not None:
        d["error_estimate"], d["error_estimate_unavailable"] = None, why
        return result
    if not coarse.converged:
        d["error_estimate"] = None
        d["error_estimate_unavailable"] = (f"the coarse mesh's solve ({coarse_p.grid.describe()['cells']} cells) "
                                           f"ended {coarse.status!r}")
        return result
    est, why = None, None
    fine_fields, coarse_fields = _full_fields(result), _full_fields(coarse)
    if comm.rank == 0:
        try:
            est = error_norms(fine_fields, coarse_fields)
            est.update(order=1, levels=2, basis="fine - nested mesh with half the cells (first order)")
        except ValueError as exc:
            why = str(exc)
    est, why = comm.bcast((est, why), root=0)
    d["error_estimate"] = est
    if why is not None:
        d["error_estimate_unavailable"] = why
    return result
