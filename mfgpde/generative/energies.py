"""Energies on densities and their first variations: the building blocks of generative MFGs.

An :class:`Energy` ``E(m)`` knows its value on a grid density and its first variation
``dE/dm`` (a :class:`~mfgpde.couplings.Coupling`), so it can serve as a terminal cost
``G = E`` (then ``U(T) = dE/dm``) or, through :meth:`Energy.as_coupling`, as a running
interaction ``F``. Energies add and scale: ``KL(pi) + 0.1 * InteractionEnergy(W)``.

=================================  ======================================  =========================
energy                             E(m)                                    dE/dm
=================================  ======================================  =========================
``KL(log_pi)``                     int m log(m / pi)                       log m - log pi + 1
``CrossEntropy(log_q)``            -int m log q                            -log q
``Entropy()``                      int m log m                             log m + 1
``PotentialEnergy(V)``             int V m                                 V
``InteractionEnergy(W)``           (1/2) int int W(x - y) m(x) m(y)        W * m  (W even)
``PorousMedium(p)``                int m^p / (p - 1)                       p/(p-1) m^(p-1)
=================================  ======================================  =========================

The kinetic running cost ``(lambda/2)|v|^2`` is the Hamiltonian
``QuadraticHamiltonian(lam)``; see :mod:`mfgpde.generative.presets` for the compositions.
"""

from __future__ import annotations

import numpy as np

from .. import couplings as C


class Energy:
    """Base class: ``value(m, grid)`` and ``first_variation() -> Coupling``."""

    #: Whether the energy is convex in m (displacement convexity is not claimed).
    convex = True

    def value(self, m, grid):
        raise NotImplementedError

    def first_variation(self):
        raise NotImplementedError

    def as_coupling(self):
        """The first variation as a coupling/terminal cost."""
        return self.first_variation()

    def __add__(self, other):
        return SumEnergy([self, other])

    def __rmul__(self, s):
        return ScaledEnergy(self, s)

    def describe(self):
        return {"type": type(self).__name__}


class SumEnergy(Energy):
    """``E = sum_k E_k``; its first variation is the sum of the terms' (``E1 + E2`` builds one)."""

    def __init__(self, terms):
        self.terms = []
        for t in terms:
            self.terms.extend(t.terms if isinstance(t, SumEnergy) else [t])
        self.convex = all(t.convex for t in self.terms)

    def value(self, m, grid):
        return sum(t.value(m, grid) for t in self.terms)

    def first_variation(self):
        out = None
        for t in self.terms:
            c = t.first_variation()
            out = c if out is None else out + c
        return out

    def describe(self):
        return {"type": "sum", "terms": [t.describe() for t in self.terms]}


class ScaledEnergy(Energy):
    """``E = s E_base`` for a finite ``s`` (``s * E`` builds one); convex when ``s >= 0`` and ``E_base`` is."""

    def __init__(self, base, s):
        s = float(s)
        if not np.isfinite(s):
            raise ValueError(f"energy weight must be finite, got {s}")
        self.base, self.s = base, s
        self.convex = base.convex and s >= 0

    def value(self, m, grid):
        return self.s * self.base.value(m, grid)

    def first_variation(self):
        return C.ScaledCoupling(self.base.first_variation(), self.s)

    def describe(self):
        return {"type": "scaled", "weight": self.s, "energy": self.base.describe()}


def _log_field(log_density, grid, name):
    vals = np.asarray(log_density(*grid.coordinates()) if callable(log_density) else log_density, float)
    vals = np.broadcast_to(vals, grid.shape)
    if not np.all(np.isfinite(vals)):
        raise ValueError(f"{name}: the density vanishes (log = -inf) or is not finite somewhere on the grid; "
                         "the KL/cross-entropy needs log of it everywhere")
    return vals


class KL(Energy):
    """``KL(m || pi) = int m log(m / pi)`` for a reference density with log-density ``log_pi``.

    Parameters
    ----------
    log_pi : callable or ndarray
        ``log pi`` (a callable of the coordinates, e.g.
        :func:`mfgpde.couplings.gaussian_log_density`, or an array on the grid). It must be
        finite on the whole grid; a vanishing reference is refused.
    floor : float
        Densities below this are treated as ``floor`` inside the logarithm.
    eps : float
        Tail regularisation of the first variation, ``log(m/pi + eps) + 1`` (see
        :class:`mfgpde.couplings.KLCoupling`); 0 gives the exact ``log m - log pi + 1``.
    """

    def __init__(self, log_pi, *, floor=1e-14, eps=0.0):
        self.log_pi, self.floor, self.eps = log_pi, float(floor), float(eps)

    def value(self, m, grid):
        lp = _log_field(self.log_pi, grid, "KL reference pi")
        mm = np.maximum(m, 0)
        return grid.integrate(np.where(mm > 0, mm * (np.log(np.maximum(mm, self.floor)) - lp), 0.0))

    def first_variation(self):
        return C.KLCoupling(self.log_pi, eps=self.eps, floor=self.floor)


class CrossEntropy(Energy):
    """``-int m log q`` against a data density with log-density ``log_q`` (first variation ``-log q``)."""

    def __init__(self, log_q):
        self.log_q = log_q

    def value(self, m, grid):
        return -grid.integrate(m * _log_field(self.log_q, grid, "cross-entropy data density"))

    def first_variation(self):
        lq = self.log_q
        return C.PotentialCoupling((lambda *xs: -np.asarray(lq(*xs), float)) if callable(lq)
                                   else -np.asarray(lq, float))


class Entropy(Energy):
    """``int m log m`` (first variation ``log m + 1``); its gradient flow is the heat equation."""

    def __init__(self, floor=1e-14):
        self.floor = float(floor)

    def value(self, m, grid):
        mm = np.maximum(m, 0)
        return grid.integrate(np.where(mm > 0, mm * np.log(np.maximum(mm, self.floor)), 0.0))

    def first_variation(self):
        return C.LogCoupling(floor=self.floor) + C.PotentialCoupling(1.0)


class PotentialEnergy(Energy):
    """``int V m`` (first variation ``V``)."""

    def __init__(self, V):
        self.V = V
        self._c = C.PotentialCoupling(V)

    def value(self, m, grid):
        return grid.integrate(self._c.field(grid) * m)

    def first_variation(self):
        return self._c


class InteractionEnergy(Energy):
    """``(1/2) int int W(x - y) m(x) m(y)`` for an even kernel W (first variation ``W * m``)."""

    def __init__(self, W, positive_definite=True):
        self.W = W
        self._c = C.ConvolutionCoupling(W, monotone=positive_definite)
        self.convex = bool(positive_definite)

    def value(self, m, grid):
        return 0.5 * grid.integrate(m * self._c.value(m, grid))

    def first_variation(self):
        return self._c


class PorousMedium(Energy):
    """``int m^p / (p - 1)``, p > 1 (first variation ``p/(p-1) m^(p-1)``); flow: porous medium equation."""

    def __init__(self, p=2.0):
        p = float(p)
        if not p > 1:
            raise ValueError(f"p (porous-medium exponent) must be > 1, got {p}")
        self.p = p

    def value(self, m, grid):
        return grid.integrate(np.maximum(m, 0) ** self.p) / (self.p - 1)

    def first_variation(self):
        return C.PowerCoupling(p=self.p - 1, scale=self.p / (self.p - 1))
