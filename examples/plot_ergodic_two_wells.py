"""
A stationary crowd in two wells (ergodic MFG)
=============================================

The ergodic problem ``rho - nu Lap u + |grad u|^2/2 = log m + V``, ``V = (x^2 - 4)^2/8 + y^2/2``,
solved from a cold start by pseudo-transient continuation to Newton on a box much wider than
the crowd (as ``solvers/ergodic_crowd_2d.toml``, at half the resolution). The scheme keeps the
mirror symmetry ``x -> -x``: half of the crowd sits in each well.
"""

import numpy as np

import mfgpde as mp

grid = mp.TensorGrid([(-6, 6), (-5, 5)], [36, 30], "noflux")
V = mp.PotentialCoupling(lambda x, y: (x**2 - 4) ** 2 / 8 + y**2 / 2)
problem = mp.ErgodicMFGProblem(grid, 0.3, mp.QuadraticHamiltonian(), coupling=mp.LogCoupling(floor=1e-10) + V)
result = mp.solve(problem)
print(result)
left = grid.cell_volume * result.m[: grid.shape[0] // 2].sum()
print(f"mass in the left half: {left:.12f}, symmetry defect {np.abs(result.m - result.m[::-1]).max():.1e}")

fig = result.plot()
