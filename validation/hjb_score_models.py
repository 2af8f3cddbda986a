"""Denoising score matching with and without the log-density HJB regulariser, checked on the grid.

Question: does penalising the residual of the log-density HJB (the optimality condition of the
score-based MFG, :mod:`mfgpde.generative.log_density_hjb`) give better score models than plain
denoising score matching (DSM) at the same architecture and training budget?

Setting: the OU / VP forward SDE ``dX = -X dt + sqrt(2) dW`` on ``[0, T]``, ``T = 3``; data a
two-mode 1D mixture (the one of ``solvers/score_ou_1d.toml``) and a four-mode 2D mixture. For each
data set and seed, two networks with the same architecture, initialisation, batches and number
of Adam steps are trained:

* ``dsm``: ``E_{t, x0, z} | sqrt(v_t) s(x_t, t) + z |^2``, ``x_t = e^{-t} x0 + sqrt(v_t) z``,
  ``v_t = 1 - e^{-2t}`` (the usual ``lambda(t) = v_t`` weighting);
* ``dsm+hjb``: the same plus ``w E_{t, x_t} v_t^2 |R_s(x_t, t)|^2``, ``R_s`` the score-form HJB
  residual by autograd at the same noised samples (``v_t^2`` makes ``v_t R_s`` order one, as
  ``sqrt(v_t) s`` is in DSM).

Each model is then validated against the grid reference (:func:`mfgpde.validate.validate_score`,
second-order push-forward): density-weighted score error against the exact grid score, HJB
residual, and the density the model generates against the data (L1, KL, W2). The report gives
mean and seed-to-seed spread, and says per metric and data set whether the regulariser helped.

Run:  python validation/hjb_score_models.py [--reduced] [--out validation/out/hjb_score]
Needs torch (the ``neural`` extra: ``.venv-neural``).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

import mfgpde as mp
from mfgpde.generative.densities import gaussian_mixture
from mfgpde.generative.log_density_hjb import torch_residual
from mfgpde.generative.presets import ScoreModel
from mfgpde.plotting import _mpl, save_figure
from mfgpde.report import markdown_table, write_report
from mfgpde.result import write_json
from mfgpde.validate import validate_score

T = 3.0
DATA = {
    "1d": dict(weights=[0.4, 0.6], means=[[-1.5], [1.2]], covs=[0.09, 0.16]),
    "2d": dict(weights=[1, 1, 1, 1], means=[[1.5, 1.5], [-1.5, 1.5], [-1.5, -1.5], [1.5, -1.5]], covs=[0.16] * 4),
}
#: (bounds, cells per axis, time steps) of the grid reference, full and reduced (CI) size
GRIDS = {False: {"1d": ([(-6.0, 6.0)], 240, 120), "2d": ([(-4.5, 4.5)] * 2, 64, 48)},
         True: {"1d": ([(-6.0, 6.0)], 120, 60), "2d": ([(-4.5, 4.5)] * 2, 24, 12)}}
REDUCED_NOTE = "REDUCED (CI) size: the numbers say the pipeline works, not which method wins."
METRICS = (("score_error_weighted", "score error"), ("hjb_residual", "HJB residual"),
           ("L1", "L1 generated-data"), ("KL_model_reference", "KL generated||data"), ("W2", "W2 generated-data"))


def sample(rng, mix, n):
    w = np.asarray(mix["weights"], float)
    k = rng.choice(len(w), size=n, p=w / w.sum())
    means = np.asarray(mix["means"], float)
    std = np.sqrt(np.asarray(mix["covs"], float))
    return means[k] + std[k][:, None] * rng.standard_normal((n, means.shape[1]))


def make_net(torch, d, width=64):
    class ScoreNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.f = torch.nn.Sequential(torch.nn.Linear(d + 1, width), torch.nn.SiLU(), torch.nn.Linear(width, width),
                                         torch.nn.SiLU(), torch.nn.Linear(width, width), torch.nn.SiLU(),
                                         torch.nn.Linear(width, d))

        def forward(self, x, t):
            return self.f(torch.cat([x, t], dim=1))

    return ScoreNet().double()


def train(torch, mix, d, hjb_weight, iters, batch, seed):
    """Adam on DSM (+ the weighted HJB residual); identical seeds give identical init and batches."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = make_net(torch, d)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters)
    for _ in range(iters):
        x0 = torch.tensor(sample(rng, mix, batch), dtype=torch.float64)
        t = torch.tensor(rng.uniform(1e-3, T, (batch, 1)), dtype=torch.float64)
        z = torch.tensor(rng.standard_normal((batch, d)), dtype=torch.float64)
        a = torch.exp(-t)
        var = 1 - a**2
        xt = a * x0 + torch.sqrt(var) * z
        loss = ((torch.sqrt(var) * net(xt, t) + z) ** 2).sum(1).mean()
        if hjb_weight > 0:
            R = torch_residual(net, xt, t, sde="vp")
            loss = loss + hjb_weight * (var**2 * R**2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net


def flat(m):
    g = m["generated_vs_data"]
    return {"score_error_weighted": m["score_error_weighted"], "hjb_residual": m["hjb_residual"],
            "L1": g["L1"], "KL_model_reference": g["KL_model_reference"], "W2": g["W2"]}


def figure(path, results, seeds):
    plt = _mpl()
    fig, ax = plt.subplots(len(results), len(METRICS), figsize=(3.1 * len(METRICS), 2.8 * len(results)), squeeze=False)
    for i, (ds, per) in enumerate(results.items()):
        for j, (key, label) in enumerate(METRICS):
            a = ax[i, j]
            for k, meth in enumerate(per):
                vals = [per[meth][s][key] for s in seeds]
                a.scatter(np.full(len(vals), k) + np.linspace(-0.08, 0.08, len(vals)), vals, s=18)
                a.hlines(np.mean(vals), k - 0.2, k + 0.2, color="k")
            a.set_xticks(range(len(per)), [m.upper().replace(" W=", "\nw=") for m in per], fontsize=7)
            a.set_yscale("log")
            a.set_title(f"{ds}: {label}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def verdicts(results, seeds, methods):
    """Rows ``[data, metric, weight, DSM, DSM + HJB, verdict]``; a difference counts only when the
    means differ by more than the larger seed-to-seed standard deviation."""
    rows = []
    for ds in results:
        for key, label in METRICS:
            a = np.array([results[ds]["dsm"][s][key] for s in seeds])
            for meth, _ in methods[1:]:
                b = np.array([results[ds][meth][s][key] for s in seeds])
                spread = max(a.std(), b.std())
                verdict = ("better" if b.mean() < a.mean() - spread else "worse" if b.mean() > a.mean() + spread
                           else "no clear difference")
                rows.append([ds, label, meth.split()[-1], f"{a.mean():.3g} ± {a.std():.2g}",
                             f"{b.mean():.3g} ± {b.std():.2g}", verdict])
    return rows


def reading(rows):
    """One sentence per weight: where the regulariser helped, where it hurt."""
    out = []
    for w in dict.fromkeys(r[2] for r in rows):
        better = [f"{r[0]} {r[1]}" for r in rows if r[2] == w and r[5] == "better"]
        worse = [f"{r[0]} {r[1]}" for r in rows if r[2] == w and r[5] == "worse"]
        out.append(f"With {w}: better on {', '.join(better) or 'nothing'}; worse on {', '.join(worse) or 'nothing'}; "
                   "no clear difference elsewhere.")
    return " ".join(out)


def write_outputs(out, results, seeds, methods, timings, meta, run_time):
    """Figure, JSON and the Markdown report (also used by --report-only)."""
    grids = GRIDS[bool(meta["reduced"])]
    rows = verdicts(results, seeds, methods)
    os.makedirs(out, exist_ok=True)
    figure(os.path.join(out, "hjb_score.png"), results, seeds)
    mean_t = {meth: float(np.mean([v for k, v in timings.items() if k.split("/")[1] == meth])) for meth, _ in methods}
    write_json(os.path.join(out, "hjb_score.json"), {
        "results": {ds: {m: {str(s): v for s, v in per.items()} for m, per in r.items()} for ds, r in results.items()},
        "timings_s": timings, "seeds": [int(s) for s in seeds], "run_time_s": run_time, **meta})
    iters, batch, weights = meta["iters"], meta["batch"], meta["weights"]
    floor = {ds: results[ds]["dsm"][seeds[0]]["exact_score_hjb_residual"] for ds in results}
    write_report(os.path.join(out, "report.md"), "DSM with and without the HJB regulariser", [
        ("Setting", f"VP/OU forward SDE, T = {T}. Data: {DATA['1d']} (1D, grid {grids['1d'][1]} cells, "
                    f"{grids['1d'][2]} steps) and a 4-mode 2D mixture (grid {grids['2d'][1]}^2, {grids['2d'][2]} "
                    f"steps). Network (d+1)-64-64-64-d, SiLU, float64; Adam lr 2e-3 with cosine decay, "
                    f"{iters} steps of batch {batch} for every model, seeds {[int(s) for s in seeds]}; HJB weights "
                    f"w = {weights}. {REDUCED_NOTE if meta['reduced'] else ''}"),
        ("Results (mean ± std over seeds)", markdown_table(["data", "metric", "HJB weight", "DSM", "DSM + HJB",
                                                            "DSM + HJB is"], rows)
         + "\n\n'better'/'worse' means the means differ by more than the larger seed-to-seed standard deviation. "
         f"The exact grid score's HJB residual (the discretisation floor of that metric) is "
         f"{floor['1d']:.3g} (1D) and {floor['2d']:.3g} (2D). Mean training time per model: "
         + ", ".join(f"{m} {t:.1f} s" for m, t in mean_t.items()) + " (the residual needs second derivatives "
         "of the network, so the same number of steps costs more)."),
        ("Reading", reading(rows)),
        ("Figure", "`hjb_score.png`: every seed (dots) and the mean (bar) per method, metric and data set."),
        ("Run time", f"{run_time:.0f} s"),
    ])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "hjb_score"))
    ap.add_argument("--reduced", action="store_true", help="CI size: coarse grids, few steps, two seeds")
    ap.add_argument("--weights", type=float, nargs="+", default=[1.0],
                    help="weights w of the HJB term, one DSM + HJB model per weight (default 1)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite report.md and the figure from OUT/hjb_score.json without training")
    args = ap.parse_args(argv)
    if args.report_only:
        with open(os.path.join(args.out, "hjb_score.json")) as fh:
            d = json.load(fh)
        methods = [("dsm", 0.0)] + [(f"dsm+hjb w={w:g}", w) for w in d["weights"]]
        write_outputs(args.out, d["results"], [str(x) for x in d["seeds"]], methods, d["timings_s"],
                      {k: d[k] for k in ("reduced", "weights", "iters", "batch")}, d.get("run_time_s", float("nan")))
        print(f"wrote {args.out}/report.md")
        return 0
    if not all(w > 0 for w in args.weights):
        ap.error(f"--weights must be > 0, got {args.weights}")
    methods = [("dsm", 0.0)] + [(f"dsm+hjb w={w:g}", w) for w in args.weights]
    try:
        import torch
    except ImportError:
        print("hjb_score_models: torch is not installed (the neural extra: Python 3.11 + torch==2.13.0)",
              file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    if args.reduced:
        seeds, iters, batch = (0, 1), 150, 128
    else:
        seeds, iters, batch = (0, 1, 2), 2000, 256
    grids = GRIDS[args.reduced]
    results, timings = {}, {}
    for ds, mix in DATA.items():
        bounds, n, nt = grids[ds]
        sm = ScoreModel(mp.TensorGrid(bounds, n, "noflux"), sde="vp", T=T, nt=nt)
        data = gaussian_mixture(**mix)
        d = len(bounds)
        results[ds] = {meth: {} for meth, _ in methods}
        for meth, w in methods:
            for s in seeds:
                t1 = time.perf_counter()
                net = train(torch, mix, d, w, iters, batch, seed=s)
                timings[f"{ds}/{meth}/{s}"] = time.perf_counter() - t1
                m, _ = validate_score(sm, data, net, name=f"{ds}-{meth}-{s}")
                results[ds][meth][s] = flat(m)
                results[ds][meth][s]["exact_score_hjb_residual"] = m["hjb_residual_exact_score"]
                print(f"{ds} {meth} seed {s}: " + ", ".join(f"{k} {v:.3g}" for k, v in results[ds][meth][s].items()),
                      file=sys.stderr)
    write_outputs(args.out, results, list(seeds), methods, timings,
                  dict(reduced=args.reduced, weights=args.weights, iters=iters, batch=batch),
                  time.perf_counter() - t0)
    print(f"wrote {args.out}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
