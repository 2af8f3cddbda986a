"""B1 with the PyPI peer ``mfgsolver`` (policy iteration), run in its own venv (it pins numpy < 2).

Prints one JSON line: wall time of ``solve(maxit=20)`` and its final FP/HJB residuals.
"""

import numpy as np
from mfgsolver import MfgBase
from peer_timing import time_peer


class B1(MfgBase):
    def M0_func(self, x):
        return np.where((x >= 0.375) & (x <= 0.625), 4.0, 0.0)

    def UT_func(self, x):
        return 10 * np.minimum((x - 0.3) ** 2, (x - 0.7) ** 2)

    def F1_func(self, m):
        return (1 + 4 * m) ** 1.5

    def F2_func(self, m):
        return 0.1 + m


time_peer(lambda: B1(nv=0.05, Nx=200, Nt=200, T=1.0), "B1", 20)
