"""Side-by-side timings of two checkouts of mfgpde on the same cases, in one invocation.

Each case runs in a fresh process per checkout (a warm-up solve first, so JIT compilation is
excluded), ``--repeat`` times; medians, their ratio and the peak RSS are written to JSON::

    git worktree add /tmp/base <commit>
    python benchmarks/compare.py --base /tmp/base --only B1 B2 LOG2D_64 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CHILD = r"""
import json, sys
sys.path.insert(0, {here!r})
import run  # inserts this checkout's root first; the checkout under test goes in front of it
sys.path.insert(0, {root!r})
import mfgpde
assert mfgpde.__file__.startswith({root!r}), mfgpde.__file__
run.run_once({small!r})
print(json.dumps([run.run_once({name!r}) for _ in range({repeat})]))
"""

WARMUP = {"B1": "B1", "B2": "B2", "CNF2D_64": "CNF1D_100", "CNF2D_128": "CNF1D_100", "CNF1D_400": "CNF1D_100"}


def measure(root, name, repeat):
    small = WARMUP.get(name, "LOG2D_32" if name.startswith("LOG2D") else name)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    code = CHILD.format(here=HERE, root=root, name=name, repeat=repeat, small=small)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    runs = json.loads(out.stdout.strip().splitlines()[-1])
    return {"runs": runs, "median_s": statistics.median(r["wall_time_s"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="root of the baseline checkout")
    ap.add_argument("--only", nargs="+", default=["B1", "B2", "LOG2D_64"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "compare.json"))
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    from mfgpde.result import write_json

    base_rev = subprocess.run(["git", "-C", args.base, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
    res = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()}, "base": base_rev,
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cases": {}}
    for name in args.only:
        entry = {"base": measure(os.path.abspath(args.base), name, args.repeat),
                 "this": measure(ROOT, name, args.repeat)}
        if "median_s" in entry["base"] and "median_s" in entry["this"]:
            entry["speedup"] = entry["base"]["median_s"] / entry["this"]["median_s"]
        res["cases"][name] = entry
        print(f"[compare] {name}: base {entry['base'].get('median_s')} s, this {entry['this'].get('median_s')} s, "
              f"speed-up {entry.get('speedup')}", file=sys.stderr, flush=True)
        write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
