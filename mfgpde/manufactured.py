"""Manufactured solutions: any smooth ``(U*, m*)`` made the exact solution of an MFG by its sources.

The method of manufactured solutions (Roache 2002; Salari and Knupp, "Code Verification by the
Method of Manufactured Solutions", Sandia 2000) verifies a discretisation term by term: pick
smooth fields ``U*(t, x)`` and ``m*(t, x) > 0``, compute the residuals they leave in the
continuous equations,

    s_U = -dU*/dt - nu Lap U* - b . grad U* + H(x, grad U*, m*) - f[m*],
    s_m =  dm*/dt - nu Lap m* + div(m* (b - dH/dp(x, grad U*, m*))),

and solve the MFG with these sources (``MFGProblem(hjb_source=..., fp_source=...)``), the
terminal condition ``U(T) = g[m(T)] + (U*(T) - g[m*(T)])`` and ``m(0) = m*(0)``. The exact
solution is ``(U*, m*)``, so the error of the discrete solution must fall at the scheme's order
(1 for the monotone scheme, 2 for ``order=2``) under refinement. Unlike closed forms, whose
special structure (quadratic U, Gaussian m, linear drift) zeroes many terms, a generic smooth
pair exercises every term: a wrong factor or sign anywhere shows as an error that stops falling.

The derivatives are taken symbolically by SymPy (a test dependency, imported on use) from
formulas written here, independently of the package's numerical Hamiltonians and couplings, so
a fault in those cannot cancel in the source. Periodic boxes need periodic fields; on no-flux
walls the fields need zero normal derivatives (``cos(pi x)`` on ``[0, 1]``).

Example
-------
>>> import sympy as sp
>>> import mfgpde as mp
>>> from mfgpde.manufactured import Manufactured
>>> t, x = sp.symbols("t x")
>>> case = Manufactured([x], t, U=sp.cos(2 * sp.pi * x) * (1 + t) / 10, m=1 + sp.sin(2 * sp.pi * x) / 2,
...                     H=lambda p, m: (p[0] ** 2) / 2, f=lambda m: sp.log(m), nu=0.1)
>>> grid = mp.TensorGrid([(0, 1)], 64, "periodic")
>>> problem = case.problem(grid, T=1.0, nt=64, hamiltonian=mp.QuadraticHamiltonian(),
...                        coupling=mp.LogCoupling())                     # doctest: +SKIP
>>> errors = case.errors(mp.solve(problem, error_estimate=False))          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .config import expression
from .couplings import Coupling, PotentialCoupling
from .problem import ErgodicMFGProblem, MFGProblem


def _sympy():
    try:
        import sympy
    except ImportError:  # pragma: no cover - the dev extra installs it
        raise ImportError("manufactured solutions need SymPy: pip install sympy (it is in the dev extra)") from None
    return sympy


class Manufactured:
    """A manufactured MFG solution and the sources that make it exact.

    Parameters
    ----------
    xs : sequence of sympy.Symbol
        The space variables (1 to 3).
    t : sympy.Symbol
    U, m : sympy expressions in ``t`` and ``xs``
        The exact value function and density (``m > 0`` on the box).
    H : callable ``(p, m) -> sympy expression``
        The Hamiltonian written independently of the package (``p`` a list of symbols).
    f : callable ``m -> sympy expression``, optional
        A local coupling ``f(m)`` (nonlocal couplings are not supported here); may depend on
        ``xs`` through closure (a potential ``V(x)``).
    nu : float
    drift : sequence of sympy expressions, optional
        ``b(t, x)`` per axis.
    g : callable ``m -> sympy expression``, optional
        The m-dependent part of the terminal cost (e.g. ``log m - log pi + 1``); the rest of
        ``U*(T)`` becomes a potential term.
    """

    def __init__(self, xs: Sequence, t, U, m, H: Callable, *, f: Callable | None = None, nu: float = 0.0,
                 drift: Sequence | None = None, g: Callable | None = None):
        sp = _sympy()
        self.xs, self.t, self.U, self.m, self.nu = list(xs), t, U, m, float(nu)
        p = sp.symbols(f"p0:{len(self.xs)}")
        msym = sp.Symbol("m_", positive=True)
        grad = [sp.diff(U, x) for x in self.xs]
        Hpm = H(list(p), msym)
        H_at = Hpm.subs(dict(zip(p, grad))).subs(msym, m)
        Hp_at = [sp.diff(Hpm, pk).subs(dict(zip(p, grad))).subs(msym, m) for pk in p]
        lap = lambda F: sum(sp.diff(F, x, 2) for x in self.xs)
        b = [sp.Integer(0)] * len(self.xs) if drift is None else list(drift)
        f_at = sp.Integer(0) if f is None else f(m)
        self.s_U = -sp.diff(U, t) - self.nu * lap(U) - sum(bk * gk for bk, gk in zip(b, grad)) + H_at - f_at
        self.s_m = sp.diff(m, t) - self.nu * lap(m) + sum(sp.diff(m * (bk - hk), x)
                                                          for bk, hk, x in zip(b, Hp_at, self.xs))
        self.g_rest = U if g is None else U - g(m)
        args = [t, *self.xs]
        self._U = sp.lambdify(args, U, "numpy")
        self._m = sp.lambdify(args, m, "numpy")
        self._sU = sp.lambdify(args, self.s_U, "numpy")
        self._sm = sp.lambdify(args, self.s_m, "numpy")
        self._grest = sp.lambdify(args, self.g_rest, "numpy")
        self._drift = None if drift is None else [sp.lambdify(args, bk, "numpy") for bk in b]
        self._drift_exprs = b

    # the exact fields and sources as callables of (t, x1, ..., xd), broadcast to the grid
    @staticmethod
    def _full(fn, t, xs):
        return np.broadcast_to(np.asarray(fn(t, *xs), float), np.broadcast(*xs).shape)

    def U_exact(self, t, *xs):
        return self._full(self._U, t, xs)

    def m_exact(self, t, *xs):
        return self._full(self._m, t, xs)

    def hjb_source(self, t, *xs):
        return self._full(self._sU, t, xs)

    def fp_source(self, t, *xs):
        return self._full(self._sm, t, xs)

    def problem(self, grid, T, nt, hamiltonian, *, coupling: Coupling | None = None, terminal: Coupling | None = None,
                name="manufactured") -> MFGProblem:
        """The MFG whose exact solution is ``(U*, m*)`` on ``grid`` over ``[0, T]``.

        ``hamiltonian``, ``coupling`` and ``terminal`` are the package's objects for the ``H``,
        ``f`` and ``g`` given to the constructor; the terminal cost is ``terminal`` plus the
        potential ``U*(T) - g[m*(T)]``.
        """
        rest = PotentialCoupling(lambda *xs: self._full(self._grest, T, xs), name="manufactured terminal")
        term = rest if terminal is None else terminal + rest
        drift = None
        if self._drift is not None:
            drift = lambda t, *xs: [self._full(bk, t, xs) for bk in self._drift]
        return MFGProblem(grid, T, nt, self.nu, hamiltonian, lambda *xs: self.m_exact(0.0, *xs), coupling=coupling,
                          terminal=term, drift=drift, name=name, hjb_source=self.hjb_source, fp_source=self.fp_source)

    def configuration(self, bounds, shape, boundary, T, nt, *, tables="", name="manufactured") -> str:
        """The time-dependent problem of :meth:`problem` as a TOML configuration for ``mfgpde solve``.

        Writes ``[grid]``, ``[time]``, ``[model]`` (``nu``, the drift and both sources as
        expressions of ``x, y, z, t``), ``[terminal]`` (the potential ``U*(T) - g[m*(T)]``: give no
        ``g`` to the constructor, or add the m-dependent terminal cost in ``tables`` yourself) and
        ``[m0]``; ``tables`` adds the rest verbatim (``[hamiltonian]``, ``[[coupling]]``,
        ``[solver]``). Every expression is checked by the configuration reader, so a function the
        configuration language does not know is refused here, by name.
        """
        sp = _sympy()
        axes = [str(v) for v in self.xs]
        if axes != ["x", "y", "z"][: len(axes)]:
            raise ValueError(f"configuration: the space variables must be named x, y, z (in order), got {axes}")
        exprs = {"hjb_source": self.s_U, "fp_source": self.s_m, "terminal": self.g_rest.subs(self.t, T),
                 "m0": self.m.subs(self.t, 0)}
        if self._drift is not None:
            exprs.update({f"drift[{k}]": b for k, b in enumerate(self._drift_exprs)})
        text = {k: sp.sstr(v) for k, v in exprs.items()}
        for key, expr in text.items():
            expression(expr, key)
        nd = len(axes)
        drift = "" if self._drift is None else "drift = [" + ", ".join(f'"{text[f"drift[{k}]"]}"' for k in range(nd)) + "]\n"
        return (f'name = "{name}"\n[grid]\nbounds = {[list(map(float, b)) for b in bounds]}\nshape = {list(shape)}\n'
                f'boundary = "{boundary}"\n[time]\nT = {float(T)}\nnt = {int(nt)}\n[model]\nnu = {self.nu}\n{drift}'
                f'hjb_source = "{text["hjb_source"]}"\nfp_source = "{text["fp_source"]}"\n'
                f'[terminal]\ntype = "potential"\nexpr = "{text["terminal"]}"\n'
                f'[m0]\ntype = "expr"\nexpr = "{text["m0"]}"\n' + tables)

    def ergodic_problem(self, grid, hamiltonian, *, coupling: Coupling | None = None, rho: float = 0.0,
                        name="manufactured ergodic") -> ErgodicMFGProblem:
        """The stationary MFG whose exact solution is ``(u*, m*, rho)`` (``U`` and ``m`` given
        without ``t``; ``int m* = 1`` and, since the solver fixes the constant, ``int u* = 0``):
        the HJB source is ``rho + s_U``.
        """
        drift = None
        if self._drift is not None:
            drift = lambda t, *xs: [self._full(bk, t, xs) for bk in self._drift]
        return ErgodicMFGProblem(grid, self.nu, hamiltonian, coupling=coupling, drift=drift, name=name,
                                 hjb_source=lambda t, *xs: float(rho) + self.hjb_source(0.0, *xs),
                                 fp_source=lambda t, *xs: self.fp_source(0.0, *xs))

    def ergodic_errors(self, result, rho):
        """``{"u": max |u - u*|, "m": int |m - m*|, "rho": |rho - rho*|}`` of an ergodic result
        (on a grid, or on a mesh: its vertices, integrated with the lumped masses).
        """
        g = result.grid
        if getattr(g, "is_mesh", False):  # u, m at every vertex, in the order of allgather
            X, mu = tuple(result.coords.T), g.allgather(g.mu)
            integrate = lambda v: float(np.dot(mu, v))
        else:
            X, integrate = g.coordinates(), g.integrate
        return {"u": float(np.abs(result.u - self.U_exact(0.0, *X)).max()),
                "m": float(integrate(np.abs(result.m - self.m_exact(0.0, *X)))),
                "rho": float(abs(result.rho - rho))}

    def errors(self, result):
        """``{"U": max_n max_x |U - U*|, "m": max_n int |m - m*|}`` of a result on a grid, or on a
        mesh (each rank's own dofs, reduced over the ranks: collective under MPI).
        """
        g = result.grid
        X = g.coordinates()
        if hasattr(result, "U_local"):
            U, m, peak = result.U_local, result.m_local, g.max_abs
        else:
            U, m, peak = result.U, result.m, lambda v: float(np.abs(v).max())
        eU = max(float(peak(U[n] - self.U_exact(t, *X))) for n, t in enumerate(result.times))
        em = max(float(g.integrate(np.abs(m[n] - self.m_exact(t, *X)))) for n, t in enumerate(result.times))
        return {"U": eU, "m": em}
