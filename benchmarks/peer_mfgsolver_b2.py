"""B2 with the PyPI peer ``mfgsolver`` (``MfgBase2D``, policy iteration), in its own venv.

The same problem as ``solvers/lst_case2.toml``: 50 x 50 periodic grid, 50 steps, T = 0.5,
nu = 0.3, H = |p|^2 / (2 sqrt(m)) - 0.1, g = 1.2 cos(2 pi x) + cos(2 pi y),
m0 ~ exp(-10 |x - (0.25, 0.25)|^2). Prints one JSON line: wall time of ``solve(maxit=40)``
and its final FP/HJB residuals (its own norms).
"""

import numpy as np
from mfgsolver import MfgBase2D
from peer_timing import time_peer


def _grid(x1, x2):
    X, Y = np.meshgrid(x1, x2, indexing="ij")
    return X.ravel(), Y.ravel()


class B2(MfgBase2D):
    def M0_func(self, x1, x2):
        X, Y = _grid(x1, x2)
        return np.exp(-10 * ((X - 0.25) ** 2 + (Y - 0.25) ** 2))

    def UT_func(self, x1, x2):
        X, Y = _grid(x1, x2)
        return 1.2 * np.cos(2 * np.pi * X) + np.cos(2 * np.pi * Y)

    def F1_func(self, m):
        return m**0.5

    def F2_func(self, m):
        return 0.1 + 0 * m


time_peer(lambda: B2(nv=0.3, Nx=50, Nt=50, T=0.5), "B2", 40)
