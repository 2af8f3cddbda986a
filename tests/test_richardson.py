"""Second-order references by Richardson extrapolation, and the error estimate on every result.

Orders are fitted against the closed forms C1 (CNF), C3 (linear-quadratic, 2D) and E1 (ergodic);
the estimate is compared with the true error; the interpolation is exact on cubics.
"""

import json

import numpy as np
import pytest
from helpers import lq_config, observed_order

import mfgpde as mp
from mfgpde.closed_forms import CNFGaussian, ErgodicLQ, LinearQuadratic
from mfgpde.generative.densities import gaussian
from mfgpde.generative.presets import cnf_problem
from mfgpde.iterations import richardson as rich

# ---------------------------------------------------------------- problems with closed forms
LQ = dict(q=1.0, g0=1.0, nu=0.1, T=1.0, s0=0.4)


def lq_problem(n, dim=2):
    g = mp.TensorGrid([(-2.0, 2.0)] * dim, n, "noflux")
    quad = lambda *xs: 0.5 * sum(x ** 2 for x in xs)
    m0 = lambda *xs: np.exp(-0.5 * sum(x ** 2 for x in xs) / LQ["s0"] ** 2)
    return mp.MFGProblem(g, LQ["T"], n, LQ["nu"], mp.QuadraticHamiltonian(), m0,
                         coupling=mp.PotentialCoupling(lambda *xs: LQ["q"] * quad(*xs)),
                         terminal=lambda *xs: LQ["g0"] * quad(*xs), normalize=True)


def lq_error(p, r):
    ex = LinearQuadratic(LQ["q"], LQ["g0"], LQ["nu"], LQ["T"], [0.0] * p.grid.dim, LQ["s0"])
    mex = ex.m(LQ["T"], *p.grid.coordinates())
    return np.abs(r.m[-1] - mex).max() / mex.max()


def c1_problem(n):
    return cnf_problem(mp.TensorGrid([(-5.0, 5.0)], n, "noflux"), gaussian([1.0], 0.25), lam=1.0, nt=n // 4)


def c1_error(p, r):
    ex = CNFGaussian(1.0, 0.5, 1.0)
    return p.grid.integrate(np.abs(r.m[-1] - ex.m(1.0, p.grid.coordinates()[0])))


# ---------------------------------------------------------------- interpolation
@pytest.mark.parametrize("mode", ["periodic", "mirror", "inside"])
def test_cubic_interpolation_is_exact_on_cubics(mode):
    """4-point Lagrange interpolation reproduces a cubic exactly (periodic: a trigonometric
    polynomial to O(H^4); mirror: an even cubic about the wall half a spacing beyond the ends)."""
    n, a, b = 16, 0.0, 1.0
    if mode == "periodic":
        xs = a + np.arange(n) * (b - a) / n
        xt = a + np.arange(2 * n) * (b - a) / (2 * n)
        f = lambda x: np.sin(2 * np.pi * x)
        tol = 2e-3
    elif mode == "mirror":
        H = (b - a) / n
        xs = a + (np.arange(n) + 0.5) * H
        xt = a + (np.arange(2 * n) + 0.5) * H / 2
        # even about both walls x = 0 and x = 1 to third order: (x (1 - x))^2 is smooth; test the
        # interior exactly and the walls to O(H^3)
        f = lambda x: (x * (1 - x)) ** 2
        tol = 5e-4
    else:
        xs = np.linspace(0, 1, n + 1)
        xt = np.linspace(0, 1, 2 * n + 1)
        f = lambda x: 3 * x**3 - x**2 + 0.5 * x - 2
        tol = 1e-12
    P = rich.lagrange_matrix(xt, xs, mode)
    assert P.shape == (xt.size, xs.size) and P.nnz <= 4 * xt.size
    assert np.allclose(P.sum(axis=1), 1.0)  # constants are reproduced
    assert np.abs(P @ f(xs) - f(xt)).max() < tol
    if mode == "mirror":
        inner = (xt > 2 * H) & (xt < 1 - 2 * H)
        g = lambda x: x**3 - 2 * x**2 + 0.3
        assert np.abs((P @ g(xs) - g(xt))[inner]).max() < 1e-12


def test_interpolation_order_is_four():
    """The interpolation error falls like H^4, so it cannot spoil a second- or third-order result."""
    errs, Hs = [], []
    for n in (16, 32, 64):
        g_c = mp.TensorGrid([(0, 1)], n, "periodic")
        g_f = mp.TensorGrid([(0, 1)], 2 * n, "periodic")
        f = lambda x: np.exp(np.sin(2 * np.pi * x))
        errs.append(np.abs(rich.interpolate(f(g_c.axes[0]), g_c, g_f) - f(g_f.axes[0])).max())
        Hs.append(1.0 / n)
    assert 3.7 < observed_order(np.array(Hs), errs) < 4.3, errs


# ---------------------------------------------------------------- orders against closed forms
def test_c3_2d_first_order_estimate_is_the_error():
    """C3 in 2D at order 1: the two-grid difference is the true error within a factor 2, for m(T)
    and for the density-weighted error of grad U (measured: 0.97 and 0.99 of the true one)."""
    for n in (32, 64):
        p = lq_problem(n)
        r = mp.solve(p, tol=1e-10)
        t = lq_error(p, r)
        est = r.error_estimate
        assert est["order"] == 1 and est["levels"] == 2
        assert 0.5 * t < est["m_max_rel_final"] < 2 * t, (n, t, est)
        ex = LinearQuadratic(LQ["q"], LQ["g0"], LQ["nu"], LQ["T"], [0.0, 0.0], LQ["s0"])
        X, h = p.grid.coordinates(), p.grid.h
        per_t = []
        for i, time_ in enumerate(p.times):
            num = [np.gradient(r.U[i], h[k], axis=k, edge_order=1) for k in range(2)]
            per_t.append(p.grid.integrate(r.m[i] * sum((num[k] - ex.P(time_) * X[k]) ** 2 for k in range(2))))
        true_grad = np.sqrt(np.trapezoid(per_t, p.times) / LQ["T"])
        assert 0.5 * true_grad < est["grad_U_weighted"] < 2 * true_grad, (n, true_grad, est["grad_U_weighted"])


def test_c3_2d_order_two():
    """C3 in 2D at order 2: observed order >= 1.8 (3.2 measured between 64^2 and 128^2), 10x more
    accurate than order 1 at 128^2, mass to round-off, and an estimate within a factor 0.5-5 of
    the true error (it is the two-level error: conservative once the ladder is asymptotic)."""
    ns, errs = [64, 128], []
    for n in ns:
        p = lq_problem(n)
        r = mp.solve(p, tol=1e-10, order=2)
        assert r.converged and r.diagnostics["order"] == 2 and r.diagnostics["mass_error"] < 1e-12
        errs.append(lq_error(p, r))
        est = r.error_estimate["m_max_rel_final"]
        assert 0.5 * errs[-1] < est < 5 * errs[-1], (n, errs[-1], est)
    assert observed_order(4.0 / np.array(ns), errs) >= 1.8, errs
    assert errs[-1] < 2e-3  # the target at 128^2 (first order: 3.1e-2)


def test_c1_order_two():
    """C1 (nu = 0, KL terminal cost): order 2 at an observed order >= 1.8 on m(T) and grad U."""
    ns, errs = [96, 192], []
    for n in ns:
        p = c1_problem(n)
        r = mp.solve(p, tol=1e-9, order=2)
        assert r.converged and abs(r.mass()[-1] - 1) < 1e-12
        errs.append(c1_error(p, r))
        assert errs[-1] < r.error_estimate["m_L1_final"]  # conservative
    assert observed_order(10.0 / np.array(ns), errs) >= 1.8, errs
    assert errs[-1] < 1e-3


def test_e1_ergodic_order_two():
    """E1 (ergodic LQ with a log coupling): rho and m to second order; the rho estimate is there."""
    ex = ErgodicLQ(nu=0.3, c=1.0, q=1.0, d=1)
    ns, err_rho, err_m = [64, 128], [], []
    for n in ns:
        g = mp.TensorGrid([(-5.0, 5.0)], n, "noflux")
        p = mp.ErgodicMFGProblem(g, 0.3, mp.QuadraticHamiltonian(),
                                 coupling=mp.LogCoupling(floor=1e-10) + mp.PotentialCoupling(lambda x: 0.5 * x**2))
        r = mp.solve(p, tol=1e-10, order=2)
        assert r.converged
        err_rho.append(abs(r.rho - ex.rho))
        err_m.append(g.integrate(np.abs(r.m - ex.m(g.axes[0]))))
        assert set(r.error_estimate) >= {"rho", "m_L1", "grad_u_weighted"}
    h = 10.0 / np.array(ns)
    assert observed_order(h, err_m) >= 1.8, err_m
    assert observed_order(h, err_rho) >= 1.8 or err_rho[-1] < 1e-6, err_rho


# ---------------------------------------------------------------- contracts
def test_order_one_fields_do_not_change_with_the_estimate():
    p = lq_problem(32)
    a = mp.solve(p, tol=1e-10, error_estimate=False)
    b = mp.solve(p, tol=1e-10)
    assert a.error_estimate is None and b.error_estimate is not None
    assert np.array_equal(a.m, b.m) and np.array_equal(a.U, b.U)
    assert b.diagnostics["extrapolation"]["levels"] == [[32, 32, 32], [16, 16, 16]]


def test_warm_started_solves_carry_no_estimate_unless_asked():
    p = lq_problem(16)
    r = mp.solve(p, tol=1e-10, error_estimate=False)
    assert mp.solve(p, tol=1e-10, initial=r).error_estimate is None
    assert mp.solve(p, tol=1e-10, initial=r, error_estimate=True).error_estimate is not None


@pytest.mark.parametrize("order", [0, 3, 1.5, True, "2"])
def test_bad_order_is_refused(order):
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        mp.solve(lq_problem(16), order=order)


def test_order_two_without_a_ladder_is_refused_before_any_work(monkeypatch):
    import importlib

    solve_module = importlib.import_module("mfgpde.fd.solve")

    def no_work(*a, **k):
        raise AssertionError("a solve ran before the refusal")

    monkeypatch.setattr(solve_module, "solve_fd", no_work)
    for shape, nt in ((30, 32), (32, 30), (16, 16)):
        g = mp.TensorGrid([(-2.0, 2.0)], shape, "noflux")
        p = mp.MFGProblem(g, 1.0, nt, 0.1, mp.QuadraticHamiltonian(), lambda x: np.exp(-x**2 / 0.32), normalize=True)
        with pytest.raises(ValueError, match=r"order=2: a ladder of 3 grids needs every axis"):
            mp.solve(p, order=2)


def test_array_drift_has_no_ladder():
    g = mp.TensorGrid([(-2.0, 2.0)], 32, "noflux")
    p = mp.MFGProblem(g, 1.0, 32, 0.1, mp.QuadraticHamiltonian(), lambda x: np.exp(-x**2 / 0.32), normalize=True,
                      drift=np.zeros((1, 32)))
    with pytest.raises(ValueError, match="drift is given as a grid array"):
        mp.solve(p, order=2)
    r = mp.solve(p, tol=1e-10)
    assert r.error_estimate is None and "drift" in r.diagnostics["error_estimate_unavailable"]


def test_odd_grid_says_why_it_has_no_estimate():
    g = mp.TensorGrid([(-2.0, 2.0)], 33, "noflux")
    p = mp.MFGProblem(g, 1.0, 20, 0.1, mp.QuadraticHamiltonian(), lambda x: np.exp(-x**2 / 0.32), normalize=True)
    r = mp.solve(p, tol=1e-10)
    assert r.converged and r.error_estimate is None
    assert "divisible by 2" in r.diagnostics["error_estimate_unavailable"]


def test_negative_extrapolated_density_is_reported():
    """A density with a steep front: the combination undershoots in the tails, and says so."""
    g = mp.TensorGrid([(0.0, 1.0)], 64, "periodic")
    p = mp.MFGProblem(g, 0.5, 32, 0.005, mp.QuadraticHamiltonian(), lambda x: (np.abs(x - 0.5) < 0.1) + 1e-6,
                      terminal=lambda x: np.cos(2 * np.pi * x), normalize=True)
    r = mp.solve(p, tol=1e-10, order=2)
    assert r.diagnostics["min_density"] == pytest.approx(r.m.min())
    assert r.diagnostics["extrapolation"]["negative_density"] == bool(r.m.min() < 0)
    assert abs(r.mass()[-1] - r.mass()[0]) < 1e-12


def test_estimate_is_saved_and_summarised(tmp_path):
    p = lq_problem(32)
    r = mp.solve(p, tol=1e-10, order=2)
    path = r.save(tmp_path / "s.nc")
    ds = mp.MFGResult.load_dataset(path)
    est = json.loads(ds.attrs["mfgpde_diagnostics"])["error_estimate"]
    assert est == pytest.approx(json.loads(json.dumps(r.error_estimate, default=float)))
    assert r.summary()["error_estimate"]["order"] == 2


def test_cli_order_two_prints_and_writes_the_estimate(tmp_path, capsys):
    from mfgpde import cli

    cfg = tmp_path / "lq.toml"
    cfg.write_text(lq_config(1, 64, 32, "order = 2"))
    assert cli.main(["solve", str(cfg), "--out", str(tmp_path / "o"), "--no-plot"]) == 0
    err = capsys.readouterr().err
    assert "order 2, estimated error: m(T) L1" in err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["order"] == 2 and summary["error_estimate"]["m_L1_final"] > 0
    assert cli.main(["solve", str(cfg), "--out", str(tmp_path / "o1"), "--no-plot", "--order", "1"]) == 0
    assert "order 1, estimated error" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.read_text().replace("order = 2", "order = 3"))
    assert cli.main(["solve", str(bad), "--out", str(tmp_path / "b")]) == 1
    assert "[solver] order must be 1" in capsys.readouterr().err


def test_validate_reports_the_reference_error_and_a_verdict_per_metric(tmp_path, capsys):
    """The exact C1 model is below the order-2 reference's resolution in every metric (its
    velocity error is the reference's own); a perturbed model is resolved; the JSON says both."""
    import os

    from mfgpde import cli

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = open(os.path.join(root, "solvers", "cnf_gaussian_1d.toml")).read()
    assert "order = 2" in text
    cfg = tmp_path / "cnf.toml"
    cfg.write_text(text.replace("shape = [200]", "shape = [96]").replace("nt = 48", "nt = 24"))
    verdicts = {}
    for model in ("exact_velocity", "perturbed_velocity"):
        out = tmp_path / model
        assert cli.main(["validate", str(cfg), "--model", f"neural_fixtures:{model}", "--out", str(out)]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["reference_order"] == 2 and metrics["transport"] == "muscl"
        assert metrics["reference_error"]["velocity_error_weighted"] > 0
        verdicts[model] = {k: v["verdict"] for k, v in metrics["verdicts"].items()}
    err = capsys.readouterr().err
    assert "below the reference's resolution (resolved on" in err
    for key in ("final.L1", "final.W2", "velocity_error_weighted"):
        assert verdicts["exact_velocity"][key] == "below the reference's resolution", verdicts
        assert verdicts["perturbed_velocity"][key] == "resolved", verdicts


def test_validate_against_a_reference_without_estimate_says_so():
    from mfgpde.validate.validator import validate_flow

    p = c1_problem(64)
    r = mp.solve(p, tol=1e-9, error_estimate=False)
    metrics, _ = validate_flow(r, lambda x, t: CNFGaussian(1.0, 0.5, 1.0).velocity(t, x))
    assert metrics["reference_error"] is None and "without an error estimate" in metrics["reference_error_unavailable"]


def test_a_failing_coarse_level_leaves_the_result_without_an_estimate(monkeypatch):
    """The estimate's coarse level may fail where the problem does not (a grid too small for the
    ranks): the fine result comes back, without an estimate and with the reason; order 2 raises."""
    import importlib

    fd_solve = importlib.import_module("mfgpde.fd.solve")
    real = fd_solve.solve_fd

    def coarse_fails(problem, *args, **kw):
        if problem.grid.shape == (16, 16):
            raise ValueError("grid (16, 16) is too small for 4 ranks")
        return real(problem, *args, **kw)

    monkeypatch.setattr(fd_solve, "solve_fd", coarse_fails)
    p = lq_problem(32)
    r = mp.solve(p, tol=1e-10)
    assert r.converged and r.error_estimate is None
    assert "coarse level [16, 16] failed" in r.diagnostics["error_estimate_unavailable"]
    with pytest.raises(ValueError, match="too small"):
        mp.solve(p, tol=1e-10, order=2)


@pytest.mark.parametrize("mode, offset", [("mirror", 0.5), ("periodic", 0.0)])
def test_interpolation_by_two_conserves_the_discrete_mass(mode, offset):
    """Every coarse value's cubic weights over the fine points sum to 2 (cell-centred walls
    mirrored, periodic nodes wrapped): the ladder needs no mass correction."""
    n = 12
    xs = (np.arange(n) + offset) / n
    xt = (np.arange(2 * n) + offset) / (2 * n)
    P = rich.lagrange_matrix(xt, xs, mode)
    assert np.allclose(np.asarray(P.sum(axis=0)).ravel(), 2.0, atol=1e-14)


def test_order_two_conserves_mass_with_density_at_the_walls():
    g = mp.TensorGrid([(0.0, 1.0)], 64, "noflux")
    p = mp.MFGProblem(g, 1.0, 32, 0.1, mp.QuadraticHamiltonian(), lambda x: 1 + 0.5 * np.cos(np.pi * x) + x,
                      coupling=mp.LogCoupling(), terminal=lambda x: x**3, normalize=True)
    r = mp.solve(p, tol=1e-11, order=2)
    assert r.converged and r.diagnostics["mass_error"] < 1e-12


def test_verdict_threshold_and_the_grid_that_would_resolve():
    """Resolved above RESOLUTION_FACTOR (2) times the bar; below it, the grid refined by
    (2 bar / value)^(1/order) * 1.05, rounded up to multiples of 4."""
    from mfgpde.validate.validator import _verdict

    g = mp.TensorGrid([(0, 1)], 100, "noflux")
    assert _verdict(2.1, 1.0, g, 40, 2)["verdict"] == "resolved"
    v = _verdict(1.9, 1.0, g, 40, 2)
    assert v["verdict"] == "below the reference's resolution"
    f = (2.0 / 1.9) ** 0.5 * 1.05
    assert v["grid_to_resolve"] == {"shape": [int(4 * np.ceil(100 * f / 4))], "nt": int(4 * np.ceil(40 * f / 4))}
    w = _verdict(0.5, 1.0, g, 40, 1)
    assert w["grid_to_resolve"]["shape"] == [int(4 * np.ceil(100 * 4 * 1.05 / 4))]
    assert _verdict(float("nan"), 1.0, g, 40, 1)["verdict"] == "not measured"
