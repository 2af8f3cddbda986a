"""The toy data sets: samples and densities agree, quadrature is exact, noised laws and scores."""

import numpy as np
import pytest

from mfgpde.closed_forms import ou_mixture_density_and_score
from mfgpde.generative import toys
from mfgpde.grid import TensorGrid

BOX = [[-5.0, 5.0], [-5.0, 5.0]]


def _cell_probabilities(data, bins, sub=8):
    """Probability of each of bins x bins cells of BOX, by a sub x sub midpoint rule per cell
    (the checkerboard's cells: exact cell averages).
    """
    fine = TensorGrid(BOX, [bins * sub, bins * sub])
    vals = data.on_grid(fine) * fine.cell_volume
    return vals.reshape(bins, sub, bins, sub).sum(axis=(1, 3))


def _chi_square(data, n=40000, bins=12, seed=0):
    X = data.sample(n, seed=seed)
    counts, _, _ = np.histogram2d(X[:, 0], X[:, 1], bins=bins, range=BOX)
    expected = n * _cell_probabilities(data, bins)
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum() + (n - counts.sum()))
    exp = np.append(expected[big], n - expected[big].sum())
    dof = len(obs) - 1
    return float(np.sum((obs - exp) ** 2 / np.maximum(exp, 1e-12))), dof


@pytest.mark.parametrize("name", toys.NAMES)
def test_samples_follow_the_density(name):
    # Pearson's chi-square over 12 x 12 cells: the statistic of an exact sampler is ~ dof +- sqrt(2 dof)
    chi2, dof = _chi_square(toys.toy(name))
    assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)


@pytest.mark.parametrize("name", ["checkerboard", "2spirals", "pinwheel"])
def test_noised_samples_follow_the_noised_density(name):
    chi2, dof = _chi_square(toys.toy(name).noised(0.6, 0.5), seed=1)
    assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)


def test_a_wrong_density_fails_the_sample_test():
    # the control: the moons' samples against the moons shifted by a tenth of a cell fail
    moons = toys.toy("moons")

    class Shifted(toys.ToyData):
        def density(self, x, y):
            return moons.density(x - 0.3, y)

        def sample(self, n, seed=None):
            return moons.sample(n, seed)

    chi2, dof = _chi_square(Shifted())
    assert chi2 > dof + 10 * np.sqrt(2 * dof)


@pytest.mark.parametrize("name", ["2spirals", "pinwheel", "rings"])
def test_quadrature_is_converged(name, monkeypatch):
    g = TensorGrid(BOX, [48, 48])
    coarse = toys._BUILDERS[name]().on_grid(g)
    monkeypatch.setattr(toys, "PANEL_WIDTHS", toys.PANEL_WIDTHS / 2)
    fine = toys._BUILDERS[name]().on_grid(g)
    assert np.max(np.abs(coarse - fine)) < 1e-8 * coarse.max()


@pytest.mark.parametrize("name", toys.NAMES)
def test_unit_mass_in_the_zoo_box(name):
    g = TensorGrid(BOX, [64, 64])
    assert abs(toys.toy(name).mass_in(g) - 1) < 2e-5


def test_checkerboard_cell_averages_are_exact():
    # cells of width 10/7 straddle the squares' edges; their averages integrate to exactly 1 and
    # a cell inside a square carries 1/32
    g = TensorGrid(BOX, [7, 7])
    vals = toys.toy("checkerboard").on_grid(g)
    assert g.integrate(vals) == pytest.approx(1.0, abs=1e-14)
    assert toys.toy("checkerboard").density(np.array(-3.0), np.array(-3.0)) == pytest.approx(1 / 32)
    assert toys.toy("checkerboard").density(np.array(-1.0), np.array(-3.0)) == 0.0


@pytest.mark.parametrize("name", ["checkerboard", "moons", "8gaussians"])
def test_score_is_the_gradient_of_the_log_density(name):
    law = toys.ou_marginal(toys.toy(name), 0.4)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-4, 4, 50), rng.uniform(-4, 4, 50)
    h = 1e-5
    fd = np.stack([(law.log_density(x + h, y) - law.log_density(x - h, y)) / (2 * h),
                   (law.log_density(x, y + h) - law.log_density(x, y - h)) / (2 * h)])
    assert np.allclose(law.score(x, y), fd, atol=1e-5, rtol=1e-5)


def test_ou_marginal_of_the_8_gaussians_is_the_closed_form():
    # C2 in 2D: the OU flow of a Gaussian mixture (mfgpde.closed_forms), an independent formula
    data = toys.toy("8gaussians")
    t = 0.7
    rng = np.random.default_rng(4)
    P = rng.uniform(-4, 4, (40, 2))
    dens, score = ou_mixture_density_and_score(np.full(8, 1 / 8), list(data.nodes), [1 / 8] * 8, t, P)
    law = toys.ou_marginal(data, t)
    assert np.allclose(law.density(P[:, 0], P[:, 1]), dens, rtol=1e-12)
    assert np.allclose(law.score(P[:, 0], P[:, 1]).T, score, rtol=1e-9, atol=1e-12)


def test_log_density_stays_finite_far_out():
    # the JKO energy takes log(data) everywhere on the grid: no -inf where the density underflows
    for law in (toys.toy("2spirals"), toys.toy("checkerboard").noised(1.0, 0.04)):
        lp = law.log_density(np.array([9.0, -9.0]), np.array([9.0, 0.0]))
        assert np.all(np.isfinite(lp)) and np.all(lp < -100)


def test_bad_input():
    with pytest.raises(ValueError, match="did you mean 2spirals"):
        toys.toy("2spiral")
    with pytest.raises(ValueError, match="a > 0 and v >= 0"):
        toys.toy("moons").noised(0.0, 1.0)
    with pytest.raises(ValueError, match="2D"):
        toys.toy("moons").on_grid(TensorGrid([[0, 1]], [8]))


def test_toy_data_in_configurations():
    from mfgpde import config

    cfg = {"name": "t", "preset": "cnf", "grid": {"bounds": BOX, "shape": [16, 16]}, "time": {"T": 1.0, "nt": 4},
           "data": {"type": "toy", "name": "moons"}}
    p = config.build_problem(cfg)
    # the checkerboard enters with its exact cell averages (mass 1 on the grid, values 0 or 1/32)
    cfg["data"]["name"] = "checkerboard"
    m0 = config.build_problem(cfg).m0
    assert p.grid.integrate(m0) == pytest.approx(1.0)
    for bad, word in (({"name": "moon"}, "did you mean moons"), ({"name": "moons", "smoothing": -1.0}, "smoothing"),
                      ({"name": "moons", "width": 0.1}, "width")):
        cfg["data"] = {"type": "toy", **bad}
        with pytest.raises(config.ConfigError, match=word):
            config.build_problem(cfg)
