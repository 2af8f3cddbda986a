"""B1 with the PyPI peer ``mfgsolver`` (policy iteration), run in its own venv (it pins numpy < 2).

Prints one JSON line: wall time of ``solve(maxit=20)`` and its final FP/HJB residuals.
"""

import contextlib
import io
import json
import time

import numpy as np
from mfgsolver import MfgBase


class B1(MfgBase):
    def M0_func(self, x):
        return np.where((x >= 0.375) & (x <= 0.625), 4.0, 0.0)

    def UT_func(self, x):
        return 10 * np.minimum((x - 0.3) ** 2, (x - 0.7) ** 2)

    def F1_func(self, m):
        return (1 + 4 * m) ** 1.5

    def F2_func(self, m):
        return 0.1 + m


t0 = time.perf_counter()
solver = B1(nv=0.05, Nx=200, Nt=200, T=1.0)
with contextlib.redirect_stdout(io.StringIO()):
    solver.solve(maxit=20)
wall = time.perf_counter() - t0
print(json.dumps({"peer": "mfgsolver", "case": "B1", "iterations": 20, "wall_time_s": wall,
                  "fp_residual": float(solver.residual_FP_history[-1]),
                  "hjb_residual": float(solver.residual_HJB_history[-1])}))
