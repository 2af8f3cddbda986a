"""Command line: ``mfgpde solve CONFIG.toml --out DIR`` and the other verbs."""

from __future__ import annotations

import argparse
import os
import sys
import time


def _rank():
    try:
        from mpi4py import MPI
    except ImportError:
        return 0
    return MPI.COMM_WORLD.rank


def _solve(args):
    from . import config
    from .result import write_json
    from .solve import solve

    cfg = config.load(args.config)
    problem = config.build_problem(cfg)
    opts = config.solver_options(cfg)
    for key in ("method", "tol", "max_iter"):
        val = getattr(args, key)
        if val is not None:
            opts[key] = val
    rank = _rank()
    size = problem.grid.describe().get("dofs", problem.grid.shape)  # collective on a distributed mesh
    if rank == 0:
        print(f"mfgpde: solving {problem.name} ({problem.kind}, "
              + (f"mesh with {size} dofs" if getattr(problem.grid, "is_mesh", False) else f"grid {problem.grid.shape}")
              + (f", {problem.nt} steps" if problem.kind == "evolutive" else "") + f") with {opts.get('method', 'newton')}",
              file=sys.stderr)
    t0 = time.perf_counter()
    result = solve(problem, verbose=None if not args.verbose else True, **opts)
    summary = result.summary()
    summary["wall_time_s"] = result.diagnostics["wall_time_s"]
    summary["config"] = os.path.abspath(args.config)
    # created only now, on every rank (exist_ok: no race), so a refused or failed solve leaves no folder
    os.makedirs(args.out, exist_ok=True)
    if getattr(result, "backend", "fd") == "fem":
        # XDMF (+ .h5) for ParaView, collective over the ranks; rank 0 adds the gathered arrays
        result.write_xdmf(os.path.join(args.out, "solution.xdmf"))
        result.save(os.path.join(args.out, "solution.npz"))
    elif rank == 0:
        result.save(os.path.join(args.out, "solution.nc"))
    if rank == 0:
        if not args.no_plot:
            result.plot(os.path.join(args.out, "solution.png"))
        write_json(os.path.join(args.out, "summary.json"), summary)
        d = result.diagnostics
        print(f"mfgpde: {d['status']} after {d['iterations']} iterations, residual {d['residual']:.2e}, "
              f"mass error {d['mass_error']:.1e}, min density {d['min_density']:.2e}, "
              f"{time.perf_counter() - t0:.2f} s -> {args.out}", file=sys.stderr)
    return 0 if result.converged else 2


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mfgpde", description="Mean-field game PDE solver")
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("solve", help="solve a configuration and write solution.nc (FD) or solution.xdmf/.npz (FEM), "
                       "solution.png, summary.json")
    p.add_argument("config", help="TOML configuration (see solvers/)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--method", choices=["newton", "fixed_point", "fictitious_play"])
    p.add_argument("--tol", type=float)
    p.add_argument("--max-iter", dest="max_iter", type=int)
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="progress line per iteration")
    p.set_defaults(func=_solve)
    _register_extra_verbs(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FloatingPointError, NotImplementedError, RuntimeError, ImportError, OSError) as exc:
        print(f"mfgpde {args.verb}: error: {exc}", file=sys.stderr)
        return 1
    except MemoryError as exc:  # an allocation the estimate (mfgpde.memory) did not foresee
        print(f"mfgpde {args.verb}: error: out of memory ({exc or 'allocation failed'}); use a coarser grid or "
              "fewer time steps", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # outputs are written atomically (staging + rename), so nothing half written is left
        print(f"mfgpde {args.verb}: interrupted", file=sys.stderr)
        return 130


def _register_extra_verbs(sub):
    """Verbs of the optional parts (well-posedness studies, validation, sweeps)."""
    from .parallel.cli import register as reg_sweep
    from .studies.cli import register as reg_studies
    from .validate.cli import register as reg_validate

    reg_studies(sub)
    reg_validate(sub)
    reg_sweep(sub)


if __name__ == "__main__":
    sys.exit(main())
