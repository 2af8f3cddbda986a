"""Helpers shared by the tests (one copy of each)."""

import os

import numpy as np

SOLVERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "solvers")


def observed_order(h, err):
    """Observed order of convergence: least-squares slope of ``log(err)`` against ``log(h)``."""
    return float(np.polyfit(np.log(h), np.log(err), 1)[0])


def normal_log_pdf(x, mean, var):
    """``log N(x; mean, var)`` in 1D, written out (an oracle independent of the package's Gaussians)."""
    return -0.5 * (x - mean) ** 2 / var - 0.5 * np.log(2 * np.pi * var)


def edited_config(tmp_path, name, old, new):
    """A copy of ``solvers/<name>`` in ``tmp_path`` with ``old`` replaced by ``new``; its path.

    ``old`` must occur in the shipped file, so an edit that no longer applies fails loudly
    instead of testing the unedited configuration.
    """
    src = open(os.path.join(SOLVERS, name)).read()
    assert old in src, f"{old!r} is not in solvers/{name}"
    path = tmp_path / name
    path.write_text(src.replace(old, new))
    return str(path)
