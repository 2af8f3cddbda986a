"""Mean-field game problems: the data of the coupled HJB / Fokker-Planck system.

Time-dependent problem (nu = sigma^2 / 2, drift b, Hamiltonian H, coupling f, terminal g):

    -dU/dt - nu Lap U - b . grad U + H(x, grad U, m) = f[m],     U(T) = g[m(T)]
     dm/dt - nu Lap m + div( m (b - dH/dp(x, grad U, m)) ) = 0,  m(0) = m0

Ergodic problem (unknown constant rho, int m = 1, mean of u = 0):

    rho - nu Lap u - b . grad u + H(x, grad u, m) = f[m],   -nu Lap m + div(m (b - dH/dp)) = 0.

All input is validated here, before any work starts, with errors naming the parameter.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from .couplings import Coupling, PotentialCoupling, ZeroCoupling, _field_on_grid
from .grid import TensorGrid
from .hamiltonians import Hamiltonian


def _positive(name, value, allow_zero=False):
    if isinstance(value, (str, bytes, bool, np.bool_)):  # float("0.1") and float(True) would pass
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    ok = value >= 0 if allow_zero else value > 0
    if not (np.isfinite(value) and ok):
        rng = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {rng}, got {value}")
    return value


def _check_instance(name, value, cls):
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be a {cls.__name__} instance, got {type(value).__name__}")
    return value


def density_on_grid(m0, grid, *, name="m0", normalize=False):
    """Evaluate and check an initial density: finite, non-negative, positive finite mass."""
    values = _field_on_grid(m0, grid, name) if callable(m0) else np.asarray(m0, float)
    if values.shape != grid.shape:
        raise ValueError(f"{name}: array of shape {values.shape} does not match the grid shape {grid.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite everywhere on the grid (not integrable otherwise)")
    if values.min() < 0:
        raise ValueError(f"{name} must be >= 0 (a density), its minimum on the grid is {values.min():.3e}")
    mass = grid.integrate(values)
    if not mass > 0:
        raise ValueError(f"{name} has zero mass on the grid; it must be integrable with positive mass")
    return values / mass if normalize else np.array(values, float)


def _warn_if_not_periodic(name, values, grid):
    """Warn when a field given on a periodic axis jumps across the seam.

    A periodic grid wraps the field: ``terminal = 10 * x`` on a periodic [0, 1) becomes a saw
    tooth whose jump from x = 1 - h back to x = 0 the scheme sees as a cliff. The jump across
    the seam is compared with the largest step between neighbours inside the box.
    """
    values = np.asarray(values, float)
    if values.shape != tuple(grid.shape):
        return
    for k, bc in enumerate(grid.boundary):
        if bc != "periodic" or grid.shape[k] < 3:
            continue
        steps = np.abs(np.diff(values, axis=k)).max()
        seam = np.abs(np.take(values, 0, axis=k) - np.take(values, -1, axis=k)).max()
        if seam > 3.0 * steps and seam > 1e-8 * (1.0 + np.abs(values).max()):
            warnings.warn(f"{name} is not periodic along axis {k}: it jumps by {seam:.3g} across the periodic seam "
                          f"(at most {steps:.3g} between neighbours inside the box), and the periodic grid wraps it; "
                          "use a periodic function or a no-flux boundary", UserWarning, stacklevel=4)


def source_on_grid(spec, grid, times, name):
    """A source term of the HJB or FP equation at every time level, shape ``(len(times), N)``.

    ``spec``: a callable ``s(t, x1, ..., xd)`` (broadcast to the grid), an array of
    ``grid.shape`` (constant in time) or of ``(len(times),) + grid.shape``. Refused unless finite.
    """
    shape = tuple(grid.shape)
    if callable(spec):
        coords = grid.coordinates()
        try:
            with np.errstate(all="ignore"):  # non-finite values are refused below, with where they are
                levels = [np.broadcast_to(np.asarray(spec(float(t), *coords), float), shape) for t in times]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: s(t, x) must return a number or an array of the grid's shape {shape} "
                             f"({type(exc).__name__}: {exc})") from None
        out = np.array(levels).reshape(len(times), -1)
    else:
        try:
            arr = np.asarray(spec, float)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a callable s(t, x) or an array, got {type(spec).__name__}") from None
        if arr.shape == shape:
            out = np.tile(arr.ravel(), (len(times), 1))
        elif arr.shape == (len(times),) + shape:
            out = arr.reshape(len(times), -1).copy()
        else:
            raise ValueError(f"{name}: array of shape {arr.shape}, expected {shape} or {(len(times),) + shape}")
    bad = ~np.isfinite(out)
    if bad.any():
        n = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{name} is not finite on the grid ({int(bad.sum())} values, first at t = {times[n]:.6g})")
    return out


class _Drift:
    """A drift field ``b(t, x)`` evaluated on the grid, shape ``(d,) + grid.shape``."""

    def __init__(self, b, grid):
        self.b, self.grid = b, grid
        self.time_dependent = callable(b) and getattr(b, "time_dependent", True)
        if not callable(b):
            arr = np.asarray(b, float)
            if arr.shape != (grid.dim,) + grid.shape:
                raise ValueError(f"drift: array of shape {arr.shape}, expected {(grid.dim,) + grid.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"drift: the array has {int(np.sum(~np.isfinite(arr)))} non-finite values")
            self._static = arr
        else:
            probe = self.at(0.0)
            if not np.all(np.isfinite(probe)):
                raise ValueError("drift: b(t, x) is not finite on the grid at t = 0")

    def at(self, t):
        if not callable(self.b):
            return self._static
        out = self.b(t, *self.grid.coordinates())
        arr = np.asarray([np.broadcast_to(np.asarray(c, float), self.grid.shape) for c in out])
        if arr.shape != (self.grid.dim,) + self.grid.shape:
            raise ValueError(f"drift: b(t, x) returned shape {arr.shape}, expected {(self.grid.dim,) + self.grid.shape}")
        return arr


class _Validated:
    """Problems are immutable once their constructor has checked them.

    Setting an attribute raises (``problem.replace(nu=...)`` builds a changed, checked copy),
    and the arrays the constructor made (the initial density on the grid, the sources on it)
    are read-only: a problem changed after its checks (``p.nu = -1`` on a copy, ``p.m0[:] = -1``,
    ``p.nt = 0``) was solved without them before, and "converged". The caller's own arrays (an
    ``m0`` or a source given as an array) are left writable: they are not the problem's.
    """

    _frozen = False

    def _freeze(self):
        given = [getattr(self, k, None) for k in ("m0_source", "hjb_source_spec", "fp_source_spec")]
        for name in ("m0", "hjb_source", "fp_source"):
            value = getattr(self, name, None)
            if isinstance(value, np.ndarray) and value.flags.owndata and not any(value is g for g in given):
                value.setflags(write=False)
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name, value):
        if self._frozen:
            raise AttributeError(f"{type(self).__name__} is immutable once checked: use problem.replace({name}=...) "
                                 f"for a changed copy, checked again")
        object.__setattr__(self, name, value)


class MFGProblem(_Validated):
    """A time-dependent mean-field game on a tensor grid.

    Parameters
    ----------
    grid : TensorGrid or mfgpde.fem.MeshDomain
        Box domain, per-axis boundary conditions and resolution; or a DOLFINx mesh
        (solved with ``backend="fem"``).
    T : float
        Horizon, > 0.
    nt : int
        Number of implicit Euler steps, >= 1.
    nu : float
        Diffusion ``sigma^2 / 2`` >= 0 (0 is the first-order case).
    hamiltonian : Hamiltonian
        ``H(x, p, m)``, see :mod:`mfgpde.hamiltonians`.
    m0 : callable or ndarray
        Initial density, a callable of the coordinate arrays or an array of ``grid.shape``.
    coupling : Coupling, optional
        Running coupling ``f[m]`` (default 0).
    terminal : Coupling or callable or ndarray, optional
        Terminal cost ``g[m(T)]``; a callable/array is a fixed function of x (default 0).
    drift : callable or ndarray, optional
        ``b(t, x1, ..., xd) -> (b1, ..., bd)``, or a fixed array ``(d,) + grid.shape``.
    normalize : bool
        Rescale m0 to unit mass.
    name : str
        Label used in files and plots.
    hjb_source, fp_source : callable or ndarray, optional
        Source terms ``s_U`` and ``s_m`` added to the right-hand sides,

            -dU/dt - nu Lap U - b . grad U + H(x, grad U, m) = f[m] + s_U(t, x),
             dm/dt - nu Lap m + div(m (b - dH/dp)) = s_m(t, x),

        as callables ``s(t, x1, ..., xd)`` or arrays of ``grid.shape`` or
        ``(nt + 1,) + grid.shape``; the HJB step n takes ``s_U(t_n)``, the FP step to n + 1
        ``s_m(t_{n+1})``. For code verification by manufactured solutions
        (:mod:`mfgpde.manufactured`) and for models with exogenous forcing. An FP source changes
        the mass by ``int s_m`` per unit time (discretely too). Discretised by every backend:
        finite differences (serial and distributed) at the grid points, finite elements at the
        vertices (lumped; a grid array is interpolated onto the mesh).
    """

    kind = "evolutive"

    def __init__(self, grid: TensorGrid, T: float, nt: int, nu: float, hamiltonian: Hamiltonian,
                 m0: Callable | np.ndarray, *, coupling: Coupling | None = None,
                 terminal: Coupling | Callable | np.ndarray | None = None, drift: Callable | np.ndarray | None = None,
                 normalize: bool = False, name: str = "mfg", hjb_source: Callable | np.ndarray | None = None,
                 fp_source: Callable | np.ndarray | None = None) -> None:
        if not getattr(grid, "is_mesh", False):
            _check_instance("grid", grid, TensorGrid)
        self.grid = grid
        self.T = _positive("T (horizon)", T)
        if isinstance(nt, bool) or not isinstance(nt, (int, np.integer)) or nt < 1:
            raise ValueError(f"nt (number of time steps) must be an integer >= 1, got {nt!r}")
        self.nt = int(nt)
        self.nu = _positive("nu (diffusion)", nu, allow_zero=True)
        self.hamiltonian = _check_instance("hamiltonian", hamiltonian, Hamiltonian)
        self.coupling = ZeroCoupling() if coupling is None else _check_instance("coupling", coupling, Coupling)
        if terminal is None:
            terminal = ZeroCoupling()
        elif not isinstance(terminal, Coupling):
            terminal = PotentialCoupling(terminal, name="terminal")
        self.terminal = terminal
        # the sources are kept so that the same problem can be rebuilt on a mesh (backend="fem")
        self.m0_source, self.normalize = m0, bool(normalize)
        self.m0 = density_on_grid(m0, grid, name="m0", normalize=normalize)
        self.drift = None if drift is None else _Drift(drift, grid)
        self.name = str(name)
        self.hjb_source_spec, self.fp_source_spec = hjb_source, fp_source
        self.hjb_source = None if hjb_source is None else source_on_grid(hjb_source, grid, self.times, "hjb_source")
        self.fp_source = None if fp_source is None else source_on_grid(fp_source, grid, self.times, "fp_source")
        if isinstance(self.terminal, PotentialCoupling):
            g = self.terminal.field(grid)  # evaluate now so that a bad g fails before any work
            if not getattr(grid, "is_mesh", False):
                _warn_if_not_periodic("terminal cost g", g, grid)
        if not getattr(grid, "is_mesh", False):
            # (m0 is not checked: benchmarks such as B2 start from a Gaussian cut at the seam)
            for term in getattr(self.coupling, "terms", [self.coupling]):
                if isinstance(term, PotentialCoupling):
                    _warn_if_not_periodic("coupling potential", term.field(grid), grid)
        self._freeze()

    def replace(self, **changes) -> MFGProblem:
        """The same problem with ``changes`` (constructor parameters, e.g. ``nu=0.1``), rebuilt
        and validated by the constructor (a shallow copy with an edited attribute skips the checks
        and keeps derived data, such as m0 on the old grid, stale).
        """
        args = dict(grid=self.grid, T=self.T, nt=self.nt, nu=self.nu, hamiltonian=self.hamiltonian, m0=self.m0_source,
                    coupling=self.coupling, terminal=self.terminal,
                    drift=None if self.drift is None else self.drift.b, normalize=self.normalize, name=self.name,
                    hjb_source=self.hjb_source_spec, fp_source=self.fp_source_spec)
        unknown = sorted(set(changes) - set(args))
        if unknown:
            raise TypeError(f"MFGProblem.replace: unknown parameter(s) {unknown} (allowed: {sorted(args)})")
        args.update(changes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # this problem's data warned once already
            return MFGProblem(**args)

    @property
    def dt(self) -> float:
        return self.T / self.nt

    @property
    def times(self) -> np.ndarray:
        return np.linspace(0.0, self.T, self.nt + 1)

    @property
    def mass(self) -> float:
        return self.grid.integrate(self.m0)

    def describe(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "grid": self.grid.describe(), "T": self.T, "nt": self.nt,
            "nu": self.nu, "hamiltonian": self.hamiltonian.describe(), "coupling": self.coupling.describe(),
            "terminal": self.terminal.describe(), "drift": self.drift is not None,
            "sources": [k for k in ("hjb_source", "fp_source") if getattr(self, k) is not None],
        }


class ErgodicMFGProblem(_Validated):
    """The stationary (ergodic) mean-field game with unknown constant rho.

    Parameters
    ----------
    grid : TensorGrid or mfgpde.fem.MeshDomain
        A box grid (finite differences) or a mesh (P1 finite elements, ``backend="fem"``).
    nu : float
        Diffusion > 0 (the ergodic problem needs it).
    hamiltonian : Hamiltonian
    coupling : Coupling, optional
    drift : ndarray or callable, optional
        Time-independent drift ``b(x)`` (a callable receives ``t = 0``).
    name : str
    hjb_source, fp_source : callable or ndarray, optional
        Sources ``rho - nu Lap u - b . grad u + H = f[m] + s_u(x)`` and
        ``-nu Lap m + div(m (b - dH/dp)) = s_m(x)`` (a callable receives ``t = 0``), for
        manufactured solutions (:mod:`mfgpde.manufactured`); ``int s_m = 0`` for a stationary density.
        Finite differences.
    """

    kind = "ergodic"

    def __init__(self, grid: TensorGrid, nu: float, hamiltonian: Hamiltonian, *, coupling: Coupling | None = None,
                 drift: Callable | np.ndarray | None = None, name: str = "ergodic",
                 hjb_source: Callable | np.ndarray | None = None, fp_source: Callable | np.ndarray | None = None) -> None:
        if not getattr(grid, "is_mesh", False):
            _check_instance("grid", grid, TensorGrid)
        self.grid = grid
        self.nu = _positive("nu (diffusion)", nu)
        self.hamiltonian = _check_instance("hamiltonian", hamiltonian, Hamiltonian)
        self.coupling = ZeroCoupling() if coupling is None else _check_instance("coupling", coupling, Coupling)
        self.drift = None if drift is None else _Drift(drift, grid)
        self.name = str(name)
        self.hjb_source_spec, self.fp_source_spec = hjb_source, fp_source
        self.hjb_source = None if hjb_source is None else source_on_grid(hjb_source, grid, [0.0], "hjb_source")[0]
        self.fp_source = None if fp_source is None else source_on_grid(fp_source, grid, [0.0], "fp_source")[0]
        self._freeze()

    def replace(self, **changes) -> ErgodicMFGProblem:
        """The same problem with ``changes`` (constructor parameters, e.g. ``coupling=...``),
        rebuilt and validated by the constructor (see :meth:`MFGProblem.replace`).
        """
        args = dict(grid=self.grid, nu=self.nu, hamiltonian=self.hamiltonian, coupling=self.coupling,
                    drift=None if self.drift is None else self.drift.b, name=self.name,
                    hjb_source=self.hjb_source_spec, fp_source=self.fp_source_spec)
        unknown = sorted(set(changes) - set(args))
        if unknown:
            raise TypeError(f"ErgodicMFGProblem.replace: unknown parameter(s) {unknown} (allowed: {sorted(args)})")
        args.update(changes)
        return ErgodicMFGProblem(**args)

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "grid": self.grid.describe(), "nu": self.nu,
                "hamiltonian": self.hamiltonian.describe(), "coupling": self.coupling.describe(),
                "sources": [k for k in ("hjb_source", "fp_source") if getattr(self, k) is not None]}
