"""Helpers shared by the tests (one copy of each)."""

import numpy as np


def observed_order(h, err):
    """Observed order of convergence: least-squares slope of ``log(err)`` against ``log(h)``."""
    return float(np.polyfit(np.log(h), np.log(err), 1)[0])
