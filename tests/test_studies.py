"""Well-posedness studies: uniqueness from several starts, refinement orders, monotonicity."""

import json
import os

import numpy as np

import mfgpde as mp
from mfgpde import cli
from mfgpde.generative.densities import gaussian
from mfgpde.studies import wellposedness as W

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log_problem(n=40, nt=20):
    g = mp.TensorGrid([(0, 1)], n, "periodic")
    return mp.MFGProblem(g, 1.0, nt, 0.1, mp.QuadraticHamiltonian(), lambda x: 1 + 0.8 * np.cos(2 * np.pi * x),
                         coupling=mp.LogCoupling(), terminal=lambda x: 0.5 * np.cos(2 * np.pi * x), normalize=True)


def test_monotone_mfg_has_one_solution_from_every_start():
    out = W.multi_start(log_problem(), starts=4, tol=1e-10)
    assert out["converged"] == 4
    assert out["spread_m"] < 1e-9 and out["spread_U"] < 1e-9


def test_cnf_with_positive_lambda_is_unique_from_every_start():
    g = mp.TensorGrid([(-5, 5)], 40, "noflux")
    study = W.cnf_lambda_study(g, gaussian([1.0], 0.25), [1.0, 0.01], nt=8, starts=2)
    for row in study["rows"]:
        assert row["converged"] and row["starts_converged"] == 2
        assert row["spread_m"] < 1e-8
    # lambda -> 0: the terminal density approaches pi (KL -> 0)
    assert study["rows"][1]["terminal_kl"] < 0.01 * study["rows"][0]["terminal_kl"]


def test_refinement_study_observes_first_order():
    def make(n):
        g = mp.TensorGrid([(0, 1)], n, "periodic")
        return mp.MFGProblem(g, 0.5, n // 2, 0.05, mp.QuadraticHamiltonian(),
                             lambda x: 1 + 0.5 * np.cos(2 * np.pi * x), coupling=mp.LogCoupling(),
                             terminal=lambda x: np.sin(2 * np.pi * x), normalize=True)

    ref = W.refinement(make, [40, 80, 160, 320])
    # pre-asymptotic at these sizes (0.72-0.75); the ratio of successive differences grows
    # towards 2, i.e. the order towards 1
    assert 0.6 < ref["order_m"] < 1.3, ref
    assert 0.6 < ref["order_U"] < 1.3, ref
    d = ref["differences_m"]
    ratios = [a / b for a, b in zip(d[:-1], d[1:])]
    assert ratios == sorted(ratios) and ratios[-1] > 1.6


def test_lasry_lions_check_detects_non_monotone_couplings():
    g = mp.TensorGrid([(0, 1)], 64, "periodic")
    assert W.lasry_lions_check(mp.LogCoupling(), g)["monotone"]
    assert W.lasry_lions_check(mp.PowerCoupling(2.0), g)["monotone"]
    assert not W.lasry_lions_check(mp.PowerCoupling(1.0, scale=-1.0), g)["monotone"]
    assert not W.lasry_lions_check(mp.ConvolutionCoupling(lambda z: -np.exp(-(z / 0.1) ** 2)), g)["monotone"]


def test_wellposed_cli(tmp_path):
    out = tmp_path / "wp"
    rc = cli.main(["wellposed", os.path.join(ROOT, "solvers", "lst_case1.toml"), "--out", str(out),
                   "--starts", "3", "--refine", "50", "100", "200"])
    assert rc == 0
    rep = json.loads((out / "wellposed.json").read_text())
    assert rep["multi_start"]["converged"] == 3 and rep["multi_start"]["spread_m"] < 1e-8
    assert rep["refinement"]["order_m"] > 0.6
    assert rep["lasry_lions"]["coupling"]["monotone"]
    assert (out / "wellposed.png").exists()
