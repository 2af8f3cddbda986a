"""The residuals that rate models, verified on manufactured fields whose exact residual is known.

``validate`` reports the HJB residual ``int_0^T int m |R| dx dt`` of a candidate value function
(the HJB regulariser of neural MFG solvers) and its ergodic analogue; score models are rated by
the log-density HJB residual of :mod:`mfgpde.generative.log_density_hjb`. Each is evaluated here
on smooth fields that solve nothing, so that every term of the residual is non-zero, against the
exact residual SymPy derives from formulas written independently of the package; the discrete
value must converge to it at the order of its differences (1 in time for the forward-difference
HJB residual, 2 for the centred log-density HJB). A wrong factor or sign in any term leaves an
error that does not fall.
"""

import numpy as np
import pytest
from helpers import observed_order

import mfgpde as mp

sp = pytest.importorskip("sympy")

t, x, y = sp.symbols("t x y")
TWO_PI = 2 * sp.pi


def lambdify(expr, *args):
    f = sp.lambdify(args, expr, "numpy")
    return lambda *a: np.broadcast_to(np.asarray(f(*a), float), np.broadcast(*a).shape)


def fine_integral(F, T, dim, n_space=1024, n_time=48):
    """``int_0^T int_[0,1]^d F(t, x) dx dt`` for a periodic F: Gauss-Legendre in t, the (spectral)
    trapezoid rule in x. F may have kinks (|R|): 1024 points per axis keep its error below 1e-6."""
    nodes, weights = np.polynomial.legendre.leggauss(n_time)
    ts, ws = T * (nodes + 1) / 2, T * weights / 2
    xs = np.meshgrid(*[np.arange(n_space) / n_space] * dim, indexing="ij")
    return float(sum(w * F(tk, *xs).mean() for tk, w in zip(ts, ws)))


# ---------------------------------------------------------------------- validate's HJB residual
CASES = {
    # 1D, congestion H (depends on m), log coupling, a time-dependent drift
    "1D, congestion H, log f, drift": dict(
        dim=1, nu=0.1, Phi=(sp.cos(TWO_PI * x) + sp.sin(4 * sp.pi * x) / 3) * (1 + t) / 4 + (1 - t) / 5,
        m=1 + sp.sin(TWO_PI * x) * sp.cos(t) / 2, H=lambda p, m: p[0] ** 2 / (2 * (1 + 2 * m)), f=lambda m: sp.log(m),
        b=[sp.sin(TWO_PI * x) * (1 + t) / 3], hamiltonian=mp.CongestionHamiltonian(c0=1.0, c1=2.0, beta=1.0),
        coupling=mp.LogCoupling()),
    # 2D, no drift, quadratic H (lam = 2), power coupling
    "2D, quadratic H, power f, no drift": dict(
        dim=2, nu=0.2, Phi=sp.cos(TWO_PI * x) * sp.sin(TWO_PI * y) * (1 + t) / 4 + sp.sin(TWO_PI * (x + y)) * t / 5,
        m=1 + sp.sin(TWO_PI * x) * sp.cos(TWO_PI * y) * sp.cos(t) / 2, H=lambda p, m: (p[0] ** 2 + p[1] ** 2) / 4,
        f=lambda m: m**2 / 2, b=None, hamiltonian=mp.QuadraticHamiltonian(lam=2.0),
        coupling=mp.PowerCoupling(p=2.0, scale=0.5)),
}


def exact_hjb_residual(c):
    xs = [x, y][: c["dim"]]
    grad = [sp.diff(c["Phi"], v) for v in xs]
    R = (-sp.diff(c["Phi"], t) - c["nu"] * sum(sp.diff(c["Phi"], v, 2) for v in xs) + c["H"](grad, c["m"])
         - c["f"](c["m"]))
    if c["b"] is not None:
        R -= sum(bk * gk for bk, gk in zip(c["b"], grad))
    return R


@pytest.mark.parametrize("name", sorted(CASES))
def test_validate_hjb_residual_converges_to_the_exact_one(name):
    from mfgpde.validate.validator import hjb_residual

    c = CASES[name]
    xs = [x, y][: c["dim"]]
    R = exact_hjb_residual(c)
    weighted = lambdify(c["m"] * sp.Abs(R), t, *xs)
    T = 0.5
    exact = fine_integral(weighted, T, c["dim"], n_space=1024 if c["dim"] == 1 else 256)
    V = sp.cos(TWO_PI * xs[-1]) / 3                                   # the terminal cost g = V(x)
    exact_terminal = fine_integral(lambda t_, *X: lambdify(c["m"] * sp.Abs(c["Phi"] - V), t, *xs)(T, *X),
                                   1.0, c["dim"], n_time=1)
    Phi, m = lambdify(c["Phi"], t, *xs), lambdify(c["m"], t, *xs)
    drift = None if c["b"] is None else [lambdify(bk, t, *xs) for bk in c["b"]]
    errors, terminal = [], []
    sizes = [32, 64, 128] if c["dim"] == 1 else [16, 32, 64]
    for n in sizes:
        g = mp.TensorGrid([(0, 1)] * c["dim"], n, "periodic")
        p = mp.MFGProblem(g, T, n, c["nu"], c["hamiltonian"], lambda *X: m(0.0, *X), coupling=c["coupling"],
                          terminal=lambda *X: lambdify(V, *xs)(*X),
                          drift=None if drift is None else (lambda t_, *X: [d(t_, *X) for d in drift]))
        X = g.coordinates()
        P = np.array([Phi(tk, *X) for tk in p.times])
        M = np.array([m(tk, *X) for tk in p.times])
        value, term, rmap = hjb_residual(p, P, M, p.times)
        assert rmap.shape == g.shape
        errors.append(abs(value - exact))
        terminal.append(abs(term - exact_terminal))
    # the forward difference in time and the left Riemann sum: first order in dt (= h here)
    assert 0.8 < observed_order(1.0 / np.array(sizes), errors) < 1.4, (exact, errors)
    # the terminal mismatch: the trapezoid rule on a periodic grid (|.| has kinks: second order)
    assert errors[-1] < 0.05 * exact and max(terminal) < 1e-3 * exact_terminal, (errors, terminal)


def test_ergodic_residual_converges_to_the_exact_one():
    """The residual ``int m |rho - nu Lap u + H - b . grad u - f[m]|`` that ``validate`` reports for
    stationary models, with a drift, at second order (centred differences)."""
    from mfgpde.validate.validator import _ergodic_residual

    u = sp.cos(TWO_PI * x) * sp.sin(TWO_PI * y) / 4 + sp.sin(TWO_PI * (x + y)) / 5
    m = 1 + sp.sin(TWO_PI * x) * sp.cos(TWO_PI * y) / 2
    b = [sp.sin(TWO_PI * y) / 2, sp.cos(TWO_PI * x) / 3]
    grad = [sp.diff(u, x), sp.diff(u, y)]
    rho, nu = 0.7, 0.15
    R = (rho - nu * (sp.diff(u, x, 2) + sp.diff(u, y, 2)) + (grad[0] ** 2 + grad[1] ** 2) / (2 * (1 + 2 * m))
         - sp.log(m) - b[0] * grad[0] - b[1] * grad[1])
    exact = fine_integral(lambda t_, *X: lambdify(m * sp.Abs(R), x, y)(*X), 1.0, 2, n_space=512, n_time=1)
    errors, sizes = [], [16, 32, 64]
    bx, by = lambdify(b[0], x, y), lambdify(b[1], x, y)
    for n in sizes:
        g = mp.TensorGrid([(0, 1)] * 2, n, "periodic")
        p = mp.ErgodicMFGProblem(g, nu, mp.CongestionHamiltonian(c0=1.0, c1=2.0, beta=1.0), coupling=mp.LogCoupling(),
                                 drift=lambda t_, X, Y: [bx(X, Y), by(X, Y)])
        X = g.coordinates()
        errors.append(abs(_ergodic_residual(p, lambdify(u, x, y)(*X), lambdify(m, x, y)(*X), rho) - exact))
    assert 1.7 < observed_order(1.0 / np.array(sizes), errors) < 2.5, (exact, errors)


# ---------------------------------------------------------------------- log-density HJB residuals
def log_density_case(sde, dim, half_width=3.0, boundary="noflux"):
    """A smooth phi(t, x) that is no log-density of anything, and its exact residuals (both forms).
    On a periodic box (VE only: the VP drift -x is not periodic) phi is periodic on [0, 2 pi)^d."""
    from mfgpde.generative.presets import ScoreModel

    xs = [x, y][:dim]
    if boundary == "periodic":
        bounds = [(0.0, 2 * np.pi)] * dim
        phi = sp.cos(2 * xs[0]) * (1 + t / 4) / 4 + sp.sin(xs[0]) * sp.cos(2 * t) / 2
        if dim == 2:
            phi += sp.cos(x + y) * t / 3 + sp.sin(y) / 5
    else:
        bounds = [(-half_width, half_width)] * dim
        phi = -sum(v**2 for v in xs) * (1 + t / 4) / 2 + sp.sin(xs[0]) * sp.cos(2 * t) / 2
        if dim == 2:
            phi += sp.cos(x + y / 2) * t / 3
    nu = 1.0 if sde == "vp" else 0.5 * 0.8**2
    f = [-v for v in xs] if sde == "vp" else [sp.Integer(0)] * dim
    grad = [sp.diff(phi, v) for v in xs]
    R = (sp.diff(phi, t) + sum(sp.diff(fk, v) for fk, v in zip(f, xs)) + sum(fk * gk for fk, gk in zip(f, grad))
         - nu * (sum(sp.diff(phi, v, 2) for v in xs) + sum(gk**2 for gk in grad)))
    make = lambda n: ScoreModel(mp.TensorGrid(bounds, n, boundary), sde=sde, sigma=0.8, T=1.0, nt=n // 2)
    return xs, phi, grad, R, make


@pytest.mark.parametrize("sde,dim,boundary", [("vp", 1, "noflux"), ("ve", 1, "noflux"), ("vp", 2, "noflux"),
                                              ("ve", 2, "noflux"), ("ve", 1, "periodic"), ("ve", 2, "periodic")])
def test_log_density_hjb_residual_both_forms_at_second_order(sde, dim, boundary):
    """``R = dphi/dt + div f + f . grad phi - nu (Lap phi + |grad phi|^2)`` (potential form) and its
    gradient ``R_s`` (score form, from ``s = grad phi``): max error at order 2 at every level (the
    end times use one-sided second-order differences) and every point at least 3 cells from a
    wall. At the walls the nested one-sided differences (the Laplacian as the derivative of a
    derivative) are first order only: 0.7-1.2 measured there. The score metric weights the
    residual by p_t, which is ~0 at the walls of the zoo's boxes (see the weighted-norm test)."""
    from mfgpde.generative.log_density_hjb import grid_residual

    xs, phi, grad, R, make = log_density_case(sde, dim, boundary=boundary)
    R_s = [sp.diff(R, v) for v in xs]
    errs = {"potential": [], "score": []}
    sizes = [32, 64, 128] if dim == 1 else [16, 32, 64]
    for n in sizes:
        sm = make(n)
        X = sm.grid.coordinates()
        ev = lambda e, X=X, sm=sm: np.array([lambdify(e, t, *xs)(tk, *X) for tk in sm.times])
        inner = (Ellipsis,) + (slice(3, -3) if boundary == "noflux" else slice(None),) * dim  # (periodic: all)
        Rp = grid_residual(sm, ev(phi), "score-potential")
        errs["potential"].append(np.abs(Rp - ev(R))[inner].max())
        Rs = grid_residual(sm, np.stack([ev(gk) for gk in grad], axis=1), "score")
        errs["score"].append(np.abs(Rs - np.stack([ev(r) for r in R_s], axis=1))[inner].max())
    h = 1.0 / np.array(sizes)
    for form, e in errs.items():
        # (2D VP: 1.68 over 16-64, pre-asymptotic; 1.84 between the two finest)
        assert 1.6 < observed_order(h, e) < 2.6 and e[-2] / e[-1] > 3.3, (form, e)


@pytest.mark.parametrize("dim", [1, 2])
def test_weighted_residual_norm_converges_to_the_exact_one(dim):
    """The p-weighted, time-averaged norm of the potential-form residual (centred: the normalisation
    constant of a log-density is removed) converges to its exact value at order 2, in 1D and 2D."""
    from mfgpde.generative.log_density_hjb import grid_residual, weighted_norm

    xs, phi, _grad, R, make = log_density_case("vp", dim, half_width=5.0)
    p = sp.exp(-sum(v**2 for v in xs) / 2) / (2 * sp.pi) ** sp.Rational(dim, 2)  # unit mass, ~0 at the walls
    t_min, T = 0.25, 1.0
    # exact: (1/(T - t_min)) int_{t_min}^T [int p R^2 - (int p R)^2 / int p] dt (the centring), by quadrature
    axis = np.linspace(-5, 5, 10001 if dim == 1 else 801)
    Xq = np.meshgrid(*[axis] * dim, indexing="ij")
    quad = lambda F: np.trapezoid(F.reshape((axis.size,) * dim), axis, axis=0) if dim == 1 else \
        np.trapezoid(np.trapezoid(F, axis, axis=1), axis)
    Rq, pq = lambdify(R, t, *xs), lambdify(p, *xs)(*Xq)
    nodes, weights = np.polynomial.legendre.leggauss(32)
    ts = t_min + (T - t_min) * (nodes + 1) / 2
    mass = quad(pq)
    var = [quad(pq * Rq(tk, *Xq) ** 2) - quad(pq * Rq(tk, *Xq)) ** 2 / mass for tk in ts]
    exact = np.sqrt(np.dot(weights, var) / 2)
    errors, sizes = [], ([64, 128, 256] if dim == 1 else [32, 64, 128])
    for n in sizes:
        sm = make(n)
        X = sm.grid.coordinates()
        P = np.array([lambdify(phi, t, *xs)(tk, *X) for tk in sm.times])
        W = np.broadcast_to(lambdify(p, *xs)(*X), P.shape)
        errors.append(abs(weighted_norm(grid_residual(sm, P, "score-potential"), W, sm.grid, sm.times, t_min=t_min)
                          - exact))
    assert 1.7 < observed_order(1.0 / np.array(sizes), errors) < 2.6, (exact, errors)


def test_residual_map_and_the_window_of_the_metric():
    """The report's space-time picture is ``p |R|`` (the Euclidean norm over the components of a
    score residual), zero before ``t_min``; a window outside ``[0, T)`` is refused, naming T."""
    from mfgpde.generative.log_density_hjb import first_level, residual_map

    rng = np.random.default_rng(5)
    times = np.linspace(0.0, 2.0, 9)
    p = rng.random((9, 6, 5))
    R = rng.normal(size=(9, 2, 6, 5))
    out = residual_map(R, p, times, t_min=0.5)
    assert first_level(times, 0.5) == 2 and np.all(out[:2] == 0.0)
    assert np.allclose(out[2:], p[2:] * np.hypot(R[2:, 0], R[2:, 1]))
    scalar = residual_map(R[:, 0], p, times)                       # default window: from T/10 (level 1)
    assert np.all(scalar[:1] == 0.0) and np.allclose(scalar[1:], p[1:] * np.abs(R[1:, 0]))
    with pytest.raises(ValueError, match=r"t_min must be in \[0, T\) = \[0, 2\), got 2.5"):
        first_level(times, 2.5)
