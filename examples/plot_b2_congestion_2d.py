"""
B2: a 2D congestion MFG
=======================

The second benchmark of Lauriere, Song and Tang: ``H = |p|^2 / (2 m^0.5)`` on the periodic
unit square, read from ``solvers/lst_case2.toml`` at a quarter of its resolution (25^2 x 25
instead of 50^2 x 50) and solved by Newton-Krylov with the sweep preconditioner.
"""

import os

import matplotlib.pyplot as plt

import mfgpde as mp
from mfgpde import config

here = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()
path = os.path.join(here, "..", "solvers", "lst_case2.toml")
if not os.path.exists(path):
    path = os.path.join("solvers", "lst_case2.toml")
cfg = config.load(path)
cfg["grid"]["shape"], cfg["time"]["nt"] = [25, 25], 25
problem = config.build_problem(cfg)
result = mp.solve(problem, **config.solver_options(cfg))
print(result)

x, y = problem.grid.axes
fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
for a, k in zip(ax, (0, 12, 25)):
    im = a.pcolormesh(x, y, result.m[k].T, shading="auto")
    a.set_aspect("equal")
    a.set_title(f"m at t = {result.times[k]:.2f}")
    fig.colorbar(im, ax=a)
fig.tight_layout()
