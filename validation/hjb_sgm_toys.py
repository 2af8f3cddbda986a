"""HJB-regularised score models on the 2D toy data sets, rated by the zoo (``vp-NAME`` entries).

Question (the seed paper's experiment): does adding the residual of the score PDE -- the
log-density HJB of the OU forward SDE (:mod:`mfgpde.generative.log_density_hjb`) -- to denoising
score matching give better score models on the community's 2D toys?

Setting (the one the HJB-SGM literature uses): OU / VP forward SDE ``dX = -X dt + sqrt(2) dW``,
``T = 3``; a 3 x 32 GELU MLP ``s(x, t)`` (float64); the loss

    L = E |sqrt(v_t) s(x_t, t) + z|^2                               (denoising score matching)
      + 0.1 E v_t^2 |R_s(x_t, t)|^2                                  (score-PDE residual)
      + E_{x ~ p_T} |s(x, T) + x|^2                                  (terminal: p_T ~ N(0, I))

with ``x_t = e^-t x_0 + sqrt(v_t) z``, ``v_t = 1 - e^-2t``, ``x_0`` drawn by the data set's exact
sampler (:mod:`mfgpde.generative.toys`), ``t ~ U(1e-3, T)``. ``dsm`` drops the second and third
terms; every pair of models shares initialisation, batches and number of Adam steps.

Each model is rated with ``mfgpde.zoo.score("vp-NAME", net)``: the score error against the grid
reference, the HJB residual, and the density the model generates through the reverse-time FP
against the data (L1, W2), each with the reference's error bar. Several seeds; a difference
counts only when the means differ by more than the larger seed-to-seed standard deviation.
Figures: per data set, the data density, the density generated on the grid by each method and
samples of the reverse SDE (Euler-Maruyama) for seed 0.

Run:  python validation/hjb_sgm_toys.py [--steps 2000] [--seeds 0 1 2] [--toys moons 8gaussians ...]
      [--device cuda] [--leaderboard benchmarks/results/zoo_leaderboard]
      (the long budget: --steps 20000 --device cuda)
Needs torch (the ``neural`` extra: ``.venv-neural``). The zoo references are built on first use.
"""

import argparse
import os
import sys
import time

import numpy as np

from mfgpde.generative import toys
from mfgpde.generative.log_density_hjb import torch_residual
from mfgpde.io import write_json
from mfgpde.plotting import _mpl, save_figure
from mfgpde.report import markdown_table, write_report

T = 3.0
HJB_WEIGHT = 0.1
METRICS = (("score_error_weighted", "score error"), ("hjb_residual", "HJB residual"),
           ("generated_vs_data.L1", "L1 generated-data"), ("generated_vs_data.W2", "W2 generated-data"))


def make_net(torch, width=32, depth=3):
    layers, d_in = [], 3
    for _ in range(depth):
        layers += [torch.nn.Linear(d_in, width), torch.nn.GELU()]
        d_in = width
    layers.append(torch.nn.Linear(width, 2))

    class ScoreNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.f = torch.nn.Sequential(*layers)

        def forward(self, x, t):
            return self.f(torch.cat([x, t], dim=1))

    return ScoreNet().double()


def train(torch, data, regularised, steps, batch, seed, device):
    """Adam (lr 2e-3, cosine decay); identical seeds give identical initialisation and batches."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = make_net(torch).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

    def tensor(a):
        return torch.tensor(a, dtype=torch.float64, device=device)

    for _ in range(steps):
        x0 = tensor(data.sample(batch, seed=rng))
        t = tensor(rng.uniform(1e-3, T, (batch, 1)))
        z = tensor(rng.standard_normal((batch, 2)))
        a = torch.exp(-t)
        var = 1 - a**2
        xt = a * x0 + torch.sqrt(var) * z
        loss = ((torch.sqrt(var) * net(xt, t) + z) ** 2).sum(1).mean()
        if regularised:
            R = torch_residual(net, xt, t, sde="vp")
            xT = np.exp(-T) * x0 + np.sqrt(1 - np.exp(-2 * T)) * z
            loss = (loss + HJB_WEIGHT * (var**2 * R**2).sum(1).mean()
                    + ((net(xT, torch.full_like(t, T)) + xT) ** 2).sum(1).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.cpu()


def reverse_samples(torch, net, n=3000, steps=300, seed=0):
    """Euler-Maruyama on the reverse SDE ``dY = (Y + 2 s(Y, T - tau)) dtau + sqrt(2) dW`` from N(0, I)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, 2, generator=g, dtype=torch.float64)
    dt = T / steps
    with torch.no_grad():
        for k in range(steps):
            t = torch.full((n, 1), T - k * dt, dtype=torch.float64)
            y = y + (y + 2 * net(y, t)) * dt + np.sqrt(2 * dt) * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return y.numpy()


def value(metrics, key):
    head, _, sub = key.partition(".")
    return float(metrics[head][sub] if sub else metrics[head])


def figure(path, panels, grid):
    plt = _mpl()
    rows = len(panels)
    fig, ax = plt.subplots(rows, 5, figsize=(15, 3.0 * rows), squeeze=False)
    ext = [*grid.bounds[0], *grid.bounds[1]]
    for i, (name, p) in enumerate(panels.items()):
        ax[i, 0].imshow(p["data"].T, origin="lower", extent=ext, cmap="viridis")
        ax[i, 0].set_title(f"{name}: data density", fontsize=9)
        for j, meth in enumerate(("dsm", "dsm+hjb")):
            ax[i, 1 + j].imshow(p[meth]["generated"].T, origin="lower", extent=ext, cmap="viridis")
            ax[i, 1 + j].set_title(f"{meth}: generated on the grid (seed 0)", fontsize=9)
            s = p[meth]["samples"]
            ax[i, 3 + j].scatter(s[:, 0], s[:, 1], s=1, alpha=0.4)
            ax[i, 3 + j].set_xlim(ext[:2])
            ax[i, 3 + j].set_ylim(ext[2:])
            ax[i, 3 + j].set_aspect("equal")
            ax[i, 3 + j].set_title(f"{meth}: reverse-SDE samples (seed 0)", fontsize=9)
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "hjb_sgm_toys"))
    ap.add_argument("--toys", nargs="+", default=["moons", "8gaussians", "2spirals", "circles"], choices=toys.NAMES)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=2000, help="Adam steps per model (the CPU budget)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu", help="torch device for training (cuda for the long budget)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--leaderboard", default=None, metavar="FILE",
                    help="append the seed-0 models' rows to this zoo leaderboard (FILE.json / FILE.md)")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.batch < 2 or len(args.seeds) < 2:
        ap.error("--steps must be >= 1, --batch >= 2, and at least two --seeds (the spread is reported)")
    try:
        import torch
    except ImportError:
        print("hjb_sgm_toys: torch is not installed (the neural extra: .venv-neural)", file=sys.stderr)
        return 2
    import mfgpde.zoo as zoo

    torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    results, panels, timings, bars = {}, {}, {}, {}
    for name in args.toys:
        data = toys.toy(name)
        ref = zoo.reference(f"vp-{name}")  # built (and cached) on first use
        results[name] = {"dsm": [], "dsm+hjb": []}
        for meth in ("dsm", "dsm+hjb"):
            for s in args.seeds:
                t1 = time.perf_counter()
                net = train(torch, data, meth == "dsm+hjb", args.steps, args.batch, s, args.device)
                timings[f"{name}/{meth}/{s}"] = time.perf_counter() - t1
                t2 = time.perf_counter()
                metrics, fields = zoo.score(f"vp-{name}", net, kind="score", model_name=f"{name}-{meth}-{s}")
                timings[f"{name}/{meth}/{s}/score"] = time.perf_counter() - t2
                row = {k: value(metrics, k) for k, _ in METRICS}
                results[name][meth].append(row)
                bars[name] = {k: metrics["reference_error"].get(k) for k, _ in METRICS}
                if s == args.seeds[0] and args.leaderboard:
                    from mfgpde.zoo.rating import append_leaderboard, leaderboard_row

                    model_name = f"MLP 3x32 {meth} ({args.steps} steps)"
                    append_leaderboard(args.leaderboard, leaderboard_row(metrics, model_name, "score"))
                if s == args.seeds[0]:
                    panels.setdefault(name, {"data": ref.result[2][0]})[meth] = {
                        "generated": fields["m_model"][0], "samples": reverse_samples(torch, net)}
                print(f"{name} {meth} seed {s} ({timings[f'{name}/{meth}/{s}']:.0f} s): "
                      + ", ".join(f"{k} {v:.3g}" for k, v in row.items()), file=sys.stderr)
    rows = []
    for name, per in results.items():
        for key, label in METRICS:
            a = np.array([r[key] for r in per["dsm"]])
            b = np.array([r[key] for r in per["dsm+hjb"]])
            spread = max(a.std(), b.std())
            verdict = ("better" if b.mean() < a.mean() - spread else "worse" if b.mean() > a.mean() + spread
                       else "no clear difference")
            bar = bars[name].get(key)
            rows.append([name, label, f"{a.mean():.3g} ± {a.std():.2g}", f"{b.mean():.3g} ± {b.std():.2g}",
                         f"{bar:.2g}" if bar is not None else "-", verdict])
    os.makedirs(args.out, exist_ok=True)
    grid = zoo.reference(f"vp-{args.toys[0]}").result[0].grid
    figure(os.path.join(args.out, "hjb_sgm_toys.png"), panels, grid)
    run_time = time.perf_counter() - t0
    mean_t = {m: float(np.mean([v for k, v in timings.items() if k.split("/")[1] == m and not k.endswith("/score")]))
              for m in ("dsm", "dsm+hjb")}
    score_t = [v for k, v in timings.items() if k.endswith("/score")]
    write_json(os.path.join(args.out, "hjb_sgm_toys.json"),
               {"results": results, "reference_error": bars, "timings_s": timings, "steps": args.steps,
                "batch": args.batch, "seeds": args.seeds, "device": args.device, "run_time_s": run_time})
    better = [f"{r[0]} {r[1]}" for r in rows if r[5] == "better"]
    worse = [f"{r[0]} {r[1]}" for r in rows if r[5] == "worse"]
    write_report(os.path.join(args.out, "report.md"), "HJB-regularised score models on the 2D toys (zoo vp-*)", [
        ("Setting", f"OU/VP SDE, T = {T}; 3 x 32 GELU MLP (float64); loss DSM + {HJB_WEIGHT} x score-PDE residual "
                    f"+ terminal |s(x, T) + x|^2 (dsm+hjb) or DSM alone (dsm); Adam lr 2e-3, cosine decay, "
                    f"{args.steps} steps of batch {args.batch} on {args.device}; seeds {args.seeds}. References: the "
                    f"zoo entries vp-NAME (grid {zoo.entry('vp-' + args.toys[0]).grid}); bar = the reference's error "
                    "in that metric."),
        ("Results (mean ± std over seeds)", markdown_table(
            ["data", "metric", "DSM", "DSM + HJB", "reference bar", "DSM + HJB is"], rows)
         + "\n\n'better'/'worse': the means differ by more than the larger seed-to-seed standard deviation. "
           "A value below about twice the bar cannot be told from the reference's own error. Mean training time "
           "per model: " + ", ".join(f"{m} {t:.1f} s" for m, t in mean_t.items())
         + f". Rating one trained model with zoo.score (reference built): median {np.median(score_t):.1f} s, "
           f"max {max(score_t):.1f} s."),
        ("Reading", f"DSM + HJB better on: {', '.join(better) or 'nothing'}; worse on: {', '.join(worse) or 'nothing'}; "
                    "no clear difference elsewhere. This is the CPU budget of one run; the long budget is "
                    "`python validation/hjb_sgm_toys.py --steps 20000 --device cuda`."),
        ("Figure", "`hjb_sgm_toys.png`: per data set, the data density, the densities generated on the grid by the "
                   "seed-0 models (reverse-time FP) and 3000 reverse-SDE samples of each."),
        ("Run time", f"{run_time:.0f} s"),
    ])
    print(f"wrote {args.out}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
