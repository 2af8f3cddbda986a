"""
Checking a flow model against the grid reference
================================================

A continuous normalising flow from ``N(1, 0.5^2)`` to ``N(0, 1)`` (kinetic weight 1, KL
terminal cost) has a grid reference solution (:func:`mfgpde.generative.presets.cnf_problem`).
Any model of its velocity, here a NumPy function standing for a trained network, is measured
against it with :func:`mfgpde.validate.validator.validate_flow`: the density the model
transports, its L1 and Wasserstein distances to the reference, the velocity error weighted by the
density. The exact optimal velocity of this Gaussian case (closed form C1) scores at the level
of the transport's discretisation error (L1 about 0.05 on this grid); a model with a 20 % error
in its slope scores three times worse, and the weighted velocity error tells them apart by four.
"""

import matplotlib.pyplot as plt
import numpy as np

import mfgpde as mp
from mfgpde.closed_forms import CNFGaussian
from mfgpde.generative.densities import gaussian
from mfgpde.generative.presets import cnf_problem
from mfgpde.validate.validator import validate_flow

grid = mp.TensorGrid([(-5, 5)], 200, "noflux")
problem = cnf_problem(grid, gaussian([1.0], 0.25), lam=1.0, nt=40)
reference = mp.solve(problem)
print(reference)
c1 = CNFGaussian(1.0, 0.5, lam=1.0, T=1.0)


def exact(x, t):
    return c1.velocity(t, np.asarray(x))   # points x of shape (N, 1) -> velocities (N, 1)


def biased(x, t):
    return 1.2 * exact(x, t)


fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
ax[0].plot(grid.axes[0], reference.m[-1], "k", label="reference m(T)")
for name, model in (("exact C1 velocity", exact), ("20% slope error", biased)):
    metrics, fields = validate_flow(reference, model, kind="velocity", name=name)
    final = metrics["final"]
    print(f"{name}: L1 = {final['L1']:.3e}, W2 = {final['W2']:.3e}, "
          f"weighted velocity error = {metrics['velocity_error_weighted']:.3e}")
    ax[0].plot(grid.axes[0], fields["m_model"][-1], "--", label=name)
    ax[1].bar(name, final["L1"])
ax[0].legend()
ax[0].set(xlabel="x", title="final densities")
ax[1].set(ylabel="L1 to the reference", title="what the check reports")
fig.tight_layout()
