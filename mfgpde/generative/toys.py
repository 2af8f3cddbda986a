"""The 2D toy data sets of the flow and diffusion literature, as densities with exact samplers.

The eight data sets of FFJORD (Grathwohl et al. 2019) -- checkerboard, 8 Gaussians, 2 spirals,
moons, circles, rings, pinwheel, swiss roll -- are defined here as probability densities, so
that a grid MFG can take them as data and a model can be rated against them:

* a **curve data set** is the law of ``X = c(s) + w Z``: a point ``c(s)`` drawn on a curve (or
  a union of curves) with the parameter ``s`` from a stated law, thickened by an isotropic
  Gaussian of width ``w`` (``Z ~ N(0, I)``). Its density

      p(x) = int N(x; c(s), w^2 I) mu(ds)                                             (1)

  is evaluated by composite Gauss-Legendre quadrature in ``s`` (panels no longer than ``w``
  in arc length, 6 nodes each: relative quadrature error below 1e-9, tested), i.e. as a
  Gaussian mixture over the nodes. The sampler draws ``s`` from ``mu`` itself (not from the
  nodes), so the samples follow (1) exactly;
* the **checkerboard** is piecewise constant: the uniform law on eight 2 x 2 squares of
  ``[-4, 4]^2``. Its cell averages on a grid are exact (overlaps of rectangles).

Shapes and scales follow FFJORD's generators (``data * 2 + (-1, -0.2)`` for the moons, the
circles and rings times 3, the swiss roll divided by 5, ...); the jitter is replaced by the
stated Gaussian width (FFJORD's uniform jitter of the spirals and its anisotropic pinwheel noise
have no simple density), and the widths are 0.2 (8 Gaussians: 0.354, as in FFJORD) so that the
default 2D grids of the zoo resolve them.

Noising. Every data set is closed under the affine Gaussian noising of score-based models,
``X_t = a X_0 + sqrt(v) Z``: a curve data set becomes the mixture (1) with nodes ``a c(s)`` and
variance ``a^2 w^2 + v``, the checkerboard a sum of products of normal CDFs. So the noised
density ``p_t`` and its score ``grad log p_t`` are known to quadrature accuracy at every time
(:meth:`ToyData.noised`; OU/VP: ``a = e^-t, v = 1 - e^-2t``; VE: ``a = 1, v = sigma^2 t``): the
exact score a score model is rated against.
"""

from __future__ import annotations

import difflib

import numpy as np
from scipy.special import log_ndtr, ndtr

#: the names of the data sets, in FFJORD's order
NAMES = ("checkerboard", "8gaussians", "2spirals", "moons", "circles", "rings", "pinwheel", "swissroll")
#: Gauss-Legendre nodes per quadrature panel, and the longest panel in units of the width
NODES_PER_PANEL, PANEL_WIDTHS = 6, 1.0


class ToyData:
    """A 2D data set as a density (see the module docstring).

    Attributes
    ----------
    name : str
    description : str
        The law, in words and formulas.
    dim : int
        Always 2.
    """

    dim = 2
    name = "toy"
    description = ""

    def density(self, x, y):
        """The density at the points ``(x, y)`` (arrays of any matching shape)."""
        raise NotImplementedError

    def log_density(self, x, y):
        """``log p``; finite where ``p`` underflows (log-sum-exp), ``-inf`` only off a bounded support."""
        raise NotImplementedError

    def score(self, x, y):
        """``grad log p`` as an array ``(2,) + x.shape``."""
        raise NotImplementedError

    def sample(self, n, seed=None):
        """``n`` exact samples, an array ``(n, 2)``."""
        raise NotImplementedError

    def noised(self, a, v):
        """The law of ``a X + sqrt(v) Z`` (``a > 0, v >= 0``), another :class:`ToyData`."""
        raise NotImplementedError

    def on_grid(self, grid):
        """Values on a 2D :class:`~mfgpde.grid.TensorGrid`: the point density (exact cell averages
        for a discontinuous density), not renormalised: ``grid.integrate`` of it is the mass in
        the box (:meth:`mass_in`).
        """
        _check_grid(grid)
        return self.density(*grid.coordinates())

    def mass_in(self, grid):
        """Mass of the box on the grid (1 minus what lies outside)."""
        return float(grid.integrate(self.on_grid(grid)))

    def __call__(self, *xs):
        return self.density(*xs)

    def __repr__(self):
        return f"ToyData({self.name!r})"


def _check_grid(grid):
    if getattr(grid, "dim", None) != 2:
        raise ValueError(f"the toy data sets are 2D; got a grid of dimension {getattr(grid, 'dim', None)}")


# ------------------------------------------------------------------------------ curve data sets
class CurveData(ToyData):
    """The law of ``c(s) + w Z`` (equation (1)): a Gaussian mixture over quadrature nodes.

    Parameters
    ----------
    name, description : str
    nodes : ndarray (J, 2)
        Quadrature nodes ``c(s_j)``.
    weights : ndarray (J,)
        Quadrature weights of ``mu`` (summing to one).
    variance : float
        ``w^2``.
    draw : callable ``(n, rng) -> (n, 2)``
        Exact draws of ``c(s)``, ``s ~ mu``.
    scale : float
        Affine noising so far: the nodes and draws are multiplied by it.
    """

    def __init__(self, name, description, nodes, weights, variance, draw, scale=1.0):
        self.name, self.description = name, description
        self.nodes = np.asarray(nodes, float)
        self.weights = np.asarray(weights, float)
        self.variance = float(variance)
        self._draw, self._scale = draw, float(scale)
        if not self.variance > 0:
            raise ValueError(f"{name}: the width must be > 0, got variance {variance}")
        self._log_w = np.log(np.maximum(self.weights, 1e-300))

    def _terms(self, x, y, chunk=2048):
        """Yield ``(slice, E, d)``: per chunk of points, the exponents ``log w_j + log N_j`` (P, J)
        and the differences ``c_j - x`` (P, J, 2), for log-sum-exp reductions.
        """
        P = np.stack([np.ravel(x), np.ravel(y)], axis=1)
        c = -np.log(2 * np.pi * self.variance)
        for start in range(0, len(P), chunk):
            sl = slice(start, start + chunk)
            d = self.nodes[None, :, :] - P[sl, None, :]
            E = self._log_w[None, :] + c - 0.5 * np.sum(d * d, axis=-1) / self.variance
            yield sl, E, d

    def log_density(self, x, y):
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        out = np.empty(x.size)
        for sl, E, _d in self._terms(x, y):
            mx = E.max(axis=1)
            out[sl] = mx + np.log(np.exp(E - mx[:, None]).sum(axis=1))
        return out.reshape(x.shape)

    def density(self, x, y):
        return np.exp(self.log_density(x, y))

    def score(self, x, y):
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        out = np.empty((x.size, 2))
        for sl, E, d in self._terms(x, y):
            W = np.exp(E - E.max(axis=1)[:, None])
            out[sl] = np.einsum("pj,pjk->pk", W, d) / (W.sum(axis=1)[:, None] * self.variance)
        return np.moveaxis(out, 1, 0).reshape((2,) + x.shape)

    def sample(self, n, seed=None):
        rng = np.random.default_rng(seed)
        return self._scale * self._draw(int(n), rng) + np.sqrt(self.variance) * rng.standard_normal((int(n), 2))

    def noised(self, a, v):
        a, v = float(a), float(v)
        if not (a > 0 and v >= 0):
            raise ValueError(f"noised(a, v) needs a > 0 and v >= 0, got a = {a}, v = {v}")
        return CurveData(self.name, self.description, a * self.nodes, self.weights, a * a * self.variance + v,
                         self._draw, self._scale * a)


def _gauss_legendre_panels(curve, s0, s1, weight, width):
    """Nodes ``c(s_j)`` and weights of ``int f(c(s)) weight(s) ds`` (``weight`` normalised here).

    The panel edges are equally spaced in arc length (measured on a fine sampling of the curve),
    no panel longer than ``PANEL_WIDTHS * width``: a Gaussian of that width is then integrated to
    round-off by ``NODES_PER_PANEL`` Gauss-Legendre nodes per panel (tested by halving the panels).
    """
    fine = np.linspace(s0, s1, 20001)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(curve(fine), axis=1)))])
    panels = max(4, int(np.ceil(arc[-1] / (PANEL_WIDTHS * width))))
    edges = np.interp(np.linspace(0, arc[-1], panels + 1), arc, fine)
    xg, wg = np.polynomial.legendre.leggauss(NODES_PER_PANEL)
    mid, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
    s = (mid[:, None] + half[:, None] * xg[None, :]).ravel()
    w = (half[:, None] * wg[None, :]).ravel() * weight(s)
    return curve(s).T, w / w.sum()


def _curves(name, description, parts, width):
    """A curve data set from ``parts``: ``(probability, curve, s0, s1, weight, draw_s)`` each,
    where ``draw_s(n, rng)`` draws the parameter from the normalised ``weight`` on ``[s0, s1]``.
    """
    probs = np.array([p[0] for p in parts], float)
    probs /= probs.sum()
    nodes, weights = [], []
    for pk, (_p, curve, s0, s1, weight, _draw) in zip(probs, parts):
        c, w = _gauss_legendre_panels(curve, s0, s1, weight, width)
        nodes.append(c)
        weights.append(pk * w)

    def draw(n, rng):
        k = rng.choice(len(parts), size=n, p=probs)
        out = np.empty((n, 2))
        for i, part in enumerate(parts):
            sel = k == i
            out[sel] = part[1](part[5](int(sel.sum()), rng)).T
        return out

    return CurveData(name, description, np.concatenate(nodes), np.concatenate(weights), width**2, draw)


def _uniform(s0, s1):
    return (lambda s: np.ones_like(s)), (lambda n, rng: rng.uniform(s0, s1, n))


def eight_gaussians():
    """8 Gaussians of standard deviation ``1/sqrt(8)`` centred on the circle of radius ``2 sqrt(2)``."""
    ang = np.arange(8) * np.pi / 4
    centres = 2 * np.sqrt(2) * np.stack([np.cos(ang), np.sin(ang)], axis=1)

    def draw(n, rng):
        return centres[rng.integers(0, 8, n)]

    return CurveData("8gaussians", "equal mixture of N(c_k, I/8), c_k = 2 sqrt(2) (cos k pi/4, sin k pi/4)",
                     centres, np.full(8, 1 / 8), 1 / 8, draw)


def two_spirals(width=0.2):
    """Two interleaved spirals ``+-(-s cos s, s sin s) / 3``, ``s = 3 pi sqrt(u)`` (density ``2 s / (3 pi)^2``)."""
    S = 3 * np.pi
    arms = []
    for sign in (1.0, -1.0):
        def curve(s, sign=sign):
            return sign * np.stack([-s * np.cos(s), s * np.sin(s)]) / 3
        arms.append((1.0, curve, 0.0, S, lambda s: s, lambda n, rng: S * np.sqrt(rng.uniform(0, 1, n))))
    return _curves("2spirals", f"+-(-s cos s, s sin s)/3, s = 3 pi sqrt(U), + {width} Z", arms, width)


def moons(width=0.2):
    """Two interleaving half circles (scikit-learn's moons) times 2, shifted by ``(-1, -0.2)``."""
    f0, d0 = _uniform(0.0, np.pi)
    outer = (1.0, lambda s: 2 * np.stack([np.cos(s), np.sin(s)]) + np.array([[-1.0], [-0.2]]), 0.0, np.pi, f0, d0)
    inner = (1.0, lambda s: 2 * np.stack([1 - np.cos(s), 0.5 - np.sin(s)]) + np.array([[-1.0], [-0.2]]), 0.0, np.pi,
             f0, d0)
    return _curves("moons", f"2 (cos s, sin s) and 2 (1 - cos s, 1/2 - sin s), shifted by (-1, -0.2), s ~ U(0, pi), "
                            f"+ {width} Z", [outer, inner], width)


def _circle(r):
    f0, d0 = _uniform(0.0, 2 * np.pi)
    return (1.0, lambda s: r * np.stack([np.cos(s), np.sin(s)]), 0.0, 2 * np.pi, f0, d0)


def circles(width=0.2):
    """Two concentric circles of radii 3 and 1.5, half the mass on each."""
    return _curves("circles", f"uniform on the circles of radii 3 and 1.5 (1/2 each) + {width} Z",
                   [_circle(3.0), _circle(1.5)], width)


def rings(width=0.2):
    """Four concentric circles of radii 3, 2.25, 1.5 and 0.75, a quarter of the mass on each."""
    return _curves("rings", f"uniform on the circles of radii 3, 2.25, 1.5, 0.75 (1/4 each) + {width} Z",
                   [_circle(r) for r in (3.0, 2.25, 1.5, 0.75)], width)


def pinwheel(*, width=0.2, arms=5, radial_std=0.3, rate=0.25):
    """Five arms ``2 R(2 pi k / 5 + rate e^s) (s, 0)`` with ``s ~ N(1, radial_std^2)``."""
    lo, hi = 1 - 6 * radial_std, 1 + 6 * radial_std
    parts = []
    for k in range(arms):
        def curve(s, k=k):
            ang = 2 * np.pi * k / arms + rate * np.exp(s)
            return 2 * s * np.stack([np.cos(ang), np.sin(ang)])
        # the normal law truncated at 6 standard deviations (the mass beyond is 2e-9)
        parts.append((1.0, curve, lo, hi, lambda s: np.exp(-0.5 * ((s - 1) / radial_std) ** 2),
                      lambda n, rng: _truncated_normal(n, rng, 1.0, radial_std, lo, hi)))
    return _curves("pinwheel", f"{arms} arms 2 s (cos a, sin a), a = 2 pi k/{arms} + {rate} e^s, s ~ N(1, "
                               f"{radial_std}^2), + {width} Z", parts, width)


def _truncated_normal(n, rng, mu, sd, lo, hi):
    out = rng.normal(mu, sd, n)
    bad = (out < lo) | (out > hi)
    while bad.any():
        out[bad] = rng.normal(mu, sd, int(bad.sum()))
        bad = (out < lo) | (out > hi)
    return out


def swiss_roll(width=0.2):
    """The swiss roll ``(s cos s, s sin s) / 5``, ``s ~ U(1.5 pi, 4.5 pi)``."""
    f0, d0 = _uniform(1.5 * np.pi, 4.5 * np.pi)
    part = (1.0, lambda s: np.stack([s * np.cos(s), s * np.sin(s)]) / 5, 1.5 * np.pi, 4.5 * np.pi, f0, d0)
    return _curves("swissroll", f"(s cos s, s sin s)/5, s ~ U(1.5 pi, 4.5 pi), + {width} Z", [part], width)


# ------------------------------------------------------------------------------- checkerboard
class Checkerboard(ToyData):
    """Uniform law on the eight 2 x 2 squares of ``[-4, 4]^2`` with ``i + j`` even.

    The squares are ``[-4 + 2i, -2 + 2i] x [-4 + 2j, -2 + 2j]``; noised, ``a X + sqrt(v) Z`` has the density

        p(x) = (1/(8 * 4)) sum_Q prod_k (1/a) [Phi((x_k - a l_k)/sqrt v) - Phi((x_k - a u_k)/sqrt v)]  (2)

    over the squares ``Q = prod_k [l_k, u_k]`` (``Phi`` the normal CDF).
    """

    name = "checkerboard"
    description = "uniform on the 8 squares [-4+2i, -2+2i] x [-4+2j, -2+2j], i + j even, of [-4, 4]^2"

    def __init__(self, a=1.0, v=0.0):
        self.a, self.v = float(a), float(v)
        sq = [(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0]
        self.lo = np.array([[-4.0 + 2 * i, -4.0 + 2 * j] for i, j in sq])
        self.hi = self.lo + 2.0
        self.c = 1.0 / (len(sq) * 4.0)

    def _factors(self, x, k, q):
        """Per axis ``k`` and square ``q``: the factor of (2), its log and its derivative over it."""
        a, lo, hi = self.a, self.a * self.lo[q, k], self.a * self.hi[q, k]
        if self.v == 0:
            f = ((x >= lo) & (x < hi)).astype(float) / a
            return f, np.zeros_like(x)
        s = np.sqrt(self.v)
        z1, z2 = (x - lo) / s, (x - hi) / s
        # Phi(z1) - Phi(z2) without cancellation on either side: the upper tails when z2 > 0
        f = np.where(z2 > 0, ndtr(-z2) - ndtr(-z1), ndtr(z1) - ndtr(z2)) / a
        dens = (np.exp(-0.5 * z1 * z1) - np.exp(-0.5 * z2 * z2)) / (np.sqrt(2 * np.pi) * s * a)
        return f, dens

    def density(self, x, y):
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        out = np.zeros(x.shape)
        for q in range(len(self.lo)):
            out += self._factors(x, 0, q)[0] * self._factors(y, 1, q)[0]
        return self.c * out

    def log_density(self, x, y):
        p = self.density(x, y)
        if self.v == 0:
            with np.errstate(divide="ignore"):
                return np.log(p)
        # far from the board the sum underflows: the largest term's log from log_ndtr instead
        small = p < 1e-280
        if np.any(small):
            lx, ly = np.asarray(x, float)[small], np.asarray(y, float)[small]
            s = np.sqrt(self.v)
            best = np.full(lx.shape, -np.inf)
            for q in range(len(self.lo)):
                terms = []
                for coord, k in ((lx, 0), (ly, 1)):
                    lo, hi = self.a * self.lo[q, k], self.a * self.hi[q, k]
                    # the dominant CDF term on the side of the square the point lies on
                    terms.append(np.where(coord > hi, log_ndtr((hi - coord) / s), log_ndtr((coord - lo) / s))
                                 - np.log(self.a))
                best = np.maximum(best, terms[0] + terms[1])
            out = np.log(np.maximum(p, 1e-300))
            out[small] = np.log(self.c) + best
            return out
        return np.log(p)

    def score(self, x, y):
        if self.v == 0:
            raise ValueError("the checkerboard's score is not defined without noise (v = 0)")
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        num = np.zeros((2,) + x.shape)
        den = np.zeros(x.shape)
        for q in range(len(self.lo)):
            fx, dx = self._factors(x, 0, q)
            fy, dy = self._factors(y, 1, q)
            den += fx * fy
            num[0] += dx * fy
            num[1] += fx * dy
        return num / np.maximum(den, 1e-300)

    def sample(self, n, seed=None):
        rng = np.random.default_rng(seed)
        n = int(n)
        q = rng.integers(0, len(self.lo), n)
        X = self.lo[q] + 2.0 * rng.uniform(0, 1, (n, 2))
        return self.a * X + np.sqrt(self.v) * rng.standard_normal((n, 2))

    def noised(self, a, v):
        a, v = float(a), float(v)
        if not (a > 0 and v >= 0):
            raise ValueError(f"noised(a, v) needs a > 0 and v >= 0, got a = {a}, v = {v}")
        return Checkerboard(self.a * a, a * a * self.v + v)

    def on_grid(self, grid):
        """Exact cell averages when ``v = 0`` (cells centred on the grid points, clipped to the box),
        point values otherwise.
        """
        _check_grid(grid)
        if self.v > 0:
            return self.density(*grid.coordinates())
        overlaps = []
        for k, ax in enumerate(grid.axes):
            h = grid.h[k]
            lo = np.maximum(ax - h / 2, grid.bounds[k][0])
            hi = np.minimum(ax + h / 2, grid.bounds[k][1])
            ov = np.clip(np.minimum(hi[None, :], self.a * self.hi[:, k, None])
                         - np.maximum(lo[None, :], self.a * self.lo[:, k, None]), 0, None)
            overlaps.append(ov / (hi - lo)[None, :] / self.a)
        return self.c * np.einsum("qi,qj->ij", overlaps[0], overlaps[1])


# ------------------------------------------------------------------------------------ lookup
_BUILDERS = {"checkerboard": Checkerboard, "8gaussians": eight_gaussians, "2spirals": two_spirals, "moons": moons,
             "circles": circles, "rings": rings, "pinwheel": pinwheel, "swissroll": swiss_roll}
_CACHE = {}


def toy(name):
    """The data set ``name`` (one of :data:`NAMES`), built once per process.

    Raises
    ------
    ValueError
        An unknown name, with the closest names suggested.
    """
    if name not in _BUILDERS:
        close = difflib.get_close_matches(str(name), NAMES, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown toy data set {name!r}{hint}; allowed: {', '.join(NAMES)}")
    if name not in _CACHE:
        _CACHE[name] = _BUILDERS[name]()
    return _CACHE[name]


def ou_marginal(data, t):
    """``p_t`` of the VP/OU forward SDE ``dX = -X dt + sqrt(2) dW`` from ``data``: ``a = e^-t``, ``v = 1 - e^-2t``."""
    return data.noised(np.exp(-t), -np.expm1(-2 * t)) if t > 0 else data


def ve_marginal(data, t, sigma):
    """``p_t`` of the VE forward SDE ``dX = sigma dW`` from ``data``: ``a = 1``, ``v = sigma^2 t``."""
    return data.noised(1.0, sigma**2 * t) if t > 0 else data
