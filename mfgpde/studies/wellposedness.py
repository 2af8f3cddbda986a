"""Numerical well-posedness studies: multi-start uniqueness, refinement, the CNF lambda -> 0 limit,
and Lasry-Lions monotonicity.

What each study measures, and why:

* :func:`multi_start` -- solves from several distinct initial guesses, each at the target
  problem or along its own Newton-homotopy path (never through a problem common to all
  starts, such as the first stage of a viscosity continuation, which would make every start
  agree by construction). For a well-posed (Lasry-Lions monotone) MFG every start converges
  to the same discrete solution; starts that end at different solutions prove
  non-uniqueness. :func:`run_controls` calibrates the check on :func:`aggregation_control`
  (provably several solutions) and its monotone twin (one solution).
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

import time

import numpy as np

from ..problem import MFGProblem
from ..solver import solve


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
    for _ in range(starts):
        U = np.stack([amplitude * _smooth_random_field(g, rng) * (1 - n / (nt + 1)) for n in range(nt + 1)])
        bump = np.exp(_smooth_random_field(g, rng) * 0.5)
        bump /= g.integrate(bump)
        M = np.stack([(1 - s) * problem.m0 + s * bump * g.integrate(problem.m0) for s in np.linspace(0, 1, nt + 1)])
        out.append((U.reshape(nt + 1, -1), M.reshape(nt + 1, -1)))
    return out


def _relative_distance(a, b):
    """Sup-norm distance of two solutions ``(U, m)``: ``(|m_a - m_b| / max m, |U_a - U_b| / max(1, max |U|))``."""
    mref = max(np.abs(a[1]).max(), np.abs(b[1]).max(), 1e-300)
    uref = max(1.0, np.abs(a[0]).max(), np.abs(b[0]).max())
    return float(np.abs(a[1] - b[1]).max() / mref), float(np.abs(a[0] - b[0]).max() / uref)


#: multi-start runs with at most this many unknowns take exact Newton steps (see solve_from_start)
EXACT_NEWTON_MAX_UNKNOWNS = 200_000


def solve_from_start(problem, U0, M0, method="newton", tol=1e-9, max_iter=60):
    """Solve ``problem`` from the start ``(U0, M0)`` without any stage common to all starts.

    Three paths, each at the target problem or along a path of the start's own, tried in turn:

    1. ``"direct"``: Newton at the target problem from the start (its usual line search and
       fixed-point globalisation; exact linear solves up to ``EXACT_NEWTON_MAX_UNKNOWNS``
       unknowns), or the fixed point for the other methods.
    2. ``"fictitious_play"``: when Newton does not converge there (a first-order problem far
       from its solution: at nu = 0 and small lambda the Newton residual is only semismooth,
       and from a random start the line search stalls), fictitious play at the target
       problem from the start's density path, in rounds of ``FP_ROUNDS`` iterations, each
       followed by Newton from the averaged iterate. Fictitious play converges for monotone
       (potential) problems (Cardaliaguet & Hadikhanloo 2017) and may settle on different
       equilibria of a non-monotone one; its iterates depend on the start, whose weight in
       the average falls like 1/k, not on any common auxiliary problem. Measured on the C1
       CNF at 40 cells x 16 steps from 3 starts: with the homotopy alone the multi-start was
       inconclusive for lambda <= 0.01 (1 of 3 starts at 0.01, 0 of 3 at 0.001); with this
       path 3 of 3 converge to one solution for lambda = 0.03, 0.01, 0.003 and 0.001 (2-7 s
       for all three starts), their densities still 1.5-5 % apart when Newton took over.
    3. ``"homotopy"``: the Newton homotopy ``R(z) = (1 - s) R(z_0)``
       (:func:`mfgpde.iterations.homotopy.newton_homotopy`).

    Viscosity continuation is never used: its first stage is one uniquely solvable problem
    shared by every start, which would erase the starts' differences before the target
    problem is reached.

    Returns
    -------
    U, M : ndarray (N_t + 1, N) or None
        The solution (``None`` when no path converged).
    record : dict
        ``path`` (``"direct"``, ``"fictitious_play"`` or ``"homotopy"``), ``converged``,
        ``status``, ``iterations``, ``residual``, ``message``; for fictitious play
        ``played`` (its iterations) and ``handoff_residual`` (where Newton took over), and
        ``handoff`` (the iterate then, for the pairwise distances of :func:`multi_start`;
        removed there); for the homotopy ``reached`` (the last ``s``).
    """
    from ..fd.scheme import FDScheme
    from ..iterations.homotopy import newton_homotopy

    shape = (problem.nt + 1, problem.grid.size)
    rec = {"path": "direct"}
    try:
        if method == "newton" and 2 * shape[0] * shape[1] <= EXACT_NEWTON_MAX_UNKNOWNS:
            # exact Newton steps (sparse LU of the space-time Jacobian): which solution a start
            # reaches is then a property of Newton's path from it, not of the Krylov solver's
            # tolerance. With inexact steps (GMRES to 1e-2 far from a solution) the path, and
            # so the basin, depends on the Krylov method: on the aggregation control, scipy's
            # left-preconditioned GMRES took 27 iterations per early step and its starts
            # reached 2-3 of the solutions, a right-preconditioned GMRES stopped after 1-3
            # and every start reached the uniform one
            from ..iterations.newton import newton

            U, M, log, status = newton(FDScheme(problem), np.reshape(U0, shape), np.reshape(M0, shape), tol=tol,
                                       max_iter=max_iter, linear="direct")
            converged = status == "converged"
            iterations, residual = int(log.records[-1]["iteration"]), float(log.records[-1]["residual"])
            rec["linear"] = "exact (sparse LU)"
        else:
            r = solve(problem, method=method, tol=tol, max_iter=max_iter, initial=(U0, M0), verbose=False,
                      viscosity_continuation=False)
            U, M, status, converged = r.U.reshape(shape), r.m.reshape(shape), r.status, bool(r.converged)
            iterations, residual = int(r.iterations), float(r.diagnostics["residual"])
        rec.update(status=status, converged=converged, iterations=iterations, residual=residual, message="")
        if converged or method != "newton":
            return ((U, M) if converged else (None, None)), rec
        rec["direct"] = f"Newton at the target problem ended {status!r} after {iterations} iterations"
    except (FloatingPointError, RuntimeError, np.linalg.LinAlgError) as exc:
        if method != "newton":
            rec.update(status="error", converged=False, iterations=None, residual=None, message=str(exc))
            return (None, None), rec
        rec["direct"] = f"Newton at the target problem failed: {exc}"
    sol, fp_rec = _fictitious_play_path(problem, np.reshape(U0, shape), np.reshape(M0, shape), tol, max_iter)
    if sol is not None:
        rec.update(fp_rec)
        return sol, rec
    rec["fictitious_play"] = fp_rec["message"]
    U, M, info = newton_homotopy(FDScheme(problem), np.reshape(U0, shape), np.reshape(M0, shape), tol=tol)
    rec.update(path="homotopy", status="converged" if info["converged"] else "homotopy_stopped",
               converged=info["converged"], iterations=info["iterations"], residual=info["residual"],
               reached=info["reached"], stages=info["stages"], message=info["message"])
    return ((U, M) if info["converged"] else (None, None)), rec


#: fictitious-play iterations before each Newton attempt of :func:`solve_from_start` (1400 in all)
FP_ROUNDS = (100, 300, 1000)


def _fictitious_play_path(problem, U0, M0, tol, max_iter):
    """Fictitious play at the target problem from ``M0``, handing over to Newton after each round.

    Returns ``((U, M) or None, record)``; see :func:`solve_from_start`.
    """
    from ..fd.scheme import FDScheme
    from ..iterations.fixed_point import fixed_point

    scheme = FDScheme(problem)
    U, M, played = U0, M0, 0
    message = ""
    for rounds in FP_ROUNDS:
        try:
            U, M, log, status = fixed_point(scheme, tol=tol, max_iter=rounds, fictitious=True, M0=M, played=played,
                                            verbose=False, stagnation_window=rounds + 1)
        except (FloatingPointError, RuntimeError, np.linalg.LinAlgError) as exc:
            return None, {"message": f"fictitious play failed after {played} iterations: {exc}"}
        played += len(log.records) - 1
        handoff = log.records[-1]["residual"]
        if status == "converged":
            return (U, M), {"path": "fictitious_play", "status": "converged", "converged": True, "played": played,
                            "iterations": 0, "residual": float(handoff), "handoff_residual": float(handoff),
                            "handoff": (U, M), "message": ""}
        try:
            r = solve(problem, method="newton", tol=tol, max_iter=max_iter, initial=(U, M), verbose=False,
                      viscosity_continuation=False)
        except (FloatingPointError, RuntimeError, np.linalg.LinAlgError) as exc:
            message = f"Newton after {played} fictitious-play iterations failed: {exc}"
            continue
        if r.converged:
            return ((r.U.reshape(U.shape), r.m.reshape(U.shape)),
                    {"path": "fictitious_play", "status": r.status, "converged": True, "played": played,
                     "iterations": int(r.iterations), "residual": float(r.diagnostics["residual"]),
                     "handoff_residual": float(handoff), "handoff": (U, M), "message": ""})
        message = f"Newton after {played} fictitious-play iterations ended {r.status!r}"
    return None, {"message": message}


def multi_start(problem, starts=4, seed=0, method="newton", tol=1e-9, max_iter=60, amplitude=1.0, agree=1e-6,
                guesses=None, return_solutions=False):
    """Solve from ``starts`` distinct initial guesses and count the distinct solutions found.

    Each start is solved by :func:`solve_from_start`: at the target problem, or along its own
    homotopy path, never through a problem common to all starts, so agreement at the end is
    evidence of uniqueness and disagreement evidence of several solutions. For each start the
    report gives how far the iterate moved from it; ``start_spread`` is the smallest distance
    between two starts, so a reader can see that the starts were distinct when they entered.

    Parameters
    ----------
    problem : MFGProblem
    starts : int
        Number of starts (>= 2).
    seed, amplitude : int, float
        Random smooth starts of :func:`initial_guesses`.
    method : {"newton", "fixed_point", "fictitious_play"}
    tol, max_iter : float, int
        Solver tolerance (residual, max-norm) and iteration budget per solve.
    agree : float
        Two solutions are the same when their relative sup distances in m and U are both
        below ``agree``. The differences of two solutions at tolerance ``tol`` are about the
        Jacobian's condition number times ``tol``, so ``agree`` sits far above ``tol``.
    guesses : list of (U, M), optional
        Explicit starts instead of random ones.
    return_solutions : bool
        Add ``solutions``, the converged ``(U, M)`` arrays (not JSON-serialisable).

    Returns
    -------
    dict
        ``starts``, ``converged``, ``distinct_solutions`` (clusters of the converged ends at
        ``agree``), ``verdict`` (``"unique"``: every converged start ends at one solution, at
        least two converged; ``"several solutions"``; ``"inconclusive"``: fewer than two
        converged), ``spread_m`` / ``spread_U`` (largest pairwise relative sup distance),
        ``start_spread`` (smallest pairwise distance of the starts, max of m and U parts),
        ``handoff_spread_m`` (with two or more starts on the fictitious-play path: the smallest
        pairwise distance in m of their iterates when Newton took over),
        and ``runs`` (per start: path, status, iterations, residual, ``moved_m``, ``moved_U``).
    """
    if isinstance(starts, bool) or not isinstance(starts, (int, np.integer)) or starts < 2:
        raise ValueError(f"starts must be an integer >= 2, got {starts!r}")
    if not agree > 0:
        raise ValueError(f"agree must be > 0, got {agree!r}")
    shape = (problem.nt + 1, problem.grid.size)
    if guesses is None:
        guesses = initial_guesses(problem, starts, seed, amplitude)
    guesses = [(np.reshape(U, shape), np.reshape(M, shape)) for U, M in guesses]
    sols, runs, handoffs = [], [], []
    for U0, M0 in guesses:
        (U, M), rec = solve_from_start(problem, U0, M0, method=method, tol=tol, max_iter=max_iter)
        if "handoff" in rec:
            handoffs.append(rec.pop("handoff"))
        if U is not None:
            rec["moved_m"], rec["moved_U"] = _relative_distance((U, M), (U0, M0))
            sols.append((U, M))
        runs.append(rec)
    start_spread = min(max(_relative_distance(a, b)) for i, a in enumerate(guesses) for b in guesses[i + 1:])
    spread_m = spread_u = float("nan")
    clusters = []
    if len(sols) >= 2:
        d = [[_relative_distance(a, b) for b in sols] for a in sols]
        spread_m = max(x[0] for row in d for x in row)
        spread_u = max(x[1] for row in d for x in row)
        for i in range(len(sols)):
            for c in clusters:
                if max(d[i][c[0]]) < agree:
                    c.append(i)
                    break
            else:
                clusters.append([i])
    verdict = "inconclusive" if len(sols) < 2 else "unique" if len(clusters) == 1 else "several solutions"
    out = {"starts": len(guesses), "converged": len(sols), "distinct_solutions": len(clusters) if sols else 0,
           "verdict": verdict, "agree": agree, "spread_m": float(spread_m), "spread_U": float(spread_u),
           "start_spread": float(start_spread), "runs": runs}
    if len(handoffs) >= 2:
        # the starts that went through fictitious play were still this far apart in m when
        # Newton took over (only the density enters fictitious play: U is recomputed from it)
        out["handoff_spread_m"] = min(_relative_distance(a, b)[0] for i, a in enumerate(handoffs)
                                      for b in handoffs[i + 1:])
    if return_solutions:
        out["solutions"] = sols
    return out


def aggregation_control(n=64, nt=40, alpha=0.4, nu=0.1, T=4.0):
    r"""A problem with provably several solutions: aggregation on a no-flux interval.

    ``[0, 1]`` with no-flux boundaries, ``H(p) = |p|^2/2``, the aggregating coupling
    ``f(m) = -alpha m`` (:class:`~mfgpde.couplings.PowerCoupling` with ``scale = -alpha``), no
    terminal cost, ``m0 = 1``, ``nu > 0``.

    *The uniform path solves it.* ``m = 1`` with ``U(t, x) = -alpha (T - t)`` (constant in x):
    the HJB ``-dU/dt - nu U_xx + |U_x|^2/2 = f(m) = -alpha`` holds and ``U_x = 0`` leaves the FP
    at its uniform start. The discrete scheme reproduces this exactly.

    *It is not the minimiser when* ``alpha > nu^2 pi^2`` *and T is long enough.* The system is the
    optimality condition of ``J(m, v) = int_0^T int m |v|^2/2 - alpha m^2/2 dx dt`` under
    ``m_t - nu m_xx + (m v)_x = 0, m(0) = 1``. Take ``m = 1 + eps a(t) cos(pi x)`` with ``a(0) = 0``,
    ``a = 1`` after a ramp; the FP is met to first order by ``v = eps b(t) sin(pi x)``,
    ``b = -(a' + nu pi^2 a)/pi``, and
    ``J - J(1, 0) = (eps^2/4) int (a' + nu pi^2 a)^2/pi^2 - alpha a^2 dt + O(eps^3)``: per unit time
    after the ramp, ``(eps^2/4)(nu^2 pi^2 - alpha) < 0``. Minimisers exist in this mass-subcritical
    case (power 1 < 2/d in 1D; Cirant & Tonon 2019) and solve the system, so for long T a
    second, non-uniform solution exists. The mirror ``x -> 1 - x`` maps it to a third one
    unless it is symmetric.

    Defaults: ``alpha = 0.4 = 4.05 nu^2 pi^2``; Newton from random starts finds the uniform and
    a wall-concentrated solution (max m about 9). ``alpha < 0`` gives the monotone (Lasry-Lions)
    negative control with the same grid, horizon and starts: a unique solution.
    """
    from ..couplings import PowerCoupling
    from ..grid import TensorGrid
    from ..hamiltonians import QuadraticHamiltonian

    g = TensorGrid([(0.0, 1.0)], n, "noflux")
    return MFGProblem(g, T, nt, nu, QuadraticHamiltonian(), np.ones(g.shape), coupling=PowerCoupling(1.0, -alpha),
                      name=f"aggregation-control-alpha{alpha:g}")


def run_controls(n=64, nt=40, starts=4, seed=0, tol=1e-9, alpha=0.4):
    """Run the positive (aggregating, several solutions) and negative (monotone) controls.

    Returns a dict per control with the multi-start summary, and for the positive one the
    residual of the mirror image of every non-uniform solution found (a solution too, by the
    symmetry of the problem) and the potential ``J`` of each distinct solution.
    """
    out = {}
    for name, a in (("positive", alpha), ("negative", -alpha)):
        p = aggregation_control(n, nt, alpha=a)
        ms = multi_start(p, starts=starts, seed=seed, tol=tol, amplitude=0.3, return_solutions=True)
        sols = ms.pop("solutions")
        row = {"alpha": a, "coupling": f"f(m) = {-a:g} m", "multi_start": ms,
               "expected": "several solutions" if a > 0 else "unique"}
        if a > 0 and sols:
            from ..fd.scheme import FDScheme

            sc = FDScheme(p)
            mirrors, energies = [], []
            for U, M in sols:
                RU, Rm = sc.residual(U[:, ::-1].copy(), M[:, ::-1].copy())
                mirrors.append(float(max(np.abs(RU).max(), np.abs(Rm).max())))
                energies.append(_aggregation_potential(p, U, M, a))
            row["mirror_residuals"] = mirrors
            row["potential_J"] = energies
        row["passed"] = ms["verdict"] == row["expected"]
        out[name] = row
    return out


def _aggregation_potential(problem, U, M, alpha):
    """``J = sum dt h [m |U_x|^2/2 - alpha m^2/2]`` on the implicit levels (v = -U_x)."""
    g, dt = problem.grid, problem.T / problem.nt
    h = g.h[0]
    J = 0.0
    for n in range(problem.nt):
        m = M[n + 1]
        ux = np.diff(U[n]) / h
        mf = 0.5 * (m[1:] + m[:-1])
        J += dt * (h * np.sum(mf * ux**2) / 2 - alpha * h * np.sum(m**2) / 2)
    return float(J)


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
        r = solve(p, method=method, tol=tol, error_estimate=False)
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
    fit = lambda e: float(np.polyfit(np.log(hs), np.log(e), 1)[0]) if len(e) >= 2 else float("nan")
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


def jacobian_condition(problem, result, lam=None, support=None, max_unknowns=600_000, tol=1e-6):
    """2-norm condition number and smallest singular value of the Newton Jacobian, sparse.

    ``sigma_max`` by ARPACK on ``J`` (matrix-vector products); ``sigma_min = 1/||J^{-1}||_2`` by
    ARPACK on ``J^{-1}`` applied through one sparse LU factorisation of ``J`` (shift-invert at
    zero), so no dense SVD is formed and the C1 configuration (20,400 unknowns) or a 2D CNF
    (10^5 unknowns) are in reach. Checked against the dense SVD in the tests.

    With ``lam`` given, the Jacobian is taken in the velocity-potential variables
    ``phi = U / lambda`` (so ``v = -grad phi`` does not depend on lambda) with the HJB rows
    divided by lambda: ``A = diag(1/lam, 1) J diag(lam, 1)``. In these variables the kinetic
    energy carries the weight lambda and the terminal KL weight 1, so the conditioning shows
    how much the path is still pinned down as lambda -> 0.

    With ``support`` given, only the unknowns ``U, m`` at the space-time points where
    ``m > support * max m`` are kept (the others frozen): the principal submatrix on the
    support of the density. Where ``m`` is ~1e-30 (Gaussian tails) the FP rows hardly depend
    on U, so the full Jacobian is near-singular there for every lambda (condition 1e12 to
    1e18 on C1), which hides the lambda dependence; on the support the smallest singular
    value measures how firmly the transport itself is determined.

    Returns
    -------
    (condition_number, smallest_singular_value) : tuple of float
    """
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    from ..fd.scheme import FDScheme

    sc = FDScheme(problem)
    J = sc.jacobian(result.U.reshape(problem.nt + 1, -1), result.m.reshape(problem.nt + 1, -1)).tocsc()
    N = J.shape[0]
    if N > max_unknowns:
        raise ValueError(f"jacobian_condition: {N} unknowns is more than max_unknowns = {max_unknowns} for the "
                         "sparse LU of the Jacobian; study a coarser grid")
    if lam is not None:
        d = np.ones(N)
        d[: N // 2] = lam
        J = (sp.diags(1.0 / d) @ J @ sp.diags(d)).tocsc()
    if support is not None:
        m = result.m.reshape(-1)
        keep = np.flatnonzero(m > support * m.max())
        keep = np.concatenate([keep, N // 2 + keep])
        J = J[keep][:, keep].tocsc()
        N = J.shape[0]
    lu = spla.splu(J)
    inv = spla.LinearOperator(J.shape, matvec=lu.solve, rmatvec=lambda y: lu.solve(y, trans="T"), dtype=float)
    v0 = np.random.default_rng(0).standard_normal(N)
    smax = spla.svds(J, k=1, which="LM", tol=tol, v0=v0, return_singular_vectors=False)[0]
    inv_norm = spla.svds(inv, k=1, which="LM", tol=tol, v0=v0, return_singular_vectors=False)[0]
    return float(smax * inv_norm), float(1.0 / inv_norm)


def cnf_lambda_study(grid, data, lambdas, T=1.0, nt=16, starts=3, tol=1e-9, seed=0, support=1e-3):
    """The CNF family as lambda -> 0 (see the module docstring for what is measured and why).

    Returns
    -------
    dict with one entry per lambda: condition number and smallest singular value of the
    Newton Jacobian at the solution (sparse, :func:`jacobian_condition`), in U, in
    ``phi = U/lambda``, and in phi on the support ``m > support * max m`` (the indicator that
    follows lambda: its smallest singular value falls and its condition grows as lambda -> 0);
    Newton iterations; terminal KL; and, with ``starts >= 2``, the multi-start verdict, spread
    and the distance between the starts (``starts = 0`` skips it).
    """
    from ..generative.energies import KL
    from ..generative.presets import cnf_problem, standard_normal_log_density

    if starts == 1 or starts < 0:
        raise ValueError(f"starts must be 0 (no multi-start) or >= 2, got {starts}")
    rows = []
    for lam in lambdas:
        t0 = time.perf_counter()
        p = cnf_problem(grid, data, lam=lam, T=T, nt=nt)
        try:
            r = solve(p, tol=tol, max_iter=80, error_estimate=False)
        except (FloatingPointError, RuntimeError) as exc:   # recorded; the other lambdas still run
            rows.append({"lam": float(lam), "converged": False, "iterations": None, "status": "error",
                         "message": str(exc), "wall_time_s": time.perf_counter() - t0})
            continue
        row = {"lam": float(lam), "converged": r.converged, "iterations": r.iterations, "status": r.status}
        if r.converged:
            cond, smin = jacobian_condition(p, r)
            cond_phi, smin_phi = jacobian_condition(p, r, lam=lam)
            cond_b, smin_b = jacobian_condition(p, r, lam=lam, support=support)
            kl = KL(standard_normal_log_density(grid.dim)).value(np.maximum(r.m[-1], 0), grid)
            row.update(condition_number=cond, smallest_singular_value=smin, condition_number_phi=cond_phi,
                       smallest_singular_value_phi=smin_phi, condition_number_support_phi=cond_b,
                       smallest_singular_value_support_phi=smin_b, support=support, terminal_kl=float(kl))
            if starts:
                ms = multi_start(p, starts=starts, seed=seed, tol=tol, max_iter=80, amplitude=0.3)
                row.update(spread_m=ms["spread_m"], spread_U=ms["spread_U"], starts_converged=ms["converged"],
                           starts=starts, verdict=ms["verdict"], start_spread=ms["start_spread"],
                           paths=[r["path"] for r in ms["runs"]],
                           runs=[{k: r[k] for k in ("path", "converged", "status", "iterations", "played")
                                  if k in r} for r in ms["runs"]])
                if "handoff_spread_m" in ms:
                    row["handoff_spread_m"] = ms["handoff_spread_m"]
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
    r = solve(p, tol=1e-9, error_estimate=False)
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

