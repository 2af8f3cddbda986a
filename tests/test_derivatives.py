"""Every coupling and Hamiltonian states its derivatives correctly (central differences).

The registries below must name every concrete class: a new coupling or Hamiltonian that is not
added here fails :func:`test_registry_is_complete`, so its derivatives are checked from the
day it is written. Newton's Jacobian is assembled from these derivatives; a wrong one costs
the quadratic rate at best and converges to a wrong solution at worst.
"""

import numpy as np
import pytest

import mfgpde as mp
from mfgpde import couplings as C
from mfgpde import hamiltonians as Hm

GRID = mp.TensorGrid([(0, 1), (0, 2)], (7, 6), "periodic")

COUPLINGS = {
    "LogCoupling": lambda: C.LogCoupling(1.7),
    "PowerCoupling": lambda: C.PowerCoupling(1.5, scale=0.8),
    "PotentialCoupling": lambda: C.PotentialCoupling(lambda x, y: np.sin(x) * y),
    "CallableCoupling": lambda: C.CallableCoupling(lambda m: m**3 + np.sin(m), lambda m: 3 * m**2 + np.cos(m)),
    "KLCoupling": lambda: C.KLCoupling(lambda x, y: -0.5 * (x**2 + y**2), eps=1e-3),
    "SumCoupling": lambda: C.LogCoupling(0.5) + C.PowerCoupling(2.0),
    "ScaledCoupling": lambda: C.ScaledCoupling(C.PowerCoupling(2.0), -0.3),
    "ZeroCoupling": lambda: C.ZeroCoupling(),
    "ConvolutionCoupling": lambda: C.ConvolutionCoupling(lambda *d: np.exp(-sum(x**2 for x in d)), 0.5),
}

HAMILTONIANS = {
    "QuadraticHamiltonian": lambda: Hm.QuadraticHamiltonian(0.7),
    "PowerHamiltonian": lambda: Hm.PowerHamiltonian(1.5, delta=0.1),
    "CongestionHamiltonian": lambda: Hm.CongestionHamiltonian(0.5, 2.0, 1.3),
    "CustomHamiltonian": lambda: Hm.CustomHamiltonian(lambda S, m: S**2 / (1 + m), phi_S=lambda S, m: 2 * S / (1 + m),
                                                      phi_SS=lambda S, m: 2 / (1 + m) + 0 * S, phi_m=lambda S, m: -S**2 / (1 + m)**2,
                                                      phi_Sm=lambda S, m: -2 * S / (1 + m)**2),
}


def _concrete(base):
    out, stack = set(), list(base.__subclasses__())
    while stack:
        c = stack.pop()
        stack.extend(c.__subclasses__())
        if c.__module__.startswith("mfgpde."):
            out.add(c.__name__)
    return out


def test_registry_is_complete():
    assert _concrete(C.Coupling) <= set(COUPLINGS), "add the new coupling to COUPLINGS"
    assert _concrete(Hm.Hamiltonian) <= set(HAMILTONIANS), "add the new Hamiltonian to HAMILTONIANS"


@pytest.mark.parametrize("name", sorted(COUPLINGS))
def test_coupling_derivative(name, rng):
    f = COUPLINGS[name]()
    m = 0.5 + rng.random(GRID.shape)
    eps = 1e-6
    fd = (f.value(m + eps, GRID) - f.value(m - eps, GRID)) / (2 * eps)
    d = f.derivative(m, GRID)
    if f.local:
        np.testing.assert_allclose(d, fd, rtol=1e-6, atol=1e-7)
    else:  # nonlocal: the derivative is the local part only; here a pure convolution has none
        np.testing.assert_allclose(d, 0.0)
        # a uniform perturbation of m changes a convolution: the value does depend on m
        assert np.abs(fd).max() > 1e-3


@pytest.mark.parametrize("name", sorted(HAMILTONIANS))
def test_hamiltonian_derivatives(name, rng):
    H = HAMILTONIANS[name]()
    S = 0.2 + rng.random(50)
    m = 0.5 + rng.random(50)
    e = 1e-6

    def dS(fun):
        return (fun(S + e, m) - fun(S - e, m)) / (2 * e)

    def dm(fun):
        return (fun(S, m + e) - fun(S, m - e)) / (2 * e)

    np.testing.assert_allclose(H.phi_S(S, m), dS(H.phi), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(H.phi_m(S, m), dm(H.phi), rtol=1e-6, atol=1e-8)
    if H.has_second_derivatives:
        np.testing.assert_allclose(H.phi_SS(S, m), dS(H.phi_S), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(H.phi_Sm(S, m), dm(H.phi_S), rtol=1e-6, atol=1e-8)
    # the pointwise form agrees: dH/dp = 2 phi_S p
    p = rng.standard_normal((50, 2))
    Sp = (p**2).sum(axis=1)
    grad = np.empty_like(p)
    for k in range(2):
        q = p.copy()
        q[:, k] += e
        r = p.copy()
        r[:, k] -= e
        grad[:, k] = (H.H(q, m) - H.H(r, m)) / (2 * e)
    np.testing.assert_allclose(H.dH_dp(p, m), grad, rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(H.phi(Sp, m)))
