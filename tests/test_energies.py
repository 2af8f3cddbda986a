"""The energies of :mod:`mfgpde.generative.energies` equal their closed forms on Gaussians.

Each energy ``E(m)`` is checked twice: its value on a grid Gaussian against the analytic
integral (KL and cross-entropy of two Gaussians, the differential entropy, the second moment,
the Gaussian interaction integral, the integral of a Gaussian power), and its first variation
against the pointwise formula of the module's table. The grid quadrature ``sum_i f_i h^d`` is
spectrally accurate for smooth functions that vanish at the box's ends, so the bands are 1e-8.
That the first variations are the derivatives of the values is stated in
``test_generative.py::test_energy_first_variations_are_derivatives``.
"""

import numpy as np
import pytest
from helpers import normal_log_pdf

import mfgpde as mp
from mfgpde.generative import energies as E

GRID = mp.TensorGrid([(-12.0, 12.0)], 600, "noflux")
X = GRID.axes[0]
MU1, S1 = 0.4, 0.9      # the density m = N(MU1, S1^2)
MU2, S2 = -0.3, 1.3     # the reference pi = N(MU2, S2^2)


M = np.exp(normal_log_pdf(X, MU1, S1**2))
LOG_PI = lambda x: normal_log_pdf(x, MU2, S2**2)


def test_grid_density_is_normalised():
    assert abs(GRID.integrate(M) - 1.0) < 1e-12


def test_kl_of_two_gaussians():
    """KL(N(mu1, s1^2) || N(mu2, s2^2)) = log(s2/s1) + (s1^2 + (mu1 - mu2)^2) / (2 s2^2) - 1/2."""
    exact = np.log(S2 / S1) + (S1**2 + (MU1 - MU2) ** 2) / (2 * S2**2) - 0.5
    assert abs(E.KL(LOG_PI).value(M, GRID) - exact) < 1e-8
    # an array reference is the same energy
    assert abs(E.KL(LOG_PI(X)).value(M, GRID) - exact) < 1e-8
    # KL(m || m) = 0 and KL >= 0
    assert abs(E.KL(lambda x: normal_log_pdf(x, MU1, S1**2)).value(M, GRID)) < 1e-10


def test_kl_ignores_empty_cells_and_negative_round_off():
    """0 log 0 = 0: cells where m = 0 (or m < 0 by round-off) add nothing to the KL."""
    m = M.copy()
    m[X < -3] = 0.0
    m[X > 3] = -1e-17
    inside = (X >= -3) & (X <= 3)
    expected = GRID.integrate(np.where(inside, m * (np.log(np.where(inside, m, 1.0)) - LOG_PI(X)), 0.0))
    assert abs(E.KL(LOG_PI).value(m, GRID) - expected) < 1e-12


def test_kl_first_variation_and_its_tail_regularisation():
    """dKL/dm = log m - log pi + 1 (m below the default floor 1e-14 read as 1e-14); with eps,
    log(m/pi + eps) + 1."""
    fv = E.KL(LOG_PI).first_variation().value(M, GRID)
    np.testing.assert_allclose(fv, np.log(np.maximum(M, 1e-14)) - LOG_PI(X) + 1.0, rtol=0, atol=1e-12)
    eps = 1e-3
    fv = E.KL(LOG_PI, eps=eps).first_variation().value(M, GRID)
    np.testing.assert_allclose(fv, np.log(M / np.exp(LOG_PI(X)) + eps) + 1.0, rtol=0, atol=1e-10)
    # the floor: a density below it is read as the floor in log m
    floor = 1e-9
    m = np.where(np.abs(X) > 5, 0.0, M)
    fv = E.KL(LOG_PI, floor=floor).first_variation().value(m, GRID)
    np.testing.assert_allclose(fv, np.log(np.maximum(m, floor)) - LOG_PI(X) + 1.0, rtol=0, atol=1e-12)


def test_entropy_of_a_gaussian():
    """int m log m = -(1/2) log(2 pi e s^2); first variation log m + 1 (m read as >= floor)."""
    en = E.Entropy()
    assert abs(en.value(M, GRID) + 0.5 * np.log(2 * np.pi * np.e * S1**2)) < 1e-8
    np.testing.assert_allclose(en.first_variation().value(M, GRID), np.log(np.maximum(M, 1e-14)) + 1.0,
                               rtol=0, atol=1e-12)
    fv = E.Entropy(floor=1e-6).first_variation().value(M, GRID)
    np.testing.assert_allclose(fv, np.log(np.maximum(M, 1e-6)) + 1.0, rtol=0, atol=1e-12)
    m = np.where(np.abs(X) > 4, 0.0, M)
    assert abs(en.value(m, GRID) - GRID.integrate(np.where(m > 0, m * np.log(np.where(m > 0, m, 1.0)), 0.0))) < 1e-14


def test_cross_entropy_of_two_gaussians():
    """-int m log q = (1/2) log(2 pi s2^2) + (s1^2 + (mu1 - mu2)^2) / (2 s2^2); first variation -log q."""
    en = E.CrossEntropy(LOG_PI)
    exact = 0.5 * np.log(2 * np.pi * S2**2) + (S1**2 + (MU1 - MU2) ** 2) / (2 * S2**2)
    assert abs(en.value(M, GRID) - exact) < 1e-8
    np.testing.assert_allclose(en.first_variation().value(M, GRID), -LOG_PI(X), rtol=0, atol=1e-13)
    # an array of log q gives the same energy and first variation
    arr = E.CrossEntropy(LOG_PI(X))
    assert abs(arr.value(M, GRID) - exact) < 1e-8
    np.testing.assert_allclose(arr.first_variation().value(M, GRID), -LOG_PI(X), rtol=0, atol=1e-13)
    # Gibbs: cross-entropy = differential entropy (-int m log m) + KL
    assert abs(exact - (-E.Entropy().value(M, GRID) + E.KL(LOG_PI).value(M, GRID))) < 1e-8


def test_potential_energy_is_the_second_moment():
    en = E.PotentialEnergy(lambda x: x**2)
    assert abs(en.value(M, GRID) - (S1**2 + MU1**2)) < 1e-9
    np.testing.assert_allclose(en.first_variation().value(M, GRID), X**2, rtol=0, atol=0)


def test_interaction_energy_of_a_gaussian():
    """(1/2) int int exp(-(x-y)^2 / (2 a^2)) m(x) m(y) = (1/2) a / sqrt(a^2 + 2 s^2) for m = N(mu, s^2)."""
    a = 0.7
    en = E.InteractionEnergy(lambda z: np.exp(-(z**2) / (2 * a * a)))
    assert abs(en.value(M, GRID) - 0.5 * a / np.sqrt(a * a + 2 * S1**2)) < 1e-8
    # its first variation is W * m (not half of it): (W * m)(x) = a/sqrt(a^2+s^2) exp(-(x-mu)^2 / (2(a^2+s^2)))
    v = a * a + S1**2
    conv = a / np.sqrt(v) * np.exp(-((X - MU1) ** 2) / (2 * v))
    np.testing.assert_allclose(en.first_variation().value(M, GRID), conv, rtol=0, atol=1e-8)
    assert en.convex and not E.InteractionEnergy(lambda z: np.exp(-(z**2)), positive_definite=False).convex


@pytest.mark.parametrize("p", [1.5, 2.0, 3.0])
def test_porous_medium_energy(p):
    """int m^p / (p - 1) = (2 pi s^2)^((1-p)/2) / (sqrt(p) (p - 1)); first variation p/(p-1) m^(p-1)."""
    en = E.PorousMedium(p)
    exact = (2 * np.pi * S1**2) ** ((1 - p) / 2) / np.sqrt(p) / (p - 1)
    assert abs(en.value(M, GRID) - exact) < 1e-9
    np.testing.assert_allclose(en.first_variation().value(M, GRID), p / (p - 1) * M ** (p - 1), rtol=1e-12, atol=0)
    # negative round-off does not enter the power
    assert en.value(np.where(X > 6, -1e-3, M), GRID) == pytest.approx(en.value(np.where(X > 6, 0.0, M), GRID), abs=0)


def test_porous_medium_default_is_the_quadratic_energy():
    """PorousMedium() is p = 2: int m^2, first variation 2 m."""
    en = E.PorousMedium()
    assert en.p == 2.0
    assert en.value(M, GRID) == pytest.approx(GRID.integrate(M**2), rel=1e-14)
    np.testing.assert_allclose(en.first_variation().value(M, GRID), 2 * M, rtol=1e-14)


def test_sums_and_weights_are_linear():
    """(a E1 + E2)(m) = a E1(m) + E2(m), and the same for the first variations."""
    e1, e2, a = E.KL(LOG_PI), E.PorousMedium(2.0), -0.35
    total = a * e1 + e2
    assert total.value(M, GRID) == pytest.approx(a * e1.value(M, GRID) + e2.value(M, GRID), rel=1e-13)
    np.testing.assert_allclose(total.first_variation().value(M, GRID),
                               a * e1.first_variation().value(M, GRID) + e2.first_variation().value(M, GRID),
                               rtol=1e-13, atol=1e-13)
    # sums flatten, and a sum of three has three terms
    three = e1 + e2 + E.Entropy()
    assert len(three.terms) == 3 and [type(t).__name__ for t in three.terms] == ["KL", "PorousMedium", "Entropy"]
    assert three.value(M, GRID) == pytest.approx(sum(t.value(M, GRID) for t in three.terms), rel=1e-13)
    # E.as_coupling() is its first variation
    np.testing.assert_array_equal(e2.as_coupling().value(M, GRID), e2.first_variation().value(M, GRID))


def test_convexity_flags():
    """A negative weight or a non-positive-definite kernel makes the energy non-convex, and a sum is
    convex only when every term is."""
    assert E.KL(LOG_PI).convex and (2.0 * E.Entropy()).convex and (0.0 * E.Entropy()).convex
    assert not (-1.0 * E.Entropy()).convex
    assert (E.KL(LOG_PI) + E.PorousMedium(2.0)).convex
    assert not (E.KL(LOG_PI) + (-0.5) * E.PorousMedium(2.0)).convex
    nonconvex = E.InteractionEnergy(lambda z: -np.exp(-(z**2)), positive_definite=False)
    assert not (E.KL(LOG_PI) + nonconvex).convex
    assert not (2.0 * nonconvex).convex


def test_describe():
    assert E.PorousMedium(2.0).describe() == {"type": "PorousMedium"}
    assert (0.5 * E.Entropy()).describe() == {"type": "scaled", "weight": 0.5, "energy": {"type": "Entropy"}}
    assert (E.KL(LOG_PI) + E.Entropy()).describe() == {"type": "sum", "terms": [{"type": "KL"}, {"type": "Entropy"}]}


def test_refusals():
    with pytest.raises(ValueError, match="energy weight must be finite"):
        np.inf * E.Entropy()
    for p in (1.0, 0.5, -2.0):
        with pytest.raises(ValueError, match=rf"p \(porous-medium exponent\) must be > 1, got {p}"):
            E.PorousMedium(p)
    assert E.PorousMedium(1.0 + 1e-9).p > 1
    with pytest.raises(ValueError, match="KL reference pi: the density vanishes"):
        E.KL(lambda x: np.where(x > 0, -np.inf, 0.0)).value(M, GRID)
    with pytest.raises(ValueError, match="cross-entropy data density: the density vanishes"):
        E.CrossEntropy(np.where(X > 0, np.nan, 0.0)).value(M, GRID)
    with pytest.raises(NotImplementedError):
        E.Energy().value(M, GRID)
    with pytest.raises(NotImplementedError):
        E.Energy().first_variation()
