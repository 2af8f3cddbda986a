"""Small neural generative models in 2D, trained on CPU, checked against the grid MFG reference.

Three models on the same data (a 4-mode Gaussian mixture), the MFG reference being the CNF
preset (kinetic weight lambda, KL terminal cost to N(0, I), nu = 0):

1. ``kinetic``: a potential network Phi(x, t), flow v = -grad Phi / lambda, trained by
   maximum likelihood (exact divergence in 2D) with the kinetic penalty
   (lambda/2) E int |v|^2 dt -- the RNODE/OT-Flow objective (this is exactly the MFG cost);
2. ``kinetic+hjb``: the same plus the HJB regulariser
   E int |-dPhi/dt + |grad Phi|^2/(2 lambda)| dt on the trajectories;
3. ``score``: a score network trained by denoising score matching on the OU process
   dX = -X dt + sqrt(2) dW, validated through the reverse-time FP equation.

Each model is then passed to :func:`mfgpde.validate.validate_flow` / ``validate_score``, and
the report says whether the HJB regulariser brings the flow closer to the MFG solution.

Run:  python validation/neural_models.py [--reduced] [--out validation/out/neural]
Needs torch (the ``neural`` extra; a CPU wheel of torch 2.13.0 for Python 3.11).
"""

import argparse
import os
import sys
import time

import numpy as np

import mfgpde as mp
from mfgpde.generative.densities import gaussian_mixture
from mfgpde.generative.presets import ScoreModel, cnf_problem
from mfgpde.report import markdown_table, write_report
from mfgpde.result import write_json
from mfgpde.validate import validate_flow, validate_score
from mfgpde.validate.report import write_validation_report

MIX = dict(weights=[1, 1, 1, 1], means=[[1.5, 1.5], [-1.5, 1.5], [-1.5, -1.5], [1.5, -1.5]], covs=[0.16] * 4)
LAM, T = 1.0, 1.0


def sample_mixture(rng, n):
    k = rng.integers(0, 4, n)
    return np.array(MIX["means"])[k] + np.sqrt(0.16) * rng.standard_normal((n, 2))


def build_nets(torch):
    class Net(torch.nn.Module):
        def __init__(self, out_dim, width=64):
            super().__init__()
            self.f = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.Tanh(), torch.nn.Linear(width, width),
                                         torch.nn.Tanh(), torch.nn.Linear(width, out_dim))

        def forward(self, x, t):
            if t.dim() == 0:
                t = t.expand(x.shape[0], 1)
            return self.f(torch.cat([x, t], dim=1)).squeeze(-1) if self.f[-1].out_features == 1 else \
                self.f(torch.cat([x, t], dim=1))

    return Net


def train_flow(torch, Net, hjb_weight, iters, steps, batch, seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    phi = Net(1).double()
    opt = torch.optim.Adam(phi.parameters(), lr=3e-3)
    dt = T / steps
    log2pi = np.log(2 * np.pi)
    for _ in range(iters):
        x = torch.tensor(sample_mixture(rng, batch), dtype=torch.float64, requires_grad=True)
        logdet = torch.zeros(batch, dtype=torch.float64)
        kinetic = torch.zeros((), dtype=torch.float64)
        hjb = torch.zeros((), dtype=torch.float64)
        for n in range(steps):
            t = torch.full((batch, 1), n * dt, dtype=torch.float64, requires_grad=True)
            Phi = phi(x, t)
            gx, gt = torch.autograd.grad(Phi.sum(), (x, t), create_graph=True)
            v = -gx / LAM
            # exact divergence in 2D: trace of the Jacobian of v
            div = sum(torch.autograd.grad(v[:, k].sum(), x, create_graph=True)[0][:, k] for k in range(2))
            logdet = logdet + dt * div
            kinetic = kinetic + dt * 0.5 * LAM * (v ** 2).sum(1).mean()
            if hjb_weight > 0:
                hjb = hjb + dt * (-gt[:, 0] + (gx ** 2).sum(1) / (2 * LAM)).abs().mean()
            x = x + dt * v
        # KL(m_T || pi) up to the constant E log m0:  E[-logdet - log pi(x_T)]
        nll = (-logdet + 0.5 * (x ** 2).sum(1) + log2pi).mean()
        loss = nll + kinetic + hjb_weight * hjb
        opt.zero_grad()
        loss.backward()
        opt.step()
    return phi


def train_score(torch, Net, iters, batch, seed, Tscore):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    s = Net(2).double()
    opt = torch.optim.Adam(s.parameters(), lr=3e-3)
    for _ in range(iters):
        x0 = torch.tensor(sample_mixture(rng, batch), dtype=torch.float64)
        t = torch.tensor(rng.uniform(1e-3, Tscore, (batch, 1)), dtype=torch.float64)
        a = torch.exp(-t)
        var = 1 - a ** 2
        z = torch.randn_like(x0)
        xt = a * x0 + torch.sqrt(var) * z
        # denoising score matching, weighted by the variance (the usual lambda(t) = sigma_t^2)
        loss = ((torch.sqrt(var) * s(xt, t) + z) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "neural"))
    ap.add_argument("--reduced", action="store_true", help="CI size: small grid, few training iterations")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("neural_models: torch is not installed (the neural extra: Python 3.11 + torch==2.13.0)", file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    n, nt, iters, steps, batch = (32, 8, 150, 8, 256) if args.reduced else (48, 16, 600, 10, 256)
    grid = mp.TensorGrid([(-4.5, 4.5), (-4.5, 4.5)], n, "noflux")
    ref = mp.solve(cnf_problem(grid, gaussian_mixture(**MIX), lam=LAM, T=T, nt=nt), tol=1e-8)
    if not ref.converged:
        print(f"reference did not converge: {ref}", file=sys.stderr)
        return 1
    Net = build_nets(torch)
    rows, metrics_all = [], {}
    timings = {}
    for name, w in (("kinetic", 0.0), ("kinetic+hjb", 1.0)):
        t1 = time.perf_counter()
        phi = train_flow(torch, Net, w, iters, steps, batch, seed=0)
        timings[name] = time.perf_counter() - t1
        m, f = validate_flow(ref, phi, kind="potential", name=name)
        write_validation_report(os.path.join(args.out, name.replace("+", "_")), m, f)
        metrics_all[name] = m
        rows.append([name, m["final"]["L1"], m["final"]["W2"], m["velocity_error_weighted"], m["hjb_residual"],
                     m["hjb_terminal_mismatch"], m["kinetic_energy_model"], m["terminal_kl_model"], timings[name]])
    t1 = time.perf_counter()
    Tscore = 3.0
    snet = train_score(torch, Net, iters * 20, batch, seed=1, Tscore=Tscore)  # cheap: no ODE in the loss
    timings["score"] = time.perf_counter() - t1
    sm = ScoreModel(grid, sde="vp", T=Tscore, nt=nt * 2)
    ms, fs = validate_score(sm, gaussian_mixture(**MIX), snet, name="score")
    write_validation_report(os.path.join(args.out, "score"), ms, fs)
    metrics_all["score"] = ms
    ref_row = ["MFG reference", 0.0, 0.0, 0.0, float("nan"), float("nan"), metrics_all["kinetic"]["kinetic_energy_reference"],
               metrics_all["kinetic"]["terminal_kl_reference"], ref.diagnostics["wall_time_s"]]
    closer = metrics_all["kinetic+hjb"]["velocity_error_weighted"] < metrics_all["kinetic"]["velocity_error_weighted"]
    write_json(os.path.join(args.out, "neural.json"), {"flows": metrics_all, "timings_s": timings,
                                                        "hjb_regulariser_closer": bool(closer),
                                                        "reduced": args.reduced})
    table = markdown_table(["model", "L1(m_T)", "W2(m_T)", "velocity error", "HJB residual", "terminal mismatch",
                            "kinetic", "KL(m_T||pi)", "train/solve s"], rows + [ref_row])
    sg = ms["generated_vs_data"]
    write_report(os.path.join(args.out, "report.md"), "Neural generative models against the MFG reference", [
        ("Setting", f"Data: 4-mode Gaussian mixture; grid {n}^2 on [-4.5, 4.5]^2, {nt} steps; lambda = {LAM}, T = {T}. "
                    f"Training: {iters} Adam steps, batch {batch}, {steps} explicit Euler steps along trajectories, "
                    f"potential network 3-64-64-1 (tanh). {'REDUCED (CI) size.' if args.reduced else ''}"),
        ("Flows", table + "\n\nThe HJB regulariser "
         + ("brings" if closer else "does NOT bring")
         + " the learned velocity closer to the MFG optimum in the density-weighted velocity error "
         f"({metrics_all['kinetic+hjb']['velocity_error_weighted']:.3g} with it, "
         f"{metrics_all['kinetic']['velocity_error_weighted']:.3g} without)."),
        ("Score model", markdown_table(["metric", "value"], [
            ["L1 generated vs data", sg["L1"]], ["W2 generated vs data", sg["W2"]],
            ["L1 generated vs exact-score generation", ms["generated_vs_exact_score_generation"]["L1"]],
            ["density-weighted score error", ms["score_error_weighted"]],
            ["training time (s)", timings["score"]]])),
        ("Figures", "Per model: `kinetic/`, `kinetic_hjb/`, `score/` hold densities.png, errors.png (with the HJB "
                    "residual map), metrics.png and metrics.json."),
        ("Run time", f"{time.perf_counter() - t0:.0f} s"),
    ])
    print(f"wrote {args.out}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
