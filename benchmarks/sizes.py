"""Time and peak memory per unknown of the LOG2D case against the grid; writes JSON.

Each size runs in a fresh process (after a warm-up solve at 32^2 there, so JIT compilation is
excluded and the peak RSS is that size's), ``n^2`` points x ``n`` steps, residual 1e-8::

    python benchmarks/sizes.py --n 32 64 128 256 --out benchmarks/results/log2d_sizes.json

Issue 9's target: time per space-time unknown grows at most 2x from 32^2 to 256^2, and
256^2 x 256 fits in 16 GB.
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

CHILD = r"""
import json, sys
sys.path.insert(0, {here!r}); sys.path.insert(0, {root!r})
import run
run.run_once("LOG2D_32")
print(json.dumps(run.run_once({name!r})))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--out", default=os.path.join(HERE, "results", "log2d_sizes.json"))
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    from mfgpde.result import write_json

    res = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "case": "LOG2D, n^2 x n, residual 1e-8", "runs": []}
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    for n in args.n:
        out = subprocess.run([sys.executable, "-c", CHILD.format(here=HERE, root=ROOT, name=f"LOG2D_{n}")],
                             capture_output=True, text=True, env=env)
        if out.returncode != 0:
            entry = {"n": n, "error": out.stderr[-2000:]}
        else:
            entry = dict(json.loads(out.stdout.strip().splitlines()[-1]), n=n)
            unknowns = 2 * n * n * (n + 1)
            entry["unknowns"] = unknowns
            entry["us_per_unknown"] = 1e6 * entry["wall_time_s"] / unknowns
            entry["bytes_per_unknown"] = entry["peak_rss_mb"] * 2**20 / unknowns
        res["runs"].append(entry)
        base = res["runs"][0].get("us_per_unknown")
        if base and "us_per_unknown" in entry:
            entry["growth_vs_first"] = entry["us_per_unknown"] / base
        print(f"[sizes] {n}^2: {entry.get('wall_time_s')} s, {entry.get('us_per_unknown')} us/unknown, "
              f"peak {entry.get('peak_rss_mb')} MB", file=sys.stderr, flush=True)
        write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
