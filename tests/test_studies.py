"""Well-posedness studies: uniqueness from several starts, refinement orders, monotonicity."""

import json
import os

import numpy as np
import pytest

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
    # the monotone verdict rests on a deflated search from every start, all failed
    # (one from each start's launch point and one from the solution, perturbed)
    assert neg["deflated_searches"] == 4 + 1 and not any(r["found"] for r in neg["deflation"])
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


def test_small_lambda_cnf_multi_start_is_conclusive_through_the_viscous_homotopy():
    """lambda = 0.003 at nu = 0: Newton from a random start stalls on the semismooth residual (the
    study was inconclusive below lambda = 0.03 with the plain homotopy). Each start goes from its
    consistent start along R_s(z) = (1 - s) R_0(z0), R_s at viscosity (1 - s) nu_0: all three end
    at one solution, they were still distinct when the last stage began, and the deflated searches
    from each of them find no other solution."""
    from mfgpde.generative.presets import cnf_problem

    g = mp.TensorGrid([(-5, 5)], 40, "noflux")
    p = cnf_problem(g, gaussian([1.0], 0.25), lam=0.003, T=1.0, nt=16)
    ms = W.multi_start(p, starts=3, tol=1e-9, max_iter=80, amplitude=0.3)
    assert ms["converged"] == 3 and ms["verdict"] == "unique", ms
    assert ms["spread_m"] < 1e-8 and ms["start_spread"] > 0.3
    assert all(r["path"] == "viscous_homotopy" and r["residual"] <= 1e-9 for r in ms["runs"])
    # the launch points of the last stage differ by far more than the final spread: not inherited
    assert ms["launch_spread"] > 1e-3 > 1e5 * ms["spread_m"]
    assert ms["deflated_searches"] == 3 + 1 and not any(r["found"] for r in ms["deflation"])
    assert "4 deflated searches" in ms["evidence"]


def test_deflated_direction_is_the_newton_step_of_the_deflated_residual():
    """dz = d / (1 - g.d / M) solves (M J + F g^T) dz = -M F, the Newton step of G = M F (checked
    against G's Jacobian by central differences on a small nonlinear system)."""
    from mfgpde.iterations.deflation import Deflation

    rng = np.random.default_rng(1)
    n = 6
    A = rng.standard_normal((n, n)) + 4 * np.eye(n)

    def F(z):
        return A @ z + 0.3 * z**3 - 1.0

    def J(z):
        return A + np.diag(0.9 * z**2)

    known = [rng.standard_normal(n), rng.standard_normal(n)]
    defl = Deflation(known, blocks=2)
    z = rng.standard_normal(n)
    G = lambda x: defl.factor(x) * F(x)
    eps = 1e-6
    JG = np.column_stack([(G(z + eps * e) - G(z - eps * e)) / (2 * eps) for e in np.eye(n)])
    expected = np.linalg.solve(JG, -G(z))
    d = np.linalg.solve(J(z), -F(z))
    dz, tau = defl.direction(z, d)
    assert np.allclose(dz, expected, rtol=1e-6, atol=1e-9) and tau != 1.0
    # far from every known solution each factor tends to the shift: Newton unchanged there
    far = 1e6 * np.ones(n)
    assert abs(defl.factor(far) - defl.shift ** 2) < 1e-9
    assert abs(defl.direction(far, d)[1] - 1.0) < 1e-9


def test_deflation_from_one_start_finds_the_uniform_and_both_mirror_solutions():
    """The positive control from a single start: the first solve, then Newton with the solutions
    found so far deflated, restarted until every launch fails. Three solutions: the uniform one
    (J = -alpha T / 2 = -0.8) and two concentrated ones, mirror images of each other."""
    p = W.aggregation_control(n=64, nt=40, alpha=0.4)
    (U0, M0), = W.initial_guesses(p, 1, seed=1, amplitude=0.3)
    sols, records = W.deflated_solutions(p, U0, M0)
    J = sorted(W._aggregation_potential(p, U, M, 0.4) for U, M in sols)
    assert len(sols) == 3, J
    assert abs(J[2] + 0.8) < 1e-9 and abs(J[0] - J[1]) < 1e-9 and J[0] < -0.8 - 0.1
    concentrated = [M for U, M in sols if np.ptp(M[-1]) > 1]
    assert np.abs(concentrated[0][:, ::-1] - concentrated[1]).max() < 1e-6 * concentrated[0].max()
    assert sum(r["status"] == "converged" for r in records) == 3 and records[-1]["found"] is False


def test_deflation_finds_no_second_solution_of_the_monotone_control():
    p = W.aggregation_control(n=64, nt=40, alpha=-0.4)
    (U0, M0), = W.initial_guesses(p, 1, seed=1, amplitude=0.3)
    sols, records = W.deflated_solutions(p, U0, M0)
    assert len(sols) == 1 and len(records) == 3 and not any(r.get("found") for r in records[1:])


def test_deflated_continuation_draws_the_pitchfork_of_the_aggregation_control():
    """alpha = 0, 0.1: the uniform solution only (below the threshold, about nu^2 pi^2 = 0.099 for
    a long horizon, later for T = 4); alpha = 0.5: it and two concentrated solutions, mirror
    images (mean positions of m(T) symmetric about 1/2). The uniform branch runs throughout."""
    st = W.deflated_continuation(lambda a: W.aggregation_control(n=32, nt=16, alpha=a), [0.0, 0.1, 0.3, 0.5])
    assert st["solutions_per_value"][:2] == [1, 1] and st["solutions_per_value"][-1] == 3, st
    uniform = st["branches"][0]
    assert uniform["values"] == [0.0, 0.1, 0.3, 0.5] and np.allclose(uniform["mean_position"], 0.5)
    last = sorted(b["mean_position"][-1] for b in st["branches"] if b["values"][-1] == 0.5)
    assert abs(last[0] + last[2] - 1.0) < 1e-6 and last[0] < 0.3 and abs(last[1] - 0.5) < 1e-9
    assert st["first_value_with_several"] in (0.3, 0.5) and not st["incomplete"]


@pytest.mark.parametrize("extra, message", [
    (["--parameter", "coupling.slope", "--values", "0", "1"], "has no entry 'slope'"),
    (["--parameter", "coupling.scale"], "go together"),
    (["--parameter", "coupling.scale", "--values", "1"], "at least two finite numbers"),
    (["--parameter", "name", "--values", "0", "1"], "not a number"),
])
def test_wellposed_parameter_study_refuses_bad_keys_before_any_solve(extra, message, tmp_path, capsys):
    out = tmp_path / "w"
    rc = cli.main(["wellposed", os.path.join(ROOT, "solvers", "aggregation_control.toml"), "--out", str(out)] + extra)
    err = capsys.readouterr().err
    assert rc == 1 and message in err and not out.exists(), err


def test_multi_start_finds_the_second_solution_by_deflation_when_every_start_reaches_one():
    """Amplitude-1 starts on the aggregation control all reach the uniform solution; the deflated
    search from it (perturbed) finds a concentrated one: the verdict is not 'unique'."""
    p = W.aggregation_control(n=64, nt=40, alpha=0.4)
    ms = W.multi_start(p, starts=4, amplitude=1.0)
    assert ms["verdict"] == "several solutions" and ms["distinct_solutions"] >= 2, ms["evidence"]
    assert any(r["found"] and "perturbed" in r["launch"] for r in ms["deflation"])


def test_viscous_family_and_consistent_start():
    """R_s is the problem at viscosity nu + (1 - s) nu_0, nu_0 = c L^2 / T; the consistent start
    solves the FP exactly and the HJB up to the coupling's mismatch f(M0) - f(m)."""
    from mfgpde.fd.scheme import FDScheme

    p = log_problem()
    at, nu0 = W._viscous_family(p)
    assert nu0 == pytest.approx(W.VISCOUS_HOMOTOPY_C * 1.0**2 / p.T)
    for s_ in (0.0, 0.25, 1.0):
        assert at(s_).problem.nu == pytest.approx(p.nu + (1 - s_) * nu0)
    (U0, M0), = W.initial_guesses(p, 1, seed=2, amplitude=0.3)
    sc = FDScheme(p)
    U, M = W.consistent_start(sc, U0, M0)
    RU, Rm = sc.residual(U, M)
    assert np.abs(Rm).max() < 1e-9
    mismatch = sc.f(M0[1:]) - sc.f(M[1:])
    assert np.abs(RU[:-1] - mismatch).max() < 1e-8 and np.abs(mismatch).max() > 1e-3


def test_branch_diagram_scalars():
    """Mean position of m(T) along the first axis (normalised by the mass) and its maximum."""
    g = mp.TensorGrid([(0.0, 2.0)], 40, "noflux")
    p = mp.MFGProblem(g, 1.0, 4, 0.1, mp.QuadraticHamiltonian(), np.ones(40))
    M = np.full((5, 40), 3.0)
    M[-1] = np.where(g.axes[0] < 0.5, 6.0, 0.0)
    pos, mx = W._diagram_scalars(p, M)
    assert pos == pytest.approx(0.25) and mx == 6.0


def test_multi_start_past_its_deadline_runs_nothing_and_says_so():
    import time

    ms = W.multi_start(log_problem(), starts=3, deadline=time.monotonic() - 1)
    assert ms["incomplete"] and ms["not_run"] == ["start 0", "start 1", "start 2"]
    assert ms["verdict"] == "inconclusive" and ms["converged"] == 0


def test_a_multi_start_cut_short_before_its_deflated_searches_is_not_unique(monkeypatch):
    """Every start converges to one solution, then the time limit passes before the deflated
    searches (simulated: phase 2 returns none run): the verdict must not rest on searches that
    did not run."""
    monkeypatch.setattr(W, "_deflation_rounds", lambda problem, launches, known, *a, **k:
                        ([], [f"deflated search from start {i}" for i, _ in launches]))
    ms = W.multi_start(log_problem(), starts=2)
    assert ms["converged"] == 2 and ms["distinct_solutions"] == 1
    assert ms["verdict"] == "inconclusive" and ms["incomplete"] and "not all run" in ms["evidence"]


def test_parallel_starts_give_the_serial_verdict_and_solutions():
    serial = W.multi_start(log_problem(), starts=3, tol=1e-10, return_solutions=True)
    parallel = W.multi_start(log_problem(), starts=3, tol=1e-10, return_solutions=True, workers=2)
    assert serial["verdict"] == parallel["verdict"] == "unique"
    assert [r["iterations"] for r in serial["runs"]] == [r["iterations"] for r in parallel["runs"]]
    assert np.abs(serial["solutions"][0][1] - parallel["solutions"][0][1]).max() < 1e-12


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
    # pre-asymptotic at these sizes (recorded: 0.70 for m, 0.67 for U); the ratio of successive
    # differences grows towards 2, i.e. the order towards 1. Bands +-0.1 around the record.
    assert 0.6 < ref["order_m"] < 0.8, ref
    assert 0.57 < ref["order_U"] < 0.77, ref
    # m > 0 everywhere here: the support is the whole box and the two sup norms agree
    assert ref["differences_U_support"] == ref["differences_U"]
    assert all(w <= s for w, s in zip(ref["differences_U_weighted"], ref["differences_U"]))
    assert set(ref["norms"]) == {"m", "U_support", "U_weighted", "U"}
    # the m-weighted L2 difference has its own order (recorded 0.85; without the square root of
    # the weighted mean of e^2 it would double)
    assert 0.75 < ref["order_U_weighted"] < 0.95, ref
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


# every shipped configuration, at a reduced size, with every option of the verb that applies
SHIPPED = {
    "lq_gaussian.toml": ["--shape", "32", "--nt", "8", "--refine", "16", "32", "64"],
    "lst_case1.toml": ["--shape", "32", "--nt", "8", "--refine", "16", "32", "64"],
    "lst_case2.toml": ["--shape", "10", "--nt", "5", "--refine", "5", "10"],
    "cnf_gaussian_1d.toml": ["--shape", "40", "--nt", "8", "--refine", "20", "40", "--lambdas", "1", "0.1"],
    "cnf_gmm8_2d.toml": ["--shape", "8", "--nt", "3", "--no-controls"],  # --lambdas: the 1D case
    "score_mfg_2d.toml": ["--shape", "10", "--nt", "5", "--refine", "5", "10", "--no-controls"],
    "score_ou_1d.toml": ["--shape", "60", "--nt", "30", "--refine", "30", "60", "120"],
    "aggregation_control.toml": ["--shape", "32", "--nt", "16", "--no-controls", "--parameter", "coupling.scale",
                                 "--values", "0", "-0.3", "-0.5"],
}
REFUSED = {"crowd_room.toml": "mfgpde solve", "ergodic_crowd_2d.toml": "is an ergodic problem"}


def test_every_shipped_configuration_is_covered():
    shipped = {f for f in os.listdir(os.path.join(ROOT, "solvers")) if f.endswith(".toml")}
    assert shipped == set(SHIPPED) | set(REFUSED)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "cnf_gmm8_2d.toml" else n
                                  for n in sorted(SHIPPED)])  # the 2D 8-mode CNF takes 40 s: make test-slow
def test_wellposed_cli_on_shipped_configuration(name, tmp_path):
    out = tmp_path / "wp"
    rc = cli.main(["wellposed", os.path.join(ROOT, "solvers", name), "--out", str(out), "--starts", "2",
                   "--tol", "1e-9"] + SHIPPED[name])
    rep = json.loads((out / "wellposed.json").read_text())
    assert rc == 0 and rep["stages_failed"] == [], rep["stages_failed"]
    assert (out / "wellposed.png").stat().st_size > 10000
    if "refinement" in rep:
        ref = rep["refinement"]
        diffs = ref.get("differences_m", ref.get("differences_p"))
        assert all(np.isfinite(diffs)) and diffs == sorted(diffs, reverse=True)   # Cauchy differences fall
    if name.startswith("score_ou"):
        assert "multi_start" not in rep and 1.7 < rep["refinement"]["order_p"] < 2.3  # MUSCL push-forward
        return
    ms = rep["multi_start"]
    assert ms["start_spread"] > 0.1
    if name == "aggregation_control.toml":    # the shipped problem with several solutions
        assert ms["verdict"] == "several solutions"
        assert rep["continuation"]["solutions_per_value"][0] == 1 < rep["continuation"]["solutions_per_value"][-1]
        assert (out / "branches.png").stat().st_size > 10000
        return
    assert ms["verdict"] in ("unique", "inconclusive")   # none of the others is a non-unique problem
    if name in ("lq_gaussian.toml", "lst_case1.toml", "lst_case2.toml", "cnf_gaussian_1d.toml"):
        assert ms["verdict"] == "unique" and ms["spread_m"] < 1e-7
    if "controls" in rep:
        assert rep["controls"]["positive"]["passed"] and rep["controls"]["negative"]["passed"]
    if "--lambdas" in SHIPPED[name]:
        assert all(r["converged"] for r in rep["cnf_lambda"]["rows"])


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_wellposed_cli_refuses_mesh_and_ergodic_configurations_naming_the_alternative(name, tmp_path, capsys):
    out = tmp_path / "wp"
    assert cli.main(["wellposed", os.path.join(ROOT, "solvers", name), "--out", str(out)]) == 1
    assert REFUSED[name] in capsys.readouterr().err and not out.exists()


def test_wellposed_cli_keeps_finished_stages_when_a_later_one_fails(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("planted failure in the refinement")

    monkeypatch.setattr(W, "refinement", broken)
    out = tmp_path / "wp"
    rc = cli.main(["wellposed", os.path.join(ROOT, "solvers", "lst_case1.toml"), "--out", str(out), "--starts", "2",
                   "--shape", "24", "--nt", "6", "--refine", "12", "24", "--no-controls"])
    rep = json.loads((out / "wellposed.json").read_text())
    assert rc == 1 and rep["stages_failed"] == ["refinement"]
    assert "planted failure" in rep["refinement"]["error"]
    assert rep["multi_start"]["verdict"] == "unique" and (out / "wellposed.png").exists()
