"""Couplings f[m] and terminal costs g[m] as first variations of mean-field energies.

A coupling maps the density on the grid to a field: ``value(m, grid) -> f`` with the same
shape as ``m``. Local couplings also give the pointwise derivative ``df/dm`` used by Newton.
Terminal costs ``g[m(T)](x)`` use the same interface (a terminal cost is the first variation
of the terminal energy G), so ``U(T) = g.value(m(T), grid)``.

Couplings add: ``LogCoupling() + PotentialCoupling(V)`` is ``f = log m + V(x)``.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from . import memory
from .checks import real


def _field_on_grid(func_or_array, grid, name):
    """Evaluate a callable of the coordinates, or check an array, on the grid."""
    if callable(func_or_array):
        values = np.asarray(func_or_array(*grid.coordinates()), float)
        values = np.broadcast_to(values, grid.shape)
    else:
        values = grid.restrict(np.asarray(func_or_array, float))
        if values.shape != grid.shape and values.size != 1:
            raise ValueError(f"{name}: array of shape {values.shape} does not match the grid shape {grid.shape}")
        values = np.broadcast_to(values, grid.shape)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: values on the grid must be finite")
    return np.array(values, dtype=float)



def _linear_convolution(a, b):
    """The full linear convolution of two real arrays through zero-padded real FFTs.

    What ``scipy.signal.fftconvolve(a, b, mode="full")`` computes, without importing
    ``scipy.signal`` (which pulls in ``scipy.stats``: 1.2 s of the package's import time).
    """
    shape = [p + q - 1 for p, q in zip(a.shape, b.shape)]
    fast = [sfft.next_fast_len(n, real=True) for n in shape]
    axes = tuple(range(a.ndim))
    res = sfft.irfftn(sfft.rfftn(a, fast, axes=axes) * sfft.rfftn(b, fast, axes=axes), fast, axes=axes)
    return res[tuple(slice(0, n) for n in shape)]


def _grid_key(grid):
    """A cache key that identifies a grid by value: ``id(grid)`` is reused once a grid is freed
    (a coarse grid of a Richardson ladder built and dropped), which served one grid's cached
    field to another of a different shape.
    """
    if getattr(grid, "is_mesh", False):
        # its ``bounds`` is collective (an MPI allreduce) and must not be touched here, where
        # ranks may evaluate in different orders; its serial number is rank-local and never reused
        uid = getattr(grid, "uid", None)
        # (an object that only looks like a mesh, without a serial number, is keyed by its id)
        return ("mesh", uid) if uid is not None else ("mesh-like", id(grid))
    return (tuple(grid.bounds), tuple(grid.shape), tuple(grid.boundary))

class Coupling:
    """Base class of couplings ``f[m]``.

    Attributes
    ----------
    local : bool
        True when ``f[m](x)`` depends on ``m(x)`` only; then :meth:`derivative` is exact.
    monotone : bool
        True when the coupling is Lasry-Lions monotone,
        ``int (f[m1] - f[m2]) (m1 - m2) >= 0``.
    needs_positive_density : bool
        True when the coupling is undefined for m <= 0 (log).
    """

    local = True
    monotone = True
    needs_positive_density = False

    def value(self, m, grid):
        raise NotImplementedError

    def derivative(self, m, grid):
        """Pointwise ``df/dm`` (local part only for nonlocal couplings)."""
        return np.zeros_like(m)

    def __add__(self, other):
        return SumCoupling([self, other])

    def describe(self) -> dict:
        return {"type": type(self).__name__}


class ZeroCoupling(Coupling):
    """``f = 0``."""

    def value(self, m, grid):
        return np.zeros_like(m)

    def describe(self):
        return {"type": "zero"}


class SumCoupling(Coupling):
    """Sum of couplings."""

    def __init__(self, terms):
        flat = []
        for t in terms:
            flat.extend(t.terms if isinstance(t, SumCoupling) else [t])
        self.terms = flat
        self.local = all(t.local for t in flat)
        self.monotone = all(t.monotone for t in flat)
        self.needs_positive_density = any(t.needs_positive_density for t in flat)

    def value(self, m, grid):
        return sum(t.value(m, grid) for t in self.terms)

    def derivative(self, m, grid):
        return sum(t.derivative(m, grid) for t in self.terms)

    def describe(self):
        return {"type": "sum", "terms": [t.describe() for t in self.terms]}


class ScaledCoupling(Coupling):
    """``s * f[m]`` for a coupling f (monotone if f is and ``s >= 0``)."""

    def __init__(self, base, s):
        self.base, self.s = base, real("s (coupling scale factor)", s)
        self.local, self.needs_positive_density = base.local, base.needs_positive_density
        self.monotone = base.monotone and self.s >= 0

    def value(self, m, grid):
        return self.s * self.base.value(m, grid)

    def derivative(self, m, grid):
        return self.s * self.base.derivative(m, grid)

    def describe(self):
        return {"type": "scaled", "scale": self.s, "coupling": self.base.describe()}


class LogCoupling(Coupling):
    """``f = scale * log(max(m, floor))``: the first variation of the entropy ``scale int m log m``.

    Parameters
    ----------
    scale : float
        Positive weight.
    floor : float
        Densities below ``floor`` are treated as ``floor`` (log of a vanishing tail).
    """

    needs_positive_density = True

    def __init__(self, scale=1.0, floor=1e-14):
        self.scale, self.floor = real("scale (log coupling)", scale), real("floor (log coupling)", floor)
        if not np.isfinite(self.scale) or self.scale < 0:
            raise ValueError(f"scale (log coupling) must be finite and >= 0, got {scale}")
        if not self.floor > 0:
            raise ValueError(f"floor must be > 0, got {floor}")

    def value(self, m, grid):
        return self.scale * np.log(np.maximum(m, self.floor))

    def derivative(self, m, grid):
        # log(max(m, floor)) is flat below the floor: its derivative there is 0, not 1/floor
        return np.where(m > self.floor, self.scale / np.maximum(m, self.floor), 0.0)

    def describe(self):
        return {"type": "log", "scale": self.scale, "floor": self.floor}


class PowerCoupling(Coupling):
    """``f = scale * m^p`` (p > 0): first variation of ``scale int m^(p+1)/(p+1)``."""

    def __init__(self, p=1.0, scale=1.0):
        self.p, self.scale = real("p (power-coupling exponent)", p), real("scale (power coupling)", scale)
        if not (np.isfinite(self.p) and self.p > 0):
            raise ValueError(f"p (power-coupling exponent) must be finite and > 0, got {p}")
        if not np.isfinite(self.scale):
            raise ValueError(f"scale (power coupling) must be finite, got {scale}")
        self.monotone = self.scale >= 0

    def value(self, m, grid):
        return self.scale * np.maximum(m, 0.0) ** self.p

    def derivative(self, m, grid):
        mp = np.maximum(m, 0.0)
        with np.errstate(divide="ignore"):
            return self.scale * self.p * np.where(mp > 0, mp ** (self.p - 1.0), 0.0 if self.p >= 1 else np.inf)

    def describe(self):
        return {"type": "power", "p": self.p, "scale": self.scale}


class PotentialCoupling(Coupling):
    """``f = V(x)``, a fixed potential (callable of the coordinates, or a grid array)."""

    def __init__(self, V, name="potential V"):
        bad = isinstance(V, (str, bytes))
        if not (bad or callable(V)):
            try:
                np.asarray(V, float)
            except (TypeError, ValueError):
                bad = True
        if bad:
            raise TypeError(f"{name} must be a callable V(*x) or an array on the grid, got {V!r} (in a "
                            "configuration file, expressions are strings under expr = ...)")
        self.V, self.name = V, name
        self._cache = {}

    def field(self, grid):
        key = _grid_key(grid)
        if key not in self._cache:
            self._cache[key] = _field_on_grid(self.V, grid, self.name)
        return self._cache[key]

    def value(self, m, grid):
        return np.broadcast_to(self.field(grid), m.shape).copy()

    def describe(self):
        return {"type": "potential"}


class CallableCoupling(Coupling):
    """Local coupling from user callables ``f(m)`` and ``df(m)``.

    Parameters
    ----------
    f, df : callable ``ndarray -> ndarray``
        The coupling and its derivative. ``df`` is needed by Newton.
    monotone : bool
        Whether the user asserts ``f`` is non-decreasing (Lasry-Lions monotone).
    """

    def __init__(self, f, df=None, monotone=True):
        if not callable(f):
            raise TypeError("coupling f must be callable")
        self.f, self.df, self.monotone = f, df, bool(monotone)

    def value(self, m, grid):
        return np.asarray(self.f(m), float)

    def derivative(self, m, grid):
        if self.df is None:
            raise NotImplementedError("coupling: Newton needs df; pass df= or use method='fixed_point'")
        return np.asarray(self.df(m), float)


class ConvolutionCoupling(Coupling):
    """Nonlocal coupling ``f[m](x) = scale * int K(x - y) m(y) dy``.

    Evaluated by FFT: circular on periodic axes, zero-padded (linear) on no-flux axes.
    Newton treats it as a quasi-Newton term (its dense Jacobian block is dropped), so Newton
    converges linearly rather than quadratically with a nonlocal coupling.

    Parameters
    ----------
    kernel : callable
        ``K(z1, ..., zd)`` evaluated on displacement arrays.
    scale : float
        Weight.
    monotone : bool
        Whether K is a positive-definite kernel (Lasry-Lions monotone coupling).
    """

    local = False

    def __init__(self, kernel, scale=1.0, monotone=True):
        self.kernel, self.scale, self.monotone = kernel, real("scale (convolution coupling)", scale), bool(monotone)
        if not np.isfinite(self.scale):
            raise ValueError(f"scale (convolution coupling) must be finite, got {scale}")
        self._cache = {}

    def _kernel_array(self, grid):
        key = _grid_key(grid)
        if key not in self._cache:
            disp = []
            for k, (n, h) in enumerate(zip(grid.shape, grid.h)):
                if grid.boundary[k] == "periodic":
                    j = np.arange(n)
                    disp.append(np.where(j <= n // 2, j, j - n) * h)
                else:
                    disp.append(np.arange(-(n - 1), n) * h)
            Z = np.meshgrid(*disp, indexing="ij")
            self._cache[key] = np.asarray(self.kernel(*Z), float) * grid.cell_volume
        return self._cache[key]

    def _mesh_matrix(self, dom):
        """Sparse ``W_ij = K(x_i - x_j) mu_j`` for this rank's vertices i and every vertex j.

        Lumped quadrature ``int K(x_i - y) m(y) dy ~ sum_j K(x_i - x_j) mu_j m_j`` (the FD
        rule on a uniform periodic mesh). The kernel is cut off where it has decayed below
        ``1e-12 max|K|`` (probed along the axes and diagonals up to the domain's diameter); the
        pairs within the cut-off come from a KD-tree, so a Gaussian kernel of width 0.05 on the
        20k-vertex crowd room costs ~ 20k x (vertices in a disc of radius ~0.4), not 20k^2.
        A kernel that does not decay gives the dense matrix, refused up front when it cannot fit.
        """
        key = _grid_key(dom)
        if key in self._cache:
            return self._cache[key]
        from scipy.spatial import cKDTree


        X, mu = dom.allgather(dom.coords), dom.allgather(dom.mu)
        lo, hi = X.min(axis=0), X.max(axis=0)
        period = np.zeros(dom.dim)
        for axis, a, b in dom.periodic:
            period[axis] = b - a
        diam = float(np.linalg.norm(np.where(period > 0, period / 2, hi - lo)))
        # cut-off radius: the last probe radius where |K| is still above 1e-12 max |K|
        r = np.linspace(0.0, diam, 2001)
        dirs = [np.eye(dom.dim)[k] for k in range(dom.dim)] + [np.ones(dom.dim) / np.sqrt(dom.dim)]
        mags = np.max([np.abs(np.asarray(self.kernel(*[r * d[k] for k in range(dom.dim)]), float)
                              * np.ones_like(r)) for d in dirs], axis=0)
        if not np.all(np.isfinite(mags)):
            raise ValueError("ConvolutionCoupling: the kernel is not finite at some displacement within the domain")
        above = np.nonzero(mags > 1e-12 * max(mags.max(), 1e-300))[0]
        radius = min(diam, r[min(above[-1] + 2, r.size - 1)]) if above.size else 0.0
        # periodic axes: the tree wraps them; a box much larger than the domain disables wrapping
        box = np.where(period > 0, period, 4.0 * (hi - lo + radius + 1.0))
        tree = cKDTree(np.mod(X - lo, box), boxsize=box)
        own = np.mod(dom.coords - lo, box)
        if radius >= diam:
            memory.require(16.0 * dom.n * X.shape[0], f"a dense convolution kernel between {dom.n} and {X.shape[0]} vertices")
        pairs = cKDTree(own, boxsize=box).sparse_distance_matrix(tree, radius * (1 + 1e-12) + 1e-300,
                                                                 output_type="ndarray")
        rows, cols = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)
        Z = dom.coords[rows] - X[cols]
        for axis in range(dom.dim):        # minimum image across periodic seams
            if period[axis] > 0:
                Z[:, axis] -= period[axis] * np.round(Z[:, axis] / period[axis])
        vals = np.asarray(self.kernel(*Z.T), float) * np.ones(rows.size) * mu[cols]
        import scipy.sparse as sp

        W = sp.csr_matrix((vals, (rows, cols)), shape=(dom.n, X.shape[0]))
        self._cache[key] = (W, radius)
        return self._cache[key]

    def value(self, m, grid):
        if getattr(grid, "is_mesh", False):
            W, _ = self._mesh_matrix(grid)
            lead = m.shape[:-1]
            flat = np.asarray(m, float).reshape(-1, grid.n)
            # every vertex's density is needed on every rank: one allgather per evaluation
            full = grid.allgather(flat, axis=1)
            return self.scale * (W @ full.T).T.reshape(lead + (grid.n,))
        K = self._kernel_array(grid)
        lead = m.shape[: m.ndim - grid.dim]
        flat = m.reshape((-1,) + grid.shape)
        out = np.empty_like(flat)
        axes = tuple(range(grid.dim))
        for i, mi in enumerate(flat):
            res = mi
            # periodic axes: circular convolution through the FFT
            per = [k for k in axes if grid.boundary[k] == "periodic"]
            if len(per) == grid.dim:
                res = np.real(np.fft.ifftn(np.fft.fftn(K) * np.fft.fftn(mi)))
            elif not per:
                res = _linear_convolution(mi, K)
                sl = tuple(slice(n - 1, 2 * n - 1) for n in grid.shape)
                res = res[sl]
            else:
                raise NotImplementedError("ConvolutionCoupling: mixed periodic/no-flux boxes are not supported")
            out[i] = res
        return self.scale * out.reshape(lead + grid.shape)

    def describe(self):
        return {"type": "convolution", "scale": self.scale}


class KLCoupling(Coupling):
    """First variation of ``KL(m || pi)`` regularised in the tails: ``g = log(m/pi + eps) + 1``.

    For ``eps = 0`` this is ``log m - log pi + 1``. On a truncated box the data density and
    its transport have tails many orders of magnitude below pi; there ``log m`` is huge and
    negative, its steep gradient creates spurious velocities, and Newton stalls (the
    Jacobian entry ``1/m`` spans 30 orders of magnitude). With ``eps > 0`` the cost levels
    off at ``log eps + 1`` where ``m < eps pi``: the energy is ``KL(m + eps pi || pi)`` up to
    a constant and O(eps) from the KL. ``eps = 1e-6`` by default in the CNF preset.

    Parameters
    ----------
    log_pi : callable or ndarray
        Must be finite on the grid (a vanishing reference makes the KL undefined).
    eps : float >= 0
    floor : float
        Used only when ``eps = 0``: ``m`` below it is treated as ``floor``.
    """

    needs_positive_density = True

    def __init__(self, log_pi, eps=1e-6, floor=1e-14):
        self.log_pi, self.eps, self.floor = log_pi, real("eps (KL regularisation)", eps), real("floor (KL)", floor)
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if not callable(log_pi):
            arr = np.asarray(log_pi, float)
            if not np.all(np.isfinite(arr)):
                raise ValueError("log_pi: the reference density vanishes somewhere on the grid; "
                                 "KL needs log pi finite")
        self._cache = {}

    def _log_pi(self, grid):
        key = _grid_key(grid)
        if key not in self._cache:
            vals = np.asarray(self.log_pi(*grid.coordinates()) if callable(self.log_pi) else self.log_pi, float)
            vals = np.broadcast_to(grid.restrict(vals), grid.shape)
            if not np.all(np.isfinite(vals)):
                raise ValueError("log_pi: the KL reference density vanishes (or is not finite) somewhere on the "
                                 "grid; the KL needs log pi finite everywhere")
            self._cache[key] = (vals, np.exp(vals))
        return self._cache[key]

    def value(self, m, grid):
        lp, pi = self._log_pi(grid)
        if self.eps > 0:
            return np.log(np.maximum(m, 0.0) + self.eps * pi) - lp + 1.0
        return np.log(np.maximum(m, self.floor)) - lp + 1.0

    def derivative(self, m, grid):
        _lp, pi = self._log_pi(grid)
        if self.eps > 0:
            return np.where(m > 0, 1.0 / (np.maximum(m, 0.0) + self.eps * pi), 0.0)
        return np.where(m > self.floor, 1.0 / np.maximum(m, self.floor), 0.0)

    def describe(self):
        return {"type": "kl", "eps": self.eps}


def kl_terminal(log_pi, scale=1.0, floor=1e-14):
    """Terminal cost of ``G(m) = scale * KL(m || pi)``: ``g = scale (log m - log pi + 1)``.

    Parameters
    ----------
    log_pi : callable or ndarray
        ``log pi`` on the grid (a callable of the coordinates, or an array). It must be
        finite: a reference density that vanishes on the box makes the KL undefined.
    """
    if callable(log_pi):
        base = log_pi
        V = lambda *xs: scale * (1.0 - np.asarray(base(*xs), float))
    else:
        arr = np.asarray(log_pi, float)
        if not np.all(np.isfinite(arr)):
            raise ValueError("log_pi: the reference density vanishes somewhere on the grid; KL needs log pi finite")
        V = scale * (1.0 - arr)
    return LogCoupling(scale=scale, floor=floor) + PotentialCoupling(V)


def gaussian_log_density(mean, cov):
    """``log N(x; mean, cov)`` as a callable of the coordinate arrays.

    ``cov`` is a variance (isotropic), a vector of per-axis variances or a covariance matrix;
    it must be symmetric positive definite, and the callable must be evaluated on a grid of
    the mean's dimension (both are checked, naming the parameter).
    """
    mean = np.atleast_1d(np.asarray(mean, float))
    cov = np.asarray(cov, float)
    d = mean.size
    if mean.ndim != 1 or not np.all(np.isfinite(mean)):
        raise ValueError(f"gaussian mean must be a finite vector, got {mean.tolist()}")
    if cov.ndim == 1 and cov.size == d and d > 1:
        cov = np.diag(cov)
    cov = np.atleast_2d(cov)
    if cov.shape == (1, 1) and d > 1:
        cov = cov[0, 0] * np.eye(d)
    if cov.shape != (d, d):
        raise ValueError(f"gaussian cov must be a variance, {d} variances or a {d}x{d} matrix for a {d}D mean, "
                         f"got shape {cov.shape}")
    if not np.all(np.isfinite(cov)) or not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() <= 0:
        raise ValueError(f"gaussian cov must be symmetric positive definite (variances > 0), got {cov.tolist()}")
    inv = np.linalg.inv(cov)
    logdet = np.linalg.slogdet(cov)[1]

    def log_density(*xs):
        if len(xs) != d:
            raise ValueError(f"gaussian mean has {d} components but the grid is {len(xs)}D")
        z = np.stack([x - mu for x, mu in zip(xs, mean)], axis=-1)
        return -0.5 * np.einsum("...i,ij,...j->...", z, inv, z) - 0.5 * (d * np.log(2 * np.pi) + logdet)

    return log_density
