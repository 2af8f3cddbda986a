"""
A crowd leaves a room around a pillar (finite elements)
=======================================================

A gmsh mesh of a 2 x 1 room with a round pillar (a hole in the mesh), solved with the P1
edge scheme (:mod:`mfgpde.fem.scheme`) by Newton-Krylov: kinetic cost ``|v|^2/2``, congestion
``f = 0.5 m``, terminal cost the smoothed distance to the door at (2, 0.5). This is
``solvers/crowd_room.toml`` on a coarse mesh (h = 0.05 instead of 0.0105). Needs the FEM extra
(DOLFINx, gmsh).
"""

import matplotlib.pyplot as plt
import numpy as np

import mfgpde as mp
from mfgpde.fem import geometry

dom = geometry.room(width=2.0, height=1.0, obstacles=[(1.0, 0.5, 0.2)], h=0.05)
problem = mp.MFGProblem(dom, T=1.0, nt=20, nu=0.01, hamiltonian=mp.QuadraticHamiltonian(),
                        m0=lambda x, y: np.exp(-((x - 0.35) ** 2 + (y - 0.5) ** 2) / 0.02),
                        coupling=mp.PowerCoupling(1.0, 0.5),
                        terminal=lambda x, y: 3.0 * np.sqrt((x - 2.0) ** 2 + (y - 0.5) ** 2 + 0.01),
                        normalize=True)
result = mp.solve(problem, tol=1e-9)
print(result)

X, cells = result.coords, result.cells
fig, ax = plt.subplots(1, 3, figsize=(14, 3.2))
for a, k in zip(ax, (0, 10, 20)):
    im = a.tripcolor(X[:, 0], X[:, 1], cells, result.m[k], shading="gouraud")
    a.set_aspect("equal")
    a.set_title(f"m at t = {result.times[k]:.2f}")
    fig.colorbar(im, ax=a, shrink=0.8)
fig.tight_layout()
