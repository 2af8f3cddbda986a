"""Whole-process timings of `mfgpde wellposed` (the targets of the well-posedness issue).

Cases, each run ``--repeat`` times as a separate process (median and every run recorded), with
the verdict, the number of deflated searches and the U order on the support of m read back
from ``wellposed.json``:

* ``c1``: ``mfgpde wellposed solvers/cnf_gaussian_1d.toml`` (200 cells x 48 steps, nu = 0);
* ``c1_study``: the same with ``--refine 50 100 200 --lambdas 1 0.1 0.01``;
* ``b2``: ``mfgpde wellposed solvers/lst_case2.toml --no-controls`` (2D, 50^2 x 50);
* ``aggregation_branches``: the deflated continuation of the aggregation control in alpha from 0
  to 0.6 (``--parameter coupling.scale``), solutions per value recorded.

Pass ``--python`` to time another checkout's interpreter and ``--root`` its tree (side-by-side
runs against a release), and ``--case`` to run a subset.

Run:  python benchmarks/wellposed.py [--repeat 3] [--case c1 b2] [--out benchmarks/results/wellposed.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = {
    "c1": ["solvers/cnf_gaussian_1d.toml"],
    "c1_study": ["solvers/cnf_gaussian_1d.toml", "--refine", "50", "100", "200", "--lambdas", "1", "0.1", "0.01"],
    "b2": ["solvers/lst_case2.toml", "--no-controls"],
    "aggregation_branches": ["solvers/aggregation_control.toml", "--no-controls", "--parameter", "coupling.scale",
                             "--values", "0", "-0.05", "-0.1", "-0.15", "-0.2", "-0.25", "-0.3", "-0.35", "-0.4",
                             "-0.5", "-0.6"],
}


def run_case(python, root, args, timeout):
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.run([python, "-m", "mfgpde", "wellposed", os.path.join(root, args[0]), "--out", out,
                               *args[1:]], cwd=root, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - t0
        row = {"wall_s": wall, "exit_code": proc.returncode}
        path = os.path.join(out, "wellposed.json")
        if os.path.exists(path):
            rep = json.load(open(path))
            ms = rep.get("multi_start", {})
            row.update(verdict=ms.get("verdict"), evidence=ms.get("evidence"),
                       deflated_searches=ms.get("deflated_searches"), spread_m=ms.get("spread_m"),
                       start_spread=ms.get("start_spread"), launch_spread=ms.get("launch_spread"),
                       paths=[r.get("path") for r in ms.get("runs", [])],
                       controls={k: v.get("passed") for k, v in rep.get("controls", {}).items()
                                 if isinstance(v, dict) and "passed" in v},
                       stages_s={k: v.get("wall_time_s") for k, v in rep.items()
                                 if isinstance(v, dict) and "wall_time_s" in v})
            if "continuation" in rep:
                row["solutions_per_value"] = rep["continuation"].get("solutions_per_value")
                row["first_value_with_several"] = rep["continuation"].get("first_value_with_several")
            ref = rep.get("refinement", {})
            for key in ("order_m", "order_U_support", "order_U_weighted", "order_U"):
                if key in ref:
                    row[key] = ref[key]
        else:
            row["stderr_tail"] = proc.stderr[-2000:]
        return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--case", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--root", default=ROOT)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "wellposed.json"))
    a = ap.parse_args()
    results = {"machine_cores": len(os.sched_getaffinity(0)), "root": a.root, "cases": {}}
    for name in a.case:
        runs = [run_case(a.python, a.root, CASES[name], a.timeout) for _ in range(a.repeat)]
        results["cases"][name] = {"command": "mfgpde wellposed " + " ".join(CASES[name]) + " --out DIR",
                                  "median_wall_s": statistics.median(r["wall_s"] for r in runs), "runs": runs}
        print(f"{name}: median {results['cases'][name]['median_wall_s']:.1f} s over {a.repeat} runs; "
              f"verdict {runs[-1].get('verdict')}", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(results, fh, indent=1)
    os.replace(tmp, a.out)   # atomically: no half-written results file


if __name__ == "__main__":
    main()
