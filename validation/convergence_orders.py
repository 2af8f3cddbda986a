"""Observed orders of convergence against the closed forms C1, C2, C3 and the ergodic case.

Run:  python validation/convergence_orders.py [--out validation/out/convergence]
Writes report.md, orders.json and orders.png in the output folder.
"""

import argparse
import os
import time

import numpy as np

import mfgpde as mp
from mfgpde.closed_forms import CNFGaussian, LinearQuadratic, ou_mixture_score_error
from mfgpde.generative.densities import gaussian, gaussian_mixture
from mfgpde.generative.presets import ScoreModel, cnf_problem
from mfgpde.plotting import _mpl, save_figure
from mfgpde.report import markdown_table, write_report
from mfgpde.result import write_json


def order(h, e):
    return float(np.polyfit(np.log(h), np.log(e), 1)[0])


def c3(ns):
    errs = []
    ex = LinearQuadratic(1.0, 1.0, 0.05, 1.0, [0.1], 0.2)
    for n in ns:
        g = mp.TensorGrid([(-1.4, 1.6)], n, "noflux")
        p = mp.MFGProblem(g, 1.0, n // 2, 0.05, mp.QuadraticHamiltonian(), lambda x: np.exp(-0.5 * (x - 0.1) ** 2 / 0.04),
                          coupling=mp.PotentialCoupling(lambda x: 0.5 * (x - 0.1) ** 2),
                          terminal=lambda x: 0.5 * (x - 0.1) ** 2, normalize=True)
        r = mp.solve(p)
        errs.append(max(g.integrate(np.abs(r.m[i] - ex.m(t, g.axes[0]))) for i, t in enumerate(r.times)))
    return 3.0 / np.array(ns), errs


def c1(ns):
    errs = []
    ex = CNFGaussian(1.0, 0.5, 1.0)
    for n in ns:
        g = mp.TensorGrid([(-5, 5)], n, "noflux")
        r = mp.solve(cnf_problem(g, gaussian([1.0], 0.25), lam=1.0, nt=n // 4), tol=1e-9)
        errs.append(max(g.integrate(np.abs(r.m[i] - ex.m(t, g.axes[0]))) for i, t in enumerate(r.times)))
    return 10.0 / np.array(ns), errs


MIX = dict(weights=[0.4, 0.6], means=[[-1.5], [1.2]], covs=[0.09, 0.16])


def c2(ns):
    errs = []
    for n in ns:
        g = mp.TensorGrid([(-6, 6)], n, "noflux")
        sm = ScoreModel(g, sde="vp", T=1.0, nt=n // 2)
        p = sm.forward(gaussian_mixture(**MIX))
        s = sm.grid_score(p)
        e = ou_mixture_score_error(sm, s, MIX["weights"], MIX["means"], MIX["covs"], range(1, sm.nt + 1, max(1, sm.nt // 8)))
        errs.append(e)
    return 12.0 / np.array(ns), errs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "convergence"))
    ap.add_argument("--tiny", action="store_true", help="two coarse grids per study (a smoke run in seconds)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    sizes = {"c3": [40, 80, 160, 320, 640], "c1": [50, 100, 200, 400], "c2": [100, 200, 400, 800]}
    if args.tiny:
        sizes = {k: v[:2] for k, v in sizes.items()}
    studies = {
        "C3 linear-quadratic MFG (1D, L1 error of m, max over t)": c3(sizes["c3"]),
        "C1 CNF-KL, Gaussian data (1D, L1 error of m, max over t)": c1(sizes["c1"]),
        "C2 OU score of a mixture (1D, density-weighted L2 error)": c2(sizes["c2"]),
    }
    rows, data = [], {}
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, (h, e) in studies.items():
        o = order(h, e)
        rows.append([name, ", ".join(f"{x:.2e}" for x in e), f"{o:.2f}"])
        data[name] = {"h": list(map(float, h)), "errors": list(map(float, e)), "order": o}
        ax.loglog(h, e, "o-", label=f"{name.split(' ')[0]}: order {o:.2f}")
    ax.set(xlabel="h", ylabel="error", title="observed orders (expected 1: upwind, implicit Euler)")
    ax.legend()
    os.makedirs(args.out, exist_ok=True)
    save_figure(fig, os.path.join(args.out, "orders.png"))
    write_json(os.path.join(args.out, "orders.json"), data)
    write_report(os.path.join(args.out, "report.md"), "Convergence orders against closed forms", [
        ("Result", markdown_table(["case", "errors (coarse to fine)", "observed order"], rows)),
        ("Figure", "![orders](orders.png)"),
        ("Notes", "The monotone scheme is first order in h and dt (dt refined with h). "
                  f"Total run time {time.perf_counter() - t0:.0f} s."),
    ])
    print(f"wrote {args.out}/report.md")


if __name__ == "__main__":
    main()
