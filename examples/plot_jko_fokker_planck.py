"""
A JKO chain approaches the Fokker-Planck flow
=============================================

Each JKO step ``rho_{k+1} = argmin W2^2(rho_k, rho) / (2 tau) + KL(rho || N(0, 1))`` is a
mean-field game on ``[0, tau]`` (:func:`mfgpde.generative.presets.jko_chain`). The chain tracks
the Fokker-Planck flow to ``N(0, 1)``, whose mean decays like ``exp(-t)`` (closed form C4), with
an ``O(tau)`` error.
"""

import matplotlib.pyplot as plt
import numpy as np

import mfgpde as mp
from mfgpde.generative.densities import gaussian
from mfgpde.generative.energies import KL
from mfgpde.generative.presets import jko_chain, standard_normal_log_density

grid = mp.TensorGrid([(-5, 5)], 160, "noflux")
energy = KL(standard_normal_log_density(1), eps=1e-6)
x = grid.axes[0]
fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
for tau in (0.2, 0.1):
    times, rhos, _ = jko_chain(grid, gaussian([1.5], 0.25), energy, tau=tau, steps=int(round(0.6 / tau)))
    means = [grid.integrate(x * r) for r in rhos]
    ax[0].plot(times, means, "o-", label=f"JKO, tau = {tau}")
    print(f"tau = {tau}: mean at t = 0.6 is {means[-1]:.4f} (Fokker-Planck: {1.5 * np.exp(-0.6):.4f})")
ts = np.linspace(0, 0.6, 50)
ax[0].plot(ts, 1.5 * np.exp(-ts), "k--", label="Fokker-Planck (C4)")
ax[0].set(xlabel="t", ylabel="mean", title="mean of the density")
ax[0].legend()
for k in range(0, len(rhos), 2):
    ax[1].plot(x, rhos[k], label=f"t = {times[k]:.1f}")
ax[1].legend()
ax[1].set(xlabel="x", title="JKO densities (tau = 0.1)")
fig.tight_layout()
