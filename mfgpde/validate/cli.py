"""``mfgpde validate REFERENCE_CONFIG.toml --model package.module:callable --kind ... --out DIR``."""

from __future__ import annotations

import os
import sys
import time


def build_reference(cfg):
    """Reference for a configuration: ``("score", ScoreModel, data)`` or ``("flow", MFGResult)``."""
    from .. import config
    from ..generative.presets import ScoreModel
    from ..grid import TensorGrid
    from ..solver import solve

    if cfg.get("preset") == "score":
        config.check_keys(cfg, {"name", "preset", "grid", "time", "sde", "data"}, "top level")
        for sec, keys in (("grid", config.SECTION_KEYS["grid"]), ("time", config.SECTION_KEYS["time"]),
                          ("sde", {"type", "sigma"})):
            if sec in cfg:
                config.check_keys(cfg[sec], keys, sec)
        gt = cfg["grid"]
        grid = TensorGrid(gt["bounds"], gt["shape"], gt.get("boundary", "noflux"))
        sde = cfg.get("sde", {})
        tt = cfg.get("time", {})
        sm = ScoreModel(grid, sde.get("type", "vp"), sigma=sde.get("sigma", 1.0), T=tt.get("T", 1.0),
                        nt=tt.get("nt", 64))
        return "score", sm, config._density_callable(cfg["data"], "data")
    problem = config.build_problem(cfg)
    result = solve(problem, **config.solver_options(cfg))
    if not result.converged:
        raise RuntimeError(f"the reference solve did not converge ({result.status}); cannot validate against it")
    return "flow", result


def _validate(args):
    from .. import config
    from .models import ModelError, load_model
    from .report import write_validation_report
    from .validator import validate_flow, validate_score

    cfg = config.load(args.config)
    if args.model_timeout is not None and not args.model_timeout > 0:
        raise ValueError(f"--model-timeout must be > 0 seconds, got {args.model_timeout}")
    model = load_model(args.model)  # fails before any expensive work
    t0 = time.perf_counter()
    ref = build_reference(cfg)
    t_ref = time.perf_counter() - t0
    try:
        if ref[0] == "score":
            if args.kind not in (None, "score", "score-potential"):
                raise ValueError("a score reference (preset = 'score') needs --kind score or --kind score-potential")
            metrics, fields = validate_score(ref[1], ref[2], model, name=args.model, kind=args.kind or "score",
                                             timeout=args.model_timeout)
        else:
            kind = args.kind or "velocity"
            if kind.startswith("score"):
                raise ValueError(f"--kind {kind} needs a score reference configuration (preset = 'score')")
            metrics, fields = validate_flow(ref[1], model, kind=kind, name=args.model, timeout=args.model_timeout)
    except ModelError as exc:
        print(f"mfgpde validate: model error: {exc}", file=sys.stderr)
        return 3
    metrics["reference_time_s"] = t_ref
    metrics["model"] = args.model
    metrics["config"] = os.path.abspath(args.config)
    write_validation_report(args.out, metrics, fields)
    final = metrics.get("final", metrics.get("generated_vs_data", {}))
    print(f"mfgpde validate: L1 {final.get('L1', float('nan')):.3e}, W2 {final.get('W2', float('nan')):.3e}, "
          f"validation {metrics['validation_time_s']:.2f} s (+ model {metrics['model_eval_time_s']:.2f} s) -> {args.out}",
          file=sys.stderr)
    for key, v in (metrics.get("verdicts") or {}).items():
        if key in ("final.L1", "final.W2", "velocity_error_weighted", "hjb_residual"):
            extra = f" (resolved on {v['grid_to_resolve']})" if "grid_to_resolve" in v else ""
            print(f"mfgpde validate: {key} {v['value']:.3e} (reference error {v['reference_error']:.1e}): "
                  f"{v['verdict']}{extra}", file=sys.stderr)
    if metrics.get("reference_error") is None:
        print(f"mfgpde validate: no reference error bar ({metrics.get('reference_error_unavailable')})",
              file=sys.stderr)
    return 0


def register(sub):
    """Add the ``validate`` verb to the CLI's subparsers."""
    p = sub.add_parser("validate", help="measure a (neural) generative model against the grid MFG reference")
    p.add_argument("config", help="reference configuration (an MFG or preset, or preset = 'score')")
    p.add_argument("--model", required=True, help="package.module:callable (a make_* factory is called)")
    p.add_argument("--kind", choices=["velocity", "potential", "score", "score-potential"],
                   help="velocity / potential: a flow model against an MFG reference; score: a score field s(x, t), "
                        "score-potential: a log-density phi(x, t) with s = grad phi, against a score reference. "
                        "Score reports include the log-density HJB residual")
    p.add_argument("--out", required=True)
    p.add_argument("--model-timeout", type=float, default=None, metavar="SECONDS",
                   help="stop with a clear message when one model call takes longer (default: no limit)")
    p.set_defaults(func=_validate)
