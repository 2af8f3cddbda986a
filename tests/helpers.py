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


def lq_config(dim, shape, nt, solver=""):
    """The TOML text of the linear-quadratic MFG C3 (q = g0 = 1, nu = 0.1, s0 = 0.4, [-2, 2]^dim no-flux,
    T = 1) with ``solver`` lines appended to its ``[solver]`` table."""
    names = ["x", "y", "z"][:dim]
    quad = "0.5 * (" + " + ".join(f"{v}**2" for v in names) + ")"
    cov = 0.16 if dim == 1 else [[0.16 if i == j else 0.0 for j in range(dim)] for i in range(dim)]
    return (f'name = "lq{dim}d"\nnormalize_m0 = true\n[grid]\nbounds = {[[-2.0, 2.0]] * dim}\nshape = {[shape] * dim}\n'
            f'boundary = "noflux"\n[time]\nT = 1.0\nnt = {nt}\n[model]\nnu = 0.1\n[hamiltonian]\ntype = "quadratic"\n'
            f'[[coupling]]\ntype = "potential"\nexpr = "{quad}"\n[terminal]\ntype = "potential"\nexpr = "{quad}"\n'
            f'[m0]\ntype = "gaussian"\nmean = {[0.0] * dim}\ncov = {cov}\n[solver]\n{solver}\n')
