"""``mfgpde wellposed CONFIG.toml --out DIR``: controls, multi-start, monotonicity, refinement, CNF lambda.

Each stage is written to ``wellposed.json`` as soon as it finishes (atomically), so a stage
that fails later leaves the finished ones, its own message and the figure in ``DIR``; the
exit code is then 1. With ``--time-limit`` the stages not begun by then (and the starts and
searches of a running multi-start) are marked ``incomplete``; the exit code is then 2.
Progress goes through the package's logging (stage, starts, elapsed time).
"""

from __future__ import annotations

import logging
import os
import sys
import time

import numpy as np

from ..io import write_json

#: what the verb does with each kind of configuration (printed by ``--help``)
SUPPORT = """\
time-dependent finite-difference MFGs (plain, cnf and score_mfg presets): positive/negative
controls, multi-start, Lasry-Lions check, refinement, and for cnf the lambda study.
preset = "score": the forward Fokker-Planck equation of a score model is linear, so its
solution is unique; the verb checks that the reference converges under refinement (--refine).
Mesh (FEM) and ergodic configurations are refused with what to run instead."""


def _dim(cfg):
    """Spatial dimension of a configuration's grid (``bounds`` is one pair per axis, or one pair)."""
    if not isinstance(cfg.get("grid"), dict):
        kind = "a mesh (FEM) configuration" if "mesh" in cfg else "a configuration without a [grid] table"
        raise ValueError(f"--shape resizes the [grid] table; this is {kind}. `mfgpde wellposed` studies "
                         "finite-difference problems on a [grid]")
    b = cfg["grid"].get("bounds")
    return len(b) if isinstance(b, list) and b and isinstance(b[0], (list, tuple)) else 1


def _resize(cfg, shape, nt):
    """Apply ``--shape`` / ``--nt`` to a loaded configuration (the study's own size)."""
    if shape:
        dim = _dim(cfg)
        if len(shape) not in (1, dim):
            raise ValueError(f"--shape needs 1 or {dim} sizes for this {dim}D grid, got {len(shape)}")
        cfg["grid"]["shape"] = [int(s) for s in (shape * dim if len(shape) == 1 else shape)]
    if nt is not None:
        if nt < 1:
            raise ValueError(f"--nt must be an integer >= 1, got {nt}")
        cfg.setdefault("time", {})["nt"] = int(nt)
    return cfg


#: the loosest --tol a well-posedness verdict accepts
MAX_STUDY_TOL = 1e-6

log = logging.getLogger(__name__)


def default_workers():
    """The default of ``--workers``: ``MFGPDE_WORKERS`` if set (a batch job's share of a node, a
    test run whose workers already fill the cores), else the cores this process may run on.
    """
    value = os.environ.get("MFGPDE_WORKERS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"MFGPDE_WORKERS must be an integer >= 1, got {value!r}")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _score_refinement(cfg, sizes):
    """Cauchy differences of a score reference (density p_t and exact grid score) under refinement."""
    import numpy as np

    from .. import config
    from ..validate.cli import build_reference
    from .wellposedness import restrict

    base = cfg["grid"]["shape"]
    base = base[0] if isinstance(base, list) else base
    nt0 = cfg.get("time", {}).get("nt", 64)
    refs = []
    for n in sizes:
        c = config.load(cfg)
        c["grid"]["shape"] = [int(n)] * _dim(cfg)
        c.setdefault("time", {})["nt"] = max(1, int(round(nt0 * n / base)))
        _, sm, data = build_reference(c)
        p = sm.forward(data)
        refs.append((sm, p, sm.grid_score(p)))
    dp, ds, hs = [], [], []
    for (a, pa, sa), (b, pb, sb) in zip(refs[:-1], refs[1:]):
        r = b.nt // a.nt
        pr = restrict(pb[::r], b.grid, a.grid)
        sr = restrict(sb[::r], b.grid, a.grid)
        dp.append(float(max(a.grid.integrate(np.abs(x - y)) for x, y in zip(pa, pr))))
        # density-weighted score difference at the levels after the first (p_0 may be rough)
        ds.append(float(max(np.sqrt(a.grid.integrate(pa[n] * np.sum((sa[n] - sr[n]) ** 2, axis=0)))
                            for n in range(1, a.nt + 1))))
        hs.append(float(max(a.grid.h)))

    def fit(e):
        return float(np.polyfit(np.log(hs), np.log(e), 1)[0]) if len(e) >= 2 else float("nan")

    return {"sizes": [int(s) for s in sizes], "h": hs, "differences_p": dp, "differences_score": ds,
            "order_p": fit(dp), "order_score": fit(ds)}


def _figure(report, path):
    """Four panels: distance each start moved; spread of the controls next to the problem's;
    refinement; CNF lambda study. A stage that did not run leaves its panel saying so.
    """
    from ..plotting import _mpl, save_figure

    plt = _mpl()
    fig, ax = plt.subplots(1, 4, figsize=(18, 3.9))
    for a in ax:
        a.text(0.5, 0.5, "not run", transform=a.transAxes, ha="center", color="0.6")
    ms = report.get("multi_start", {})
    if "runs" in ms:
        runs = ms["runs"]
        ax[0].bar(range(len(runs)), [r.get("moved_m") or 0 for r in runs],
                  color=["C0" if r["converged"] else "C3" for r in runs])
        ax[0].set(title=f"multi-start: {ms['verdict']}", xlabel="start (red: did not converge)",
                  ylabel="distance moved by m (relative)")
    ctl = {k: v for k, v in report.get("controls", {}).items() if isinstance(v, dict) and "multi_start" in v}
    bars = [(f"{k} control\n({v['multi_start']['verdict']})", v["multi_start"]["spread_m"]) for k, v in ctl.items()]
    if "spread_m" in ms:
        bars.append(("this problem", ms["spread_m"]))
    bars = [(k, v) for k, v in bars if v == v]  # NaN: fewer than two converged starts
    if bars:
        ax[1].bar(range(len(bars)), [max(v, 1e-17) for _, v in bars], color=["C3", "C2", "C0"][-len(bars):])
        ax[1].set_xticks(range(len(bars)), [k for k, _ in bars], fontsize=7)
        ax[1].set(yscale="log", title="spread of m over the starts", ylabel="max pairwise sup distance / max m")
        ax[1].axhline(ms.get("agree", 1e-6), color="k", lw=0.8, ls="--")
    ref = report.get("refinement", {})
    for key, label in (("differences_m", "m (L1)"), ("differences_U_support", "U (sup on supp m)"),
                       ("differences_U_weighted", "U (L2, m-weighted)"), ("differences_U", "U (sup, whole box)"),
                       ("differences_p", "p_t"), ("differences_score", "score")):
        if key in ref:
            order = ref.get("order_" + key.split("_", 1)[1], float("nan"))
            ax[2].loglog(ref["h"], ref[key], "o-", label=f"{label}, order {order:.2f}")
    if "h" in ref:
        ax[2].set(xlabel="h", title="Cauchy differences under refinement")
        ax[2].legend()
    rows = [r for r in report.get("cnf_lambda", {}).get("rows", []) if r.get("converged")]
    if rows:
        lam = [r["lam"] for r in rows]
        ax[3].loglog(lam, [r["condition_number_support_phi"] for r in rows], "o-", label="cond J on supp m (phi)")
        ax[3].loglog(lam, [r["smallest_singular_value_support_phi"] for r in rows], "s-",
                     label="sigma_min J on supp m (phi)")
        ax[3].set(xlabel="lambda", title="CNF as lambda -> 0")
        ax[3].legend(fontsize=8)
    for a in ax:
        if a.lines or a.patches:
            a.texts[0].remove()
    fig.tight_layout()
    save_figure(fig, path)


def _check_arguments(args):
    """Refuse ``wellposed`` settings that cannot support a verdict, before any work; the refinement sizes."""
    if args.starts < 2:
        raise ValueError(f"--starts must be >= 2 (a multi-start needs two starts), got {args.starts}")
    # a verdict needs starts solved far below the distance between solutions it reports: with a
    # loose tolerance every start "converges" where it begins (--tol inf: at iteration 0, residual
    # 1e3) and the spread of the starts reads as several solutions
    if not (np.isfinite(args.tol) and 0 < args.tol <= MAX_STUDY_TOL):
        raise ValueError(f"--tol must be in (0, {MAX_STUDY_TOL:g}] for a well-posedness verdict (the starts must be "
                         f"solved far below the spread they are compared by), got {args.tol}")
    try:
        sizes = [int(s) for s in args.refine]
    except ValueError:
        raise ValueError(f"--refine expects integer grid sizes (e.g. 50 100 200), got {args.refine}") from None
    if any(s < 2 for s in sizes):
        raise ValueError(f"--refine sizes must be integers >= 2, got {sizes}")
    if sizes and (len(sizes) < 2 or any(b != 2 * a for a, b in zip(sizes[:-1], sizes[1:]))):
        raise ValueError(f"--refine needs at least two grid sizes, each twice the one before (nested grids; e.g. 50 "
                         f"100 200), got {sizes}")
    if any(not (np.isfinite(lam) and lam > 0) for lam in args.lambdas):
        raise ValueError(f"--lambdas must be positive numbers (the kinetic weight; lambda = 0 is the ill-posed "
                         f"limit the study approaches), got {args.lambdas}")
    if args.time_limit is not None and not (np.isfinite(args.time_limit) and args.time_limit > 0):
        raise ValueError(f"--time-limit must be a positive number of seconds, got {args.time_limit}")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be an integer >= 1, got {args.workers}")
    if bool(args.parameter) != bool(args.values):
        raise ValueError("--parameter KEY and --values V1 V2 ... go together (the parameter study follows KEY over "
                         "the values)")
    if args.values and (len(args.values) < 2 or not all(np.isfinite(args.values))):
        raise ValueError(f"--values needs at least two finite numbers, got {args.values}")
    return sizes


def _set_parameter(cfg, key, value):
    """Set the configuration entry ``key`` (dotted: ``coupling.scale``, ``model.nu``; a list of
    tables, such as ``[[coupling]]``, takes an index, ``coupling.1.scale``, or means its first
    table) to ``value``; the entry must exist, so a typo is refused before any solve.
    """
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts):
        if isinstance(node, list):
            if part.isdigit():
                if int(part) >= len(node):
                    raise ValueError(f"--parameter {key}: {'.'.join(parts[:i])} has {len(node)} entries")
                node = node[int(part)]
                continue
            node = node[0]
        last = i == len(parts) - 1
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:i]) or "the configuration"
            keys = sorted(node) if isinstance(node, dict) else []
            raise ValueError(f"--parameter {key}: {where} has no entry {part!r} (it has {keys}); name an entry the "
                             f"configuration sets, e.g. coupling.scale or model.nu")
        if last:
            if isinstance(node[part], bool) or not isinstance(node[part], (int, float)):
                raise ValueError(f"--parameter {key}: the entry is {node[part]!r}, not a number")
            node[part] = float(value)
        else:
            node = node[part]
    return cfg


def _incomplete(stage):
    """Whether a stage's report (or a part of it) ran out of time."""
    if isinstance(stage, dict):
        return bool(stage.get("incomplete")) or any(_incomplete(v) for v in stage.values())
    if isinstance(stage, list):
        return any(_incomplete(v) for v in stage)
    return False


def _fd_stages(args, cfg, problem, stage, sizes, workers, deadline):
    """The stages of a finite-difference problem: controls, multi-start, Lasry-Lions, refinement,
    the parameter continuation and the CNF lambda study, each through ``stage``.
    """
    from .. import config
    from . import wellposedness as W

    if args.controls:
        stage("controls", lambda: W.run_controls(starts=args.starts, tol=args.tol, workers=workers,
                                                 deadline=deadline))
    stage("multi_start", lambda: W.multi_start(problem, starts=args.starts, tol=args.tol, workers=workers,
                                               deadline=deadline))
    terms = [("coupling", problem.coupling), ("terminal", problem.terminal)]
    stage("lasry_lions", lambda: {name: W.lasry_lions_check(c, problem.grid) for name, c in terms})
    if sizes:
        base_shape = list(problem.grid.shape)

        def make(n):
            c = config.load(cfg)
            c["grid"]["shape"] = [int(n * s / base_shape[0]) for s in base_shape]
            c.setdefault("time", {})["nt"] = max(1, int(round(problem.nt * n / base_shape[0])))
            return config.build_problem(c)

        stage("refinement", lambda: W.refinement(make, sizes, tol=args.tol))
    if args.parameter:
        def make_at(value):
            return config.build_problem(_set_parameter(config.load(cfg), args.parameter, value))

        def continuation():
            study = W.deflated_continuation(make_at, args.values, starts=args.starts, tol=args.tol,
                                            deadline=deadline)
            study["parameter"] = args.parameter
            W.branch_diagram(study, os.path.join(args.out, "branches.png"), args.parameter)
            return study

        stage("continuation", continuation)
    if args.lambdas:
        stage("cnf_lambda", lambda: W.cnf_lambda_study(problem.grid, problem.m0, args.lambdas, T=problem.T,
                                                       nt=problem.nt, starts=args.starts, tol=args.tol,
                                                       workers=workers, deadline=deadline))


class _StageRunner:
    """Runs the stages of a study: keeps what finished, records a failure with its message, skips
    a stage past the time limit, and writes the report after each stage (atomically).
    """

    def __init__(self, report, out_json, time_limit):
        self.report, self.out_json, self.time_limit = report, out_json, time_limit
        self.began = time.monotonic()
        self.deadline = None if time_limit is None else self.began + time_limit

    def __call__(self, name, fn):
        report = self.report
        if self.deadline is not None and time.monotonic() > self.deadline:
            report[name] = {"incomplete": True, "message": f"not run: --time-limit {self.time_limit:g} s reached"}
            report["incomplete"].append(name)
            log.warning("wellposed: %s not run (time limit reached)", name)
            write_json(self.out_json, report)
            return
        log.info("wellposed: %s (elapsed %.1f s)", name, time.monotonic() - self.began)
        t0 = time.perf_counter()
        try:
            report[name] = fn()
        except (ValueError, RuntimeError, FloatingPointError, MemoryError, NotImplementedError) as exc:
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
            report["stages_failed"].append(name)
            log.error("wellposed: stage %r failed: %s", name, exc)
        if isinstance(report[name], dict):
            report[name]["wall_time_s"] = time.perf_counter() - t0
            if _incomplete(report[name]):
                report["incomplete"].append(name)
        log.info("wellposed: %s done in %.1f s", name, time.perf_counter() - t0)
        write_json(self.out_json, report)


def _fd_problem(args, cfg):
    """The configuration's time-dependent grid problem; meshes and ergodic problems are refused."""
    from .. import config
    from ..problem import ErgodicMFGProblem

    mesh = (f"{args.config} is a mesh (FEM) problem; `mfgpde wellposed` studies finite-difference "
            f"problems. Run `mfgpde solve {args.config} --out DIR` for the mesh solve.")
    if "mesh" in cfg:  # refused before the mesh is built
        raise ValueError(mesh)
    problem = config.build_problem(cfg)
    if getattr(problem.grid, "is_mesh", False):
        raise ValueError(mesh)
    if isinstance(problem, ErgodicMFGProblem):
        raise ValueError(f"{args.config} is an ergodic problem; `mfgpde wellposed` studies time-dependent MFGs. "
                         f"Run `mfgpde solve {args.config} --out DIR`.")
    return problem


def _conclude(args, report, out_json):
    """The figure, the verdict line and the exit code (1: a stage failed, 2: the time limit)."""
    try:
        _figure(report, os.path.join(args.out, "wellposed.png"))
    except Exception as exc:
        report["stages_failed"].append("figure")
        report["figure_error"] = f"{type(exc).__name__}: {exc}"
        write_json(out_json, report)
    ms = report.get("multi_start", {})
    if "verdict" in ms:
        print(f"mfgpde wellposed: {ms['verdict']}: {ms['evidence']} (spread(m) = {ms['spread_m']:.2e})",
              file=sys.stderr)
    if report["stages_failed"]:
        print(f"mfgpde wellposed: failed stages {report['stages_failed']} (messages in {out_json}); the finished "
              f"ones are kept", file=sys.stderr)
        return 1
    if report["incomplete"]:
        print(f"mfgpde wellposed: --time-limit {args.time_limit:g} s reached: incomplete stages "
              f"{report['incomplete']} (what finished is in {out_json})", file=sys.stderr)
        return 2
    print(f"mfgpde wellposed: -> {args.out}", file=sys.stderr)
    return 0


def _wellposed(args):
    from .. import config

    sizes = _check_arguments(args)
    cfg = _resize(config.load(args.config), args.shape, args.nt)
    if args.parameter:      # a key that does not exist is refused before any solve
        _set_parameter(config.load(cfg), args.parameter, args.values[0])
    preset = cfg.get("preset")
    if args.lambdas and preset != "cnf":
        raise ValueError("--lambdas is the CNF lambda study: it needs a configuration with preset = 'cnf'")
    report = {"config": os.path.abspath(args.config), "stages_failed": [], "incomplete": []}
    out_json = os.path.join(args.out, "wellposed.json")
    stage = _StageRunner(report, out_json, args.time_limit)
    workers = default_workers() if args.workers is None else args.workers
    if preset == "score":
        if not sizes:
            raise ValueError("preset = 'score': the forward Fokker-Planck equation is linear and its solution unique, "
                             "so the evidence to gather is convergence of the reference: give --refine N 2N 4N")
        os.makedirs(args.out, exist_ok=True)
        report["problem"] = {"preset": "score", "note": "linear forward FP: unique solution; refinement only"}
        stage("refinement", lambda: _score_refinement(cfg, sizes))
    else:
        problem = _fd_problem(args, cfg)
        os.makedirs(args.out, exist_ok=True)
        report["problem"] = problem.describe()
        _fd_stages(args, cfg, problem, stage, sizes, workers, stage.deadline)
    return _conclude(args, report, out_json)


def register(sub):
    """Add the ``wellposed`` verb to the CLI's subparsers."""
    import argparse

    p = sub.add_parser("wellposed", help="well-posedness study: controls, multi-start, monotonicity, refinement",
                       description=SUPPORT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--out", required=True)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines (warnings and the result remain)")
    p.add_argument("--starts", type=int, default=4, help="multi-start: number of random starts (>= 2)")
    p.add_argument("--tol", type=float, default=1e-9)
    p.add_argument("--refine", nargs="*", default=[], help="grid sizes along axis 0 (doubling), e.g. 50 100 200")
    p.add_argument("--lambdas", nargs="*", type=float, default=[], help="CNF presets: lambda values to study")
    p.add_argument("--shape", nargs="*", type=int, default=[], help="study the configuration on this grid instead")
    p.add_argument("--nt", type=int, default=None, help="study the configuration with this many time steps")
    p.add_argument("--no-controls", dest="controls", action="store_false",
                   help="skip the positive/negative controls (aggregating and monotone 1D problems, ~3 s)")
    p.add_argument("--parameter", default=None, metavar="KEY",
                   help="deflated continuation in this configuration entry (e.g. coupling.scale, model.nu): every "
                        "solution branch followed over --values, new ones found by deflation; branches.png")
    p.add_argument("--values", nargs="*", type=float, default=[], help="the values of --parameter, in order")
    p.add_argument("--workers", type=int, default=None,
                   help="processes that solve the starts side by side (default: the cores available)")
    p.add_argument("--time-limit", dest="time_limit", type=float, default=None, metavar="SECONDS",
                   help="stop starting new stages, starts and searches after this many seconds; what did not run "
                        "is marked incomplete in wellposed.json and the exit code is 2")
    p.set_defaults(func=_wellposed)
