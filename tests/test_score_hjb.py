"""The log-density HJB of score models (C5) and the second-order validation transport.

* the exact (closed-form, C2) score and log-density have an HJB residual that falls at the order
  of the residual's differences (2) under refinement of h and dt together;
* a score perturbed by eps raises it linearly in eps;
* the MUSCL push-forward is conservative, positive and second order against the OU closed form
  (C4), and regenerates the data of solvers/score_ou_1d.toml from the exact score to L1 <= 0.03,
  far below a perturbed score (the first-order push-forward could not tell them apart).
"""

import os

import neural_fixtures as F
import numpy as np
import pytest
from helpers import observed_order

import mfgpde as mp
from mfgpde import cli
from mfgpde.closed_forms import fokker_planck_gaussian, ou_mixture_density_and_score
from mfgpde.fd.muscl import evolve_muscl
from mfgpde.generative import log_density_hjb as L
from mfgpde.generative.densities import gaussian_mixture
from mfgpde.generative.presets import ScoreModel
from mfgpde.validate import validate_score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def closed_form(n, nt, mix=F.MIX, bounds=((-6.0, 6.0),)):
    g = mp.TensorGrid(list(bounds), n, "noflux")
    sm = ScoreModel(g, sde="vp", T=3.0, nt=nt)
    P = g.points()
    dens, score = [], []
    for t in sm.times:
        d, s = ou_mixture_density_and_score(mix["weights"], mix["means"], mix["covs"], t, P)
        dens.append(d.reshape(g.shape))
        score.append(s.T.reshape((g.dim,) + g.shape))
    return sm, np.array(dens), np.array(score)


@pytest.mark.parametrize("kind", ["score", "score-potential"])
def test_exact_residual_falls_at_second_order(kind):
    hs, res = [], []
    for n, nt in ((60, 30), (120, 60), (240, 120)):
        sm, p, s = closed_form(n, nt)
        values = s if kind == "score" else np.log(p)
        res.append(L.weighted_norm(L.grid_residual(sm, values, kind), p, sm.grid, sm.times, t_min=0.3))
        hs.append(sm.grid.h[0])
    assert observed_order(hs, res) > 1.9, res
    assert res[-1] < 1e-2


def test_residual_grows_linearly_with_a_perturbation():
    sm, p, s = closed_form(240, 120)
    X = sm.grid.coordinates()[0]
    floor = L.weighted_norm(L.grid_residual(sm, s), p, sm.grid, sm.times)
    r = [L.weighted_norm(L.grid_residual(sm, s + eps * np.cos(X)), p, sm.grid, sm.times) for eps in (0.1, 0.2, 0.4)]
    assert r[0] > 20 * floor
    assert r[1] / r[0] == pytest.approx(2.0, rel=0.02) and r[2] / r[1] == pytest.approx(2.0, rel=0.02)
    # the potential form sees the same perturbation (phi + eps sin x has score s + eps cos x)
    rp = L.weighted_norm(L.grid_residual(sm, np.log(p) + 0.1 * np.sin(X), "score-potential"), p, sm.grid, sm.times)
    assert rp > 20 * L.weighted_norm(L.grid_residual(sm, np.log(p), "score-potential"), p, sm.grid, sm.times)


def test_potential_normalisation_does_not_change_the_metric():
    sm, p, _s = closed_form(120, 60)
    t = sm.times[:, None]
    base = L.weighted_norm(L.grid_residual(sm, np.log(p), "score-potential"), p, sm.grid, sm.times)
    shifted = L.weighted_norm(L.grid_residual(sm, np.log(p) + 3.0 * t**2, "score-potential"), p, sm.grid, sm.times)
    assert shifted == pytest.approx(base, rel=1e-9, abs=1e-12)


def test_2d_score_residual_and_curl():
    mix = dict(weights=[1, 1], means=[[1.0, 0.5], [-1.0, -0.5]], covs=[0.25, 0.25])
    sm, p, s = closed_form(48, 24, mix, bounds=((-5.0, 5.0), (-5.0, 5.0)))
    X, Y = sm.grid.coordinates()
    exact = L.weighted_norm(L.grid_residual(sm, s), p, sm.grid, sm.times)
    curl = s + 0.3 * np.stack([-Y, X])          # a rotation is no gradient: only the score form sees it
    assert L.weighted_norm(L.grid_residual(sm, curl), p, sm.grid, sm.times) > 8 * exact
    assert exact < 0.05


def test_muscl_transport_is_conservative_positive_and_second_order():
    errs, hs = [], []
    for n in (50, 100, 200):
        g = mp.TensorGrid([(-5, 5)], n, "noflux")
        x = g.axes[0]
        m0 = np.exp(-(x - 1.5) ** 2 / 0.2) / np.sqrt(0.2 * np.pi)
        V = np.array([[-x]] * (n // 5 + 1))                # OU: dX = -X dt + sqrt(2) dW
        m = evolve_muscl(g, m0, V, 1.0, nu=1.0)
        assert abs(g.integrate(m[-1]) - g.integrate(m0)) < 1e-12 and m.min() >= 0.0
        mu, S = fokker_planck_gaussian([1.5], 0.1, 1.0)
        exact = np.exp(-(x - mu[0]) ** 2 / (2 * S[0, 0])) / np.sqrt(2 * np.pi * S[0, 0])
        errs.append(g.integrate(np.abs(m[-1] - exact)))
        hs.append(g.h[0])
    assert observed_order(hs, errs) > 1.8, errs
    # a periodic rotation in 2D, no diffusion: positivity and mass with a sharp front
    g = mp.TensorGrid([(-1, 1), (-1, 1)], 40, "periodic")
    X, Y = g.coordinates()
    m0 = ((np.abs(X - 0.3) < 0.2) & (np.abs(Y) < 0.2)).astype(float)
    m = evolve_muscl(g, m0, np.array([np.stack([-Y, X])] * 5), 1.0)
    assert m.min() >= 0.0 and abs(g.integrate(m[-1]) - g.integrate(m0)) < 1e-12
    with pytest.raises(ValueError, match="cfl"):
        evolve_muscl(g, m0, np.array([np.stack([-Y, X])] * 5), 1.0, cfl=0.9)


def test_shipped_score_case_separates_exact_and_perturbed_scores():
    g = mp.TensorGrid([(-6, 6)], 240, "noflux")       # solvers/score_ou_1d.toml
    sm = ScoreModel(g, sde="vp", T=3.0, nt=120)
    data = gaussian_mixture(**F.MIX)
    me, _ = validate_score(sm, data, F.exact_score)
    mp_, _ = validate_score(sm, data, F.perturbed_score)
    assert me["generated_vs_data"]["L1"] <= 0.03
    assert mp_["generated_vs_data"]["L1"] >= 3 * me["generated_vs_data"]["L1"]
    assert me["hjb_residual"] < 0.02 and mp_["hjb_residual"] > 10 * me["hjb_residual"]
    # the same model given as a log-density potential
    mpot, fields = validate_score(sm, data, F.exact_log_density, kind="score-potential")
    assert mpot["hjb_residual"] < 0.02 and mpot["generated_vs_data"]["L1"] <= 0.03
    assert fields["hjb_residual_spacetime"].shape == (121, 240)
    with pytest.raises(ValueError, match="kind must be one of"):
        validate_score(sm, data, F.exact_score, kind="velocity")


def test_validate_cli_score_potential(tmp_path):
    cfg = tmp_path / "s.toml"
    text = open(os.path.join(ROOT, "solvers", "score_ou_1d.toml")).read()
    cfg.write_text(text.replace("shape = [240]", "shape = [120]").replace("nt = 120", "nt = 60"))
    out = tmp_path / "v"
    assert cli.main(["validate", str(cfg), "--model", "neural_fixtures:perturbed_log_density", "--kind",
                     "score-potential", "--out", str(out)]) == 0
    import json

    m = json.loads((out / "metrics.json").read_text())
    assert m["kind"] == "score-potential" and m["hjb_residual"] > 4 * m["hjb_residual_exact_score"]
    assert (out / "errors.png").exists()
