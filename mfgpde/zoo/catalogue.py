"""The catalogue of the zoo: named benchmark MFGs, each with the reference that rates models.

An :class:`Entry` is a configuration (the same TOML tables ``mfgpde solve`` and ``mfgpde
validate`` read, as a dict), the kind of model it rates, and, where one is known, the exact
model (a closed form or a quadrature-exact score) that must score below the reference's error
bar. The entries:

* per toy data set of :mod:`mfgpde.generative.toys` (8 of them), four problems:

  - ``cnf-NAME``: the CNF of the data (kinetic energy, ``lambda = 1``, KL terminal cost to
    ``N(0, I)``, ``nu = 0``, ``T = 1``); rates a velocity or a potential;
  - ``vp-NAME``: the score-based model with the VP/OU forward SDE ``dX = -X dt + sqrt(2) dW``
    over ``T = 3``; rates a score (or a log-density potential); the exact score is known;
  - ``ve-NAME``: the same with the VE SDE ``dX = dW`` over ``T = 1`` (120 x 120 on ``[-6, 6]^2``);
  - ``jko-NAME``: one JKO step of ``KL(rho | data)`` from ``N(0, I)`` with ``tau = 0.5``, the MFG
    on ``[0, tau]`` with ``U(tau) = log(m / data) + 1``; rates a velocity or a potential;

* the Gaussian closed forms C1 (1D CNF), C2 (OU score of a two-mode mixture, 1D), C3 (2D
  linear-quadratic MFG) and E1 (1D ergodic linear-quadratic MFG);
* the anisotropic-Gaussian and the 8-mode 2D CNFs, the benchmarks B1 and B2 of the solver
  literature (congestion), and the two-well ergodic crowd.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field

import numpy as np

from .. import closed_forms as cf
from ..generative import toys
from ..generative.toys import NAMES as TOY_NAMES

#: model kinds of the two families of references
FLOW_KINDS, SCORE_KINDS = ("velocity", "potential"), ("score", "score-potential")
#: the time at which the exact model of a checkerboard score entry is evaluated for t = 0 (noise
#: standard deviation sqrt(2e-4) = 0.014 for VP, a tenth of the grid spacing)
T_EPS = 1e-4
#: the 2D toy grid: the box and the points per axis of every toy entry
TOY_BOX, TOY_SHAPE = [[-5.0, 5.0], [-5.0, 5.0]], [64, 64]


@dataclass(frozen=True)
class Entry:
    """One benchmark of the zoo.

    Attributes
    ----------
    name : str
    family : str
        ``cnf``, ``score-vp``, ``score-ve``, ``jko``, ``closed-form``, ``benchmark`` or ``ergodic``.
    kinds : tuple of str
        The model kinds it rates (``--kind``); the first is the default.
    dim : int
    mfg : str
        The MFG in one line.
    config : dict
        The configuration of the reference (``mfgpde solve`` / ``mfgpde validate`` tables).
    exact : str or None
        The exact model, when there is one (see :func:`exact_model`).
    """

    name: str
    family: str
    kinds: tuple
    dim: int
    mfg: str
    config: dict = field(compare=False, repr=False)
    exact: str | None = None

    @property
    def reference(self):
        """``"score"``, ``"ergodic"`` or ``"flow"``: which validator rates models against it."""
        if self.config.get("preset") == "score":
            return "score"
        return "ergodic" if self.config.get("kind") == "ergodic" else "flow"

    @property
    def grid(self):
        """The reference grid as text, e.g. ``64x64, nt 32``."""
        shape = self.config["grid"]["shape"]
        shape = [shape] if isinstance(shape, int) else shape
        text = "x".join(str(n) for n in shape)
        nt = self.config.get("time", {}).get("nt")
        return text + (f", nt {nt}" if nt is not None else "")

    def configuration(self):
        """A deep copy of the configuration (safe to modify)."""
        return copy.deepcopy(self.config)


def _grid(bounds=None, shape=None, boundary="noflux"):
    return {"bounds": copy.deepcopy(bounds or TOY_BOX), "shape": list(shape or TOY_SHAPE), "boundary": boundary}


def _toy_entries(name):
    data = {"type": "toy", "name": name}
    # the JKO target must have a finite log everywhere: the checkerboard is smoothed by N(0, 0.04 I)
    target = {"type": "toy", "name": name} if name != "checkerboard" else {"type": "toy", "name": "checkerboard",
                                                                          "smoothing": 0.04}
    yield Entry(f"cnf-{name}", "cnf", FLOW_KINDS, 2,
                f"CNF of {name}: min E int_0^1 |v|^2/2 + KL(m(1) | N(0, I)), m(0) = {name}, nu = 0",
                {"name": f"cnf-{name}", "preset": "cnf", "grid": _grid(), "time": {"T": 1.0, "nt": 32},
                 "model": {"lam": 1.0}, "data": data, "solver": {"method": "newton", "tol": 1e-8, "order": 2}})
    yield Entry(f"vp-{name}", "score-vp", SCORE_KINDS, 2,
                f"VP/OU score model of {name}: dX = -X dt + sqrt(2) dW, T = 3; the score solves the log-density HJB",
                {"name": f"vp-{name}", "preset": "score", "grid": _grid(), "time": {"T": 3.0, "nt": 96},
                 "sde": {"type": "vp"}, "data": data}, exact="toy-score")
    # VE: the noise spreads the data by sigma sqrt(T) = 1, hence the wider box. 120 points per axis
    # (spacing 0.1): on 80^2 (0.15) the generated-density bars were 0.08-0.09 in L1 and the VE reverse
    # drift, less sensitive than VP's, left a 20 % perturbed score within them (L1 0.10-0.15); on
    # 120^2 the bars of moons and spirals are 0.036 / 0.043 and the perturbation is resolved in every
    # metric (64^2 on [-7, 7]^2 with sigma 1.5 did not resolve the width 0.2 at all: bars 0.11-0.31)
    yield Entry(f"ve-{name}", "score-ve", SCORE_KINDS, 2,
                f"VE score model of {name}: dX = dW, T = 1",
                {"name": f"ve-{name}", "preset": "score", "grid": _grid([[-6.0, 6.0], [-6.0, 6.0]], [120, 120]),
                 "time": {"T": 1.0, "nt": 64}, "sde": {"type": "ve", "sigma": 1.0}, "data": data}, exact="toy-score")
    yield Entry(f"jko-{name}", "jko", FLOW_KINDS, 2,
                f"JKO step of KL(. | {name}) from N(0, I), tau = 0.5: the MFG on [0, tau], nu = 0, U(tau) = log(m/data) + 1",
                {"name": f"jko-{name}", "preset": "jko", "grid": _grid(), "time": {"T": 0.5, "nt": 8},
                 "model": {"kl_eps": 1e-6}, "data": target,
                 "solver": {"method": "newton", "tol": 1e-8, "order": 1, "error_estimate": True}})


def _closed_forms():
    yield Entry("c1-cnf-gaussian-1d", "closed-form", FLOW_KINDS, 1,
                "C1: CNF of N(1, 0.25) to N(0, 1), lambda = 1, T = 1, nu = 0 (closed form)",
                {"name": "c1-cnf-gaussian-1d", "preset": "cnf", "grid": _grid([[-5.0, 5.0]], [200]),
                 "time": {"T": 1.0, "nt": 48}, "model": {"lam": 1.0}, "data": {"type": "gaussian", "mean": [1.0],
                                                                             "cov": 0.25},
                 "solver": {"method": "newton", "tol": 1e-9, "order": 2}}, exact="c1")
    yield Entry("c2-score-ou-1d", "closed-form", SCORE_KINDS, 1,
                "C2: VP/OU score of the mixture 0.4 N(-1.5, 0.09) + 0.6 N(1.2, 0.16), T = 3 (closed form)",
                {"name": "c2-score-ou-1d", "preset": "score", "grid": _grid([[-6.0, 6.0]], [240]),
                 "time": {"T": 3.0, "nt": 120}, "sde": {"type": "vp"},
                 "data": {"type": "mixture", "weights": [0.4, 0.6], "means": [[-1.5], [1.2]], "covs": [0.09, 0.16]}},
                exact="c2")
    lq = {"type": "potential", "expr": "0.5 * (x**2 + y**2)"}
    yield Entry("c3-lq-2d", "closed-form", FLOW_KINDS, 2,
                "C3: -U_t - 0.1 Lap U + |grad U|^2/2 = |x|^2/2, U(T) = |x|^2/2, m(0) = N(0, 0.16 I), T = 1 "
                "(closed form)",
                {"name": "c3-lq-2d", "grid": _grid([[-2.0, 2.0], [-2.0, 2.0]], [64, 64]), "time": {"T": 1.0, "nt": 64},
                 "model": {"nu": 0.1}, "hamiltonian": {"type": "quadratic", "lam": 1.0}, "coupling": [dict(lq)],
                 "terminal": dict(lq), "m0": {"type": "gaussian", "mean": [0.0, 0.0], "cov": 0.16},
                 "solver": {"method": "newton", "tol": 1e-10, "order": 2}}, exact="c3")
    yield Entry("e1-ergodic-lq-1d", "closed-form", FLOW_KINDS, 1,
                "E1: rho - 0.5 u'' + |u'|^2/2 = log m + x^2/2, -0.5 m'' - (m u')' = 0 (closed form)",
                {"name": "e1-ergodic-lq-1d", "kind": "ergodic", "grid": _grid([[-7.0, 7.0]], [280]),
                 "model": {"nu": 0.5}, "hamiltonian": {"type": "quadratic"},
                 "coupling": [{"type": "log", "floor": 1e-12}, {"type": "potential", "expr": "0.5 * x**2"}],
                 "solver": {"error_estimate": True}}, exact="e1")


def _benchmarks():
    yield Entry("cnf-anisotropic-2d", "cnf", FLOW_KINDS, 2,
                "CNF of N((1, -0.5), [[0.36, 0.12], [0.12, 0.09]]) to N(0, I), lambda = 1, nu = 0",
                {"name": "cnf-anisotropic-2d", "preset": "cnf", "grid": _grid(), "time": {"T": 1.0, "nt": 32},
                 "model": {"lam": 1.0},
                 "data": {"type": "gaussian", "mean": [1.0, -0.5], "cov": [[0.36, 0.12], [0.12, 0.09]]},
                 "solver": {"method": "newton", "tol": 1e-8, "order": 2}})
    ang = np.arange(8) * np.pi / 4
    means = [[round(2 * np.cos(a), 12), round(2 * np.sin(a), 12)] for a in ang]
    yield Entry("cnf-gmm8-2d", "cnf", FLOW_KINDS, 2,
                "CNF of 8 Gaussians N(2 (cos k pi/4, sin k pi/4), 0.09 I) to N(0, I), lambda = 1, nu = 0",
                {"name": "cnf-gmm8-2d", "preset": "cnf", "grid": _grid(), "time": {"T": 1.0, "nt": 32},
                 "model": {"lam": 1.0}, "data": {"type": "mixture", "weights": [1] * 8, "means": means,
                                                 "covs": [0.09] * 8},
                 "solver": {"method": "newton", "tol": 1e-8, "order": 2}})
    yield Entry("b1-congestion-1d", "benchmark", FLOW_KINDS, 1,
                "B1: congestion H = |p|^2 / (2 (1 + 4m)^1.5), nu = 0.05, periodic [0, 1], T = 1",
                {"name": "b1-congestion-1d", "grid": _grid([[0.0, 1.0]], [200], "periodic"),
                 "time": {"T": 1.0, "nt": 200}, "model": {"nu": 0.05},
                 "hamiltonian": {"type": "congestion", "c0": 1.0, "c1": 4.0, "beta": 1.5},
                 "coupling": [{"type": "power", "p": 1.0}, {"type": "potential", "expr": "0.1 + 0 * x"}],
                 "terminal": {"type": "potential", "expr": "10 * minimum((x - 0.3)**2, (x - 0.7)**2)"},
                 "m0": {"type": "expr", "expr": "where((x >= 0.375) & (x <= 0.625), 4.0, 0.0)"},
                 "solver": {"method": "newton", "tol": 1e-10, "error_estimate": True}})
    yield Entry("b2-congestion-2d", "benchmark", FLOW_KINDS, 2,
                "B2: congestion H = |p|^2 / (2 m^0.5), nu = 0.3, periodic [0, 1]^2, T = 0.5",
                {"name": "b2-congestion-2d", "normalize_m0": True,
                 "grid": _grid([[0.0, 1.0], [0.0, 1.0]], [48, 48], "periodic"), "time": {"T": 0.5, "nt": 48},
                 "model": {"nu": 0.3}, "hamiltonian": {"type": "congestion", "c0": 0.0, "c1": 1.0, "beta": 0.5},
                 "coupling": [{"type": "potential", "expr": "0.1 + 0 * x"}],
                 "terminal": {"type": "potential", "expr": "1.2 * cos(2 * pi * x) + cos(2 * pi * y)"},
                 "m0": {"type": "expr", "expr": "exp(-10 * ((x - 0.25)**2 + (y - 0.25)**2))"},
                 "solver": {"method": "newton", "tol": 1e-10, "error_estimate": True}})
    yield Entry("crowd-two-well-2d", "ergodic", FLOW_KINDS, 2,
                "ergodic crowd: rho - 0.3 Lap u + |grad u|^2/2 = log m + (x^2 - 4)^2/8 + y^2/2",
                {"name": "crowd-two-well-2d", "kind": "ergodic", "grid": _grid([[-6.0, 6.0], [-5.0, 5.0]], [60, 50]),
                 "model": {"nu": 0.3}, "hamiltonian": {"type": "quadratic"},
                 "coupling": [{"type": "log", "floor": 1e-10},
                              {"type": "potential", "expr": "(x**2 - 4)**2 / 8 + y**2 / 2"}],
                 "solver": {"error_estimate": True}})


def _build():
    out = {}
    for name in TOY_NAMES:
        for e in _toy_entries(name):
            out[e.name] = e
    for e in (*_closed_forms(), *_benchmarks()):
        out[e.name] = e
    return out


#: every entry, by name, in catalogue order
ENTRIES = _build()


def entry(name):
    """The entry ``name``; an unknown name raises ``ValueError`` with the closest names."""
    if name not in ENTRIES:
        close = difflib.get_close_matches(str(name), list(ENTRIES), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown zoo entry {name!r}{hint} (`mfgpde zoo list` shows all {len(ENTRIES)})")
    return ENTRIES[name]


def exact_model(e, kind=None):
    """The exact model of an entry, ``f(x, t)`` for ``x`` of shape ``(n, d)``, or None.

    ``kind`` is one of the entry's kinds (default its first). Vector kinds (``velocity``,
    ``score``): ``c1`` the C1 optimal velocity, ``c2`` the C2 score, ``c3`` the C3 optimal
    velocity, ``e1`` the E1 stationary velocity ``-u'``, ``toy-score`` the score of the noised toy
    data set, exact to quadrature accuracy (:meth:`mfgpde.generative.toys.ToyData.noised`; the
    checkerboard's at ``t = 0``, where it does not exist, is that at ``T_EPS``). Potential kinds
    (``potential``, ``score-potential``): the value functions ``U`` of C1 and C3, ``u`` of E1, and
    the log-densities ``log p_t`` of C2 and of the noised toys.
    """
    if e.exact is None:
        return None
    kind = kind or e.kinds[0]
    if kind not in e.kinds:
        raise ValueError(f"zoo entry {e.name} rates {', '.join(e.kinds)}, not {kind!r}")
    potential = kind in ("potential", "score-potential")
    cfg = e.config
    if e.exact == "toy-score":

        data = toys.toy(cfg["data"]["name"])
        sde = cfg["sde"]

        def law_at(t):
            if t < T_EPS and isinstance(data, toys.Checkerboard):
                # the piecewise-constant density has no score at t = 0 (zero inside the squares,
                # undefined on their edges and outside): the law at t = T_EPS stands in
                t = T_EPS
            return toys.ou_marginal(data, t) if sde["type"] == "vp" else toys.ve_marginal(data, t, sde["sigma"])

        if potential:
            return lambda x, t: law_at(t).log_density(x[:, 0], x[:, 1])
        return lambda x, t: np.asarray(law_at(t).score(x[:, 0], x[:, 1])).T
    if e.exact == "c1":
        c = cf.CNFGaussian(1.0, 0.5, 1.0, 1.0)
        if potential:
            return lambda x, t: c.U(t, x[:, 0])
        return lambda x, t: c.velocity(t, x)
    if e.exact == "c2":
        d = cfg["data"]

        def c2(x, t):
            dens, score = cf.ou_mixture_density_and_score(d["weights"], d["means"], d["covs"], t, x)
            return np.log(np.maximum(dens, 1e-300)) if potential else score
        return c2
    if e.exact == "c3":
        lq = cf.LinearQuadratic(q=1.0, g0=1.0, nu=0.1, T=1.0, mbar=[0.0, 0.0], s0=0.4)
        if potential:
            return lambda x, t: lq.U(t, x[:, 0], x[:, 1])
        # v = -grad U = -P(t) (x - mbar)
        return lambda x, t: -lq.P(t) * (x - lq.mbar[None, :])
    if e.exact == "e1":
        el = cf.ErgodicLQ(nu=cfg["model"]["nu"], c=1.0, q=1.0, d=1)
        if potential:
            return lambda x, t: el.u(x[:, 0])
        return lambda x, t: -el.grad_u(x[:, 0])[0][:, None]
    raise AssertionError(f"entry {e.name}: unknown exact model {e.exact!r}")
