"""Command line: ``mfgpde solve CONFIG.toml --out DIR`` and the other verbs."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time

from .io import write_json
from .logs import enable as enable_logging


def _rank():
    try:
        from mpi4py import MPI
    except ImportError:
        return 0
    return MPI.COMM_WORLD.rank


def _world():
    """``MPI.COMM_WORLD`` when this process is one of several ranks, else None."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.size > 1 else None


def _petsc_options(pairs):
    """``--petsc-option KEY=VALUE`` (repeatable) -> dict; ``KEY`` alone sets a flag."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not key.strip():
            raise ValueError(f"--petsc-option expects KEY=VALUE (e.g. step_pc_type=gamg), got {pair!r}")
        out[key.strip()] = value.strip() if sep else None
    return out


#: files `mfgpde solve` writes; a run replaces all of them (stale ones of an earlier run are removed)
SOLVE_OUTPUTS = ("summary.json", "solution.nc", "solution.png", "solution.npz", "solution.xdmf", "solution.h5")


def check_output_folder(out):
    """Refuse an ``--out`` that cannot be written (an existing file, a read-only parent) before any work."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out!r} exists and is not a folder")
    probe = out
    while not os.path.exists(probe):
        parent = os.path.dirname(os.path.abspath(probe))
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ValueError(f"--out {out!r}: {probe!r} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out!r}: {probe!r} is not writable")


def _remove_stale(out, produced):
    """Remove the files of :data:`SOLVE_OUTPUTS` in ``out`` that this run does not produce."""
    for name in SOLVE_OUTPUTS:
        if name not in produced and os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))


def _publish(out, write):
    """Write a result set into a staging folder inside ``out``, then swap it in.

    Files of :data:`SOLVE_OUTPUTS` that the new set does not contain are removed, so the folder
    never mixes a new summary with an old plot; each file is moved with ``os.replace``.
    """
    import shutil
    import tempfile

    os.makedirs(out, exist_ok=True)
    _remove_debris(out)
    stage = tempfile.mkdtemp(prefix=f".staging-{os.getpid()}@{_HOST}-", dir=out)
    try:
        write(stage)
        produced = set(os.listdir(stage))
        # an abort of the job (a signal to another rank) waits for the swap: all old or all new
        with _stop.critical() if _stop is not None else contextlib.nullcontext():
            _remove_stale(out, produced)
            for name in sorted(produced - {"summary.json"}) + ["summary.json"]:  # the summary last
                if name in produced:
                    os.replace(os.path.join(stage, name), os.path.join(out, name))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


#: the host in staging folders' names: on a shared file system a pid means something only on its host
_HOST = os.uname().nodename.replace("-", "_") or "host"


def _remove_debris(out):
    """Remove staging folders that a killed run (SIGKILL, an abort) left in ``out``: those named
    ``.staging-<pid>@<host>-*`` of this host whose process is gone (a run in progress, or one on
    another node of a shared file system, is left alone).
    """
    import shutil

    for name in os.listdir(out):
        if not name.startswith(".staging-"):
            continue
        owner = name[len(".staging-"):].rpartition("-")[0]      # (mkdtemp's suffix has no "-")
        pid, _, host = owner.partition("@")
        if host != _HOST or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(os.path.join(out, name), ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _solve(args):
    check_output_folder(args.out)
    from .render import FigureProcess

    # the figure's worker imports matplotlib while this process imports the solver and solves
    with FigureProcess.wanted(not args.no_plot, serial=not _under_mpiexec()) or contextlib.nullcontext() as figure:
        return _solve_reporting(args, figure)


def _under_mpiexec():
    """Whether this process is one of several MPI ranks (read from the launcher's environment,
    without importing mpi4py).
    """
    return any(int(os.environ.get(v, "1") or 1) > 1 for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"))


def _solve_reporting(args, figure):
    try:
        return _solve_checked(args, figure)
    except (ValueError, TypeError, FloatingPointError, RuntimeError, MemoryError, ImportError, OSError) as exc:
        if _rank() == 0 and os.path.isdir(args.out):
            # an earlier run's results must not stand beside this failure, whatever failed (a bad
            # configuration as well as a diverging solve): the folder says it failed
            failed = {"converged": False, "status": "error", "error": f"{type(exc).__name__}: {exc}",
                      "config": os.path.abspath(args.config)}
            _publish(args.out, lambda d: write_json(os.path.join(d, "summary.json"), failed))
        raise


def _write_outputs(args, result, summary, rank, figure=None):
    """The solution, its figure and ``summary.json`` in ``args.out``: a mesh result as XDMF (+ .h5,
    collective over the ranks) and npz, a grid result as NetCDF published atomically by rank 0
    (its figure drawn by ``figure``, a :class:`~mfgpde.render.FigureProcess`, when given).
    """
    if getattr(result, "backend", "fd") == "fem":
        # XDMF (+ .h5) for ParaView, collective over the ranks; rank 0 adds the gathered arrays
        result.write_xdmf(os.path.join(args.out, "solution.xdmf"))
        if rank == 0:
            result.save(os.path.join(args.out, "solution.npz"))
            if not args.no_plot:
                result.plot(os.path.join(args.out, "solution.png"))
            _remove_stale(args.out, {"solution.xdmf", "solution.h5", "solution.npz", "summary.json"}
                          | (set() if args.no_plot else {"solution.png"}))
            write_json(os.path.join(args.out, "summary.json"), summary)
    elif rank == 0:
        def write(d):
            # drawn by the worker while the rest is written, or here when there is none
            drawing = not args.no_plot and figure is not None and figure.draw(result, os.path.join(d, "solution.png"))
            result.save(os.path.join(d, "solution.nc"))
            if not args.no_plot and not drawing:
                result.plot(os.path.join(d, "solution.png"))
            write_json(os.path.join(d, "summary.json"), summary)
            if figure is not None and figure.sent:
                figure.wait()                                            # before the folder is published

        _publish(args.out, write)


def _solve_checked(args, figure=None):
    from . import config
    from .solver import solve

    cfg = config.load(args.config)
    problem = config.build_problem(cfg)
    opts = config.solver_options(cfg)
    for key in ("method", "tol", "max_iter", "order"):
        val = getattr(args, key)
        if val is not None:
            opts[key] = val
    if args.petsc_option:
        opts["petsc_options"] = {**opts.get("petsc_options", {}), **_petsc_options(args.petsc_option)}
    world = _world()
    if world is not None and not getattr(problem.grid, "is_mesh", False) and opts.get("backend", "auto") != "fem":
        # (a grid configuration with backend = "fem" is solved on a mesh, distributed by DOLFINx)
        if problem.kind == "evolutive":
            # one finite-difference solve over every rank (PETSc DMDA); meshes distribute by their own comm
            opts["comm"] = world
        elif world.rank == 0:
            print(f"mfgpde: note: the ergodic problem on a grid is not distributed; each of the {world.size} ranks "
                  "solves it (run it without mpiexec, or on a mesh)", file=sys.stderr)
    rank = _rank()
    size = problem.grid.describe().get("dofs", problem.grid.shape)  # collective on a distributed mesh
    if rank == 0:
        print(f"mfgpde: solving {problem.name} ({problem.kind}, "
              + (f"mesh with {size} dofs" if getattr(problem.grid, "is_mesh", False) else f"grid {problem.grid.shape}")
              + (f", {problem.nt} steps" if problem.kind == "evolutive" else "") + f") with {opts.get('method', 'newton')}"
              + (f" on {world.size} ranks" if "comm" in opts else ""),
              file=sys.stderr)
    t0 = time.perf_counter()
    result = solve(problem, verbose=False if args.quiet else (True if args.verbose else None), **opts)
    summary = result.summary()
    summary["wall_time_s"] = result.diagnostics["wall_time_s"]
    summary["config"] = os.path.abspath(args.config)
    # created only now, on every rank (exist_ok: no race), so a refused or failed solve leaves no folder
    os.makedirs(args.out, exist_ok=True)
    _write_outputs(args, result, summary, rank, figure)
    if rank == 0:
        d = result.diagnostics
        print(f"mfgpde: {d['status']} after {d['iterations']} iterations, residual {d['residual']:.2e}, "
              f"mass error {d['mass_error']:.1e}, min density {d['min_density']:.2e}, "
              f"{time.perf_counter() - t0:.2f} s -> {args.out}", file=sys.stderr)
        print(f"mfgpde: {describe_error_estimate(result)}", file=sys.stderr)
    return 0 if result.converged else 2


def describe_error_estimate(result):
    """One line: the result's order and estimated errors, or why there is no estimate."""
    est = getattr(result, "error_estimate", None)
    order = result.diagnostics.get("order", 1)
    if not est:
        why = result.diagnostics.get("error_estimate_unavailable", "not computed")
        return f"order {order}, no error estimate ({why})"
    if "m_L1_final" in est:
        return (f"order {order}, estimated error: m(T) L1 {est['m_L1_final']:.1e}, m(T) max rel "
                f"{est['m_max_rel_final']:.1e}, grad U weighted {est['grad_U_weighted']:.1e}, U on the support "
                f"{est['U_max_support']:.1e}")
    return (f"order {order}, estimated error: m L1 {est['m_L1']:.1e}, grad u weighted {est['grad_u_weighted']:.1e}"
            + (f", rho {est['rho']:.1e}" if "rho" in est else ""))


def main(argv=None):
    """Run ``mfgpde VERB ...``; returns the exit code.

    0: done (converged); 1: an error, with a one-line message naming the cause (or every member
    of a sweep failed); 2: finished but not converged (or some members failed); 130: Ctrl-C;
    143: SIGTERM.
    """
    parser = argparse.ArgumentParser(prog="mfgpde", description="Mean-field game PDE solver")
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("solve", help="solve a configuration and write solution.nc (FD) or solution.xdmf/.npz (FEM), "
                       "solution.png, summary.json")
    p.add_argument("config", help="TOML configuration (see solvers/)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--method", choices=["newton", "fixed_point", "fictitious_play"])
    p.add_argument("--tol", type=float)
    p.add_argument("--max-iter", dest="max_iter", type=int)
    p.add_argument("--order", type=int, choices=[1, 2],
                   help="1: the monotone first-order scheme; 2: Richardson extrapolation over the grids with 1, 1/2 "
                        "and 1/4 of the points and steps (second order for smooth solutions, about 1.2x the cost; "
                        "needs every axis and nt divisible by 4)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--petsc-option", action="append", metavar="KEY=VALUE",
                   help="PETSc option of a distributed FD solve (mpiexec -n N), under the prefix mfgpde_: step_* "
                        "(the preconditioner's step solves: given, they are PETSc KSP solves instead of patch "
                        "multigrid), sweep_* (the half-sweeps' step solves), newton_* "
                        "(the Newton systems' FGMRES); e.g. --petsc-option step_pc_type=gamg; repeatable")
    p.add_argument("-v", "--verbose", action="store_true", help="progress line per iteration")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress lines (the package's log level WARNING); errors and the final line remain")
    p.set_defaults(func=_solve)
    _register_extra_verbs(sub)
    args = parser.parse_args(argv)
    # long solves log their progress (INFO, rank 0); -q keeps warnings only
    enable_logging(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    previous = _terminate_as_exception()
    global _stop
    from .parallel.stop import StopTogether

    # under mpiexec: a signal to any rank, or an error that the other ranks do not reach, ends every rank
    _stop = StopTogether.install()
    try:
        try:
            code = _run(args)
        except BaseException:  # a bug's traceback on one rank: the others must not wait for it
            if _stop is not None:
                import traceback

                traceback.print_exc()
                _stop.failed(1)
            raise
        if _stop is not None and code in (1, 130, 143):
            _stop.failed(code)
        return code
    finally:
        if _stop is not None:  # (first: it restores the handlers it replaced, ours among them)
            _stop.close()
            _stop = None
        if previous is not _NOT_INSTALLED:
            # None: the previous handler was not set from Python; the default is the closest
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


#: the running :class:`~mfgpde.parallel.stop.StopTogether` of an ``mpiexec`` job, else None
_stop = None


def _run(args):
    """The verb, with its errors and signals turned into messages and exit codes."""
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
    except _Terminated:
        # a batch system's SIGTERM (Slurm at the time limit, scancel): the staging folders are
        # removed by their finally blocks, the previous results stay as they were
        print(f"mfgpde {args.verb}: terminated (SIGTERM)", file=sys.stderr)
        return 143


_NOT_INSTALLED = object()


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``finally`` blocks (staging clean-up) run."""


def _terminate_as_exception():
    """Turn SIGTERM into :class:`_Terminated` (the default handler kills the process without
    running ``finally``: staged ``.tmp-*`` folders were left behind). Returns the previous handler,
    or ``_NOT_INSTALLED`` when not in the main thread (signals cannot be set there).
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        return _NOT_INSTALLED

    def handler(signum, frame):
        raise _Terminated()

    return signal.signal(signal.SIGTERM, handler)


def _register_extra_verbs(sub):
    """Verbs of the optional parts (well-posedness studies, validation, sweeps, the zoo)."""
    from .parallel.cli import register as reg_sweep
    from .studies.cli import register as reg_studies
    from .validate.cli import register as reg_validate
    from .zoo.cli import register as reg_zoo

    reg_studies(sub)
    reg_validate(sub)
    reg_sweep(sub)
    reg_zoo(sub)


if __name__ == "__main__":
    sys.exit(main())
