"""Make a cosmic-ray session's surviving mutants pending again, to run them against a larger test selection.

Usage: mutation_rerun.py SESSION.sqlite. Used by ``.ci/mutation`` when ``RESUME=SESSION.sqlite`` is
set (after tests were added, or a selection turned out to miss the tests of part of a module).
A mutant killed by a selection is killed by any superset of it, so re-running the survivors with
the larger selection gives the score the larger selection would give on the whole session.
"""
import sys

from cosmic_ray.work_db import WorkDB, WorkResultStorage, use_db

with use_db(sys.argv[1], WorkDB.Mode.open) as db:
    survivors = [item.job_id for item, result in db.completed_work_items
                 if result.test_outcome is not None and result.test_outcome.name == "SURVIVED"]
    # cosmic-ray has no public way to delete a result: its own session factory
    with db._session_maker.begin() as session:
        session.query(WorkResultStorage).filter(WorkResultStorage.job_id.in_(survivors)).delete(synchronize_session=False)
print(f"{len(survivors)} surviving mutants are pending again")
