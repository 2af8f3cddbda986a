"""The timing and the JSON line shared by the ``peer_mfgsolver_*.py`` scripts (run in the peer's venv)."""

import contextlib
import io
import json
import time


def time_peer(make_solver, case, iterations):
    """Build the peer's solver, run ``iterations`` policy iterations, print one JSON line.

    The time includes the set-up (``make_solver()``), as ours includes building the problem's
    operators; the peer's per-iteration printing is silenced.
    """
    t0 = time.perf_counter()
    solver = make_solver()
    with contextlib.redirect_stdout(io.StringIO()):
        solver.solve(maxit=iterations)
    wall = time.perf_counter() - t0
    print(json.dumps({"peer": "mfgsolver", "case": case, "iterations": iterations, "wall_time_s": wall,
                      "fp_residual": float(solver.residual_FP_history[-1]),
                      "hjb_residual": float(solver.residual_HJB_history[-1])}))
