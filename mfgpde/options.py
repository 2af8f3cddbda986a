"""``SolveOptions``: the validated, frozen options of one solve (what ``solve()`` was asked).

Every option is checked here, once, before any work, with a message that names the option and
its allowed values; the backends and strategies then read attributes instead of passing a dozen
keywords (or ``opts`` dicts) down the calls. The iteration budgets that depend on the method
(``max_iter=None``) are resolved here too, in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

#: the iterations :func:`mfgpde.solve` offers
METHODS = ("newton", "fixed_point", "fictitious_play")
#: the step solvers of the FD half-sweeps and preconditioner
LINEAR_SOLVERS = ("auto", "direct", "iterative")
#: the requested discretisations (``"auto"``: FEM on a mesh, FD on a grid)
BACKEND_CHOICES = ("auto", "fd", "fem")
#: the orders :func:`mfgpde.solve` delivers (2: Richardson extrapolation)
ORDERS = (1, 2)
#: iteration budgets when ``max_iter`` is None: Newton, the fixed-point iterations, the ergodic
#: pseudo-time Newton
DEFAULT_MAX_ITER = {"newton": 50, "fixed_point": 1000, "fictitious_play": 1000, "ergodic": 200}


def _auto_or_bool(name, value):
    if not (value is True or value is False or (isinstance(value, str) and value == "auto")):
        raise ValueError(f"{name} must be 'auto', True or False, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class SolveOptions:
    """The options of :func:`mfgpde.solve`, validated on construction (see its docstring).

    ``dataclasses.replace(options, tol=...)`` makes a validated variant (the stages of a
    continuation, the coarse level of grid sequencing).
    """

    method: str = "newton"
    tol: float = 1e-10
    max_iter: int | None = None
    damping: float = 0.5
    backend: str = "auto"
    verbose: bool | None = None
    linear_solver: str = "auto"
    viscosity_continuation: bool | str = "auto"
    grid_sequencing: bool | str = "auto"
    petsc_options: Mapping | None = None
    order: int = 1
    error_estimate: bool | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        tol = self.tol
        if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating, np.integer)):
            raise TypeError(f"tol must be a number > 0, got {tol!r}")
        if not (np.isfinite(tol) and tol > 0):
            raise ValueError(f"tol must be > 0, got {tol}")
        it = self.max_iter
        if it is not None and (isinstance(it, bool) or not isinstance(it, (int, np.integer)) or it < 0):
            raise ValueError(f"max_iter must be an integer >= 0 (0: only evaluate the initial guess), got {it!r}")
        d = self.damping
        if isinstance(d, bool) or not isinstance(d, (int, float, np.floating)) or not 0 < d <= 1:
            raise ValueError(f"damping must be in (0, 1], got {d!r}")
        if self.linear_solver not in LINEAR_SOLVERS:
            raise ValueError(f"linear_solver must be 'auto', 'direct' or 'iterative', got {self.linear_solver!r}")
        _auto_or_bool("viscosity_continuation", self.viscosity_continuation)
        _auto_or_bool("grid_sequencing", self.grid_sequencing)
        if self.backend not in BACKEND_CHOICES:
            raise ValueError(f"backend must be 'auto', 'fd' (finite differences) or 'fem' (P1 finite elements), "
                             f"got {self.backend!r}")
        if self.petsc_options is not None:
            if not isinstance(self.petsc_options, Mapping):
                raise TypeError(f"petsc_options must be a dict of PETSc options, got "
                                f"{type(self.petsc_options).__name__}")
            object.__setattr__(self, "petsc_options", MappingProxyType(dict(self.petsc_options)))
        if isinstance(self.order, (bool, np.bool_)) or self.order not in ORDERS:
            raise ValueError(f"order must be 1 or 2, got {self.order!r}")
        if self.error_estimate is not None and not isinstance(self.error_estimate, (bool, np.bool_)):
            raise TypeError(f"error_estimate must be True, False or None (automatic), got {self.error_estimate!r}")

    def iterations(self, kind=None):
        """The iteration budget: ``max_iter``, or the default of ``kind`` (the method by default;
        ``"ergodic"`` for the stationary problem).
        """
        return DEFAULT_MAX_ITER[kind or self.method] if self.max_iter is None else int(self.max_iter)

    def estimate(self, warm_started):
        """Whether to compute the error estimate: as asked, else unless the solve is warm-started."""
        return (not warm_started) if self.error_estimate is None else bool(self.error_estimate)

    def replace(self, **changes):
        """A validated copy with ``changes``."""
        return dataclasses.replace(self, **changes)
