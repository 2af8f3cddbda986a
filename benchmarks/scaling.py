"""Time of one 2D solve against the number of threads or MPI ranks; writes JSON to ``benchmarks/results/``.

The LOG2D case (quadratic H, log coupling plus a potential, nu = 0.1, periodic unit square,
``n^2`` points x ``n`` steps, residual 1e-8) is solved once per worker count in a fresh process
whose Numba, BLAS and FFT thread pools all get that many threads (``NUMBA_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MFGPDE_THREADS``), after a warm-up solve at
16^2 in the same process (JIT compilation excluded). Peak resident memory (RSS) of the process
is reported beside each time. The same command measures a laptop or a 64-core node::

    python benchmarks/scaling.py --n 128 --workers 1 2 4 8 16

With ``--ranks`` the same case is solved by the distributed finite-difference solver
(:mod:`mfgpde.fd.distributed`, PETSc DMDA) under ``mpiexec -n R`` for each R, one thread per rank;
R = 1 runs the distributed code on one rank, and the serial solver (multigrid steps, grid
sequencing) is timed in the same run as the reference. Peak RSS is the largest over the ranks::

    python benchmarks/scaling.py --n 128 --ranks 1 2 4 8 16 --out benchmarks/results/scaling_ranks.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: the benchmark problem, shared by the two child scripts (formatted with the dimension first)
PROBLEM = r"""def problem(n):
    if {dim} == 3:  # CUBE3D of benchmarks/run.py
        g = mp.TensorGrid([(0, 1)] * 3, n, "periodic")
        return mp.MFGProblem(g, 1.0, n, 0.1, mp.QuadraticHamiltonian(),
                             lambda x, y, z: 1 + 0.5 * np.cos(2 * np.pi * x) * np.cos(2 * np.pi * z),
                             coupling=mp.LogCoupling(), terminal=lambda x, y, z: 0.5 * np.cos(2 * np.pi * (x + y)),
                             normalize=True)
    g = mp.TensorGrid([(0, 1), (0, 1)], n, "periodic")
    return mp.MFGProblem(g, 1.0, n, 0.1, mp.QuadraticHamiltonian(),
                         lambda x, y: 1 + 0.5 * np.cos(2 * np.pi * x) * np.cos(2 * np.pi * y),
                         coupling=mp.LogCoupling() + mp.PotentialCoupling(
                             lambda x, y: np.sin(2 * np.pi * x) + np.cos(2 * np.pi * y)),
                         terminal=lambda x, y: 0.5 * np.cos(2 * np.pi * (x - y)), normalize=True)
"""

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import numpy as np
import mfgpde as mp

{problem}mp.solve(problem(8 if {dim} == 3 else 16), tol=1e-8, verbose=False)
t0 = time.perf_counter()
r = mp.solve(problem({n}), tol=1e-8, verbose=False, linear_solver={linear_solver!r})
wall = time.perf_counter() - t0
d = r.diagnostics
print(json.dumps({{"wall_time_s": wall, "converged": d["converged"], "iterations": d["iterations"],
                  "residual": d["residual"], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


CHILD_MPI = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from mpi4py import MPI
import numpy as np
import mfgpde as mp
from mfgpde.fd.distributed import solve_distributed

{problem}comm = MPI.COMM_WORLD
solve_distributed(problem(8 if {dim} == 3 else 16), comm, tol=1e-8, verbose=False)
comm.barrier()
t0 = time.perf_counter()
r = solve_distributed(problem({n}), comm, tol=1e-8, verbose=False)
wall = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
rss = comm.allreduce(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, op=MPI.MAX)
d = r.diagnostics
if comm.rank == 0:
    print(json.dumps({{"wall_time_s": wall, "converged": d["converged"], "iterations": d["iterations"],
                      "residual": d["residual"], "peak_rss_mb_per_rank": rss, "rank_grid": d["rank_grid"],
                      "krylov_iterations": [h.get("krylov_iterations") for h in r.history]}}))
"""


def run_ranks(n, ranks, dim=2):
    env = dict(os.environ)
    for key in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MFGPDE_THREADS"):
        env[key] = "1"
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    code = CHILD_MPI.format(root=ROOT, n=n, dim=dim, problem=PROBLEM.replace("{dim}", str(dim)))
    out = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, "-c", code],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return {"ranks": ranks, "error": out.stderr[-2000:]}
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    rec["ranks"] = ranks
    return rec


def _record(res, rec, label, rss_key, out):
    """Append one run, its speed-up over the first, print a line and rewrite the JSON."""
    from mfgpde.result import write_json

    res["runs"].append(rec)
    base = res["runs"][0].get("wall_time_s")
    if base and "wall_time_s" in rec:
        rec["speedup"] = base / rec["wall_time_s"]
    print(f"[scaling] {label}: " + (f"{rec['wall_time_s']:.2f} s  speed-up {rec.get('speedup', 1):.2f}  "
                                    f"peak RSS {rec[rss_key]:.0f} MB" if "error" not in rec else rec["error"][-300:]),
          file=sys.stderr, flush=True)
    write_json(out, res)


def main_ranks(args):

    case = f"CUBE3D {args.n}^3" if args.dim == 3 else f"LOG2D {args.n}^2"
    res = {"case": f"{case} x {args.n}, residual 1e-8, distributed FD (PETSc DMDA)",
           "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "node": platform.node()},
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "serial_reference": run(args.n, 1, "auto", args.dim), "runs": []}
    ref = res["serial_reference"]
    print("[scaling] serial solver (1 thread): " + (f"{ref['wall_time_s']:.2f} s" if "error" not in ref
                                                     else ref["error"][-300:]), file=sys.stderr, flush=True)
    for r in args.ranks:
        _record(res, run_ranks(args.n, r, args.dim), f"ranks {r:3d}", "peak_rss_mb_per_rank", args.out)
    return res


def run(n, workers, linear_solver, dim=2):
    env = dict(os.environ)
    for key in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MFGPDE_THREADS"):
        env[key] = str(workers)
    code = CHILD.format(root=ROOT, n=n, linear_solver=linear_solver, dim=dim,
                        problem=PROBLEM.replace("{dim}", str(dim)))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return {"workers": workers, "error": out.stderr[-2000:]}
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    rec["workers"] = workers
    return rec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="grid points per axis (and time steps)")
    ap.add_argument("--workers", type=int, nargs="*", default=None,
                    help="thread counts (default 1, 2, 4, ... up to the number of cores)")
    ap.add_argument("--linear-solver", default="auto", choices=("auto", "direct", "iterative"))
    ap.add_argument("--dim", type=int, default=2, choices=(2, 3),
                    help="2: LOG2D (n^2 points), 3: CUBE3D of benchmarks/run.py (n^3 points), n steps")
    ap.add_argument("--ranks", type=int, nargs="*", default=None,
                    help="MPI rank counts of the distributed FD solver (instead of threads)")
    ap.add_argument("--out", default=None, help="JSON file (default results/scaling.json, or scaling_ranks.json)")
    args = ap.parse_args(argv)
    if args.n < 8:
        ap.error(f"--n must be >= 8, got {args.n}")
    sys.path.insert(0, ROOT)
    if args.ranks is not None:
        if not args.ranks or any(r < 1 for r in args.ranks):
            ap.error("--ranks needs rank counts >= 1")
        args.out = args.out or os.path.join(HERE, "results", "scaling_ranks.json")
        return main_ranks(args)
    args.out = args.out or os.path.join(HERE, "results", "scaling.json")
    workers = args.workers
    if not workers:
        cpus = os.cpu_count() or 1
        workers = [w for w in (1, 2, 4, 8, 16, 32, 64, 128) if w <= cpus]
    if any(w < 1 for w in workers):
        ap.error("--workers must be >= 1")
    sys.path.insert(0, ROOT)

    case = f"CUBE3D {args.n}^3" if args.dim == 3 else f"LOG2D {args.n}^2"
    res = {"case": f"{case} x {args.n}, residual 1e-8", "linear_solver": args.linear_solver,
           "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "node": platform.node()},
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": []}
    for w in workers:
        _record(res, run(args.n, w, args.linear_solver, args.dim), f"workers {w:3d}", "peak_rss_mb", args.out)
    return res


if __name__ == "__main__":
    main()
