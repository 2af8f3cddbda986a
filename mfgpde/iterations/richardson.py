"""Richardson extrapolation over a grid ladder: second-order references and an error bar on each.

The monotone scheme (upwind Hamiltonian, implicit Euler) is first order: for a smooth solution
and a fixed ratio ``dt / h``, the discrete solution on a grid of spacing ``h`` expands as

    u_h = u + h e_1 + h^2 e_2 + O(h^3)                                              (1)

with smooth error functions ``e_1, e_2`` that do not depend on ``h``. Solving the same MFG on
the ladder ``h, 2h, 4h`` (half the points per axis and half the time steps per level) and
interpolating the coarse solutions to the fine grid (``P``, cubic per axis and in time, which
adds only ``O(h^4)``), the combinations

    R_2 = 2 u_h - P u_2h                  = u + O(h^2)                              (2)
    R_3 = (8 u_h - 6 P u_2h + P u_4h) / 3 = u + O(h^3)                              (3)

eliminate the leading error terms. A coarse level costs 1/4 (1D), 1/8 (2D) or 1/16 (3D) of the
fine solve, so the whole ladder costs about 1.1-1.3 times the first-order solve.

Error estimates. The difference between a result and the next-lower-order combination on the
same ladder estimates the error of the lower one:

* order 1 (the fine solve ``u_h``): ``u_h - P u_2h = -h e_1 + O(h^2)``, the error of ``u_h``
  to leading order (two levels);
* order 2 (``R_3``): ``R_3 - R_2 = O(h^2)`` is the error of ``R_2``; it bounds the error of
  the returned ``R_3`` once the ladder is in its asymptotic range, as in embedded Runge-Kutta
  pairs that step with the higher-order solution ("local extrapolation"). It is therefore
  conservative once the ladder is asymptotic, increasingly so as h falls (measured: 2.1x the true
  error on C3 in 2D at 128^2; on C1 1.6x, 4.4x, 11x at 96, 192, 384 cells), and too small before it
  (0.34x on C3 2D at 32^2, 0.21x on C3 3D at 32^3).

Every estimate is reported in the norms the validation metrics use (the L1 error of m(T),
density-weighted errors of grad U, ...) by evaluating that norm on the pair (result, companion),
where the companion is the lower-order field. The estimate is trustworthy when the solution
is smooth and resolved on the coarsest grid of the ladder (resolved fronts, no kinks): a
non-smooth solution (a density with a jump, the kinks of a nu = 0 value function) breaks
expansion (1) and the estimate then only indicates the size of the error. Measured where it is
not: C3 in 3D on 32^3 (coarsest level 8^3, a Gaussian of width 0.4 on a spacing of 0.5) gave an
order-2 estimate 4.7 times below the true error (order 1: 1.1 times above). The ratio of
successive ladder differences does not reveal this (0.50 there, as on resolved cases and on B1's
discontinuous data), so no such check is offered: refine until the order-1 and order-2
estimates agree with the expected gain.

Mass: every level conserves mass exactly, the cubic interpolation by a factor 2 conserves the
discrete mass exactly (its weights from each coarse value sum to 2), and the coefficients of
(2)-(3) sum to one, so the extrapolated density carries the mass of ``m0`` to round-off. The
extrapolated density may dip below zero in the tails (the combination is not monotone):
``diagnostics["min_density"]`` reports it and ``diagnostics["extrapolation"]["negative_density"]``
says so.

References: L. F. Richardson, Phil. Trans. R. Soc. A 210 (1911); P. J. Roache, "Verification and
Validation in Computational Science and Engineering" (1998), ch. 5 (grid convergence index).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..grid import TensorGrid, centred_gradient
from ..options import ORDERS
from ..problem import ErgodicMFGProblem, MFGProblem
from .sequencing import _apply_along

logger = logging.getLogger(__name__)

#: Points per axis, and time steps, that the coarsest level of a ladder must keep.
MIN_LEVEL_POINTS = 8
MIN_LEVEL_STEPS = 2
#: Coefficients of the fine, 2h and 4h solutions in the combinations (2) and (3).
COEFFICIENTS = {1: (1.0,), 2: (2.0, -1.0), 3: (8.0 / 3.0, -2.0, 1.0 / 3.0)}
#: Where the density is below this fraction of its maximum, U is not compared (the KL terminal
#: cost clips log m there, and the far tails carry no mass).
SUPPORT_FRACTION = 1e-3


# ---------------------------------------------------------------------------- interpolation
def lagrange_matrix(x_target, x_source, mode):
    """Sparse matrix of 4-point (cubic) Lagrange interpolation between uniform point sets.

    Parameters
    ----------
    x_target, x_source : ndarray
        Uniformly spaced, increasing points; ``x_source`` has at least 4 of them.
    mode : {"periodic", "mirror", "inside"}
        How the stencil is completed past the ends: wrapped around (a periodic axis whose period
        is ``n * H``), mirrored about the wall half a spacing beyond the end points (the
        cell-centred no-flux axis: zero normal derivative, as the scheme imposes), or shifted
        inside (time, where the end points are data).

    Returns
    -------
    scipy.sparse.csr_matrix of shape ``(len(x_target), len(x_source))``; exact on cubics
    (away from a mirrored wall: on even cubics about it).
    """
    xs = np.asarray(x_source, float)
    xt = np.asarray(x_target, float)
    n = xs.size
    if n == 1:
        return sp.csr_matrix((np.ones(xt.size), (np.arange(xt.size), np.zeros(xt.size, int))), shape=(xt.size, 1))
    H = (xs[-1] - xs[0]) / (n - 1)
    s = (xt - xs[0]) / H
    j = np.floor(s + 1e-12).astype(int)
    # the stencil: 4 points around the target (fewer on a time grid with fewer levels)
    width = 4 if mode != "inside" else min(4, n)
    if mode == "inside":
        start = np.clip(j - (width // 2 - 1), 0, n - width)
    else:
        start = np.clip(j, -1, n - 1) - 1
    nodes = start[:, None] + np.arange(width)[None, :]
    t = s[:, None]
    w = np.ones(nodes.shape)
    for a in range(width):
        for b in range(width):
            if a != b:
                w[:, a] *= (t[:, 0] - nodes[:, b]) / (nodes[:, a] - nodes[:, b])
    if mode == "periodic":
        cols = nodes % n
    elif mode == "mirror":
        cols = np.where(nodes < 0, -nodes - 1, nodes)
        cols = np.where(cols > n - 1, 2 * n - 1 - cols, cols)
    else:
        cols = nodes
    rows = np.repeat(np.arange(xt.size), width)
    return sp.csr_matrix((w.ravel(), (rows, cols.ravel())), shape=(xt.size, n))


def interpolate(values, source, target, times=None):
    """A grid function (or a time sequence of them) on grid ``source`` at the points of ``target``.

    Cubic per axis; with ``times = (t_source, t_target)`` the leading axis is time, interpolated
    cubically too. Both grids cover the same box with the same boundary types.
    """
    F = np.asarray(values, float)
    lead = 0
    if times is not None:
        F = _apply_along(lagrange_matrix(times[1], times[0], "inside"), F, 0)
        lead = 1
    for k in range(target.dim):
        mode = "periodic" if target.boundary[k] == "periodic" else "mirror"
        F = _apply_along(lagrange_matrix(target.axes[k], source.axes[k], mode), F, k + lead)
    return F


# ---------------------------------------------------------------------------- the ladder
def _halvings(problem):
    """How many times the grid (and the time grid) can be halved exactly, keeping
    :data:`MIN_LEVEL_POINTS` per axis and :data:`MIN_LEVEL_STEPS` steps.
    """
    k = 0
    shape = list(problem.grid.shape)
    nt = getattr(problem, "nt", None)
    while all(n % 2 == 0 and n // 2 >= MIN_LEVEL_POINTS for n in shape) and (
            nt is None or (nt % 2 == 0 and nt // 2 >= MIN_LEVEL_STEPS)):
        shape = [n // 2 for n in shape]
        nt = None if nt is None else nt // 2
        k += 1
    return k


def ladder_refusal(problem, levels):
    """Why ``problem`` has no ladder of ``levels`` grids, or ``None`` when it has one."""
    grid = problem.grid
    if getattr(grid, "is_mesh", False):
        return ("Richardson extrapolation needs a tensor grid that halves; this problem lives on a mesh "
                "(the FEM backend has no ladder of nested meshes)")
    need = levels - 1
    if _halvings(problem) >= need:
        try:
            coarsen(problem, 2 ** need)
        except ValueError as exc:
            return str(exc)
        return None
    factor = 2 ** need
    nt = getattr(problem, "nt", None)
    steps = "" if nt is None else f" and nt = {nt} divisible by {factor} with nt / {factor} >= {MIN_LEVEL_STEPS}"
    return (f"a ladder of {levels} grids needs every axis of shape {tuple(grid.shape)} divisible by {factor} "
            f"with at least {MIN_LEVEL_POINTS} points per axis on the coarsest grid{steps}")


def coarsen(problem, factor):
    """The same MFG with ``factor`` times fewer points per axis (and time steps).

    Rebuilt through the problem's own validating constructor. Data given as functions are
    evaluated on the coarse grid; an initial density given as a fine-grid array (the generative
    presets) is interpolated cubically and rescaled to the fine mass. Raises ``ValueError`` for
    data that cannot be moved to another grid (a drift given as an array, a problem subclass).
    """
    if factor == 1:
        return problem
    if type(problem) not in (MFGProblem, ErgodicMFGProblem):
        raise ValueError(f"a {type(problem).__name__} cannot be rebuilt on a coarser grid for the ladder")
    grid = problem.grid
    drift = None
    if problem.drift is not None:
        if not callable(problem.drift.b):
            raise ValueError("the drift is given as a grid array; a ladder of grids needs it as a function of x "
                             "(and t)")
        drift = problem.drift.b
    coarse = TensorGrid(grid.bounds, [n // factor for n in grid.shape], grid.boundary)
    name = f"{problem.name} (ladder 1/{factor})"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fine problem has warned already
        sources = {}
        for key in ("hjb_source", "fp_source"):
            spec = getattr(problem, key + "_spec", None)
            if spec is not None and not callable(spec):
                raise ValueError(f"the {key} is given as a grid array; a ladder of grids needs it as a function "
                                 "s(t, x)")
            sources[key] = spec
        if isinstance(problem, ErgodicMFGProblem):
            return ErgodicMFGProblem(coarse, problem.nu, problem.hamiltonian, coupling=problem.coupling, drift=drift, name=name,
                                     **sources)
        m0 = problem.m0_source
        if not callable(m0):
            m0 = interpolate(problem.m0, grid, coarse)
            m0 = np.maximum(m0, 0.0)
            m0 *= grid.integrate(problem.m0) / coarse.integrate(m0)
        p = MFGProblem(coarse, problem.T, problem.nt // factor, problem.nu, problem.hamiltonian, m0,
                       coupling=problem.coupling, terminal=problem.terminal, drift=drift,
                       normalize=problem.normalize, name=name, **sources)
        # evaluate the couplings once: data given as fine-grid arrays fail here, before any solve
        m = np.tile(p.m0.ravel(), (2, 1)).reshape((2,) + coarse.shape)
        try:
            for term in (p.coupling, p.terminal):
                term.value(m, coarse)
        except (ValueError, TypeError, IndexError) as exc:
            raise ValueError(f"a coupling or terminal cost cannot be evaluated on a coarser grid ({exc}); "
                             "give it as a function of x for the ladder") from None
    return p


@dataclass(frozen=True)
class RichardsonLadder:
    """The extrapolation strategy: solve a ladder of grids through ``solve_level`` and combine.

    Parameters
    ----------
    order : {1, 2}
        1: the fine solve itself (the ladder only supplies its error estimate); 2: the
        three-level combination (3).
    estimate : bool
        Compute the error estimate (order 1: one extra level; order 2 always has one).
    """

    order: int = 1
    estimate: bool = True

    @property
    def levels(self):
        return 3 if self.order == 2 else (2 if self.estimate else 1)

    def check(self, problem):
        """Refuse an impossible ``order = 2`` before any work; the number of levels to solve."""
        if self.order not in ORDERS:
            raise ValueError(f"order must be 1 or 2, got {self.order!r}")
        if self.levels == 1:
            return 1
        reason = ladder_refusal(problem, self.levels)
        if reason is None:
            return self.levels
        if self.order == 2:
            raise ValueError(f"order=2: {reason}")
        return 1

    def run(self, problem, solve_level):
        """Solve the ladder, coarsest first, and return the fine result with the combined fields.

        ``solve_level(level_problem, coarser_result_or_None) -> result`` solves one level (the
        coarser level's result may serve as its grid-sequencing start).
        """
        levels = self.check(problem)
        if levels == 1:
            res = solve_level(problem, None)
            if self.estimate:
                res.diagnostics["error_estimate"] = None
                res.diagnostics["error_estimate_unavailable"] = ladder_refusal(problem, 2)
            return res
        problems = [coarsen(problem, 2 ** k) for k in range(levels)]
        results, coarser = [None] * levels, None
        t0 = time.perf_counter()
        for done, k in enumerate(reversed(range(levels)), start=1):
            try:
                coarser = results[k] = solve_level(problems[k], coarser)
            except (ArithmeticError, ValueError, RuntimeError) as exc:
                if self.order == 2 or k == 0:
                    raise
                # the estimate's coarse level failed where the problem itself may not (a grid too
                # small to split over the ranks, a coupling singular at a coarse density): the
                # result goes on without an estimate and says why
                res = solve_level(problem, None)
                res.diagnostics["error_estimate"] = None
                res.diagnostics["error_estimate_unavailable"] = (
                    f"the coarse level {list(problems[k].grid.shape)} failed: {type(exc).__name__}: {exc}")
                return res
            logger.info("Richardson ladder: level %d of %d (%s%s) %s, %.2f s elapsed", done, levels,
                        "x".join(map(str, problems[k].grid.shape)),
                        f" x {problems[k].nt} steps" if hasattr(problems[k], "nt") else "", coarser.status,
                        time.perf_counter() - t0)
        fine = results[0]
        if not all(r.converged for r in results):
            bad = [list(problems[k].grid.shape) for k, r in enumerate(results) if not r.converged]
            fine.diagnostics["error_estimate"] = None
            fine.diagnostics["error_estimate_unavailable"] = f"the ladder level(s) {bad} did not converge"
            if self.order == 2:
                fine.diagnostics.update(converged=False, status="extrapolation_failed",
                                        message=f"order=2: the ladder level(s) {bad} did not converge; "
                                                "the fields are the first-order fine solve's")
            return fine
        return _combine(problem, results, self.order)


def _fields(result):
    return (result.U, result.m) if hasattr(result, "U") else (result.u, result.m)


def _on_fine(problem, result):
    """A level's fields at the fine grid's points (and times).

    No mass correction is needed: cubic interpolation by a factor 2 conserves the discrete mass
    exactly (every coarse value's weights over the fine points sum to 2, mirrored walls and
    periodic seams included), and in time the weights sum to one over slices of equal mass.
    """
    a, m = _fields(result)
    if result.problem is problem:
        return np.asarray(a, float), np.asarray(m, float)
    src, dst = result.problem.grid, problem.grid
    times = (result.problem.times, problem.times) if hasattr(problem, "times") else None
    ai = interpolate(a, src, dst, times)
    mi = interpolate(m, src, dst, times)
    return ai, mi


def _combine(problem, results, order):
    """The extrapolated result (order 2) or the fine one (order 1), with its error estimate."""
    fields = [_on_fine(problem, r) for r in results]
    fine = results[0]
    levels = len(results)
    if order == 1:
        a, m = fields[0]
        ca, cm = fields[1]
        crho = getattr(results[1], "rho", None)
    else:
        a, m = (sum(c * f[i] for c, f in zip(COEFFICIENTS[3], fields)) for i in (0, 1))
        ca, cm = (sum(c * f[i] for c, f in zip(COEFFICIENTS[2], fields)) for i in (0, 1))
        crho = None
        if hasattr(fine, "rho"):
            rhos = [r.rho for r in results]
            fine.rho = float(sum(c * r for c, r in zip(COEFFICIENTS[3], rhos)))
            crho = float(sum(c * r for c, r in zip(COEFFICIENTS[2], rhos)))
        if hasattr(fine, "U"):
            fine.U = a
            m[0] = problem.m0  # the data, exactly
            cm[0] = problem.m0
        else:
            fine.u = a
        fine.m = m
    fine.companion = (ca, cm)
    d = fine.diagnostics
    masses = (np.sum(m.reshape(m.shape[0], -1), axis=1) if hasattr(fine, "U") else np.atleast_1d(m.sum())) \
        * problem.grid.cell_volume
    reference_mass = (np.sum(problem.m0) * problem.grid.cell_volume) if hasattr(fine, "U") else masses[0]
    d["order"] = order
    d["extrapolation"] = {
        "method": "richardson", "levels": [list(r.problem.grid.shape) + ([r.problem.nt] if hasattr(r.problem, "nt")
                                                                          else []) for r in results],
        "level_iterations": [int(r.iterations) for r in results],
        "level_time_s": [float(r.diagnostics["wall_time_s"]) for r in results],
    }
    if order == 2:
        d["mass_error"] = float(np.max(np.abs(masses - reference_mass)) / reference_mass)
        d["min_density"] = float(m.min())
        d["extrapolation"]["negative_density"] = bool(m.min() < 0)
        d["wall_time_s"] = float(sum(d["extrapolation"]["level_time_s"]))
    d["error_estimate"] = error_norms(problem, a, m, ca, cm, rho=getattr(fine, "rho", None), crho=crho)
    d["error_estimate"].update(order=order, levels=levels,
                               basis="fine - 2h (first order)" if order == 1
                               else "three-level - two-level extrapolation (bounds the three-level error)")
    return fine


def error_norms(problem, a, m, ca, cm, *, rho=None, crho=None):
    """The estimated errors: the validation norms evaluated on ``(a, m) - (ca, cm)``.

    Time-dependent (``a = U``), with ``dm = m - cm`` and ``dU = a - ca``: ``m_L1_final``
    (``int |dm(T)|``), ``m_L1_max`` (its max over t), ``m_max_rel_final``
    (``max |dm(T)| / max m(T)``), ``U_max_support`` (``max |dU|`` where ``m > 1e-3 max m`` at that
    time), ``grad_U_weighted`` (``sqrt((1/T) int int m |grad dU|^2)``).
    Ergodic (``a = u``): ``m_L1``, ``m_max_rel``, ``u_max_support`` (u compared up to a constant:
    the mean difference on the support is removed), ``grad_u_weighted``, ``rho``.
    """
    g = problem.grid
    if hasattr(problem, "times"):
        times = problem.times
        n = len(times)
        dm = (m - cm).reshape(n, -1)
        L1 = np.abs(dm).sum(axis=1) * g.cell_volume
        flat_m = m.reshape(n, -1)
        support = flat_m > SUPPORT_FRACTION * flat_m.max(axis=1, keepdims=True)
        dU = np.abs((a - ca).reshape(n, -1))
        sq = np.sum((centred_gradient(a, g) - centred_gradient(ca, g)) ** 2, axis=0).reshape(n, -1)
        per_t = np.sum(sq * np.maximum(flat_m, 0.0), axis=1) * g.cell_volume
        T = times[-1] - times[0]
        return {"m_L1_final": float(L1[-1]), "m_L1_max": float(L1.max()),
                "m_max_rel_final": float(np.abs(dm[-1]).max() / np.abs(flat_m[-1]).max()),
                "U_max_support": float(max(dU[i][support[i]].max() for i in range(n))),
                "grad_U_weighted": float(np.sqrt(np.trapezoid(per_t, times) / T))}
    support = m > SUPPORT_FRACTION * m.max()
    du = a - ca
    du = du - du[support].mean()
    sq = np.sum((centred_gradient(a, g) - centred_gradient(ca, g)) ** 2, axis=0)
    out = {"m_L1": float(g.integrate(np.abs(m - cm))), "m_max_rel": float(np.abs(m - cm).max() / np.abs(m).max()),
           "u_max_support": float(np.abs(du[support]).max()),
           "grad_u_weighted": float(np.sqrt(g.integrate(sq * np.maximum(m, 0.0))))}
    if rho is not None and crho is not None:
        out["rho"] = float(abs(rho - crho))
    return out
