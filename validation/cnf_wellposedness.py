"""CNF well-posedness as lambda -> 0: multi-start spread, Jacobian conditioning, and the
lambda = 0 non-uniqueness exhibit (rotation of a pi-preserving flow) in 2D.

Run:  python validation/cnf_wellposedness.py [--out validation/out/cnf_wellposedness]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mfgpde as mp  # noqa: E402
from mfgpde.generative.densities import gaussian, gaussian_mixture  # noqa: E402
from mfgpde.plotting import _mpl, save_figure  # noqa: E402
from mfgpde.report import markdown_table, write_report  # noqa: E402
from mfgpde.result import write_json  # noqa: E402
from mfgpde.studies import wellposedness as W  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "cnf_wellposedness"))
    ap.add_argument("--lambdas", nargs="*", type=float, default=[3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001])
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    g1 = mp.TensorGrid([(-5, 5)], 40, "noflux")
    study = W.cnf_lambda_study(g1, gaussian([1.0], 0.25), args.lambdas, nt=10, starts=3)
    g2 = mp.TensorGrid([(-4, 4), (-4, 4)], 48, "noflux")
    data2 = gaussian_mixture([1, 1], [[1.2, 0.0], [-1.2, 0.0]], [0.2, 0.2])
    rot = [W.rotation_nonuniqueness(g2, data2, lam=lam, nt=16, rotation=1.0) for lam in (1.0, 0.1, 0.01)]
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, "cnf_wellposedness.json"), {"lambda_study": study, "rotation": rot})
    rows = [r for r in study["rows"] if r.get("converged")]
    plt = _mpl()
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    lam = [r["lam"] for r in rows]
    ax[0].loglog(lam, [r["condition_number_phi"] for r in rows], "o-", label="cond J (phi = U/lambda)")
    ax[0].loglog(lam, [r["condition_number"] for r in rows], "s--", label="cond J (U)")
    ax[0].set(xlabel="lambda", title="Newton Jacobian conditioning")
    ax[0].legend()
    ax[1].loglog(lam, [max(r["spread_m"], 1e-17) for r in rows], "o-", label="multi-start spread of m")
    ax[1].loglog(lam, [r["terminal_kl"] for r in rows], "s-", label="KL(m(T) || pi)")
    ax[1].set(xlabel="lambda", title="uniqueness and the terminal KL")
    ax[1].legend()
    ax[2].semilogx([r["lam"] for r in rot], [r["kl_optimal_flow"] for r in rot], "o-", label="KL, optimal flow")
    ax[2].semilogx([r["lam"] for r in rot], [r["kl_rotated_flow"] for r in rot], "s--", label="KL, flow + rotation")
    ax[2].semilogx([r["lam"] for r in rot], [r["max_path_L1_gap"] for r in rot], "^-", label="L1 gap of the paths")
    ax[2].set(xlabel="lambda", title="2D: adding a pi-preserving rotation")
    ax[2].legend()
    fig.tight_layout()
    save_figure(fig, os.path.join(args.out, "cnf_wellposedness.png"))
    table = markdown_table(
        ["lambda", "converged starts", "spread(m)", "cond J (U)", "cond J (phi)", "KL(m_T||pi)", "Newton its"],
        [[r["lam"], f"{r.get('starts_converged', 0)}/{r.get('starts', 0)}", r.get("spread_m", float("nan")),
          r.get("condition_number", float("nan")), r.get("condition_number_phi", float("nan")),
          r.get("terminal_kl", float("nan")), r["iterations"]] for r in study["rows"]])
    rtable = markdown_table(["lambda", "KL optimal", "KL rotated", "terminal L1 gap", "max path L1 gap"],
                            [[r["lam"], r["kl_optimal_flow"], r["kl_rotated_flow"], r["terminal_L1_gap"],
                              r["max_path_L1_gap"]] for r in rot])
    write_report(os.path.join(args.out, "report.md"), "CNF well-posedness as lambda -> 0", [
        ("Setting", "1D: data N(1, 0.5^2) on [-5, 5] (40 cells, 10 steps), KL terminal cost to N(0, 1). "
                    "2D: two-mode mixture on [-4, 4]^2 (48^2 cells, 16 steps)."),
        ("Multi-start and conditioning (1D)", table + "\n\nFor every lambda > 0 all starts converge to the same "
         "discrete solution (spread at round-off): the problem is uniquely solvable, as the theory says. "
         "The condition number of the Jacobian is dominated by the KL tail regularisation (entries 1/(m + eps pi)) "
         "and is not a clean indicator; in the velocity-potential variables phi = U/lambda it grows as lambda -> 0 "
         "because the kinetic energy, the only term that fixes the path, loses its weight."),
        ("Non-uniqueness at lambda = 0 (2D)", rtable + "\n\nThe optimal flow plus a rotation about the mean of pi "
         "(a pi-preserving field) moves mass along a different path (large path gap) to a terminal density whose KL "
         "to pi, the whole lambda = 0 objective, is nearly the same as lambda -> 0: the lambda = 0 problem has many "
         "minimisers."),
        ("Figure", "![cnf](cnf_wellposedness.png)"),
        ("Run time", f"{time.perf_counter() - t0:.0f} s"),
    ])
    print(f"wrote {args.out}/report.md")


if __name__ == "__main__":
    main()
