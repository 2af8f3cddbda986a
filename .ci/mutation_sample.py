"""Keep a uniform random sample of K mutants in a cosmic-ray session; mark the rest SKIPPED.

Usage: mutation_sample.py SESSION.sqlite K [SEED]. Used by ``.ci/mutation`` when ``SAMPLE=K``
is set: a module whose tests take a minute (Numba recompiles every mutated kernel, a preset's
tests solve MFGs) cannot run all of its ~1000 mutants on two cores, but the kill rate of a
uniform sample estimates the module's score with a binomial confidence interval, which
``mutation_score.py`` reports beside it.
"""
import random
import sys

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import WorkerOutcome, WorkResult

session, k = sys.argv[1], int(sys.argv[2])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
with use_db(session, WorkDB.Mode.open) as db:
    ids = sorted(item.job_id for item in db.pending_work_items)
    keep = set(random.Random(seed).sample(ids, min(k, len(ids))))
    for job in ids:
        if job not in keep:
            db.set_result(job, WorkResult(output="not in the sample", worker_outcome=WorkerOutcome.SKIPPED))
print(f"sampled {len(keep)} of {len(ids)} mutants (seed {seed})")
