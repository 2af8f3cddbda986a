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


@pytest.mark.parametrize(("shape", "boundary"), [((15,), "periodic"), ((9, 7), "periodic"), ((15,), "noflux"),
                                               ((9, 7), "noflux"), ((8, 6), "noflux")])
def test_grid_convolution_is_the_quadrature_sum(shape, boundary):
    # odd point counts when periodic: a displacement of exactly half a period has no minimum image
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


def brute_force_mesh_sum(kernel, pts, mu, m, periods=()):
    """``sum_j K(x_i - x_j) mu_j m_j`` over every pair; minimum image along ``(axis, period)``."""
    Z = pts[:, None, :] - pts[None, :, :]
    for axis, period in periods:
        Z[..., axis] -= period * np.round(Z[..., axis] / period)
    return ((kernel(*np.moveaxis(Z, -1, 0)) * mu[None, :]) @ np.asarray(m).T).T


@pytest.mark.parametrize("periodic", [False, True])
def test_mesh_convolution_is_the_lumped_sum_within_the_cut_off(periodic, monkeypatch):
    rng = np.random.default_rng(5)
    pts = rng.random((120, 2)) * [2.0, 1.0]
    mu = rng.random(120) * 0.02 + 0.01
    per = [(0, 0.0, 2.0)] if periodic else []
    dom = fake_mesh(pts, mu, per)
    kernel = lambda *z: np.exp(-(z[0] ** 2 + z[1] ** 2) / 0.02) * (1.0 + 0.5 * z[0])
    m = rng.random(120)
    dense_checks = []
    monkeypatch.setattr("mfgpde.memory.require", lambda nbytes, what: dense_checks.append(nbytes))
    got = C.ConvolutionCoupling(kernel, scale=1.5).value(m[None, :], dom)[0]
    want = 1.5 * brute_force_mesh_sum(kernel, pts, mu, m, [(0, 2.0)] if periodic else [])
    # the kernel is cut off at 1e-12 of its maximum: the sums agree to that
    assert np.abs(got - want).max() <= 1e-10 * np.abs(want).max()
    W, radius = C.ConvolutionCoupling(kernel)._mesh_matrix(dom)
    assert 0.4 < radius < 1.0 and W.nnz < 0.6 * 120**2        # sparse: pairs beyond the cut-off are dropped
    assert dense_checks == []                                # and no dense matrix was sized


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


@pytest.mark.parametrize("periodic", [False, True])
def test_mesh_convolution_with_a_kernel_that_does_not_decay_is_the_full_sum(periodic, monkeypatch):
    # K never falls below 1e-12 max|K| within the domain: the cut-off is the diameter, every pair
    # counts (minimum image across the periodic seam), and the dense matrix is sized up front at
    # 16 bytes per entry (a CSR value and a column index)
    # periods 5 and 0.9 (odd, and below one): the half period and the seam on either axis matter
    rng = np.random.default_rng(8)
    pts = rng.random((60, 2)) * [5.0, 0.9] - [1.0, 0.0]
    mu = rng.random(60) * 0.1 + 0.05
    dom = fake_mesh(pts, mu, [(0, -1.0, 4.0), (1, 0.0, 0.9)] if periodic else [])
    kernel = lambda *z: 2.0 + 0.3 * z[0] - 0.1 * z[1]
    asked = []
    monkeypatch.setattr("mfgpde.memory.require", lambda nbytes, what: asked.append((nbytes, what)))
    m = rng.random((3, 60))
    got = C.ConvolutionCoupling(kernel, scale=0.5).value(m, dom)
    want = 0.5 * brute_force_mesh_sum(kernel, pts, mu, m, [(0, 5.0), (1, 0.9)] if periodic else [])
    assert got.shape == (3, 60)
    assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()
    W, radius = C.ConvolutionCoupling(kernel)._mesh_matrix(dom)
    diam = np.hypot(2.5, 0.45) if periodic else np.hypot(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]))
    assert W.nnz == 60 * 60 and radius == pytest.approx(diam, rel=1e-12)
    # once per coupling instance (the matrix is cached), naming what would not fit
    assert asked == [(16.0 * 60 * 60, "a dense convolution kernel between 60 and 60 vertices")] * 2


def test_mesh_convolution_of_a_single_density_keeps_its_shape():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    dom = fake_mesh(pts, [0.5, 1.0, 2.0], [])
    kernel = lambda *z: np.exp(-(z[0] ** 2 + z[1] ** 2))
    got = C.ConvolutionCoupling(kernel).value(np.array([1.0, 2.0, 3.0]), dom)
    want = [0.5 + 2 * np.exp(-1) + 6 * np.exp(-4), 0.5 * np.exp(-1) + 2 + 6 * np.exp(-5),
            0.5 * np.exp(-4) + 2 * np.exp(-5) + 6]
    assert got.shape == (3,) and np.allclose(got, want, rtol=1e-10, atol=0)


def test_documented_defaults_and_flags():
    # the defaults each docstring states, and the flags the Newton driver reads
    assert C.LogCoupling().describe() == {"type": "log", "scale": 1.0, "floor": 1e-14}
    assert C.PowerCoupling().describe() == {"type": "power", "p": 1.0, "scale": 1.0}
    assert C.KLCoupling(lambda x: 0 * x).eps == 1e-6 and C.KLCoupling(lambda x: 0 * x).floor == 1e-14
    conv = C.ConvolutionCoupling(lambda z: z)
    assert conv.describe() == {"type": "convolution", "scale": 1.0} and conv.monotone and not conv.local
    assert C.CallableCoupling(np.sqrt).monotone and not C.CallableCoupling(np.sqrt, monotone=False).monotone
    assert C.ZeroCoupling().monotone and C.ZeroCoupling().local
    # couplings with log m need a positive density (the Newton step floors m); power ones do not
    assert C.LogCoupling().needs_positive_density and C.KLCoupling(lambda x: 0 * x).needs_positive_density
    assert not C.PowerCoupling().needs_positive_density and not C.ZeroCoupling().needs_positive_density
    assert (C.PowerCoupling() + C.LogCoupling()).needs_positive_density
    assert not (C.PowerCoupling() + C.ConvolutionCoupling(lambda z: z)).local
    kl = C.kl_terminal(lambda x: 0 * x)
    assert kl.describe()["terms"][0] == {"type": "log", "scale": 1.0, "floor": 1e-14}
    g = mp.TensorGrid([(0, 1)], 4, "noflux")
    assert np.allclose(kl.value(np.full(4, np.e), g), 2.0, rtol=1e-15)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: C.LogCoupling(scale=-0.1), "scale .log coupling. must be finite and >= 0"),
    (lambda: C.LogCoupling(scale=np.inf), "scale .log coupling. must be finite and >= 0"),
    (lambda: C.LogCoupling(floor=0.0), "floor must be > 0"),
    (lambda: C.LogCoupling(floor=-1e-3), "floor must be > 0"),
    (lambda: C.PowerCoupling(p=0.0), "p .power-coupling exponent. must be finite and > 0"),
    (lambda: C.PowerCoupling(p=-2.0), "p .power-coupling exponent. must be finite and > 0"),
    (lambda: C.PowerCoupling(p=np.inf), "p .power-coupling exponent. must be finite and > 0"),
    (lambda: C.PowerCoupling(scale=np.nan), "scale .power coupling. must be finite"),
    (lambda: C.ConvolutionCoupling(np.exp, scale=np.inf), "scale .convolution coupling. must be finite"),
    (lambda: C.KLCoupling(lambda x: 0 * x, eps=-1e-9), "eps must be >= 0"),
    (lambda: C.KLCoupling(np.array([0.0, -np.inf])), "log_pi: the reference density vanishes"),
    (lambda: C.kl_terminal(np.array([0.0, np.nan])), "log_pi: the reference density vanishes"),
    (lambda: C.gaussian_log_density([0.0, np.nan], 1.0), "gaussian mean must be a finite vector"),
    (lambda: C.gaussian_log_density([0.0, 0.0], [1.0, 2.0, 3.0]), r"a 2x2 matrix for a 2D mean, got shape \(1, 3\)"),
    (lambda: C.gaussian_log_density([[0.0, 0.0]], 1.0), "gaussian mean must be a finite vector"),
    (lambda: C.gaussian_log_density([0.0, 0.0], np.eye(3)), "got shape .3, 3."),
    (lambda: C.gaussian_log_density([0.0, 0.0, 0.0], [1.0, 2.0]), r"got shape \(1, 2\)"),
    (lambda: C.gaussian_log_density([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]]), "symmetric positive definite"),
    (lambda: C.gaussian_log_density([0.0, 0.0], [1.0, 0.0]), "symmetric positive definite"),
    (lambda: C.gaussian_log_density([0.0, 0.0], [[1.0, np.inf], [np.inf, 1.0]]), "symmetric positive definite"),
    (lambda: C.gaussian_log_density([0.0], -1.0), "symmetric positive definite"),
    (lambda: C.PotentialCoupling(object()), "must be a callable V"),
    (lambda: C.PotentialCoupling([[1.0, 2.0], [3.0]]), "must be a callable V"),
    (lambda: C.PotentialCoupling("x**2"), "must be a callable V"),
    (lambda: C.CallableCoupling(2.0), "coupling f must be callable"),
])
def test_parameters_out_of_range_are_refused_by_name(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_boundary_values_of_the_parameters_are_allowed():
    assert C.LogCoupling(scale=0.0, floor=1e-300).floor == 1e-300
    assert C.KLCoupling(lambda x: 0 * x, eps=0.0).eps == 0.0
    assert C.PowerCoupling(p=1e-6, scale=-1.0).p == 1e-6


def test_gaussian_log_density_in_one_and_three_dimensions():
    x = np.linspace(-2, 2, 9)
    got = C.gaussian_log_density(0.5, 0.7)(x)
    assert np.allclose(got, multivariate_normal(0.5, 0.7).logpdf(x), rtol=1e-13, atol=1e-13)
    mean, var = [0.1, -0.4, 0.3], [0.5, 1.5, 0.9]
    pts = np.random.default_rng(2).standard_normal((20, 3))
    for cov, full in ((var, np.diag(var)), ([[0.8]], 0.8 * np.eye(3)), (0.8, 0.8 * np.eye(3))):
        got = C.gaussian_log_density(mean, cov)(*pts.T)
        assert np.allclose(got, multivariate_normal(mean, full).logpdf(pts), rtol=1e-13, atol=1e-13)
    # on the coordinate arrays of a grid (2D arrays), as the couplings call it
    X, Y = np.meshgrid(np.linspace(-2, 2, 5), np.linspace(-1, 1, 4), indexing="ij")
    got = C.gaussian_log_density(mean[:2], var[:2])(X, Y)
    want = multivariate_normal(mean[:2], np.diag(var[:2])).logpdf(np.stack([X, Y], axis=-1))
    assert got.shape == (5, 4) and np.allclose(got, want, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="has 3 components but the grid is 2D"):
        C.gaussian_log_density(mean, var)(pts[:, 0], pts[:, 1])
    with pytest.raises(ValueError, match="has 2 components but the grid is 3D"):
        C.gaussian_log_density(mean[:2], var[:2])(*pts.T)


def test_potential_coupling_from_a_constant_and_the_kl_floor():
    g = mp.TensorGrid([(0, 1), (0, 2)], [4, 5], "noflux")
    out = C.PotentialCoupling(np.array(2.5)).value(np.ones((2,) + g.shape), g)
    assert out.shape == (2, 4, 5) and np.all(out == 2.5)
    for wrong in (np.ones(4), np.ones(0)):
        with pytest.raises(ValueError, match=rf"array of shape \({wrong.size},\) does not match the grid shape \(4, 5\)"):
            C.PotentialCoupling(wrong).value(np.ones(g.shape), g)
    # eps = 0: the KL treats m below its floor as the floor, in the value and (flat) in the derivative
    g1 = mp.TensorGrid([(0, 1)], 4, "noflux")
    kl = C.KLCoupling(np.zeros(4), eps=0.0, floor=1e-10)
    m = np.array([0.0, 1e-12, 2.0, 0.25])
    assert np.allclose(kl.value(m, g1), np.log([1e-10, 1e-10, 2.0, 0.25]) + 1, rtol=1e-15)
    assert kl.derivative(m, g1).tolist() == [0.0, 0.0, 0.5, 4.0]
    # eps > 0: at m = 0 the regularised derivative is 0 (the cost is flat in m < 0), above it 1/(m + eps pi)
    reg = C.KLCoupling(np.zeros(4), eps=0.5)
    m = np.array([-1.0, 0.0, 1.5, 0.25])
    assert reg.derivative(m, g1).tolist() == [0.0, 0.0, 0.5, 1 / 0.75]
    assert np.allclose(reg.value(m, g1), np.log([0.5, 0.5, 2.0, 0.75]) + 1, rtol=1e-15)


def test_mesh_cut_off_follows_a_kernel_that_is_long_along_the_diagonal():
    # K decays fast across the diagonal and slowly along it: the cut-off radius must come from the
    # diagonal probe (unit direction (1, 1)/sqrt 2), or pairs along the diagonal are dropped
    rng = np.random.default_rng(4)
    pts = rng.random((150, 2)) * 2.0
    mu = np.full(150, 4.0 / 150)
    dom = fake_mesh(pts, mu, [])
    kernel = lambda *z: np.exp(-((z[0] - z[1]) ** 2) / 0.005 - (z[0] + z[1]) ** 2 / 0.3)
    m = rng.random(150)
    got = C.ConvolutionCoupling(kernel).value(m, dom)
    want = brute_force_mesh_sum(kernel, pts, mu, m)
    assert np.abs(got - want).max() <= 1e-10 * np.abs(want).max()
    # 1e-12 along the diagonal at |z| = sqrt(0.15 log 1e12) = 2.03, inside the diameter 2.8
    _, radius = C.ConvolutionCoupling(kernel)._mesh_matrix(dom)
    assert 2.03 < radius < 2.1
