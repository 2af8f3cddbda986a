"""
B1: a congestion MFG in 1D
==========================

The first benchmark of Lauriere, Song and Tang: ``H = |p|^2 / (2 (c0 + c1 m)^beta)`` on a
periodic interval, 200 nodes and 200 time steps, read from ``solvers/lst_case1.toml`` and
solved by Newton-Krylov. Mass is conserved to round-off and the density stays nonnegative.
"""

import os

import matplotlib.pyplot as plt

import mfgpde as mp
from mfgpde import config

here = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()
path = os.path.join(here, "..", "solvers", "lst_case1.toml")
if not os.path.exists(path):                     # run from the repository root
    path = os.path.join("solvers", "lst_case1.toml")
problem = config.build_problem(path)
result = mp.solve(problem, **config.solver_options(config.load(path)))
print(result)

x, t = problem.grid.axes[0], result.times
fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
im = ax[0].pcolormesh(x, t, result.m, shading="auto")
fig.colorbar(im, ax=ax[0])
ax[0].set(xlabel="x", ylabel="t", title="density m(t, x)")
im = ax[1].pcolormesh(x, t, result.U, shading="auto")
fig.colorbar(im, ax=ax[1])
ax[1].set(xlabel="x", title="value U(t, x)")
ax[2].semilogy([h["residual"] for h in result.history], "o-")
ax[2].set(xlabel="Newton iteration", title="residual (quadratic tail)")
fig.tight_layout()
