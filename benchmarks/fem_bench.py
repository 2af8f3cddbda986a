"""FEM benchmark: the crowd-room MFG (about 20,000 vertices, 50 steps), serial and on 2 ranks.

    .venv/bin/python benchmarks/fem_bench.py [--repeat 1] [--h 0.0105] [--ranks 1 2]

Each run is a fresh ``mfgpde solve`` process (``mpiexec -n N`` for N > 1), so the timings
include nothing cached in memory; the forms are compiled once into ~/.cache/fenics by a warm-up
run. The solve time is the ``wall_time_s`` of summary.json (mesh generation and output excluded);
the end-to-end process time is recorded too. Writes benchmarks/results/fem.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def run(cfg, ranks, out):
    cmd = [sys.executable, "-m", "mfgpde", "solve", cfg, "--out", out, "--no-plot"]
    if ranks > 1:
        cmd = [os.path.join(os.path.dirname(sys.executable), "mpiexec"), "-n", str(ranks)] + cmd
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    with open(os.path.join(out, "summary.json")) as fh:
        s = json.load(fh)
    return {"solve_s": s["wall_time_s"], "process_s": total, "iterations": s["iterations"], "residual": s["residual"],
            "mass_error": s["mass_error"], "min_density": s["min_density"], "dofs": s["dofs"]}


def main(argv=None):
    from mfgpde.result import write_json

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--h", type=float, default=0.0105, help="mesh size of the room (0.0105: ~20k vertices)")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default=os.path.join(HERE, "results", "fem.json"))
    args = ap.parse_args(argv)
    with open(os.path.join(ROOT, "solvers", "crowd_room.toml")) as fh:
        text = fh.read().replace("h = 0.0105", f"h = {args.h}")
    tmp = tempfile.mkdtemp(prefix="mfgpde-fem-bench-")
    cfg = os.path.join(tmp, "crowd.toml")
    with open(cfg, "w") as fh:
        fh.write(text)
    warm = cfg.replace("crowd.toml", "warm.toml")
    with open(warm, "w") as fh:
        fh.write(text.replace(f"h = {args.h}", "h = 0.08").replace("nt = 50", "nt = 4"))
    run(warm, 1, os.path.join(tmp, "warm"))  # JIT-compile the forms once
    results = {}
    for n in args.ranks:
        rows = [run(cfg, n, os.path.join(tmp, f"r{n}-{k}")) for k in range(args.repeat)]
        results[str(n)] = {"runs": rows, "median_solve_s": statistics.median(r["solve_s"] for r in rows),
                           "median_process_s": statistics.median(r["process_s"] for r in rows)}
        print(f"ranks={n}: median solve {results[str(n)]['median_solve_s']:.1f} s "
              f"({rows[0]['iterations']} Newton iterations, {rows[0]['dofs']} dofs)", flush=True)
    out = {"case": "crowd_room", "h": args.h, "nt": 50, "repeat": args.repeat, "machine_cores": os.cpu_count(),
           "results": results}
    if "1" in results and "2" in results:
        out["speedup_2_ranks"] = results["1"]["median_solve_s"] / results["2"]["median_solve_s"]
        print(f"speed-up on 2 ranks: {out['speedup_2_ranks']:.2f}")
    write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
