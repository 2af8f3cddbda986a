"""Numerical well-posedness studies: multi-start uniqueness, refinement, the CNF lambda -> 0 limit,
and Lasry-Lions monotonicity.

What each study measures, and why:

* :func:`multi_start` -- solves from several distinct initial guesses. For a well-posed
  (Lasry-Lions monotone) MFG every start converges to the same discrete solution, so the
  spread of the solutions is at the level of the solver tolerance; a spread well above it, or
  starts that fail, point to non-uniqueness or to a solver that cannot find the solution.
* :func:`refinement` -- solves on nested grids and fits the observed order of the Cauchy
  differences ``|m_h - R m_{h/2}|`` (no closed form needed).
* :func:`cnf_lambda_study` -- the CNF family as lambda -> 0. For lambda > 0 the minimiser is
  unique (strictly convex); at lambda = 0 any flow to pi composed with a pi-preserving flow is
  optimal. We report (i) the condition number of the Newton Jacobian at the solution, which
  grows like 1/lambda (the kinetic energy is the only term that pins down the path, so as its
  weight vanishes the linearised problem becomes singular: this is the numerical signature of
  lost uniqueness), (ii) the multi-start spread at fixed tolerance, and (iii) in 2D, a direct
  exhibit of non-uniqueness at lambda = 0: the optimal flow plus a rotation ``v = c B x``
  (B skew, a pi-preserving field for pi = N(0, I)) reaches the same terminal KL.
* :func:`lasry_lions_check` -- samples pairs of densities and evaluates
  ``int (f[m1] - f[m2]) (m1 - m2)``, which must be >= 0 for a monotone coupling.
"""

from __future__ import annotations

import copy
import time

import numpy as np

from ..problem import MFGProblem
from ..solve import solve


def _smooth_random_field(grid, rng, modes=3):
    X = grid.coordinates()
    out = np.zeros(grid.shape)
    for _ in range(modes):
        phase = rng.uniform(0, 2 * np.pi)
        arg = sum(rng.integers(1, 4) * 2 * np.pi * (x - a) / (b - a) for x, (a, b) in zip(X, grid.bounds))
        out += rng.standard_normal() * np.cos(arg + phase)
    return out


def initial_guesses(problem, starts, seed=0, amplitude=1.0):
    """Distinct initial guesses ``(U, M)``: smooth random value functions and density paths."""
    rng = np.random.default_rng(seed)
    g, nt = problem.grid, problem.nt
    out = []
    for k in range(starts):
        U = np.stack([amplitude * _smooth_random_field(g, rng) * (1 - n / (nt + 1)) for n in range(nt + 1)])
        bump = np.exp(_smooth_random_field(g, rng) * 0.5)
        bump /= g.integrate(bump)
        M = np.stack([(1 - s) * problem.m0 + s * bump * g.integrate(problem.m0) for s in np.linspace(0, 1, nt + 1)])
        out.append((U.reshape(nt + 1, -1), M.reshape(nt + 1, -1)))
    return out


def multi_start(problem, starts=4, seed=0, method="newton", tol=1e-9, max_iter=60, amplitude=1.0):
    """Solve from ``starts`` distinct initial guesses and report the spread of the solutions.

    Returns
    -------
    dict
        ``spread_m`` (max pairwise sup-norm distance of the density paths, relative to
        ``max m``), ``spread_U`` (same for U), per-start status/iterations/residual.
    """
    results = []
    for U0, M0 in initial_guesses(problem, starts, seed, amplitude):
        try:
            # first-order problems go through the same viscosity continuation as a cold
            # solve, started from this guess: a start that still ends elsewhere is a real
            # second solution, not an artefact of an unglobalised Newton
            r = solve(problem, method=method, tol=tol, max_iter=max_iter, initial=(U0, M0), verbose=False,
                      viscosity_continuation=problem.nu == 0.0 and method == "newton")
            results.append(r)
        except (FloatingPointError, RuntimeError) as exc:
            results.append(str(exc))
    ok = [r for r in results if not isinstance(r, str) and r.converged]
    spread_m = spread_u = float("nan")
    if len(ok) >= 2:
        mref = max(np.abs(r.m).max() for r in ok)
        uref = max(1.0, max(np.abs(r.U).max() for r in ok))
        spread_m = max(np.abs(a.m - b.m).max() for a in ok for b in ok) / mref
        spread_u = max(np.abs(a.U - b.U).max() for a in ok for b in ok) / uref
    return {
        "starts": starts, "converged": len(ok), "spread_m": float(spread_m), "spread_U": float(spread_u),
        "runs": [{"status": r if isinstance(r, str) else r.status,
                  "iterations": None if isinstance(r, str) else r.iterations,
                  "residual": None if isinstance(r, str) else r.diagnostics["residual"]} for r in results],
    }


def restrict(fine, fine_grid, coarse_grid):
    """Restrict a grid function to a grid coarser by a factor 2 per axis.

    Periodic axes: node 2i of the fine grid is node i of the coarse one (injection).
    No-flux axes: fine cells 2i, 2i+1 make coarse cell i (average).
    """
    out = np.asarray(fine)
    for k in range(fine_grid.dim):
        if fine_grid.shape[k] != 2 * coarse_grid.shape[k]:
            raise ValueError("restrict: grids must be nested with refinement factor 2 per axis")
        sl0 = [slice(None)] * out.ndim
        sl1 = [slice(None)] * out.ndim
        ax = out.ndim - fine_grid.dim + k
        sl0[ax] = slice(0, None, 2)
        sl1[ax] = slice(1, None, 2)
        out = out[tuple(sl0)] if fine_grid.boundary[k] == "periodic" else 0.5 * (out[tuple(sl0)] + out[tuple(sl1)])
    return out


def refinement(make_problem, sizes, method="newton", tol=1e-9):
    """Refinement study on nested grids: Cauchy differences and their observed order.

    Parameters
    ----------
    make_problem : callable ``n -> MFGProblem``
        Grid with ``n`` points per axis; ``nt`` should scale with ``n``; sizes double.
    sizes : sequence of int

    Returns
    -------
    dict with ``h``, ``differences_m`` (L1 over space, max over the common times),
    ``differences_U`` (sup), ``order_m``, ``order_U``.
    """
    sols = []
    for n in sizes:
        p = make_problem(n)
        r = solve(p, method=method, tol=tol)
        if not r.converged:
            raise RuntimeError(f"refinement: the solve with n = {n} did not converge ({r.status})")
        sols.append(r)
    dm, du, hs = [], [], []
    for a, b in zip(sols[:-1], sols[1:]):
        ratio = b.problem.nt // a.problem.nt
        mb = restrict(b.m[::ratio], b.grid, a.grid)
        ub = restrict(b.U[::ratio], b.grid, a.grid)
        dm.append(float(max(a.grid.integrate(np.abs(x - y)) for x, y in zip(a.m, mb))))
        du.append(float(np.abs(a.U - ub).max()))
        hs.append(float(max(a.grid.h)))
    fit = lambda e: float(np.polyfit(np.log(hs), np.log(e), 1)[0]) if len(e) >= 2 else float("nan")  # noqa: E731
    return {"sizes": list(sizes), "h": hs, "differences_m": dm, "differences_U": du,
            "order_m": fit(dm), "order_U": fit(du)}


def lasry_lions_check(coupling, grid, samples=32, seed=0):
    """Sample ``int (f[m1] - f[m2]) (m1 - m2) / |m1 - m2|^2`` over random density pairs.

    Returns
    -------
    dict with the minimum and median of the normalised pairing and ``monotone``
    (min >= -1e-12); a negative value is a counterexample to monotonicity.
    """
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(samples):
        m1 = np.exp(_smooth_random_field(grid, rng))
        m2 = np.exp(_smooth_random_field(grid, rng))
        m1 /= grid.integrate(m1)
        m2 /= grid.integrate(m2)
        num = grid.integrate((coupling.value(m1, grid) - coupling.value(m2, grid)) * (m1 - m2))
        vals.append(num / grid.integrate((m1 - m2) ** 2))
    vals = np.array(vals)
    return {"samples": samples, "min_pairing": float(vals.min()), "median_pairing": float(np.median(vals)),
            "monotone": bool(vals.min() >= -1e-12), "declared_monotone": bool(coupling.monotone)}


def jacobian_condition(problem, result, lam=None):
    """2-norm condition number and smallest singular value of the Newton Jacobian (dense SVD).

    With ``lam`` given, the Jacobian is taken in the velocity-potential variables
    ``phi = U / lambda`` (so ``v = -grad phi`` does not depend on lambda) with the HJB rows
    divided by lambda: ``diag(1/lam, 1) J diag(lam, 1)``. In these variables the kinetic
    energy carries the weight lambda and the terminal KL weight 1, so the conditioning shows
    how much the path is still pinned down as lambda -> 0.
    """
    from ..fd.scheme import FDScheme

    sc = FDScheme(problem)
    J = sc.jacobian(result.U.reshape(problem.nt + 1, -1), result.m.reshape(problem.nt + 1, -1))
    if J.shape[0] > 6000:
        raise ValueError(f"jacobian_condition: {J.shape[0]} unknowns is too many for a dense SVD (max 6000)")
    A = J.toarray()
    if lam is not None:
        n = A.shape[0] // 2
        A[:n, :] /= lam
        A[:, :n] *= lam
    s = np.linalg.svd(A, compute_uv=False)
    return float(s[0] / s[-1]), float(s[-1])


def cnf_lambda_study(grid, data, lambdas, T=1.0, nt=16, starts=3, tol=1e-9, seed=0):
    """The CNF family as lambda -> 0 (see the module docstring for what is measured and why).

    Returns
    -------
    dict with one entry per lambda: condition number and smallest singular value of the
    Newton Jacobian at the solution, Newton iterations, multi-start spread, terminal KL and
    ``W2^2``-like kinetic cost.
    """
    from ..generative.energies import KL
    from ..generative.presets import cnf_problem, standard_normal_log_density

    rows = []
    for lam in lambdas:
        t0 = time.perf_counter()
        p = cnf_problem(grid, data, lam=lam, T=T, nt=nt)
        r = solve(p, tol=tol, max_iter=80)
        row = {"lam": float(lam), "converged": r.converged, "iterations": r.iterations, "status": r.status}
        if r.converged:
            cond, smin = jacobian_condition(p, r)
            cond_phi, smin_phi = jacobian_condition(p, r, lam=lam)
            kl = KL(standard_normal_log_density(grid.dim)).value(np.maximum(r.m[-1], 0), grid)
            row.update(condition_number=cond, smallest_singular_value=smin, condition_number_phi=cond_phi,
                       smallest_singular_value_phi=smin_phi, terminal_kl=float(kl))
            ms = multi_start(p, starts=starts, seed=seed, tol=tol, max_iter=80, amplitude=0.3)
            row.update(spread_m=ms["spread_m"], spread_U=ms["spread_U"], starts_converged=ms["converged"],
                       starts=starts)
        row["wall_time_s"] = time.perf_counter() - t0
        rows.append(row)
    return {"lambdas": [float(x) for x in lambdas], "rows": rows}


def rotation_nonuniqueness(grid, data, lam=0.05, T=1.0, nt=32, rotation=1.0):
    """2D exhibit of non-uniqueness at lambda = 0.

    Solves the CNF at a small lambda, giving the path ``m*(t)`` and velocity ``v*``. The
    rotated path ``R_{c t} # m*(t)`` (``R`` the rotation about the mean of pi = N(0, I),
    which preserves pi) is generated by ``v~(x, t) = R v*(R^{-1} x, t) + c B x`` with
    ``B = [[0, -1], [1, 0]]``. Both paths start at the data and end at densities with the
    same KL to pi (KL is rotation invariant): at lambda = 0 the objective is that KL alone,
    so both are optimal while the paths differ. Both are re-transported on the grid with
    :func:`evolve_density`, so the comparison includes the discretisation error.
    """
    from scipy.interpolate import RegularGridInterpolator

    from ..generative.energies import KL
    from ..generative.presets import cnf_problem, standard_normal_log_density
    from ..generative.transport import evolve_density, grid_gradient

    if grid.dim != 2:
        raise ValueError("rotation_nonuniqueness needs a 2D grid")
    p = cnf_problem(grid, data, lam=lam, T=T, nt=nt)
    r = solve(p, tol=1e-9)
    v = np.stack([-grid_gradient(u, grid) / lam for u in r.U])
    X, Y = grid.coordinates()
    vt = np.empty_like(v)
    for n, t in enumerate(r.times):
        th = rotation * t
        c, s_ = np.cos(th), np.sin(th)
        xb, yb = c * X + s_ * Y, -s_ * X + c * Y          # R^{-1} x
        pts = np.stack([xb.ravel(), yb.ravel()], axis=1)
        comp = [RegularGridInterpolator(grid.axes, v[n, k], bounds_error=False, fill_value=0.0)(pts)
                .reshape(grid.shape) for k in range(2)]
        vt[n, 0] = c * comp[0] - s_ * comp[1] - rotation * Y
        vt[n, 1] = s_ * comp[0] + c * comp[1] + rotation * X
    kl = KL(standard_normal_log_density(2))
    m_opt = evolve_density(grid, p.m0, v, T, nt)
    m_rot = evolve_density(grid, p.m0, vt, T, nt)
    path_gap = max(grid.integrate(np.abs(a - b)) for a, b in zip(m_opt, m_rot))
    return {"lam": lam, "rotation": rotation, "kl_optimal_flow": float(kl.value(m_opt[-1], grid)),
            "kl_rotated_flow": float(kl.value(m_rot[-1], grid)),
            "terminal_L1_gap": float(grid.integrate(np.abs(m_opt[-1] - m_rot[-1]))),
            "max_path_L1_gap": float(path_gap)}


def perturbed_problem(problem, **changes):
    """A shallow copy of a problem with attributes replaced (e.g. ``nu``)."""
    p = copy.copy(problem)
    for k, v in changes.items():
        setattr(p, k, v)
    if not isinstance(p, MFGProblem):
        raise TypeError("perturbed_problem needs an MFGProblem")
    return p
