"""
Linear-quadratic MFG against its closed form
============================================

C3: ``H = |p|^2/2``, ``f = g = |x - 0.1|^2/2``, Gaussian ``m0``: the value function stays
quadratic and the density Gaussian (:class:`mfgpde.closed_forms.LinearQuadratic`). We solve it
by Newton on two grids and fit the observed order of the density error.
"""

import matplotlib.pyplot as plt
import numpy as np

import mfgpde as mp
from mfgpde.closed_forms import LinearQuadratic

nu, T, s0 = 0.05, 1.0, 0.2
lq = LinearQuadratic(q=1.0, g0=1.0, nu=nu, T=T, mbar=[0.1], s0=s0)
errors, hs = [], []
for n in (80, 160, 320):
    grid = mp.TensorGrid([(-1.5, 1.7)], n, "noflux")
    problem = mp.MFGProblem(grid, T=T, nt=n // 2, nu=nu, hamiltonian=mp.QuadraticHamiltonian(),
                            m0=lambda x: lq.m(0.0, x), normalize=True,
                            coupling=mp.PotentialCoupling(lambda x: 0.5 * (x - 0.1) ** 2),
                            terminal=lambda x: 0.5 * (x - 0.1) ** 2)
    result = mp.solve(problem, tol=1e-10)
    x = grid.axes[0]
    errors.append(np.abs(result.m[-1] - lq.m(T, x)).max())
    hs.append(grid.h[0])
    print(f"n = {n}: {result.diagnostics['status']}, max |m(T) - exact| = {errors[-1]:.2e}")

order = np.polyfit(np.log(hs), np.log(errors), 1)[0]
print(f"observed order {order:.2f}")

fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
ax[0].plot(x, result.m[-1], label="mfgpde, m(T)")
ax[0].plot(x, lq.m(T, x), "--", label="closed form")
ax[0].plot(x, result.m[0], ":", label="m(0)")
ax[0].legend()
ax[0].set(xlabel="x", title="density")
ax[1].loglog(hs, errors, "o-")
ax[1].set(xlabel="h", ylabel="max error in m(T)", title=f"observed order {order:.2f}")
fig.tight_layout()
