"""Benchmarks of the finite-difference core; writes ``benchmarks/results/core.json``.

Each case is run once in a fresh subprocess with an empty Numba cache (``cold``: JIT
compilation included), then ``--repeat`` times in one warm process (``warm``: median).
Where the peer ``mfgsolver`` is installed (``.venv-peer``, see README), B1 (20 policy
iterations) and B2 (``MfgBase2D``, 40 policy iterations) are also run with it in the same
invocation, each in fresh processes, and the ratio of medians is reported.

Usage::

    python benchmarks/run.py [--only B1 B2 ...] [--repeat 3] [--no-cold] [--no-peer]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def case_problem(name):
    import numpy as np

    import mfgpde as mp
    from mfgpde import config

    if name == "B1":
        return config.build_problem(os.path.join(ROOT, "solvers", "lst_case1.toml")), dict(tol=1e-10)
    if name == "B2":
        return config.build_problem(os.path.join(ROOT, "solvers", "lst_case2.toml")), dict(tol=1e-10)
    if name == "LOG2D_128":
        g = mp.TensorGrid([(0, 1), (0, 1)], 128, "periodic")
        p = mp.MFGProblem(g, 1.0, 128, 0.1, mp.QuadraticHamiltonian(),
                          lambda x, y: 1 + 0.5 * np.cos(2 * np.pi * x) * np.cos(2 * np.pi * y),
                          coupling=mp.LogCoupling() + mp.PotentialCoupling(
                              lambda x, y: np.sin(2 * np.pi * x) + np.cos(2 * np.pi * y)),
                          terminal=lambda x, y: 0.5 * np.cos(2 * np.pi * (x - y)), normalize=True, name="log2d_128")
        return p, dict(tol=1e-8)
    if name.startswith("LOG2D_") and name != "LOG2D_128":
        n = int(name.split("_")[1])
        p, opts = case_problem("LOG2D_128")
        g = mp.TensorGrid([(0, 1), (0, 1)], n, "periodic")
        p = mp.MFGProblem(g, 1.0, n, 0.1, p.hamiltonian, lambda x, y: 1 + 0.5 * np.cos(2 * np.pi * x) * np.cos(2 * np.pi * y),
                          coupling=p.coupling, terminal=lambda x, y: 0.5 * np.cos(2 * np.pi * (x - y)), normalize=True,
                          name=f"log2d_{n}")
        return p, opts
    if name == "CUBE3D_48":
        p, opts = case_problem("CUBE3D_32")
        g = mp.TensorGrid([(0, 1)] * 3, 48, "periodic")
        return mp.MFGProblem(g, 1.0, 48, 0.1, p.hamiltonian,
                             lambda x, y, z: 1 + 0.5 * np.cos(2 * np.pi * x) * np.cos(2 * np.pi * z),
                             coupling=p.coupling, terminal=lambda x, y, z: 0.5 * np.cos(2 * np.pi * (x + y)),
                             normalize=True, name="cube3d_48"), opts
    if name == "CUBE3D_32":
        g = mp.TensorGrid([(0, 1)] * 3, 32, "periodic")
        p = mp.MFGProblem(g, 1.0, 32, 0.1, mp.QuadraticHamiltonian(),
                          lambda x, y, z: 1 + 0.5 * np.cos(2 * np.pi * x) * np.cos(2 * np.pi * z),
                          coupling=mp.LogCoupling(), terminal=lambda x, y, z: 0.5 * np.cos(2 * np.pi * (x + y)),
                          normalize=True, name="cube3d_32")
        return p, dict(tol=1e-8)
    if name == "CNF2D_128":
        return config.build_problem(os.path.join(ROOT, "solvers", "cnf_gmm8_2d.toml")), dict(tol=1e-8)
    if name == "CNF2D_64":
        cfg = config.load(os.path.join(ROOT, "solvers", "cnf_gmm8_2d.toml"))
        cfg["grid"]["shape"], cfg["time"]["nt"] = [64, 64], 32
        return config.build_problem(cfg), dict(tol=1e-8)
    if name.startswith("CNF1D_"):
        from mfgpde.generative.densities import gaussian
        from mfgpde.generative.presets import cnf_problem

        n = int(name.split("_")[1])
        g = mp.TensorGrid([(-5, 5)], n, "noflux")
        return cnf_problem(g, gaussian([1.0], 0.25), lam=0.1, T=1.0, nt=n // 4, name=f"cnf1d_{n}"), dict(tol=1e-9)
    if name.startswith("ERGODIC"):
        # the ergodic problem of tests/test_ergodic.py from a cold start: quadratic H, log coupling
        # (floor 1e-10) and a confining potential |x|^2 / 2 on [-8, 8]^d
        dim, n = (1, 400) if name == "ERGODIC1D_400" else (2, int(name.split("_")[1]))
        g = mp.TensorGrid([(-8.0, 8.0)] * dim, n, "noflux")
        c = mp.LogCoupling(floor=1e-10) + mp.PotentialCoupling(lambda *xs: sum(x**2 for x in xs) / 2)
        return mp.ErgodicMFGProblem(g, 0.1 if dim == 1 else 0.5, mp.QuadraticHamiltonian(), coupling=c), dict(tol=1e-10)
    raise KeyError(name)


CASES = {"CNF2D_128": "2D CNF preset, 8-mode mixture to N(0, I), 128^2 x 64 steps (viscosity continuation)",
         "CNF2D_64": "the same at 64^2 x 32 steps",
         "CNF1D_400": "1D CNF (C1 data N(1, 0.5^2), lambda = 0.1), 400 x 100 steps (viscosity continuation)",
         "CNF1D_100": "the same at 100 x 25 steps",
         "B1": "1D congestion, 200 x 200 steps (LST case 1)", "B2": "2D congestion, 50^2 x 50 steps (LST case 2)",
         "LOG2D_128": "2D quadratic H + log coupling, 128^2 x 128 steps",
         "CUBE3D_32": "3D quadratic H + log coupling, 32^3 x 32 steps",
         "CUBE3D_48": "3D quadratic H + log coupling, 48^3 x 48 steps",
         "LOG2D_32": "2D quadratic H + log coupling, 32^2 x 32 steps",
         "LOG2D_64": "2D quadratic H + log coupling, 64^2 x 64 steps",
         "LOG2D_256": "2D quadratic H + log coupling, 256^2 x 256 steps",
         "ERGODIC1D_400": "1D ergodic MFG, log coupling + |x|^2/2 on [-8, 8], 400 points, cold start",
         "ERGODIC2D_48": "2D ergodic MFG, log coupling + |x|^2/2 on [-8, 8]^2, 48^2 points, cold start"}


def run_once(name, method="newton"):
    import mfgpde as mp

    p, opts = case_problem(name)
    if os.environ.get("MFGPDE_BENCH_NO_ESTIMATE") and "error_estimate" in inspect.signature(mp.solve).parameters:
        # the solve alone, without the coarse solve of its default error estimate (the comparable
        # path of releases that had no estimate)
        opts = dict(opts, error_estimate=False)
    t0 = time.perf_counter()
    r = mp.solve(p, method=method, **opts)
    wall = time.perf_counter() - t0
    d = r.diagnostics
    # peak resident memory of this process so far (in a cold run: of this one case)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall_time_s": wall, "converged": d["converged"], "iterations": d["iterations"], "residual": d["residual"],
            "mass_error": d["mass_error"], "min_density": d["min_density"], "method": method, "peak_rss_mb": rss}


def cold(name, method):
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="mfgpde-bench-cache-")
    code = (f"import json, time, sys; t0 = time.perf_counter(); sys.path.insert(0, {ROOT!r}); "
            f"sys.path.insert(0, {HERE!r}); import run; r = run.run_once({name!r}, {method!r}); "
            "r['process_time_s'] = time.perf_counter() - t0; print(json.dumps(r))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=HERE)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def peer(case, repeat):
    """The PyPI peer ``mfgsolver`` on ``case`` (B1 or B2), ``repeat`` fresh processes, or ``None``
    where its venv is missing."""
    py = os.path.join(ROOT, ".venv-peer", "bin", "python")
    if not os.path.exists(py):
        return None
    runs = []
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    for _ in range(repeat):
        out = subprocess.run([py, os.path.join(HERE, f"peer_mfgsolver_{case.lower()}.py")], capture_output=True,
                             text=True, env=env)
        if out.returncode != 0:
            return {"error": out.stderr[-2000:]}
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"runs": runs, "median_s": statistics.median(r["wall_time_s"] for r in runs)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=list(CASES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-cold", action="store_true")
    ap.add_argument("--no-peer", action="store_true", help="skip the mfgsolver runs of B1 and B2")
    ap.add_argument("--method", default="newton")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "core.json"))
    args = ap.parse_args(argv)
    from mfgpde.result import write_json

    results = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "node": platform.node()},
               "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cases": {}}
    for name in args.only:
        print(f"[bench] {name}: {CASES[name]}", file=sys.stderr, flush=True)
        entry = {"description": CASES[name]}
        if not args.no_cold:
            entry["cold"] = cold(name, args.method)
            print(f"[bench]   cold {entry['cold']}", file=sys.stderr, flush=True)
        run_once(name, args.method)  # warm-up in this process
        warm = [run_once(name, args.method) for _ in range(args.repeat)]
        entry["warm"] = warm
        entry["warm_median_s"] = statistics.median(w["wall_time_s"] for w in warm)
        print(f"[bench]   warm median {entry['warm_median_s']:.3f} s  ({warm[-1]})", file=sys.stderr, flush=True)
        if name in ("B1", "B2") and not args.no_peer:
            theirs = peer(name, args.repeat)
            if theirs is not None:
                entry["peer_mfgsolver"] = theirs
                if "median_s" in theirs:
                    entry["speedup_vs_mfgsolver"] = theirs["median_s"] / entry["warm_median_s"]
                print(f"[bench]   mfgsolver {theirs.get('median_s')}", file=sys.stderr, flush=True)
        results["cases"][name] = entry
        write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
