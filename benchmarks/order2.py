"""Second-order references against first-order ones, side by side in one process.

Cases (the targets of the sharp-references issue):

* C3 in 2D (q = g0 = 1, nu = 0.1, s0 = 0.4, [-2, 2]^2 no-flux, T = 1), ``--n`` points per axis and
  ``nt = n``: relative max error of m(T) and wall time of ``order=1`` (no estimate: the plain
  first-order solve) and ``order=2`` (the whole three-grid ladder), alternated ``--repeat`` times;
* C1 at the shipped ``solvers/cnf_gaussian_1d.toml`` size (200 cells x 48 steps): L1 error of m(T)
  and the velocity error of the exact C1 model in ``validate_flow``.

Run:  python benchmarks/order2.py [--n 128] [--repeat 3] [--out benchmarks/results/order2.json]
"""

import argparse
import os
import statistics
import time

import numpy as np

import mfgpde as mp
from mfgpde import config
from mfgpde.closed_forms import CNFGaussian, LinearQuadratic
from mfgpde.result import write_json
from mfgpde.validate.validator import validate_flow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lq2d(n):
    g = mp.TensorGrid([(-2.0, 2.0)] * 2, n, "noflux")
    quad = lambda *xs: 0.5 * sum(x ** 2 for x in xs)
    return mp.MFGProblem(g, 1.0, n, 0.1, mp.QuadraticHamiltonian(),
                         lambda *xs: np.exp(-0.5 * sum(x ** 2 for x in xs) / 0.16),
                         coupling=mp.PotentialCoupling(quad), terminal=quad, normalize=True)


def c3_side_by_side(n, repeat):
    p = lq2d(n)
    mex = LinearQuadratic(1.0, 1.0, 0.1, 1.0, [0.0, 0.0], 0.4).m(1.0, *p.grid.coordinates())
    mp.solve(lq2d(32), order=2)  # compile the kernels outside the timings
    runs = {"order1": [], "order2": []}
    out = {}
    for _ in range(repeat):
        for key, kw in (("order1", dict(order=1, error_estimate=False)), ("order2", dict(order=2))):
            t0 = time.perf_counter()
            r = mp.solve(p, tol=1e-10, **kw)
            runs[key].append(time.perf_counter() - t0)
            out[key] = {"error_m_T_rel_max": float(np.abs(r.m[-1] - mex).max() / mex.max()),
                        "estimate": r.error_estimate, "converged": r.converged,
                        "min_density": r.diagnostics["min_density"], "mass_error": r.diagnostics["mass_error"]}
    for key in runs:
        out[key]["times_s"] = runs[key]
        out[key]["median_s"] = statistics.median(runs[key])
    out["time_ratio_order2_over_order1"] = out["order2"]["median_s"] / out["order1"]["median_s"]
    return out


def c1_shipped():
    cfg = config.load(os.path.join(ROOT, "solvers", "cnf_gaussian_1d.toml"))
    p = config.build_problem(cfg)
    ex = CNFGaussian(1.0, 0.5, 1.0)
    out = {"grid": list(p.grid.shape), "nt": p.nt}
    for order in (1, 2):
        t0 = time.perf_counter()
        r = mp.solve(p, tol=1e-9, order=order)
        wall = time.perf_counter() - t0
        metrics, _ = validate_flow(r, lambda x, t: ex.velocity(t, x), kind="velocity")
        out[f"order{order}"] = {"time_s": wall,
                                "error_m_T_L1": float(p.grid.integrate(np.abs(r.m[-1] - ex.m(1.0, p.grid.axes[0])))),
                                "estimate_m_T_L1": r.error_estimate["m_L1_final"],
                                "exact_model_velocity_error": metrics["velocity_error_weighted"],
                                "reference_error_velocity": metrics["reference_error"]["velocity_error_weighted"]}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "order2.json"))
    args = ap.parse_args(argv)
    res = {"c3_2d": dict(n=args.n, **c3_side_by_side(args.n, args.repeat)), "c1_shipped": c1_shipped()}
    write_json(args.out, res)
    c3 = res["c3_2d"]
    print(f"C3 2D {args.n}^2: order 1 error {c3['order1']['error_m_T_rel_max']:.2e} in {c3['order1']['median_s']:.2f} s, "
          f"order 2 {c3['order2']['error_m_T_rel_max']:.2e} in {c3['order2']['median_s']:.2f} s "
          f"(ratio {c3['time_ratio_order2_over_order1']:.2f})")
    c1 = res["c1_shipped"]
    for o in ("order1", "order2"):
        print(f"C1 {o}: L1 {c1[o]['error_m_T_L1']:.2e} (estimate {c1[o]['estimate_m_T_L1']:.2e}), exact model velocity "
              f"error {c1[o]['exact_model_velocity_error']:.2e} (reference error {c1[o]['reference_error_velocity']:.1e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
