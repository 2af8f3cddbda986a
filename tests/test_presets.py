"""The generative presets are the compositions their docstrings state (fast: no MFG is solved).

``cnf_problem``: ``nu = 0``, ``H = |p|^2 / (2 lambda)``, ``U(T) = log(m + eps pi) - log pi + 1``,
``m(0)`` = the data normalised on the grid. ``score_mfg_problem``: ``H = nu |p|^2``,
``U(T) = -log p_data``. ``jko_step_problem``: ``H = |p|^2 / 2`` on ``[0, tau]`` with
``U(tau) = dE/dm``. ``ScoreModel``: the VP (OU) and VE forward SDEs, their reverse drift
``-b + sigma^2 s`` and the OU moments of the forward densities. The end-to-end solves against the
closed forms C1, C2 and C4 are in ``test_generative.py``.
"""

import numpy as np
import pytest
from helpers import normal_log_pdf

import mfgpde as mp
from mfgpde.closed_forms import CNFGaussian
from mfgpde.config import ConfigError, problem_from_preset
from mfgpde.generative import energies as E
from mfgpde.generative.densities import gaussian
from mfgpde.generative.presets import (
    ScoreModel,
    cnf_problem,
    data_on_grid,
    jko_chain,
    jko_step_problem,
    score_mfg_problem,
    standard_normal_log_density,
)

G1 = mp.TensorGrid([(-5, 5)], 80, "noflux")
X1 = G1.axes[0]



def test_standard_normal_log_density():
    g = mp.TensorGrid([(-3, 3), (-2, 2)], (7, 5), "noflux")
    X, Y = g.coordinates()
    np.testing.assert_allclose(standard_normal_log_density(2)(X, Y), -0.5 * (X**2 + Y**2) - np.log(2 * np.pi),
                               rtol=0, atol=1e-14)


def test_cnf_problem_composition():
    lam, T, nt, eps = 0.7, 1.3, 9, 1e-3
    p = cnf_problem(G1, gaussian([1.0], 0.25), lam=lam, T=T, nt=nt, kl_eps=eps, name="c1")
    assert (p.nu, p.T, p.nt, p.name) == (0.0, T, nt, "c1")
    # the kinetic cost (lambda/2)|v|^2 gives H(p) = |p|^2 / (2 lambda): phi(S) = S / (2 lambda)
    S = np.array([0.0, 1.0, 4.0])
    np.testing.assert_allclose(p.hamiltonian.phi(S, S), S / (2 * lam), rtol=1e-15)
    # m(0) is the data, normalised on the grid
    data = np.exp(normal_log_pdf(X1, 1.0, 0.25))
    np.testing.assert_allclose(p.m0, data / G1.integrate(data), rtol=1e-12)
    # U(T) = log(m + eps pi) - log pi + 1 with pi = N(0, 1) by default
    m = 0.3 * np.exp(normal_log_pdf(X1, -0.5, 1.0))
    lp = normal_log_pdf(X1, 0.0, 1.0)
    np.testing.assert_allclose(p.terminal.value(m, G1), np.log(m + eps * np.exp(lp)) - lp + 1.0, rtol=0, atol=1e-12)
    assert p.terminal.describe() == {"type": "kl", "eps": eps}
    assert p.drift is None and p.coupling.describe()["type"] == "zero"


def test_documented_defaults():
    """The defaults the docstrings state: cnf lambda = 1, T = 1, nt = 32, KL eps = 1e-6; score_mfg
    nu = 1, T = 1, nt = 32; ScoreModel VP, sigma = 1 for VE, T = 1, nt = 64, MUSCL; JKO nt = 8."""
    c = cnf_problem(G1, gaussian([1.0], 0.25))
    assert (c.hamiltonian.lam, c.T, c.nt, c.name, c.terminal.eps) == (1.0, 1.0, 32, "cnf", 1e-6)
    s = score_mfg_problem(G1, lambda x: normal_log_pdf(x, 1.0, 0.3))
    assert (s.nu, s.T, s.nt, s.name) == (1.0, 1.0, 32, "score_mfg")
    m = ScoreModel(G1)
    assert (m.sde, m.T, m.nt, m.transport, m.nu) == ("vp", 1.0, 64, "muscl", pytest.approx(1.0))
    assert ScoreModel(G1, sde="ve").sigma == 1.0
    j = jko_step_problem(G1, np.exp(normal_log_pdf(X1, 0.0, 1.0)), E.Entropy(), tau=0.1)
    assert (j.nt, j.name) == (8, "jko_step")


def test_cnf_problem_reference_density():
    lp = lambda x: normal_log_pdf(x, 0.5, 2.0)
    p = cnf_problem(G1, gaussian([1.0], 0.25), lam=1.0, reference_log_density=lp, kl_eps=0.0)
    m = np.exp(normal_log_pdf(X1, 0.0, 1.0))
    np.testing.assert_allclose(p.terminal.value(m, G1), np.log(np.maximum(m, 1e-14)) - lp(X1) + 1.0, atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, -1.0, np.nan, np.inf])
def test_cnf_problem_refuses_lambda(lam):
    with pytest.raises(ValueError, match=r"lam \(kinetic weight lambda\) must be > 0"):
        cnf_problem(G1, gaussian([1.0], 0.25), lam=lam)


def test_data_on_grid_tail_check():
    """A density cut off by a no-flux wall is refused; a periodic axis has no wall to check."""
    wide = gaussian([0.0], 4.0)
    # the first cell centre is x = -4.9375: edge / peak = exp(-4.9375^2 / 8) = 4.75e-02
    with pytest.raises(ValueError, match=r"along axis 0: its value on the boundary is 4.75e-02 of its maximum "
                                         r"\(> tail_tol = 0.0001\)"):
        data_on_grid(wide, G1)
    vals = data_on_grid(wide, G1, tail_tol=0.1)   # edge/peak = exp(-25/8) = 0.044 < 0.1
    assert abs(G1.integrate(vals) - 1) < 1e-13
    with pytest.raises(ValueError, match="along axis 0"):
        data_on_grid(wide, G1, tail_tol=0.04)     # ... > 0.04
    periodic = mp.TensorGrid([(-5, 5)], 80, "periodic")
    assert abs(periodic.integrate(data_on_grid(wide, periodic)) - 1) < 1e-13
    # the check runs per axis: cut off along axis 1 only, also behind a periodic axis 0
    g2 = mp.TensorGrid([(-5, 5), (-2, 2)], (40, 20), "noflux")
    with pytest.raises(ValueError, match="along axis 1"):
        data_on_grid(gaussian([0.0, 0.0], np.diag([0.25, 1.0])), g2)
    g3 = mp.TensorGrid([(-5, 5), (-2, 2)], (40, 20), ("periodic", "noflux"))
    with pytest.raises(ValueError, match="along axis 1"):
        data_on_grid(gaussian([0.0, 0.0], np.diag([0.25, 1.0])), g3)
    # only the outermost cell is above the tolerance: still cut off
    spike = lambda x: np.exp(-(x**2)) + np.where(x < -4.9, 0.5, 0.0)
    with pytest.raises(ValueError, match="along axis 0"):
        data_on_grid(spike, G1)


def test_data_array_on_a_2d_grid_is_a_density_not_samples():
    g = mp.TensorGrid([(-5, 5), (-4, 4)], (20, 16), "noflux")
    X, Y = g.coordinates()
    arr = np.exp(-(X**2) - 2 * Y**2)
    np.testing.assert_allclose(data_on_grid(arr, g), arr / g.integrate(arr), rtol=1e-13)


def test_data_from_samples_is_a_normalised_kde():
    rng = np.random.default_rng(3)
    samples = rng.normal(0.5, 0.6, size=(4000, 1))
    vals = data_on_grid(samples, G1)
    assert abs(G1.integrate(vals) - 1) < 1e-13 and vals.min() >= 0
    mean = G1.integrate(X1 * vals)
    var = G1.integrate((X1 - mean) ** 2 * vals)
    assert abs(mean - samples.mean()) < 1e-3
    # a KDE's variance is the samples' plus the kernel's (Scott: h = n^(-1/5) std)
    h = samples.std(ddof=1) * len(samples) ** (-0.2)
    assert abs(var - (samples.var() + h * h)) < 2e-3


def test_score_mfg_problem_composition():
    nu = 0.4
    lq = lambda x: normal_log_pdf(x, 1.0, 0.3)
    p = score_mfg_problem(G1, lq, nu=nu, T=0.8, nt=7)
    assert (p.nu, p.T, p.nt, p.name) == (nu, 0.8, 7, "score_mfg")
    # H = nu |p|^2, i.e. lambda = 1 / (2 nu): phi(S) = nu S
    S = np.array([0.0, 1.0, 4.0])
    np.testing.assert_allclose(p.hamiltonian.phi(S, S), nu * S, rtol=1e-15)
    np.testing.assert_allclose(p.terminal.value(p.m0, G1), -lq(X1), rtol=0, atol=1e-13)
    start = np.exp(normal_log_pdf(X1, 0.0, 1.0))
    np.testing.assert_allclose(p.m0, start / G1.integrate(start), rtol=1e-12)
    q = score_mfg_problem(G1, lq, nu=nu, start=np.exp(normal_log_pdf(X1, 2.0, 0.5)))
    assert abs(G1.integrate(X1 * q.m0) - 2.0) < 1e-4   # N(2, 0.5) cut at 4.2 sd by the wall


def test_jko_step_problem_composition():
    rho = np.exp(normal_log_pdf(X1, 0.5, 0.5))
    energy = E.KL(standard_normal_log_density(1)) + 0.5 * E.PorousMedium(2.0)
    p = jko_step_problem(G1, rho, energy, tau=0.1, nt=3)
    assert (p.nu, p.T, p.nt) == (0.0, 0.1, 3)
    np.testing.assert_allclose(p.hamiltonian.phi(np.array([2.0]), None), [1.0])
    np.testing.assert_allclose(p.terminal.value(rho, G1), energy.first_variation().value(rho, G1), rtol=1e-14)
    with pytest.raises(TypeError, match="energy must be"):
        jko_step_problem(G1, rho, lambda m: m, tau=0.1)
    for tau in (0, -0.1):
        with pytest.raises(ValueError, match=rf"tau \(JKO step\) must be > 0, got {tau}"):
            jko_step_problem(G1, rho, energy, tau=tau)


def test_jko_chain_steps_are_the_closed_form_jko_steps():
    """One JKO step of KL(. || N(0, 1)) with step tau from N(mu, s^2) is the CNF closed form C1 with
    T / lambda = tau: mean mu / (1 + tau). Two steps of 0.1 from N(1.5, 0.25) on 100 cells
    (recorded mean errors 0.012 and 0.018, variance 6 % and 8 %: first-order upwind smearing);
    the second step is warm-started (no viscosity continuation) and reaches the same solution."""
    g = mp.TensorGrid([(-5, 5)], 100, "noflux")
    x = g.axes[0]
    energy = E.KL(standard_normal_log_density(1), eps=1e-6)
    ts, dens, res = jko_chain(g, gaussian([1.5], 0.25), energy, 0.1, 2, nt=4)
    np.testing.assert_allclose(ts, [0.0, 0.1, 0.2])
    assert len(res) == 2 and all(r.converged for r in res)
    mu, s = 1.5, 0.5
    for k in (1, 2):
        ex = CNFGaussian(mu, s, lam=1.0, T=0.1)   # one step: T = tau = 0.1 with lambda = 1
        mu, s = ex.mu1, ex.s1
        mean = g.integrate(x * dens[k])
        var = g.integrate((x - mean) ** 2 * dens[k])
        assert abs(g.integrate(dens[k]) - 1) < 1e-12 and dens[k].min() >= 0
        assert abs(mean - mu) < 0.025, (k, mean, mu)
        assert abs(var / s**2 - 1) < 0.1, (k, var, s**2)
    assert "continuation" in res[0].diagnostics and "continuation" not in res[1].diagnostics
    cold = mp.solve(jko_step_problem(g, dens[1], energy, 0.1, nt=4), method="newton", tol=1e-9)
    np.testing.assert_allclose(res[1].m, cold.m, rtol=0, atol=1e-9)
    # default nt = 8 per step, and each step's density is the last one's MFG solution renormalised
    # (a peak above 1, so that only a division by the mass keeps the values)
    ts, dens, res = jko_chain(g, lambda x: 2.0 * gaussian([0.0], 0.04)(x), energy, 0.01, 1)
    np.testing.assert_allclose(ts, [0.0, 0.01])
    assert abs(g.integrate(dens[0]) - 1) < 1e-13   # rho0 (mass 2 here) is normalised first
    assert res[0].problem.nt == 8 and dens[1].max() > 1.2
    np.testing.assert_allclose(dens[1], np.maximum(res[0].m[-1], 0) / g.integrate(np.maximum(res[0].m[-1], 0)),
                               rtol=1e-14)


def test_score_model_sdes():
    vp = ScoreModel(G1, sde="vp", T=2.0, nt=8)
    assert vp.sigma == pytest.approx(np.sqrt(2)) and vp.nu == pytest.approx(1.0)
    np.testing.assert_allclose(vp.times, np.linspace(0, 2.0, 9))
    np.testing.assert_array_equal(vp.drift(0.3, X1)[0], -X1)
    ve = ScoreModel(G1, sde="ve", sigma=0.6)
    assert ve.sigma == 0.6 and ve.nu == pytest.approx(0.18)
    np.testing.assert_array_equal(ve.drift(0.3, X1)[0], 0 * X1)
    for sigma in (0.0, -1.0):
        with pytest.raises(ValueError, match="sigma must be > 0"):
            ScoreModel(G1, sde="ve", sigma=sigma)
    with pytest.raises(ValueError, match="transport must be"):
        ScoreModel(G1, sde="vp", transport="weno")
    with pytest.raises(TypeError, match="grid must be a TensorGrid"):
        ScoreModel(None)
    with pytest.raises(ValueError, match="start density is required for the VE process"):
        ve.generate(np.zeros((ve.nt + 1, 1) + G1.shape))


def test_score_model_forward_ou_moments():
    """VP forward process from N(mu, s^2): mean mu e^-t, variance s^2 e^-2t + 1 - e^-2t."""
    g = mp.TensorGrid([(-7, 7)], 280, "noflux")
    x = g.axes[0]
    sm = ScoreModel(g, sde="vp", T=1.0, nt=100)
    p = sm.forward(gaussian([1.5], 0.16))
    for j in (50, 100):
        t = sm.times[j]
        mean = g.integrate(x * p[j])
        var = g.integrate((x - mean) ** 2 * p[j])
        assert abs(mean - 1.5 * np.exp(-t)) < 2e-3, (t, mean)
        assert abs(var - (0.16 * np.exp(-2 * t) + 1 - np.exp(-2 * t))) < 5e-3, (t, var)
    # VE: the mean stays, the variance grows by sigma^2 t
    ve = ScoreModel(g, sde="ve", sigma=0.8, T=1.0, nt=100)
    q = ve.forward(gaussian([0.5], 0.16))
    mean = g.integrate(x * q[-1])
    assert abs(mean - 0.5) < 1e-3
    assert abs(g.integrate((x - mean) ** 2 * q[-1]) - (0.16 + 0.64)) < 5e-3


def test_grid_score_and_reverse_drift():
    """The grid score of N(mu, s^2) is -(x - mu)/s^2 (centred differences: exact for a quadratic
    log-density away from the walls); the reverse drift at reverse time tau = T - t is
    -b(x) + sigma^2 s(t, x)."""
    sm = ScoreModel(G1, sde="vp", T=1.0, nt=5)
    assert sm.times.shape == (6,) and sm.times[-1] == 1.0
    mus = np.linspace(0.0, 1.0, sm.nt + 1)   # a different Gaussian per forward time level
    p = np.stack([np.exp(normal_log_pdf(X1, mu, 0.5)) for mu in mus])
    s = sm.grid_score(p)
    assert s.shape == (sm.nt + 1, 1) + G1.shape
    inner = slice(1, -1)
    for j, mu in enumerate(mus):
        exact = -(X1 - mu) / 0.5
        # exact where p_t carries mass; below SCORE_CAP_FRACTION of the peak the magnitude is capped
        # at the largest one found where it is not, the direction kept
        live = p[j] >= sm.SCORE_CAP_FRACTION * p[j].max()
        live[1:] &= live[:-1].copy()
        live[:-1] &= live[1:].copy()
        keep = live.copy()
        keep[[0, -1]] = False
        np.testing.assert_allclose(s[j, 0, keep], exact[keep], rtol=0, atol=1e-9)
        cap = np.abs(s[j, 0, live]).max()
        assert np.all(np.abs(s[j, 0, ~live]) <= cap + 1e-12)
        assert np.all(np.sign(s[j, 0, ~live & (np.arange(G1.size) > 0) & (np.arange(G1.size) < G1.size - 1)])
                      == np.sign(exact[~live & (np.arange(G1.size) > 0) & (np.arange(G1.size) < G1.size - 1)]))
    del inner
    drift = sm.reverse_drift(s)
    assert drift.shape == (sm.nt + 1, 1) + G1.shape
    for j in range(sm.nt + 1):   # reverse level j is forward level nt - j
        np.testing.assert_allclose(drift[j, 0], X1 + 2.0 * s[sm.nt - j, 0], rtol=0, atol=1e-12)
    # where the density vanishes the score stays finite (log of the floor 1e-300) and no larger than
    # where it does not: the cliff of log p at the cut would otherwise be ~1e3 (CFL of the transport)
    cut = np.where(np.abs(X1) > 4, 0.0, p)
    sc = sm.grid_score(cut)
    assert np.all(np.isfinite(sc))
    for j in range(sm.nt + 1):
        live = cut[j] >= sm.SCORE_CAP_FRACTION * cut[j].max()
        live = live & np.roll(live, 1) & np.roll(live, -1)
        assert (~live).any() and np.abs(sc[j, 0]).max() == pytest.approx(np.abs(sc[j, 0, live]).max())
        assert np.abs(sc[j, 0]).max() < 20
    # a callable score of forward time gives the same drift
    call = sm.reverse_drift(lambda t, x: -(x - t) / 0.5)
    for j, tau in enumerate(sm.times):
        np.testing.assert_allclose(call[j, 0], X1 + 2.0 * (-(X1 - (1.0 - tau)) / 0.5), rtol=0, atol=1e-12)


def test_generate_with_the_stationary_score_keeps_the_standard_normal():
    """The VP process's stationary law is N(0, 1): with its score -x the reverse FP keeps the
    default start N(0, 1)."""
    sm = ScoreModel(G1, sde="vp", T=0.5, nt=20)
    q = sm.generate(lambda t, x: -x)
    start = np.exp(normal_log_pdf(X1, 0.0, 1.0))
    start /= G1.integrate(start)
    np.testing.assert_allclose(q[0], start, rtol=1e-12)
    assert abs(G1.integrate(q[-1]) - 1) < 1e-12
    assert G1.integrate(np.abs(q[-1] - start)) < 5e-3


CNF_CFG = {"name": "c", "preset": "cnf", "grid": {"bounds": [[-5.0, 5.0]], "shape": [80], "boundary": "noflux"},
           "time": {"T": 1.5, "nt": 6}, "model": {"lam": 0.5},
           "data": {"type": "gaussian", "mean": [1.0], "cov": 0.25}}


def test_problem_from_preset_builds_the_presets():
    p = problem_from_preset(CNF_CFG)
    q = cnf_problem(G1, gaussian([1.0], 0.25), lam=0.5, T=1.5, nt=6)
    assert (p.name, p.T, p.nt, p.nu, p.hamiltonian.lam) == ("c", 1.5, 6, 0.0, 0.5)
    np.testing.assert_allclose(p.m0, q.m0, rtol=1e-14)
    np.testing.assert_allclose(p.terminal.value(q.m0, G1), q.terminal.value(q.m0, G1), rtol=1e-14)
    cfg = dict(CNF_CFG, preset="score_mfg", model={"nu": 0.3})
    s = problem_from_preset(cfg)
    assert s.nu == 0.3 and s.T == 1.5
    np.testing.assert_allclose(s.terminal.value(s.m0, G1), -normal_log_pdf(X1, 1.0, 0.25), rtol=0, atol=1e-10)
    # a data density that underflows to 0 in the box gives a finite terminal cost -log max(p, 1e-300)
    narrow = dict(cfg, data={"type": "gaussian", "mean": [1.0], "cov": 0.01})
    t = problem_from_preset(narrow).terminal.value(s.m0, G1)
    assert np.all(np.isfinite(t)) and t.max() == pytest.approx(-np.log(1e-300))
    # defaults: lam = 1, T = 1, nt = 32, name = the preset; score_mfg: nu = 1
    bare = {k: v for k, v in CNF_CFG.items() if k not in ("time", "model", "name")}
    d = problem_from_preset(bare)
    assert (d.hamiltonian.lam, d.T, d.nt, d.name) == (1.0, 1.0, 32, "cnf")
    e = problem_from_preset(dict(bare, preset="score_mfg"))
    assert (e.nu, e.T, e.nt, e.name) == (1.0, 1.0, 32, "score_mfg")
    # the default tail_tol (1e-4) refuses data cut off by the box
    with pytest.raises(ValueError, match="does not fit in the box"):
        problem_from_preset(dict(bare, data={"type": "gaussian", "mean": [0.0], "cov": 4.0}))


def test_problem_from_preset_refusals():
    with pytest.raises(ConfigError, match="did you mean 'cnf'"):
        problem_from_preset(dict(CNF_CFG, preset="cfn"))
    with pytest.raises(ConfigError, match="grid"):
        problem_from_preset({k: v for k, v in CNF_CFG.items() if k != "grid"})
    with pytest.raises(ConfigError, match="mfgpde validate CONFIG --model"):   # its sde key is allowed
        problem_from_preset({k: v for k, v in dict(CNF_CFG, preset="score", sde="vp").items() if k != "model"})
    with pytest.raises(ConfigError, match="mfgpde validate CONFIG --model"):
        problem_from_preset({k: v for k, v in dict(CNF_CFG, preset="score").items() if k != "model"})
    with pytest.raises(ConfigError, match="lamda"):
        problem_from_preset(dict(CNF_CFG, model={"lamda": 0.5}))
    with pytest.raises(ConfigError, match="nt"):
        problem_from_preset(dict(CNF_CFG, model={"nt": 5}))
    with pytest.raises(ConfigError, match="extra"):
        problem_from_preset(dict(CNF_CFG, extra={}))
    with pytest.raises(ConfigError, match="data"):
        problem_from_preset({k: v for k, v in CNF_CFG.items() if k != "data"})


def test_grid_score_cap_wraps_periodic_axes():
    # on a periodic axis the cell next to the seam has the cell across it as a neighbour: where the
    # density vanishes there, the cliff of log p (~2e4 here) must not set the cap
    g = mp.TensorGrid([(0, 1)], 64, "periodic")
    sm = ScoreModel(g, sde="vp", T=1.0, nt=1)
    x = g.axes[0]
    p = np.exp(-((x - 0.3) ** 2) / (2 * 0.05**2))
    p[x > 0.9] = 0.0
    s = sm.grid_score(np.stack([p, p]))
    assert np.all(np.isfinite(s)) and np.abs(s).max() < 1000
    inner = (x > 0.1) & (x < 0.5)   # where p carries mass the score is -(x - 0.3)/0.05^2 up to O(h^2)
    np.testing.assert_allclose(s[0, 0, inner], -(x[inner] - 0.3) / 0.05**2, rtol=0, atol=1e-6)
