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
    assert out["converged"] == 4 and out["verdict"] == "unique" and out["distinct_solutions"] == 1
    assert out["spread_m"] < 1e-9 and out["spread_U"] < 1e-9
    # the agreement is not the starts' doing: they were O(1) apart and each moved O(1)
    assert out["start_spread"] > 0.3
    assert min(r["moved_m"] for r in out["runs"]) > 0.1
    assert all(r["path"] == "direct" for r in out["runs"])


def test_aggregation_control_uniform_path_is_an_exact_discrete_solution():
    """m = 1, U = -alpha (T - t) solves the discrete system of the positive control exactly."""
    from mfgpde.fd.scheme import FDScheme

    p = W.aggregation_control(n=32, nt=16, alpha=0.4)
    U = np.outer(-0.4 * (p.T - np.linspace(0, p.T, p.nt + 1)), np.ones(32))
    RU, Rm = FDScheme(p).residual(U, np.ones_like(U))
    assert np.abs(RU).max() < 1e-13 and np.abs(Rm).max() < 1e-13


def test_multi_start_detects_several_solutions_and_one_in_the_monotone_twin():
    """Positive control: alpha = 0.4 > nu^2 pi^2 = 0.099 (derivation in aggregation_control) gives
    the uniform solution (J = -alpha T/2 = -0.8) and non-uniform ones with lower potential J;
    mirror images are solutions too. Negative control: the monotone twin, one solution from the
    same starts."""
    ctl = W.run_controls(starts=4, tol=1e-9)
    pos, neg = ctl["positive"]["multi_start"], ctl["negative"]["multi_start"]
    assert pos["converged"] == 4 and pos["verdict"] == "several solutions" and pos["distinct_solutions"] >= 2
    assert pos["spread_m"] > 0.3                                # far above the solver tolerance
    J = ctl["positive"]["potential_J"]
    assert min(abs(j + 0.8) for j in J) < 1e-9                  # the uniform solution is among them ...
    assert min(J) < -0.8 - 0.1                                  # ... and is not the minimiser
    assert max(ctl["positive"]["mirror_residuals"]) < 1e-8
    assert neg["converged"] == 4 and neg["verdict"] == "unique" and neg["spread_m"] < 1e-9
    assert neg["start_spread"] > 0.3 and min(r["moved_m"] for r in neg["runs"]) > 0.1
    assert ctl["positive"]["passed"] and ctl["negative"]["passed"]


def test_newton_homotopy_follows_its_own_path_to_the_first_order_solution():
    """A nu = 0 CNF from a start far from the solution: the homotopy R(z) = (1 - s) R(z0)
    reaches the solution that the viscosity continuation finds, without any common stage."""
    from mfgpde.fd.scheme import FDScheme
    from mfgpde.generative.presets import cnf_problem
    from mfgpde.iterations.homotopy import newton_homotopy

    g = mp.TensorGrid([(-5, 5)], 40, "noflux")
    p = cnf_problem(g, gaussian([1.0], 0.25), lam=1.0, T=1.0, nt=8)
    ref = mp.solve(p, tol=1e-10)
    (U0, M0), = W.initial_guesses(p, 1, seed=3, amplitude=0.3)
    U, M, info = newton_homotopy(FDScheme(p), U0, M0, tol=1e-10)
    assert info["converged"] and info["reached"] == 1.0 and info["stages"] >= 2
    assert np.abs(M - ref.m.reshape(M.shape)).max() < 1e-8
    assert np.abs(U0 - U).max() > 1.0                           # it did travel


def test_cnf_with_positive_lambda_is_unique_from_distinct_starts():
    g = mp.TensorGrid([(-5, 5)], 40, "noflux")
    study = W.cnf_lambda_study(g, gaussian([1.0], 0.25), [1.0], nt=8, starts=3)
    row = study["rows"][0]
    assert row["converged"] and row["starts_converged"] == 3 and row["verdict"] == "unique"
    assert row["spread_m"] < 1e-8 and row["start_spread"] > 0.3


def test_sparse_jacobian_condition_matches_dense_svd_and_follows_lambda():
    from mfgpde.fd.scheme import FDScheme
    from mfgpde.generative.presets import cnf_problem

    g = mp.TensorGrid([(-5, 5)], 40, "noflux")
    smin_support = []
    for lam in (1.0, 0.1, 0.01):
        p = cnf_problem(g, gaussian([1.0], 0.25), lam=lam, T=1.0, nt=8)
        r = mp.solve(p, tol=1e-10)
        if lam == 0.01:
            A = FDScheme(p).jacobian(r.U.reshape(9, -1), r.m.reshape(9, -1)).toarray()
            n = A.shape[0] // 2
            A[:n] /= lam
            A[:, :n] *= lam
            s = np.linalg.svd(A, compute_uv=False)
            cond, smin = W.jacobian_condition(p, r, lam=lam)
            assert abs(cond / (s[0] / s[-1]) - 1) < 1e-6 and abs(smin / s[-1] - 1) < 1e-6
        smin_support.append(W.jacobian_condition(p, r, lam=lam, support=1e-3)[1])
    # on the support of m the transport loses its determination as lambda -> 0
    assert smin_support[0] > 2 * smin_support[1] > 4 * smin_support[2], smin_support


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
