"""Couplings and terminal costs against their definitions (brute-force sums, closed forms).

``test_derivatives`` checks each ``derivative`` against a finite difference of ``value``; that
cannot see an error shared by both (a convolution with the wrong displacement sign, a KL with
the wrong reference). These tests compute ``value`` from the formula in each docstring.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import mfgpde as mp
from mfgpde import couplings as C


def asymmetric_kernel(*z):
    """A kernel with K(z) != K(-z) on every axis, so a reversed displacement is seen."""
    return np.exp(-sum((zk - 0.3 * (k + 1)) ** 2 for k, zk in enumerate(z))) * (1.0 + 0.5 * z[0])


def brute_force_convolution(kernel, grid, m, periodic):
    """``sum_j K(x_i - x_j) m_j h^d``: minimum image on periodic boxes, plain differences otherwise."""
    X = np.stack([c.ravel() for c in np.meshgrid(*grid.axes, indexing="ij")], axis=1)
    Z = X[:, None, :] - X[None, :, :]
    if periodic:
        L = np.array([b - a for a, b in grid.bounds])
        Z -= L * np.round(Z / L)
    K = np.asarray(kernel(*np.moveaxis(Z, -1, 0)), float)
    return (K @ m.ravel() * grid.cell_volume).reshape(grid.shape)


@pytest.mark.parametrize("shape", [(15,), (9, 7)])
@pytest.mark.parametrize("boundary", ["periodic", "noflux"])
def test_grid_convolution_is_the_quadrature_sum(shape, boundary):
    # odd point counts: a displacement of exactly half a period has no minimum image
    g = mp.TensorGrid([(-1.0, 1.5)] * len(shape), list(shape), boundary)
    rng = np.random.default_rng(3)
    m = rng.random(g.shape)
    c = C.ConvolutionCoupling(asymmetric_kernel, scale=0.7)
    got = c.value(m, g)
    want = 0.7 * brute_force_convolution(asymmetric_kernel, g, m, boundary == "periodic")
    assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()
    # a path of densities (leading time axis) is convolved slice by slice
    path = np.stack([m, 2 * m])
    assert np.allclose(c.value(path, g), np.stack([got, 2 * got]), rtol=1e-13, atol=0)


def test_grid_convolution_refuses_mixed_boundaries():
    g = mp.TensorGrid([(0, 1), (0, 1)], [5, 5], ["periodic", "noflux"])
    with pytest.raises(NotImplementedError, match="mixed periodic/no-flux"):
        C.ConvolutionCoupling(asymmetric_kernel).value(np.ones(g.shape), g)


def fake_mesh(points, mu, periodic):
    """The part of a mesh domain that ``ConvolutionCoupling`` reads, on one rank."""
    pts = np.asarray(points, float)
    return SimpleNamespace(is_mesh=True, coords=pts, mu=np.asarray(mu, float), n=len(pts), dim=pts.shape[1],
                           periodic=periodic, allgather=lambda a, axis=0: a)


@pytest.mark.parametrize("periodic", [False, True])
def test_mesh_convolution_is_the_lumped_sum_within_the_cut_off(periodic):
    rng = np.random.default_rng(5)
    pts = rng.random((120, 2)) * [2.0, 1.0]
    mu = rng.random(120) * 0.02 + 0.01
    per = [(0, 0.0, 2.0)] if periodic else []
    dom = fake_mesh(pts, mu, per)
    kernel = lambda *z: np.exp(-(z[0] ** 2 + z[1] ** 2) / 0.02) * (1.0 + 0.5 * z[0])
    m = rng.random(120)
    got = C.ConvolutionCoupling(kernel, scale=1.5).value(m[None, :], dom)[0]
    Z = pts[:, None, :] - pts[None, :, :]
    if periodic:
        Z[..., 0] -= 2.0 * np.round(Z[..., 0] / 2.0)
    want = 1.5 * (kernel(Z[..., 0], Z[..., 1]) * mu[None, :]) @ m
    # the kernel is cut off at 1e-12 of its maximum: the sums agree to that
    assert np.abs(got - want).max() <= 1e-10 * np.abs(want).max()
    W, radius = C.ConvolutionCoupling(kernel)._mesh_matrix(dom)
    assert 0.4 < radius < 1.0 and W.nnz < 0.6 * 120**2        # sparse: pairs beyond the cut-off are dropped


def test_kl_first_variation_and_its_tail_regularisation():
    g = mp.TensorGrid([(-3, 3)], 31, "noflux")
    x = g.axes[0]
    log_pi = lambda x: -0.5 * x**2 - 0.5 * np.log(2 * np.pi)
    m = np.exp(-((x - 0.5) ** 2)) + 1e-30
    pi = np.exp(log_pi(x))
    exact = C.KLCoupling(log_pi, eps=0.0)
    assert np.allclose(exact.value(m, g), np.log(m) - log_pi(x) + 1.0, rtol=1e-14, atol=1e-13)
    # its derivative is 1/m above the floor and 0 below it (log max(m, floor) is flat there)
    low = np.where(x < 0, 1e-20, m)
    assert np.array_equal(exact.derivative(low, g), np.where(x < 0, 0.0, 1.0 / low))
    reg = C.KLCoupling(log_pi, eps=1e-3)
    assert np.allclose(reg.derivative(m, g), 1.0 / (m + 1e-3 * pi), rtol=1e-14, atol=0)
    assert np.allclose(reg.value(m, g), np.log(m + 1e-3 * pi) - log_pi(x) + 1.0, rtol=1e-14, atol=1e-13)
    # the regularised cost levels off at log(eps) + 1 where m << eps pi, and is the KL's where m >> eps pi
    assert abs(reg.value(np.zeros(31), g) - (np.log(1e-3) + 1)).max() < 1e-12
    assert abs(reg.value(m, g)[15] - exact.value(m, g)[15]) < 2e-3
    # kl_terminal is the same first variation, assembled from a log and a potential
    assert np.allclose(C.kl_terminal(log_pi, floor=1e-40).value(m, g), exact.value(m, g), rtol=1e-13, atol=1e-12)
    assert np.allclose(C.kl_terminal(log_pi(x), scale=2.0, floor=1e-40).value(m, g), 2 * exact.value(m, g),
                       rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("cov", [0.3, [0.3, 0.8], [[0.5, 0.2], [0.2, 0.4]]])
def test_gaussian_log_density_matches_scipy(cov):
    mean = [0.4, -0.2]
    full = np.diag(cov) if np.ndim(cov) == 1 else np.asarray(cov) if np.ndim(cov) == 2 else cov * np.eye(2)
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((50, 2))
    got = C.gaussian_log_density(mean, cov)(pts[:, 0], pts[:, 1])
    assert np.allclose(got, multivariate_normal(mean, full).logpdf(pts), rtol=1e-13, atol=1e-13)


def test_potential_coupling_from_an_array_and_from_a_callable():
    g = mp.TensorGrid([(0, 1), (0, 2)], [4, 5], "noflux")
    X, Y = g.coordinates()
    V = X + 10 * Y
    m = np.ones((3,) + g.shape)
    for field in (V, lambda x, y: x + 10 * y):
        out = C.PotentialCoupling(field).value(m, g)
        assert out.shape == m.shape and np.array_equal(out[2], V)
    with pytest.raises(ValueError, match="does not match the grid shape"):
        C.PotentialCoupling(np.ones((5, 4))).value(m, g)
    with pytest.raises(ValueError, match="must be finite"):
        C.PotentialCoupling(np.full(g.shape, np.nan)).value(m, g)


def test_log_and_power_couplings_below_and_above_their_kinks():
    g = mp.TensorGrid([(0, 1)], 4, "noflux")
    m = np.array([-1.0, 0.0, 1e-20, 4.0])
    log = C.LogCoupling(scale=2.0, floor=1e-12)
    assert np.allclose(log.value(m, g), 2 * np.log([1e-12, 1e-12, 1e-12, 4.0]), rtol=1e-15)
    assert np.array_equal(log.derivative(m, g), [0, 0, 0, 0.5])
    sq = C.PowerCoupling(2.0, scale=3.0)
    assert np.allclose(sq.value(m, g), [0, 0, 3e-40, 48.0], rtol=1e-14, atol=0)
    assert np.allclose(sq.derivative(m, g), [0, 0, 6e-20, 24.0], rtol=1e-14, atol=0)
    root = C.PowerCoupling(0.5)
    assert root.derivative(np.array([0.0]), g)[0] == np.inf and root.derivative(np.array([4.0]), g)[0] == 0.25
    # one is the boundary case of the kink: the derivative at m = 0 is the slope, not infinite
    assert C.PowerCoupling(1.0, 2.0).derivative(np.array([0.0, 3.0]), g).tolist() == [0.0, 2.0]
    assert C.PowerCoupling(1.0).monotone and not C.PowerCoupling(1.0, -1.0).monotone


def test_monotonicity_flags_follow_the_sign_of_the_scale():
    base = C.PowerCoupling(2.0)
    assert C.ScaledCoupling(base, 0.0).monotone and C.ScaledCoupling(base, 2.0).monotone
    assert not C.ScaledCoupling(base, -0.3).monotone
    assert not C.ScaledCoupling(C.PowerCoupling(1.0, -1.0), 2.0).monotone
    assert C.LogCoupling(0.0).monotone and C.PowerCoupling(1.0, 0.0).monotone
