"""``mfgpde validate REFERENCE_CONFIG.toml --model package.module:callable --kind ... --out DIR``."""

from __future__ import annotations

import math
import os
import sys
import time

#: The default limit of one model call, and of the model's import and ``make_*`` factory, in
#: seconds (``--model-timeout``): a model that hangs must not hold a cluster allocation forever.
DEFAULT_TIMEOUT = 600.0
#: the longest --model-timeout (a day; setitimer overflows on inf or 1e20)
MAX_TIMEOUT = 86400.0


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
        sm = ScoreModel(grid, sde=sde.get("type", "vp"), sigma=sde.get("sigma", 1.0), T=tt.get("T", 1.0),
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
    if not (math.isfinite(args.model_timeout) and 0 < args.model_timeout <= MAX_TIMEOUT):
        # (inf or 1e20 overflowed setitimer with a traceback)
        raise ValueError(f"--model-timeout must be in (0, {MAX_TIMEOUT:g}] seconds, got {args.model_timeout}")
    try:
        model = load_model(args.model, timeout=args.model_timeout)  # fails before any expensive work
    except ModelError as exc:
        print(f"mfgpde validate: model error: {exc}", file=sys.stderr)
        return 3
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
    p.add_argument("--model-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="stop with a clear message (exit 3) when the model's import, its make_* factory or one "
                        f"call takes longer (default {DEFAULT_TIMEOUT:g} s, at most {MAX_TIMEOUT:g})")
    p.set_defaults(func=_validate)
