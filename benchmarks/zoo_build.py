"""Build every zoo reference and rate the reference models (the zoo issue's targets).

1. ``mfgpde zoo build --all --force`` as one process into a fresh cache: the whole wall time and,
   per entry, the build time and the estimated error read back from the stored files;
2. the exact and the perturbed model (``--model exact`` / ``perturbed``) of every entry that has
   an exact model, rated with ``mfgpde zoo score`` as separate processes, each appending to the
   leaderboard ``benchmarks/results/zoo_leaderboard.{json,md}``; per rating the wall time of the
   process, whether every bar-carrying metric of the exact model is below twice its bar, and
   whether every one of the perturbed model is resolved.

Writes ``benchmarks/results/zoo_build.json`` (read by the docs' catalogue page).

Run:  python benchmarks/zoo_build.py [--cache DIR] [--skip-build]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=None, help="cache directory (default: a fresh temporary one)")
    ap.add_argument("--skip-build", action="store_true", help="rate against an existing --cache only")
    args = ap.parse_args(argv)
    cache = args.cache or tempfile.mkdtemp(prefix="zoo-bench-")
    env = dict(os.environ, MFGPDE_CACHE=cache)
    sys.path.insert(0, ROOT)
    os.environ["MFGPDE_CACHE"] = cache
    from mfgpde.zoo import catalogue, store

    out = {"cache": cache, "machine_cores": os.cpu_count()}
    if not args.skip_build:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mfgpde", "zoo", "build", "--all", "--force", "-q"], env=env,
                       cwd=ROOT, check=True)
        out["build_all_wall_s"] = time.perf_counter() - t0
    entries = {}
    for e in catalogue.ENTRIES.values():
        ref = store.load(e.name)
        entries[e.name] = {"family": e.family, "grid": e.grid, "dim": e.dim,
                           "build_time_s": ref.build_time_s if ref else None,
                           "estimated_error": ref.estimated_error if ref else None,
                           "error_estimate": ref.error_estimate if ref else None}
    out["entries"] = entries
    board = os.path.join(RESULTS, "zoo_leaderboard")
    for suffix in (".json", ".md"):
        if os.path.exists(board + suffix):
            os.remove(board + suffix)
    ratings = {}
    with tempfile.TemporaryDirectory() as tmp:
        for e in catalogue.ENTRIES.values():
            if e.exact is None:
                continue
            for model in ("exact", "perturbed"):
                t0 = time.perf_counter()
                target = os.path.join(tmp, f"{e.name}-{model}")
                subprocess.run([sys.executable, "-m", "mfgpde", "zoo", "score", e.name, "--model", model, "--out",
                                target, "--leaderboard", board, "-q"], env=env, cwd=ROOT, check=True)
                wall = time.perf_counter() - t0
                with open(os.path.join(target, "score.json")) as fh:
                    metrics = json.load(fh)
                verdicts = metrics.get("verdicts") or {}
                ratings[f"{e.name}/{model}"] = {
                    "wall_s": wall,
                    "verdicts": {k: v["verdict"] for k, v in verdicts.items()},
                    "all_below_bar": all(v["verdict"] != "resolved" for v in verdicts.values()),
                    "all_resolved": bool(verdicts) and all(v["verdict"] == "resolved" for v in verdicts.values())}
                print(f"{e.name} {model}: {wall:.1f} s, " + ", ".join(f"{k} {v}" for k, v in
                                                                       ratings[f'{e.name}/{model}']['verdicts'].items()),
                      file=sys.stderr)
    out["ratings"] = ratings
    out["targets"] = {
        "entries": len(entries), "build_all_wall_s": out.get("build_all_wall_s"),
        "exact_below_bar_everywhere": all(r["all_below_bar"] for k, r in ratings.items() if k.endswith("/exact")),
        "perturbed_flagged_everywhere": all(r["all_resolved"] for k, r in ratings.items() if k.endswith("/perturbed")),
        "max_score_wall_s": max((r["wall_s"] for r in ratings.values()), default=None)}
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "zoo_build.json"), "w") as fh:
        json.dump(out, fh, indent=2, default=float)
        fh.write("\n")
    print(json.dumps(out["targets"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
