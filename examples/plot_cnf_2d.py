"""
A continuous normalising flow in 2D as an MFG
=============================================

Data: a two-mode Gaussian mixture; the flow carries it to ``N(0, I)`` with kinetic energy
``(lambda/2)|v|^2`` and the terminal cost ``KL(m(T) || N(0, I))``, a first-order (``nu = 0``)
MFG (:func:`mfgpde.generative.presets.cnf_problem`), solved by Newton with viscosity
continuation. Because the problem is one JKO step of the KL, ``m(T)`` is not exactly
``N(0, I)``: it is the KL's proximal point at step ``T / lambda``.
"""

import matplotlib.pyplot as plt

import mfgpde as mp
from mfgpde.generative.densities import gaussian_mixture
from mfgpde.generative.presets import cnf_problem

grid = mp.TensorGrid([(-5, 5), (-5, 5)], 24, "noflux")
data = gaussian_mixture([1, 1], [[1.5, 0], [-1.5, 0]], [0.2, 0.2])
problem = cnf_problem(grid, data, lam=1.0, nt=6)
result = mp.solve(problem, verbose=False)
print(result)

x, y = grid.axes
fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
for a, k in zip(ax, (0, 3, 6)):
    a.pcolormesh(x, y, result.m[k].T, shading="auto")
    a.set_aspect("equal")
    a.set_title(f"m at t = {result.times[k]:.2f}")
fig.tight_layout()
