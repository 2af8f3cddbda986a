"""Deflation: Newton's method that cannot converge back to a known solution.

Farrell, Birkisson & Funke, "Deflation techniques for finding distinct solutions of nonlinear
partial differential equations", SIAM J. Sci. Comput. 37 (2015). For known solutions
``z_1, ..., z_k`` of ``F(z) = 0`` Newton is run on the deflated residual

    G(z) = M(z) F(z),      M(z) = prod_i ( ||z - z_i||^-p + shift ),

whose roots are the roots of ``F`` other than the ``z_i`` (near ``z_i``, ``M F`` stays away
from zero for ``p >= 1`` because ``F`` vanishes only linearly there). With ``shift > 0`` the
factor tends to a constant far from every ``z_i``, so ``G`` is ``F`` rescaled there and
Newton is not pushed to infinity.

The deflated Newton step needs no new linear solve. With ``d`` the Newton direction of ``F``
(``J d = -F``) and ``g = grad M``, the step of ``G`` solves ``(M J + F g^T) dz = -M F``;
trying ``dz = tau d`` gives ``tau (M - g.d) = M`` (Sherman-Morrison):

    dz = d / (1 - g.d / M),      g.d / M = sum_i  -p ||e_i||^(-p-2) <e_i, d> / (||e_i||^-p + shift),

with ``e_i = z - z_i`` and ``<a, b>`` the inner product of the norm. So deflation wraps any
linear solver (sparse LU, Krylov, PETSc) unchanged: it rescales the direction, and the line
search measures ``M(z) ||F(z)||``.

The norm is a relative root-mean-square distance of the blocks of ``z`` (``U`` and ``m``
separately, each scaled by the size of the known solutions), so ``||z - z_i|| = 1`` means a
change of the order of the solution itself whatever the grid and the units.
"""

from __future__ import annotations

import numpy as np


class Deflation:
    """The deflation operator of a set of known solutions (see the module docstring).

    Parameters
    ----------
    solutions : list of ndarray
        Known solutions, flat, the layout of the iterate ``z``.
    blocks : int
        Number of equal consecutive blocks of ``z`` (2 for ``(U, m)``); each is normalised by its
        own scale.
    power : float
        ``p``; 2 is Farrell et al.'s choice for Newton's method.
    shift : float
        ``shift > 0``; 1 by default.
    """

    def __init__(self, solutions, *, blocks=2, power=2.0, shift=1.0):
        if not power > 0:
            raise ValueError(f"power must be > 0, got {power!r}")
        if not shift >= 0:
            raise ValueError(f"shift must be >= 0, got {shift!r}")
        self.solutions = [np.asarray(s, float).ravel() for s in solutions]
        self.blocks, self.power, self.shift = int(blocks), float(power), float(shift)
        self._weights = None

    def __len__(self):
        return len(self.solutions)

    def add(self, z):
        """Deflate one more solution."""
        self.solutions.append(np.asarray(z, float).ravel())
        self._weights = None

    def weights(self, size):
        """Per-entry weights ``w`` of the inner product ``<a, b> = sum w a b``: each block scaled by
        the largest magnitude of the known solutions in it (at least 1e-300) and by its length.
        """
        if self._weights is None or self._weights.size != size:
            n = size // self.blocks
            w = np.empty(size)
            for b in range(self.blocks):
                scale = max([float(np.abs(s[b * n:(b + 1) * n]).max()) for s in self.solutions] + [1e-300])
                w[b * n:(b + 1) * n] = 1.0 / (scale**2 * n * self.blocks)
            self._weights = w
        return self._weights

    def distances(self, z):
        """``||z - z_i||`` for every known solution."""
        w = self.weights(z.size)
        return [float(np.sqrt(np.sum(w * (z - s) ** 2))) for s in self.solutions]

    def factor(self, z):
        """``M(z)`` (1 with no known solution)."""
        out = 1.0
        for d in self.distances(z):
            out *= max(d, 1e-300) ** -self.power + self.shift
        return out

    def direction(self, z, d):
        """The deflated Newton direction ``d / (1 - g.d / M)`` from the undeflated one ``d``.

        Returns
        -------
        dz : ndarray
        tau : float
            The factor applied (``1 - g.d / M`` near zero makes it large; its sign can flip the
            direction, which is how deflation turns Newton away from a known root).
        """
        if not self.solutions:
            return d, 1.0
        w = self.weights(z.size)
        ratio = 0.0
        for s in self.solutions:
            e = z - s
            r = max(float(np.sqrt(np.sum(w * e * e))), 1e-300)
            ratio += -self.power * r ** (-self.power - 2) * float(np.sum(w * e * d)) / (r**-self.power + self.shift)
        denominator = 1.0 - ratio
        tau = 1.0 / denominator if abs(denominator) > 1e-12 else np.sign(denominator or 1.0) * 1e12
        return tau * d, float(tau)
