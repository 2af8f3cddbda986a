"""Hamiltonians H(x, p, m) of radial form.

Every Hamiltonian here is written as ``H(p, m) = phi(|p|^2, m)``. The monotone finite
difference scheme replaces ``|p|^2`` by the Engquist-Osher/Godunov upwinded square

    S_i = sum_k ( (D_k^- u)_i^+ )^2 + ( (D_k^+ u)_i^- )^2,

which is non-decreasing in the backward and non-increasing in the forward difference, so
``phi(S, m)`` is monotone whenever ``phi`` is non-decreasing in S (Achdou & Capuzzo-Dolcetta
2010). The optimal control is ``v* = -dH/dp = -2 phi_S(|p|^2, m) p``.

What the scheme needs from a Hamiltonian: ``phi``, ``phi_S`` (for the FP drift and the HJB
Jacobian), and, for Newton on the coupled system, ``phi_SS`` (the FP Jacobian in U), ``phi_m``
and ``phi_Sm`` (non-separable, congestion-type H).
"""

from __future__ import annotations

import numpy as np

from .checks import real


class Hamiltonian:
    """Base class: ``H(p, m) = phi(|p|^2, m)``.

    Subclasses implement :meth:`phi` and :meth:`phi_S`; :meth:`phi_SS`, :meth:`phi_m` and
    :meth:`phi_Sm` default to zero (separable H, linear in S).
    """

    #: True when H depends on m (congestion); the FP step is then nonlinear in m.
    depends_on_m = False
    #: True when second derivatives are available, i.e. Newton on the coupled system works.
    has_second_derivatives = True
    #: True when H is undefined at m = 0 (congestion with F1(0) = 0).
    needs_positive_density = False

    def phi(self, S, m):
        raise NotImplementedError

    def phi_S(self, S, m):
        raise NotImplementedError

    def phi_SS(self, S, m):
        return np.zeros_like(S)

    def phi_m(self, S, m):
        return np.zeros_like(S)

    def phi_Sm(self, S, m):
        return np.zeros_like(S)

    # Pointwise forms on gradients p of shape (..., d); used by the neural-model checks.
    def H(self, p, m=None):
        """``H(p, m)`` for gradients ``p`` with the last axis the dimension."""
        S = np.sum(np.asarray(p) ** 2, axis=-1)
        return self.phi(S, self._m_like(S, m))

    def dH_dp(self, p, m=None):
        """``dH/dp = 2 phi_S(|p|^2, m) p``."""
        p = np.asarray(p)
        S = np.sum(p**2, axis=-1)
        return 2.0 * self.phi_S(S, self._m_like(S, m))[..., None] * p

    @staticmethod
    def _m_like(S, m):
        return np.ones_like(S) if m is None else np.broadcast_to(m, S.shape)

    def describe(self) -> dict:
        return {"type": type(self).__name__}


class QuadraticHamiltonian(Hamiltonian):
    """``H(p) = |p|^2 / (2 lambda)`` from the kinetic cost ``(lambda/2)|v|^2``.

    Parameters
    ----------
    lam : float
        Kinetic weight lambda > 0.
    """

    def __init__(self, lam=1.0):
        lam = real("lam (kinetic weight lambda)", lam)
        if not (np.isfinite(lam) and lam > 0):
            raise ValueError(f"lam (kinetic weight lambda) must be > 0, got {lam}")
        self.lam = lam

    def phi(self, S, m):
        return S / (2.0 * self.lam)

    def phi_S(self, S, m):
        return np.full_like(S, 0.5 / self.lam)

    def describe(self):
        return {"type": "quadratic", "lam": self.lam}


class PowerHamiltonian(Hamiltonian):
    """``H(p) = (|p|^2 + delta^2)^(q/2) / q``, the power law ``|p|^q / q`` for delta = 0.

    Parameters
    ----------
    q : float
        Exponent q > 1.
    delta : float, optional
        Regularisation >= 0. For ``q < 2`` the second derivative is singular at p = 0, so
        Newton needs ``delta > 0``; the default is 0 for ``q >= 2`` and 1e-3 otherwise.
    """

    def __init__(self, q, delta=None):
        q = real("q (power-law exponent)", q)
        if not (np.isfinite(q) and q > 1):
            raise ValueError(f"q (power-law exponent) must be > 1, got {q}")
        if delta is None:
            delta = 0.0 if q >= 2 else 1e-3
        delta = real("delta (power-law regularisation)", delta)
        if not np.isfinite(delta) or delta < 0:
            raise ValueError(f"delta (regularisation) must be >= 0, got {delta}")
        self.q, self.delta2 = q, delta**2

    def phi(self, S, m):
        return (S + self.delta2) ** (0.5 * self.q) / self.q

    def phi_S(self, S, m):
        return 0.5 * (S + self.delta2) ** (0.5 * self.q - 1.0)

    def phi_SS(self, S, m):
        if self.q == 2.0:
            return np.zeros_like(S)
        base = S + self.delta2
        # phi_SS is singular at S = 0 for q < 4, but it multiplies dS/du (x) dS/du, which
        # vanishes there (the Hessian of |p|^q/q is continuous for q >= 2): use 0 at S = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            out = 0.5 * (0.5 * self.q - 1.0) * base ** (0.5 * self.q - 2.0)
        return np.where(base > 0, out, 0.0)

    def describe(self):
        return {"type": "power", "q": self.q, "delta": float(np.sqrt(self.delta2))}


class CongestionHamiltonian(Hamiltonian):
    """Non-separable congestion form ``H(p, m) = |p|^2 / (2 F1(m))``, ``F1(m) = (c0 + c1 m)^beta``.

    This is the Hamiltonian of the Lauriere-Song-Tang benchmarks (B1: c0 = 1, c1 = 4,
    beta = 1.5; B2: c0 = 0, c1 = 1, beta = 0.5).

    Parameters
    ----------
    c0, c1, beta : float
        ``c0 >= 0``, ``c1 >= 0``, ``c0 + c1 > 0``, ``beta >= 0``.
    """

    depends_on_m = True

    def __init__(self, c0=1.0, c1=4.0, beta=1.5):
        self.c0, self.c1 = real("c0 (congestion)", c0), real("c1 (congestion)", c1)
        self.beta = real("beta (congestion exponent)", beta)
        for name, v in (("c0", self.c0), ("c1", self.c1), ("beta", self.beta)):
            if not np.isfinite(v):  # nan/inf used to pass and end as a non-finite residual mid-solve
                raise ValueError(f"{name} (congestion Hamiltonian) must be finite, got {v}")
        if self.c0 < 0 or self.c1 < 0 or self.c0 + self.c1 <= 0:
            raise ValueError(f"c0, c1 must be >= 0 with c0 + c1 > 0, got c0={c0}, c1={c1}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        # F1(0) = 0 when c0 = 0: H blows up as m -> 0, so iterations must keep m > 0
        self.needs_positive_density = self.c0 == 0 and self.beta > 0

    def F1(self, m):
        return (self.c0 + self.c1 * np.maximum(m, 0.0)) ** self.beta

    def dF1(self, m):
        base = self.c0 + self.c1 * np.maximum(m, 0.0)
        with np.errstate(divide="ignore"):
            return self.beta * self.c1 * base ** (self.beta - 1.0)

    def phi(self, S, m):
        return S / (2.0 * self.F1(m))

    def phi_S(self, S, m):
        return 0.5 / self.F1(m)

    def phi_m(self, S, m):
        F = self.F1(m)
        return -S * self.dF1(m) / (2.0 * F * F)

    def phi_Sm(self, S, m):
        F = self.F1(m)
        return -self.dF1(m) / (2.0 * F * F)

    def describe(self):
        return {"type": "congestion", "c0": self.c0, "c1": self.c1, "beta": self.beta}


class CustomHamiltonian(Hamiltonian):
    """User Hamiltonian ``H = phi(|p|^2, m)`` from vectorised callables.

    Parameters
    ----------
    phi, phi_S : callable ``(S, m) -> ndarray``
        The Hamiltonian and its S-derivative (``dH/dp = 2 phi_S p``); ``phi_S`` is required
        and must be >= 0 for the scheme to be monotone.
    phi_SS, phi_m, phi_Sm : callable, optional
        Second derivatives for Newton; without ``phi_SS`` only the fixed-point iterations work.
    """

    def __init__(self, phi, *, phi_S=None, phi_SS=None, phi_m=None, phi_Sm=None):
        if not callable(phi):
            raise TypeError("hamiltonian: phi must be a callable (S, m) -> H")
        if phi_S is None:
            raise ValueError(
                "hamiltonian: dH/dp is required (give phi_S = dphi/dS, so that dH/dp = 2 phi_S p)"
            )
        self._phi, self._phi_S = phi, phi_S
        self._phi_SS, self._phi_m, self._phi_Sm = phi_SS, phi_m, phi_Sm
        self.depends_on_m = phi_m is not None
        self.has_second_derivatives = phi_SS is not None

    def phi(self, S, m):
        return np.asarray(self._phi(S, m), float)

    def phi_S(self, S, m):
        return np.asarray(self._phi_S(S, m), float)

    def phi_SS(self, S, m):
        if self._phi_SS is None:
            raise NotImplementedError("hamiltonian: Newton needs phi_SS; use method='fixed_point'")
        return np.asarray(self._phi_SS(S, m), float)

    def phi_m(self, S, m):
        return np.zeros_like(S) if self._phi_m is None else np.asarray(self._phi_m(S, m), float)

    def phi_Sm(self, S, m):
        return np.zeros_like(S) if self._phi_Sm is None else np.asarray(self._phi_Sm(S, m), float)

    def describe(self):
        return {"type": "custom"}
