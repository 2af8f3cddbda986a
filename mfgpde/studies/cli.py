"""``mfgpde wellposed CONFIG.toml --out DIR``: multi-start, refinement, monotonicity (and lambda for CNFs)."""

from __future__ import annotations

import os
import sys


def _wellposed(args):
    import numpy as np

    from .. import config
    from ..plotting import _mpl, save_figure
    from ..result import write_json
    from . import wellposedness as W

    cfg = config.load(args.config)
    problem = config.build_problem(cfg)
    os.makedirs(args.out, exist_ok=True)
    report = {"config": os.path.abspath(args.config), "problem": problem.describe()}
    print(f"mfgpde wellposed: multi-start ({args.starts} starts)", file=sys.stderr)
    report["multi_start"] = W.multi_start(problem, starts=args.starts, tol=args.tol)
    terms = [("coupling", problem.coupling), ("terminal", problem.terminal)]
    report["lasry_lions"] = {name: W.lasry_lions_check(c, problem.grid) for name, c in terms}
    sizes = [int(s) for s in args.refine]
    if sizes:
        print(f"mfgpde wellposed: refinement {sizes}", file=sys.stderr)
        base_shape = np.array(problem.grid.shape)

        def make(n):
            c = config.load(cfg)
            c["grid"]["shape"] = [int(n * s / base_shape[0]) for s in base_shape]
            c.setdefault("time", {})["nt"] = max(1, int(round(problem.nt * n / base_shape[0])))
            return config.build_problem(c)

        report["refinement"] = W.refinement(make, sizes, tol=args.tol)
    if cfg.get("preset") == "cnf" and args.lambdas:
        print(f"mfgpde wellposed: CNF lambda study {args.lambdas}", file=sys.stderr)
        from ..generative.densities import gaussian_mixture  # noqa: F401  (data built by the preset)

        data = problem.m0
        report["cnf_lambda"] = W.cnf_lambda_study(problem.grid, data, args.lambdas, T=problem.T, nt=problem.nt,
                                                  starts=args.starts, tol=args.tol)
    write_json(os.path.join(args.out, "wellposed.json"), report)
    plt = _mpl()
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
    runs = report["multi_start"]["runs"]
    ax[0].bar(range(len(runs)), [r["iterations"] or 0 for r in runs])
    ax[0].set(title=f"multi-start: spread(m) = {report['multi_start']['spread_m']:.1e}", xlabel="start",
              ylabel="iterations")
    if "refinement" in report:
        ref = report["refinement"]
        ax[1].loglog(ref["h"], ref["differences_m"], "o-", label=f"m, order {ref['order_m']:.2f}")
        ax[1].loglog(ref["h"], ref["differences_U"], "s-", label=f"U, order {ref['order_U']:.2f}")
        ax[1].set(xlabel="h", title="Cauchy differences under refinement")
        ax[1].legend()
    if "cnf_lambda" in report:
        rows = [r for r in report["cnf_lambda"]["rows"] if r.get("converged")]
        ax[2].loglog([r["lam"] for r in rows], [r["condition_number"] for r in rows], "o-", label="cond(J)")
        ax[2].loglog([r["lam"] for r in rows], [max(r["spread_m"], 1e-16) for r in rows], "s-", label="spread(m)")
        ax[2].set(xlabel="lambda", title="CNF as lambda -> 0")
        ax[2].legend()
    fig.tight_layout()
    save_figure(fig, os.path.join(args.out, "wellposed.png"))
    ms = report["multi_start"]
    print(f"mfgpde wellposed: {ms['converged']}/{ms['starts']} starts converged, spread(m) = {ms['spread_m']:.2e} "
          f"-> {args.out}", file=sys.stderr)
    return 0


def register(sub):
    p = sub.add_parser("wellposed", help="well-posedness study: multi-start spread, refinement, monotonicity")
    p.add_argument("config")
    p.add_argument("--out", required=True)
    p.add_argument("--starts", type=int, default=4)
    p.add_argument("--tol", type=float, default=1e-9)
    p.add_argument("--refine", nargs="*", default=[], help="grid sizes along axis 0 (doubling), e.g. 50 100 200")
    p.add_argument("--lambdas", nargs="*", type=float, default=[], help="CNF presets: lambda values to study")
    p.set_defaults(func=_wellposed)
