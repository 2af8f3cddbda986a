"""How accurate are the references, what do they cost, and can their error bars be trusted?

For the closed forms C3 (2D LQ MFG), C1 (1D CNF) and E1 (ergodic LQ), solve at order 1 and at
order 2 (Richardson extrapolation over three grids, :mod:`mfgpde.iterations.richardson`) on a
ladder of sizes, and record the true error, the estimated error (``result.error_estimate``), the
wall time and the number of unknowns. The figure is the time-to-accuracy chart a user reads to
choose a grid, and the estimate against the true error.

Run:  python validation/reference_accuracy.py [--out validation/out/reference_accuracy] [--tiny]
Writes report.md, accuracy.json and accuracy.png in the output folder.
"""

import argparse
import os
import time

import numpy as np

import mfgpde as mp
from mfgpde.closed_forms import CNFGaussian, ErgodicLQ, LinearQuadratic
from mfgpde.generative.densities import gaussian
from mfgpde.generative.presets import cnf_problem
from mfgpde.plotting import _mpl, save_figure
from mfgpde.report import markdown_table, write_report
from mfgpde.result import write_json


def c3_2d(n):
    g = mp.TensorGrid([(-2.0, 2.0)] * 2, n, "noflux")
    quad = lambda *xs: 0.5 * sum(x ** 2 for x in xs)
    p = mp.MFGProblem(g, 1.0, n, 0.1, mp.QuadraticHamiltonian(), lambda *xs: np.exp(-0.5 * sum(x ** 2 for x in xs) / 0.16),
                      coupling=mp.PotentialCoupling(quad), terminal=quad, normalize=True)
    ex = LinearQuadratic(1.0, 1.0, 0.1, 1.0, [0.0, 0.0], 0.4)
    mex = ex.m(1.0, *g.coordinates())
    return p, lambda r: float(np.abs(r.m[-1] - mex).max() / mex.max()), "m_max_rel_final", "relative max error of m(T)"


def c3_3d(n):
    g = mp.TensorGrid([(-2.0, 2.0)] * 3, n, "noflux")
    quad = lambda *xs: 0.5 * sum(x ** 2 for x in xs)
    p = mp.MFGProblem(g, 1.0, n, 0.1, mp.QuadraticHamiltonian(), lambda *xs: np.exp(-0.5 * sum(x ** 2 for x in xs) / 0.16),
                      coupling=mp.PotentialCoupling(quad), terminal=quad, normalize=True)
    ex = LinearQuadratic(1.0, 1.0, 0.1, 1.0, [0.0] * 3, 0.4)
    mex = ex.m(1.0, *g.coordinates())
    return p, lambda r: float(np.abs(r.m[-1] - mex).max() / mex.max()), "m_max_rel_final", "relative max error of m(T)"


def c1(n):
    g = mp.TensorGrid([(-5.0, 5.0)], n, "noflux")
    p = cnf_problem(g, gaussian([1.0], 0.25), lam=1.0, nt=n // 4)
    mex = CNFGaussian(1.0, 0.5, 1.0).m(1.0, g.axes[0])
    return p, lambda r: float(g.integrate(np.abs(r.m[-1] - mex))), "m_L1_final", "L1 error of m(T)"


def e1(n):
    g = mp.TensorGrid([(-5.0, 5.0)], n, "noflux")
    p = mp.ErgodicMFGProblem(g, 0.3, mp.QuadraticHamiltonian(),
                             coupling=mp.LogCoupling(floor=1e-10) + mp.PotentialCoupling(lambda x: 0.5 * x**2))
    mex = ErgodicLQ(nu=0.3).m(g.axes[0])
    return p, lambda r: float(g.integrate(np.abs(r.m - mex))), "m_L1", "L1 error of m"


CASES = {"C3 2D (LQ, nu = 0.1, nt = n)": (c3_2d, [32, 64, 128], [32, 64]),
         "C1 1D (CNF, nu = 0, nt = n/4)": (c1, [96, 192, 384], [64, 128]),
         "E1 1D (ergodic LQ, log coupling)": (e1, [64, 128, 256], [32, 64])}
#: C3 in 3D (``--with-3d``, about 4 minutes on 2 cores): the ladder needs 8 points per axis on its
#: coarsest grid, so the sizes are 32^3 and 64^3 (order 2's 8^3 level does not resolve the
#: Gaussian at 32^3: the slope is measured between the two)
CASE_3D = {"C3 3D (LQ, nu = 0.1, nt = n)": (c3_3d, [32, 64], [32])}


def run_case(make, sizes):
    rows = []
    for n in sizes:
        for order in (1, 2):
            p, err, key, _ = make(n)
            t0 = time.perf_counter()
            r = mp.solve(p, tol=1e-10, order=order)
            wall = time.perf_counter() - t0
            est = r.error_estimate
            unknowns = 2 * p.grid.size * (getattr(p, "nt", 0) + 1)
            rows.append({"n": n, "order": order, "converged": r.converged, "error": err(r),
                         "estimate": None if est is None else est[key], "time_s": wall, "unknowns": unknowns,
                         "min_density": r.diagnostics["min_density"]})
            print(f"  n={n} order {order}: error {rows[-1]['error']:.2e}, estimate {rows[-1]['estimate']}, {wall:.2f} s",
                  flush=True)
    for order in (1, 2):
        sub = [x for x in rows if x["order"] == order]
        h = 1.0 / np.array([x["n"] for x in sub])
        e = np.array([x["error"] for x in sub])
        for x, o in zip(sub[1:], np.log(e[:-1] / e[1:]) / np.log(h[:-1] / h[1:])):
            x["observed_order"] = float(o)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out", "reference_accuracy"))
    ap.add_argument("--tiny", action="store_true", help="small sizes (a minute): checks that the study runs")
    ap.add_argument("--with-3d", action="store_true", help="add C3 in 3D at 32^3 and 64^3 (about 4 minutes)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = {}
    for name, (make, sizes, tiny) in {**CASES, **(CASE_3D if args.with_3d else {})}.items():
        print(name, flush=True)
        results[name] = {"rows": run_case(make, tiny if args.tiny else sizes), "metric": make(tiny[0])[3]}
    write_json(os.path.join(args.out, "accuracy.json"), results)

    plt = _mpl()
    fig, ax = plt.subplots(1, 3, figsize=(17, 4.8))
    markers = {1: "o-", 2: "s-"}
    for c, (name, res) in enumerate(results.items()):
        for order in (1, 2):
            sub = [x for x in res["rows"] if x["order"] == order]
            ax[0].loglog([x["time_s"] for x in sub], [x["error"] for x in sub], markers[order], color=f"C{c}",
                         label=f"{name.split(' (')[0]}, order {order}")
            ax[1].loglog([x["unknowns"] for x in sub], [x["error"] for x in sub], markers[order], color=f"C{c}")
            est = [(x["error"], x["estimate"]) for x in sub if x["estimate"] is not None]
            if est:
                ax[2].loglog(*zip(*est), markers[order][0], color=f"C{c}", label=f"{name.split(' (')[0]}, order {order}")
    ax[0].set(xlabel="wall time [s] (whole ladder for order 2)", ylabel="error (each case's norm)",
              title="time to accuracy")
    ax[1].set(xlabel="unknowns on the problem's grid", ylabel="error", title="error against grid size")
    lo = min(min(x["error"] for x in r["rows"]) for r in results.values()) / 3
    hi = max(max(x["error"] for x in r["rows"]) for r in results.values()) * 3
    ax[2].loglog([lo, hi], [lo, hi], "k-", lw=0.8, label="estimate = error")
    ax[2].fill_between([lo, hi], [lo / 2, hi / 2], [2 * lo, 2 * hi], color="k", alpha=0.1, label="factor 2")
    ax[2].set(xlabel="true error", ylabel="estimated error", title="error estimate against the true error")
    ax[0].legend(fontsize=7)
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, os.path.join(args.out, "accuracy.png"))

    sections = []
    for name, res in results.items():
        table = markdown_table(["n", "order", "error", "estimate", "estimate / error", "observed order", "time [s]",
                                "min m"],
                               [[x["n"], x["order"], f"{x['error']:.2e}",
                                 "-" if x["estimate"] is None else f"{x['estimate']:.2e}",
                                 "-" if x["estimate"] is None else f"{x['estimate'] / x['error']:.2f}",
                                 f"{x['observed_order']:.2f}" if "observed_order" in x else "",
                                 f"{x['time_s']:.2f}", f"{x['min_density']:.1e}"] for x in res["rows"]])
        sections.append((f"{name}: {res['metric']}", table))
    intro = ("Order 2 is Richardson extrapolation over the problem's grid and the grids with 1/2 and 1/4 of the "
             "points and steps; its estimate is the difference to the two-level extrapolation (conservative). "
             "The order-1 estimate is the difference to the solution on the grid with half the points.\n\n"
             "![accuracy](accuracy.png)")
    write_report(os.path.join(args.out, "report.md"), "Accuracy and cost of the references (order 1 and 2)",
                 [("Method", intro)] + sections)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
