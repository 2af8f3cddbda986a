"""``mfgpde sweep CONFIG.toml --param key=v1,v2 ... --out DIR`` (run under mpiexec to spread members)."""

from __future__ import annotations

import sys


def _sweep(args):
    from .sweep import parse_params, sweep

    params = parse_params(args.param)
    if not params:
        raise ValueError("sweep: give at least one --param section.key=v1,v2,...")
    opts = {}
    if args.tol is not None:
        opts["tol"] = args.tol
    table = sweep(args.config, params, args.out, opts)
    if table is None:  # not rank 0: rank 0 reports and sets the exit code
        return 0
    bad = [r for r in table if r["status"] != "converged"]
    print(f"mfgpde sweep: {len(table)} members, {len(table) - len(bad)} converged, {len(bad)} not -> {args.out}",
          file=sys.stderr)
    # like `solve`: 2 when some member did not converge, 1 when none did (the table is written either way)
    return 0 if not bad else 1 if len(bad) == len(table) else 2


def register(sub):
    """Add the ``sweep`` verb to the CLI's subparsers."""
    p = sub.add_parser("sweep", help="parameter sweep, spread over MPI ranks (mpiexec -n N mfgpde sweep ...)")
    p.add_argument("config")
    p.add_argument("--param", action="append", default=[], help="section.key=v1,v2,... (repeat for a product)")
    p.add_argument("--out", required=True)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines (warnings and the result remain)")
    p.add_argument("--tol", type=float)
    p.set_defaults(func=_sweep)
