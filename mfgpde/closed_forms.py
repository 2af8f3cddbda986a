"""Closed-form solutions used as references (../REFERENCE.md section 3).

C1  CNF with KL terminal cost and Gaussian data (one JKO step of the KL to N(0, 1)).
C2  Score of a Gaussian mixture under the OU process dX = -X dt + sqrt(2) dW.
C3  Linear-quadratic MFG: quadratic value function, Gaussian density.
C4  Fokker-Planck flow to N(0, I).
E1  Ergodic LQ MFG with a log coupling: Gaussian invariant density (derived in ErgodicLQ).
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import quad, solve_ivp


# ----------------------------------------------------------------------------- E1
class ErgodicLQ:
    """E1: the ergodic MFG ``rho - nu Lap u + |grad u|^2 / 2 = c log m + (q/2)|x|^2``,
    ``-nu Lap m - div(m grad u) = 0``, ``int m = 1``, in ``R^d``.

    Derivation: the FP equation with drift ``-grad u`` has the invariant density
    ``m = exp(-u / nu) / Z``. With ``u = (a/2)|x|^2 + k`` the density is ``N(0, (nu/a) I)`` and
    ``c log m = -c a |x|^2 / (2 nu) - (c d / 2) log(2 pi nu / a)``. The HJB equation then reads
    ``rho - nu a d + a^2 |x|^2 / 2 = -c a |x|^2 / (2 nu) - (c d / 2) log(2 pi nu / a) + q |x|^2 / 2``;
    matching powers of ``|x|``:

        a^2 + (c / nu) a - q = 0   ->   a = (sqrt(c^2 / nu^2 + 4 q) - c / nu) / 2  (a > 0),
        rho = nu a d - (c d / 2) log(2 pi nu / a).

    On a box much wider than the standard deviation ``sqrt(nu / a)`` (no-flux walls) the
    truncation is below round-off; u is defined up to a constant (compare ``u - mean u``).
    """

    def __init__(self, nu, *, c=1.0, q=1.0, d=1):
        self.nu, self.c, self.q, self.d = float(nu), float(c), float(q), int(d)
        self.a = (np.sqrt(self.c**2 / self.nu**2 + 4 * self.q) - self.c / self.nu) / 2
        self.rho = self.nu * self.a * self.d - 0.5 * self.c * self.d * np.log(2 * np.pi * self.nu / self.a)
        self.variance = self.nu / self.a

    def u(self, *xs):
        return 0.5 * self.a * sum(np.asarray(x, float) ** 2 for x in xs)

    def grad_u(self, *xs):
        return [self.a * np.asarray(x, float) for x in xs]

    def m(self, *xs):
        r2 = sum(np.asarray(x, float) ** 2 for x in xs)
        return np.exp(-r2 / (2 * self.variance)) / (2 * np.pi * self.variance) ** (len(xs) / 2)


# ----------------------------------------------------------------------------- C3
class LinearQuadratic:
    """C3: ``H = |p|^2/2``, ``f = (q/2)|x - mbar|^2``, ``g = (g0/2)|x - mbar|^2``, ``m0 = N(mbar, s0^2 I)``.

    ``U = (P(t)/2)|x - mbar|^2 + r(t)`` with
    ``P(t) = k (g0 + k tanh(k (T - t))) / (k + g0 tanh(k (T - t)))``, ``k = sqrt(q)``,
    ``r(t) = nu d int_t^T P``; each variance solves ``S' = -2 P S + 2 nu``.
    """

    def __init__(self, q, g0, nu, T, mbar, s0):
        self.q, self.g0, self.nu, self.T = float(q), float(g0), float(nu), float(T)
        self.mbar = np.atleast_1d(np.asarray(mbar, float))
        self.d = self.mbar.size
        self.s0 = float(s0)
        k = np.sqrt(self.q)
        self.k = k
        sol = solve_ivp(lambda t, S: -2 * self.P(t) * S + 2 * self.nu, (0, self.T), [self.s0**2],
                        rtol=1e-12, atol=1e-14, dense_output=True)
        self._var = sol.sol

    def P(self, t):
        k, g0 = self.k, self.g0
        th = np.tanh(k * (self.T - np.asarray(t, float)))
        if k == 0:
            return g0 / (1 + g0 * (self.T - np.asarray(t, float)))
        return k * (g0 + k * th) / (k + g0 * th)

    def r(self, t):
        return self.nu * self.d * quad(self.P, float(t), self.T, epsabs=1e-13)[0]

    def variance(self, t):
        return float(self._var(float(t))[0])

    def U(self, t, *xs):
        r2 = sum((x - mu) ** 2 for x, mu in zip(xs, self.mbar))
        return 0.5 * self.P(t) * r2 + self.r(t)

    def m(self, t, *xs):
        v = self.variance(t)
        r2 = sum((x - mu) ** 2 for x, mu in zip(xs, self.mbar))
        return np.exp(-0.5 * r2 / v) / (2 * np.pi * v) ** (self.d / 2)


# ----------------------------------------------------------------------------- C1
class CNFGaussian:
    """C1: CNF with kinetic weight lambda and KL terminal cost to N(0, 1), data N(mu0, s0^2) (1D).

    ``tau = T / lambda``; ``mu1 = mu0/(1 + tau)``,
    ``s1 = (s0 + sqrt(s0^2 + 4 tau (1 + tau))) / (2 (1 + tau))``; the density interpolates
    linearly in mean and standard deviation (straight trajectories);
    ``U = a x^2/2 + b x + c`` with ``a(t) = aT / (1 + aT (T - t)/lambda)``, ``aT = 1 - 1/s1^2``,
    ``b(t) = bT a(t)/aT`` (or ``bT`` when ``aT = 0``), ``bT = mu1/s1^2``.
    """

    def __init__(self, mu0, s0, lam, T=1.0):
        self.mu0, self.s0, self.lam, self.T = float(mu0), float(s0), float(lam), float(T)
        tau = self.T / self.lam
        self.tau = tau
        self.mu1 = self.mu0 / (1 + tau)
        self.s1 = (self.s0 + np.sqrt(self.s0**2 + 4 * tau * (1 + tau))) / (2 * (1 + tau))
        self.aT = 1 - 1 / self.s1**2
        self.bT = self.mu1 / self.s1**2

    def mean(self, t):
        return self.mu0 + (t / self.T) * (self.mu1 - self.mu0)

    def std(self, t):
        return self.s0 + (t / self.T) * (self.s1 - self.s0)

    def m(self, t, x):
        s = self.std(t)
        return np.exp(-0.5 * ((x - self.mean(t)) / s) ** 2) / (np.sqrt(2 * np.pi) * s)

    def a(self, t):
        return self.aT / (1 + self.aT * (self.T - t) / self.lam)

    def b(self, t):
        return self.bT * self.a(t) / self.aT if self.aT != 0 else self.bT

    def grad_U(self, t, x):
        return self.a(t) * x + self.b(t)

    def c(self, t):
        """The constant of ``U``, fixed by the terminal cost and ``dc/dt = b^2 / (2 lambda)``.

        At ``T``: ``g = log(m_T / pi) + 1 = aT x^2/2 + bT x - mu1^2/(2 s1^2) - log s1 + 1``, and
        ``int_t^T b^2 = bT^2 (T - t) / (1 + aT (T - t)/lambda)``. The ``+ 1`` of the KL first
        variation lives only here: it shifts U, not m.
        """
        cT = -self.mu1**2 / (2 * self.s1**2) - np.log(self.s1) + 1.0
        r = self.T - t
        return cT - self.bT**2 * r / (2 * self.lam * (1 + self.aT * r / self.lam))

    def U(self, t, x):
        """Value function ``a x^2/2 + b x + c`` (HJB ``-U_t + |U_x|^2/(2 lambda) = 0``)."""
        return self.a(t) * x**2 / 2 + self.b(t) * x + self.c(t)

    def velocity(self, t, x):
        """Optimal velocity ``v = -grad U / lambda``."""
        return -self.grad_U(t, x) / self.lam


# ----------------------------------------------------------------------------- C2 / C4
def ou_mixture(weights, means, covs, t):
    """C2: parameters of the OU-evolved mixture ``p_t = sum w_k N(a mu_k, a^2 S_k + (1 - a^2) I)``."""
    a = np.exp(-t)
    out = []
    for w, mu, S in zip(weights, means, covs):
        mu = np.atleast_1d(np.asarray(mu, float))
        S = np.asarray(S, float)
        S = S * np.eye(mu.size) if S.ndim == 0 else S
        out.append((w, a * mu, a**2 * S + (1 - a**2) * np.eye(mu.size)))
    return out


def ou_mixture_density_and_score(weights, means, covs, t, points):
    """Density and score ``grad log p_t`` of C2 at ``points`` (n, d)."""
    pts = np.atleast_2d(points)
    comps = ou_mixture(weights, means, covs, t)
    dens = np.zeros(len(pts))
    num = np.zeros_like(pts, dtype=float)
    tot_w = sum(c[0] for c in comps)
    for w, mu, C in comps:
        Ci = np.linalg.inv(C)
        z = pts - mu
        q = np.einsum("ni,ij,nj->n", z, Ci, z)
        pk = (w / tot_w) * np.exp(-0.5 * q) / np.sqrt((2 * np.pi) ** len(mu) * np.linalg.det(C))
        dens += pk
        num += pk[:, None] * (-(z @ Ci.T))
    return dens, num / np.maximum(dens, 1e-300)[:, None]


def ou_mixture_score_error(score_model, score, weights, means, covs, indices):
    """Largest density-weighted L2 error of a 1D grid score against C2 over time ``indices``:
    ``max_i ( int p_t (s_i - s_exact)^2 dx )^(1/2)``, ``p_t`` the exact density at ``times[i]``.
    """
    g = score_model.grid
    err = 0.0
    for i in indices:
        dens, exact = ou_mixture_density_and_score(weights, means, covs, score_model.times[i], g.points())
        err = max(err, float(np.sqrt(g.integrate(dens * (score[i, 0].ravel() - exact[:, 0]) ** 2))))
    return err


def fokker_planck_gaussian(mu0, S0, t):
    """C4: mean ``e^{-t} mu0`` and covariance ``e^{-2t} S0 + (1 - e^{-2t}) I`` of the OU flow to N(0, I)."""
    mu0 = np.atleast_1d(np.asarray(mu0, float))
    S0 = np.asarray(S0, float)
    S0 = S0 * np.eye(mu0.size) if S0.ndim == 0 else S0
    return np.exp(-t) * mu0, np.exp(-2 * t) * S0 + (1 - np.exp(-2 * t)) * np.eye(mu0.size)
