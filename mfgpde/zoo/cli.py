"""``mfgpde zoo list | build | score``: the benchmark catalogue from the command line.

Exit codes: 0 done; 1 an error (unknown entry, wrong kind, unwritable cache, a reference that did
not converge), with a one-line message; 3 a model error (import, shape, NaN, timeout), as for
``mfgpde validate``.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import numpy as np

logger = logging.getLogger(__name__)

#: the built-in models of ``--model``: the entry's exact model, and the same perturbed
BUILTIN_MODELS = ("exact", "perturbed")
#: the perturbation of ``--model perturbed``: v -> (1 + PERTURB_SCALE) v + PERTURB_SHIFT
PERTURB_SCALE, PERTURB_SHIFT = 0.2, 0.1


def _list(args):
    from . import store
    from .catalogue import ENTRIES

    rows = []
    for e in ENTRIES.values():
        state, est = store.stored_error(e.name)
        rows.append({"name": e.name, "family": e.family, "kinds": list(e.kinds), "dim": e.dim, "grid": e.grid,
                     "estimated_error": est, "state": state, "exact_model": e.exact is not None, "mfg": e.mfg})
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    head = f"{'name':24s} {'family':11s} {'kinds':24s} {'dim':>3s}  {'reference grid':16s} {'est. error':>10s}  state"
    print(head)
    print("-" * len(head))
    for r in rows:
        est = f"{r['estimated_error']:.1e}" if r["estimated_error"] is not None else "-"
        print(f"{r['name']:24s} {r['family']:11s} {'/'.join(r['kinds']):24s} {r['dim']:3d}  {r['grid']:16s} "
              f"{est:>10s}  {r['state']}")
    print(f"{len(rows)} entries; references in {store.cache_dir()}; est. error: L1 error of the final (flow), "
          "stationary (ergodic) or generated (score) density")
    return 0


def _names(args, what):
    from .catalogue import ENTRIES, entry

    if args.all and args.names:
        raise ValueError(f"zoo {what}: give entry names or --all, not both")
    if args.all:
        return list(ENTRIES)
    if not args.names:
        raise ValueError(f"zoo {what}: give at least one entry name, or --all (`mfgpde zoo list` shows them)")
    return [entry(n).name for n in args.names]  # unknown names fail here, before any solve


def _build(args):
    from . import store

    names = _names(args, "build")
    store._check_writable(store.cache_dir())
    t0 = time.perf_counter()
    failed = []
    for i, name in enumerate(names, 1):
        state = store.status(name)
        if state == "built" and not args.force:
            logger.info("zoo: [%d/%d] %s already built", i, len(names), name)
            continue
        logger.info("zoo: [%d/%d] building %s (%s) ...", i, len(names), name, state)
        t1 = time.perf_counter()
        try:
            ref = store.build(name, force=True)
        except RuntimeError as exc:
            failed.append(name)
            print(f"mfgpde zoo build: {name}: {exc}", file=sys.stderr)
            continue
        est = ref.estimated_error
        logger.info("zoo: [%d/%d] %s built in %.1f s (estimated error %s; elapsed %.0f s)", i, len(names), name,
                    time.perf_counter() - t1, f"{est:.1e}" if est is not None else "n/a", time.perf_counter() - t0)
    print(f"mfgpde zoo build: {len(names) - len(failed)} of {len(names)} references ready in "
          f"{time.perf_counter() - t0:.1f} s -> {store.cache_dir()}", file=sys.stderr)
    return 1 if failed else 0


def builtin_model(e, which, kind=None):
    """The entry's exact model of ``kind``, or that model perturbed: ``1.2 v + 0.1`` (vector
    kinds) or ``1.2 phi + 0.1 sum_k x_k`` (potentials: the same perturbation of the gradient).
    """
    from .catalogue import exact_model

    exact = exact_model(e, kind)
    if exact is None:
        raise ValueError(f"--model {which}: zoo entry {e.name} has no exact model (entries with one: "
                         "`mfgpde zoo list --json`, exact_model = true)")
    if which == "exact":
        return exact
    if (kind or e.kinds[0]) in ("potential", "score-potential"):
        return lambda x, t: (1 + PERTURB_SCALE) * exact(x, t) + PERTURB_SHIFT * np.sum(x, axis=1)
    return lambda x, t: (1 + PERTURB_SCALE) * exact(x, t) + PERTURB_SHIFT


def _score(args):
    from ..io import write_json
    from ..validate.cli import MAX_TIMEOUT
    from ..validate.models import ModelError, load_model
    from ..validate.report import write_validation_report
    from .catalogue import entry
    from .rating import append_leaderboard, leaderboard_row, score

    names = _names(args, "score")
    if not (0 < args.model_timeout <= MAX_TIMEOUT):
        raise ValueError(f"--model-timeout must be in (0, {MAX_TIMEOUT:g}] seconds, got {args.model_timeout}")
    entries = [entry(n) for n in names]
    if args.all:
        # --all: every entry the model's kind fits (and, for a dimension-specific model, its dimension)
        entries = [e for e in entries if (args.kind or "velocity") in e.kinds]
        if args.dim is not None:
            entries = [e for e in entries if e.dim == args.dim]
        if args.model in BUILTIN_MODELS:
            entries = [e for e in entries if e.exact is not None]
        if not entries:
            raise ValueError(f"zoo score --all: no entry rates --kind {args.kind or 'velocity'}")
    for e in entries:
        kind = args.kind or e.kinds[0]
        if kind not in e.kinds:
            raise ValueError(f"--kind {kind} does not fit zoo entry {e.name} ({e.family}); allowed: "
                             f"{', '.join(e.kinds)}")
    model = None
    if args.model not in BUILTIN_MODELS:
        try:
            model = load_model(args.model, timeout=args.model_timeout)  # before any expensive work
        except ModelError as exc:
            print(f"mfgpde zoo score: model error: {exc}", file=sys.stderr)
            return 3
    code = 0
    for e in entries:
        kind = args.kind or e.kinds[0]
        m = builtin_model(e, args.model, kind) if model is None else model
        out = args.out if len(entries) == 1 and not args.all else os.path.join(args.out, e.name)
        try:
            metrics, fields = score(e.name, m, kind=kind, model_name=args.model, timeout=args.model_timeout)
        except ModelError as exc:
            print(f"mfgpde zoo score: {e.name}: model error: {exc}", file=sys.stderr)
            code = 3
            continue
        metrics["model"] = args.model
        write_validation_report(out, metrics, fields)
        write_json(os.path.join(out, "score.json"), metrics)
        row = leaderboard_row(metrics, args.model, kind)
        if args.leaderboard:
            append_leaderboard(args.leaderboard, row)
        cells = ", ".join(f"{c['title']} {c['value']:.2e}"
                          + (f" (bar {c['reference_error']:.1e}, {c['verdict']})" if c["reference_error"] is not None
                             else "") for c in row["metrics"] if c["value"] is not None)
        print(f"mfgpde zoo score: {e.name}: {cells} -> {out}", file=sys.stderr)
    return code


def register(sub):
    """Add the ``zoo`` verb to the CLI's subparsers."""
    from ..validate.cli import DEFAULT_TIMEOUT

    p = sub.add_parser("zoo", help="benchmark catalogue: certified references that rate generative models")
    zsub = p.add_subparsers(dest="zoo_verb", required=True)
    q = zsub.add_parser("list", help="the catalogue: name, family, kinds, reference grid, estimated error, state")
    q.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    q.set_defaults(func=_list)
    q = zsub.add_parser("build", help="solve and store references in the cache ($MFGPDE_CACHE or ~/.cache/mfgpde)")
    q.add_argument("names", nargs="*", metavar="NAME")
    q.add_argument("--all", action="store_true", help="every entry")
    q.add_argument("--force", action="store_true", help="rebuild even when a valid reference is stored")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress lines (warnings and the summary remain)")
    q.set_defaults(func=_build)
    q = zsub.add_parser("score", help="rate a model against a reference (every validate metric with its error bar)")
    q.add_argument("names", nargs="*", metavar="NAME")
    q.add_argument("--all", action="store_true", help="every entry the --kind (and --dim) fits")
    q.add_argument("--model", required=True,
                   help="package.module:callable (a make_* factory is called), or 'exact' / 'perturbed': the "
                        "entry's exact model, or it times 1.2 plus 0.1")
    q.add_argument("--kind", choices=["velocity", "potential", "score", "score-potential"],
                   help="what the model returns (default: the entry's first kind)")
    q.add_argument("--dim", type=int, default=None, help="with --all: only entries of this dimension")
    q.add_argument("--out", required=True, help="output directory (score.json, metrics.json, report.png)")
    q.add_argument("--leaderboard", default=None, metavar="FILE",
                   help="append a row to FILE.json and rewrite FILE.md (Markdown tables per entry)")
    q.add_argument("--model-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"stop with exit 3 when the model's import or one call takes longer (default {DEFAULT_TIMEOUT:g})")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress lines (warnings and the summary remain)")
    q.set_defaults(func=_score)
