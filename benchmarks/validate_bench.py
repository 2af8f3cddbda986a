"""Timing of ``validate_flow`` on a 2D 128 x 128 grid with 64 steps; writes results/validate.json.

The reference is a 2D MFG (quadratic H, potential coupling, nu = 0.05) whose solve is timed
separately; the model is an analytic velocity field. Reported: validation time excluding the
model's evaluation (median of warm repeats), the model evaluation time, and the reference time.
"""

import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import mfgpde as mp  # noqa: E402
from mfgpde.result import write_json  # noqa: E402
from mfgpde.validate import validate_flow  # noqa: E402


def main():
    g = mp.TensorGrid([(-3, 3), (-3, 3)], 128, "noflux")
    p = mp.MFGProblem(g, 1.0, 64, 0.05, mp.QuadraticHamiltonian(),
                      lambda x, y: np.exp(-((x - 1) ** 2 + y**2) / 0.3), normalize=True,
                      coupling=mp.PotentialCoupling(lambda x, y: 0.5 * (x**2 + y**2)),
                      terminal=lambda x, y: 0.5 * (x**2 + y**2))
    t0 = time.perf_counter()
    ref = mp.solve(p, tol=1e-8)
    t_ref = time.perf_counter() - t0

    def model(x, t):
        return -0.8 * x + 0.05 * np.sin(x[:, ::-1])

    runs = []
    for _ in range(4):
        m, _ = validate_flow(ref, model)
        runs.append(m)
    warm = runs[1:]
    out = {"grid": [128, 128], "nt": 64, "reference_solve_s": t_ref, "reference_converged": ref.converged,
           "validation_time_s_cold": runs[0]["validation_time_s"],
           "validation_time_s_warm_median": statistics.median(r["validation_time_s"] for r in warm),
           "model_eval_time_s_median": statistics.median(r["model_eval_time_s"] for r in warm),
           "W2_method": "POT emd2 on <= 2500 aggregated bins", "final_L1": warm[-1]["final"]["L1"]}
    write_json(os.path.join(HERE, "results", "validate.json"), out)
    print(out)


if __name__ == "__main__":
    main()
