"""TOML configurations -> problems.

A configuration names the grid, the time discretisation, the model pieces and the solver::

    name = "lq_gaussian"
    [grid]
    bounds = [[-1.5, 1.5]]
    shape = 150                 # int or one per axis
    boundary = "noflux"         # or "periodic", or one per axis
    [time]
    T = 1.0
    nt = 100
    [model]
    nu = 0.05
    drift = ["-x"]              # optional, one expression per axis (may use t)
    hjb_source = "0.1 * cos(x)" # optional sources s_U, s_m of the HJB / FP equations (may use t)
    [hamiltonian]
    type = "quadratic"          # quadratic(lam) | power(q, delta) | congestion(c0, c1, beta)
    [[coupling]]                # zero or more terms, summed
    type = "potential"          # log(scale) | power(p, scale) | potential(expr) | convolution(kernel, scale)
    expr = "0.5 * (x - 0.1)**2"
    [terminal]                  # potential(expr) | kl(mean, cov | log_pi) | log | power
    type = "potential"
    expr = "0.5 * (x - 0.1)**2"
    [m0]                        # gaussian(mean, cov) | mixture(weights, means, covs) | expr | toy(name)
    type = "gaussian"
    mean = [0.1]
    cov = 0.04
    [solver]
    method = "newton"
    tol = 1e-10
    backend = "fd"              # or "fem" (P1 on the structured mesh of [grid])

A ``[mesh]`` table instead of ``[grid]`` solves on a DOLFINx mesh (FEM backend)::

    [mesh]
    type = "room"               # room(width, height, obstacles, h) | rectangle(n, bounds, periodic)
                                # | interval(n, bounds, periodic) | box(n, bounds, periodic) | file(path)
    width = 2.0
    height = 1.0
    obstacles = [[1.0, 0.5, 0.2]]   # disks (cx, cy, r) cut out of the room
    h = 0.0105

Expressions are NumPy expressions of the coordinates ``x, y, z`` (and ``t`` for drifts and sources),
evaluated with only NumPy's functions in scope.
"""

from __future__ import annotations

import copy
import difflib
import os

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from . import couplings as C
from . import hamiltonians as H
from .generative.densities import gaussian_mixture
from .generative.energies import KL
from .generative.presets import cnf_problem, jko_step_problem, score_mfg_problem, standard_normal_log_density
from .grid import TensorGrid
from .problem import ErgodicMFGProblem, MFGProblem

_NAMES = {k: getattr(np, k) for k in ("sin", "cos", "tan", "exp", "log", "sqrt", "abs", "minimum", "maximum",
                                      "where", "pi", "tanh", "cosh", "sinh", "arctan", "clip", "ones_like",
                                      "zeros_like", "heaviside", "sign", "e")}
_AXES = ("x", "y", "z")


class ConfigError(ValueError):
    """A configuration entry is missing or invalid; the message names the key."""


def expression(expr, key, extra=("t",)):
    """Compile a NumPy expression of ``x, y, z`` (and ``t``) into a callable of the coordinates."""
    if not isinstance(expr, str):
        raise ConfigError(f"{key}: expected an expression string, got {expr!r}")
    try:
        code = compile(expr, key, "eval")
    except SyntaxError as exc:
        raise ConfigError(f"{key}: invalid expression {expr!r}: {exc.msg}") from None
    bad = [n for n in code.co_names if n not in _NAMES and n not in _AXES and n not in extra]
    if bad:
        raise ConfigError(f"{key}: unknown name(s) {bad} in {expr!r}; allowed: x, y, z, t and {sorted(_NAMES)}")

    axes_used = [n for n in code.co_names if n in _AXES]

    def f(*xs, t=0.0):
        missing = [n for n in axes_used if _AXES.index(n) >= len(xs)]
        if missing:
            raise ConfigError(f"{key}: {expr!r} uses {missing} but the grid has {len(xs)} axis(es) "
                              f"({', '.join(_AXES[:len(xs)])})")
        scope = dict(_NAMES)
        scope.update(dict(zip(_AXES, xs)))
        scope["t"] = t
        # NumPy floating-point warnings inside eval would import the warnings machinery, which
        # the empty builtins forbid (KeyError: '__import__'); a guarded where(x > 0, 1/x, 0) is
        # valid, and non-finite values are reported by whoever checks the values on the grid
        try:
            with np.errstate(all="ignore"):
                return np.asarray(eval(code, {"__builtins__": {}}, scope), float)
        except Exception as exc:
            raise ConfigError(f"{key}: evaluating {expr!r} on the grid failed: {type(exc).__name__}: {exc}") from None

    f.expr = expr
    return f


def check_keys(table, allowed, section):
    """Refuse keys of ``table`` outside ``allowed``, suggesting the closest valid key.

    A misspelt key (``nuu``, ``shap``, ``NT``) would otherwise be ignored silently and its
    default used.
    """
    if not isinstance(table, dict):
        raise ConfigError(f"[{section}] must be a table, got {type(table).__name__}")
    for key in table:
        if key in allowed or key == "_path":
            continue
        # a key that differs only in case ("NT") first, then the nearest spelling
        close = [a for a in sorted(allowed) if a.lower() == key.lower()]
        close = close or difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"[{section}] unknown key {key!r}{hint} (allowed: {sorted(allowed)})")


#: Keys of a (non-preset) configuration, per table; ``type``-dependent tables below.
TOP_LEVEL_KEYS = {"name", "normalize_m0", "kind", "grid", "mesh", "time", "model", "hamiltonian", "coupling", "terminal",
                  "m0", "solver"}
SECTION_KEYS = {"grid": {"bounds", "shape", "boundary"}, "time": {"T", "nt"}, "model": {"nu", "drift", "hjb_source", "fp_source"}}
SOLVER_KEYS = {"method", "tol", "max_iter", "damping", "linear_solver", "backend", "grid_sequencing", "petsc_options",
               "order", "error_estimate"}
COUPLING_KEYS = {"log": {"scale", "floor"}, "power": {"p", "scale"}, "potential": {"expr"}, "convolution": {"kernel", "scale"},
                 "kl": {"log_pi", "mean", "cov", "scale"}}
DENSITY_KEYS = {"expr": {"expr"}, "gaussian": {"mean", "cov"}, "mixture": {"weights", "means", "covs"},
                "toy": {"name", "smoothing"}}
MESH_KEYS = {"room": {"width", "height", "obstacles", "h"}, "rectangle": {"n", "bounds", "periodic", "diagonal"},
             "interval": {"n", "bounds", "periodic"}, "box": {"n", "bounds", "periodic"}, "file": {"path"}}
#: Hamiltonian ``type`` -> class (its constructor's parameters are the table's keys)
HAMILTONIANS = {"quadratic": H.QuadraticHamiltonian, "power": H.PowerHamiltonian, "congestion": H.CongestionHamiltonian}


def _get(table, key, section, default=None, required=False):
    if key in table:
        return table[key]
    if required:
        raise ConfigError(f"[{section}] is missing the required key {key!r}")
    return default


def build_hamiltonian(tab):
    """The :class:`~mfgpde.hamiltonians.Hamiltonian` of a ``[hamiltonian]`` table (keys checked)."""
    kind = _get(tab, "type", "hamiltonian", "quadratic")
    params = {k: v for k, v in tab.items() if k != "type"}
    cls = HAMILTONIANS
    if kind not in cls:
        raise ConfigError(f"[hamiltonian] type = {kind!r} is unknown; allowed: {sorted(cls)}")
    try:
        return cls[kind](**params)
    except TypeError as exc:
        raise ConfigError(f"[hamiltonian] {kind}: {exc}") from None


def _density_callable(tab, section):
    kind = _get(tab, "type", section, "expr")
    if kind in DENSITY_KEYS:
        check_keys(tab, DENSITY_KEYS[kind] | {"type"}, section)
    if kind == "expr":
        return expression(_get(tab, "expr", section, required=True), f"{section}.expr")
    if kind == "gaussian":
        log_p = C.gaussian_log_density(_get(tab, "mean", section, required=True), _get(tab, "cov", section, required=True))
        return lambda *xs: np.exp(log_p(*xs))
    if kind == "mixture":
        return gaussian_mixture(_get(tab, "weights", section, required=True), _get(tab, "means", section, required=True),
                                _get(tab, "covs", section, required=True))
    if kind == "toy":
        from .generative.toys import toy

        smoothing = _get(tab, "smoothing", section, 0.0)
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not smoothing >= 0:
            raise ConfigError(f"[{section}] smoothing (the variance of the Gaussian the data set is convolved with) "
                              f"must be a number >= 0, got {smoothing!r}")
        try:
            data = toy(_get(tab, "name", section, required=True))
        except ValueError as exc:
            raise ConfigError(f"[{section}] {exc}") from None
        return data.noised(1.0, float(smoothing)) if smoothing > 0 else data
    raise ConfigError(f"[{section}] type = {kind!r} is unknown; allowed: expr, gaussian, mixture, toy")


def build_coupling(tab, section="coupling"):
    """The :class:`~mfgpde.couplings.Coupling` of one ``[[coupling]]`` or ``[terminal]`` table (keys checked)."""
    kind = _get(tab, "type", section, required=True)
    if kind in COUPLING_KEYS:
        check_keys(tab, COUPLING_KEYS[kind] | {"type"}, section)
    if kind == "log":
        return C.LogCoupling(scale=_get(tab, "scale", section, 1.0), floor=_get(tab, "floor", section, 1e-14))
    if kind == "power":
        return C.PowerCoupling(p=_get(tab, "p", section, 1.0), scale=_get(tab, "scale", section, 1.0))
    if kind == "potential":
        return C.PotentialCoupling(expression(_get(tab, "expr", section, required=True), f"{section}.expr"),
                                   name=f"[{section}] expr")
    if kind == "convolution":
        k = expression(_get(tab, "kernel", section, required=True), f"{section}.kernel")
        return C.ConvolutionCoupling(lambda *zs: k(*zs), scale=_get(tab, "scale", section, 1.0))
    if kind == "kl":
        if "log_pi" in tab:
            log_pi = expression(tab["log_pi"], f"{section}.log_pi")
        else:
            log_pi = C.gaussian_log_density(_get(tab, "mean", section, required=True), _get(tab, "cov", section, 1.0))
        return C.kl_terminal(log_pi, scale=_get(tab, "scale", section, 1.0))
    raise ConfigError(f"[{section}] type = {kind!r} is unknown; allowed: log, power, potential, convolution, kl")


def load(path_or_dict):
    """Read a TOML file (or an already parsed dict) into a plain dict, with ``_path`` set."""
    if isinstance(path_or_dict, dict):
        return copy.deepcopy(path_or_dict)
    path = os.fspath(path_or_dict)
    if os.path.isdir(path):
        raise ConfigError(f"configuration file {path!r} is a folder; give a TOML file (see solvers/)")
    if not os.path.isfile(path):
        raise ConfigError(f"configuration file {path!r} does not exist")
    with open(path, "rb") as fh:
        try:
            cfg = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    cfg["_path"] = path
    return cfg


def set_parameter(cfg, dotted, value):
    """Set ``cfg["a"]["b"] = value`` for ``dotted = "a.b"``; the key must already exist."""
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        if isinstance(node, list):
            k = int(k)
        try:
            node = node[k]
        except (KeyError, IndexError, ValueError):
            raise ConfigError(f"parameter {dotted!r} does not exist in the configuration") from None
    last = keys[-1]
    if isinstance(node, list):
        try:
            last = int(last)
            node[last]
        except (ValueError, IndexError):
            raise ConfigError(f"parameter {dotted!r} does not exist in the configuration: {keys[-2]!r} is a list of "
                              f"{len(node)} (indices 0 to {len(node) - 1})") from None
    elif not isinstance(node, dict) or last not in node:
        raise ConfigError(f"parameter {dotted!r} does not exist in the configuration")
    node[last] = value
    return cfg


def build_mesh(tab, cfg, comm=None):
    """A :class:`~mfgpde.fem.domain.MeshDomain` from a ``[mesh]`` table (needs the FEM extra)."""
    from .fem import require_dolfinx

    require_dolfinx()
    from .fem import geometry
    from .fem.domain import MeshDomain

    kind = _get(tab, "type", "mesh", required=True)
    params = {k: v for k, v in tab.items() if k != "type"}
    allowed = MESH_KEYS
    if kind not in allowed:
        raise ConfigError(f"[mesh] type = {kind!r} is unknown; allowed: {sorted(allowed)}")
    unknown = set(params) - allowed[kind]
    if unknown:
        raise ConfigError(f"[mesh] {kind}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed[kind])}")
    if kind == "room":
        return geometry.room(comm=comm, **params)
    if kind == "file":
        path = _get(tab, "path", "mesh", required=True)
        if not os.path.isabs(path) and "_path" in cfg:
            path = os.path.join(os.path.dirname(os.path.abspath(cfg["_path"])), path)
        return MeshDomain.from_file(path, comm=comm)
    if "n" not in params:
        raise ConfigError(f"[mesh] {kind} is missing the required key 'n' (cells per axis)")
    return getattr(MeshDomain, kind)(comm=comm, **params)


def build_problem(cfg, comm=None):
    """Problem from a configuration dict (see the module docstring).

    ``comm`` is the MPI communicator a ``[mesh]`` is distributed over (default: all ranks).
    """
    cfg = load(cfg)
    if "preset" in cfg:
        return problem_from_preset(cfg)
    check_keys(cfg, TOP_LEVEL_KEYS, "top level")
    for sec, keys in SECTION_KEYS.items():
        if sec in cfg:
            check_keys(cfg[sec], keys, sec)
    kind = cfg.get("kind", "evolutive")
    if kind not in ("evolutive", "ergodic"):
        raise ConfigError(f"kind = {kind!r} is unknown; allowed: 'evolutive' (time-dependent) or 'ergodic'")
    if not isinstance(cfg.get("normalize_m0", False), bool):
        raise ConfigError(f"normalize_m0 must be true or false, got {cfg['normalize_m0']!r}")
    if "mesh" in cfg:
        grid = build_mesh(cfg["mesh"], cfg, comm)
    else:
        gt = _get(cfg, "grid", "top level", required=True)
        bounds = _get(gt, "bounds", "grid", required=True)
        grid = TensorGrid(bounds, _get(gt, "shape", "grid", required=True), _get(gt, "boundary", "grid", "noflux"))
    model = cfg.get("model", {})
    ham = build_hamiltonian(cfg.get("hamiltonian", {}))
    terms = cfg.get("coupling", [])
    terms = [terms] if isinstance(terms, dict) else terms
    coupling = None
    for i, t in enumerate(terms):
        c = build_coupling(t, f"coupling[{i}]")
        coupling = c if coupling is None else coupling + c
    drift = None
    if "drift" in model:
        exprs = model["drift"]
        if isinstance(exprs, str) or not isinstance(exprs, list) or not all(isinstance(e, str) for e in exprs):
            # drift = "xy" used to be read as the two expressions "x" and "y"
            raise ConfigError(f"[model] drift must be a list of {grid.dim} expression string(s), one per axis, "
                              f"e.g. drift = [\"-x\"]; got {exprs!r}")
        if len(exprs) != grid.dim:
            raise ConfigError(f"[model] drift needs {grid.dim} expressions (one per axis), got {len(exprs)}")
        fs = [expression(e, f"model.drift[{k}]") for k, e in enumerate(exprs)]
        drift = lambda t, *xs: [f(*xs, t=t) for f in fs]
    sources = {key: _source(model[key], f"model.{key}") for key in ("hjb_source", "fp_source") if key in model}
    name = cfg.get("name", os.path.splitext(os.path.basename(cfg.get("_path", "mfg")))[0])
    if cfg.get("kind", "evolutive") == "ergodic":
        return ErgodicMFGProblem(grid, _get(model, "nu", "model", required=True), ham, coupling=coupling, drift=drift,
                                 name=name, **sources)
    tt = _get(cfg, "time", "top level", required=True)
    term = cfg.get("terminal")
    terminal = None if term is None else build_coupling(term, "terminal")
    m0 = _density_callable(_get(cfg, "m0", "top level", required=True), "m0")
    return MFGProblem(grid, T=_get(tt, "T", "time", required=True), nt=_get(tt, "nt", "time", required=True),
                      nu=_get(model, "nu", "model", required=True), hamiltonian=ham, m0=m0, coupling=coupling,
                      terminal=terminal, drift=drift, normalize=bool(cfg.get("normalize_m0", False)), name=name,
                      **sources)


def _source(expr, key):
    """A source expression of ``x, y, z, t`` as the callable ``s(t, x, ...)`` the problem takes."""
    f = expression(expr, key)
    return lambda t, *xs: f(*xs, t=t)


def solver_options(cfg):
    """Keyword arguments for :func:`mfgpde.solve` from ``[solver]``."""
    tab = dict(cfg.get("solver", {}))
    check_keys(tab, SOLVER_KEYS, "solver")
    if "order" in tab and (isinstance(tab["order"], bool) or tab["order"] not in (1, 2)):
        raise ConfigError(f"[solver] order must be 1 (the monotone scheme) or 2 (Richardson extrapolation over a "
                          f"ladder of grids), got {tab['order']!r}")
    if "error_estimate" in tab and not isinstance(tab["error_estimate"], bool):
        raise ConfigError(f"[solver] error_estimate must be true or false, got {tab['error_estimate']!r}")
    return tab


#: keys of the preset configurations: per preset, the [model] keys and extra top-level tables
PRESET_KEYS = {"cnf": {"model": {"lam", "tail_tol"}}, "score_mfg": {"model": {"nu"}},
               "score": {"model": set(), "": {"sde"}}, "jko": {"model": {"kl_eps"}, "": {"start"}}}


def problem_from_preset(cfg):
    """Build a preset problem from a configuration with ``preset = "cnf" | "score_mfg" | "jko"``
    (``"score"`` is a reference for ``mfgpde validate``, refused here with what to run instead).

    ``jko``: one JKO step of ``KL(. | data)`` of length ``[time] T`` from ``[start]`` (default
    ``N(0, I)``), the MFG of :func:`mfgpde.generative.presets.jko_step_problem`.
    """
    kind = cfg["preset"]
    if kind not in PRESET_KEYS:
        close = difflib.get_close_matches(str(kind), sorted(PRESET_KEYS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"preset = {kind!r} is unknown{hint}; allowed: cnf, score_mfg, jko (one step; chains "
                          "are run from Python: mfgpde.generative.presets.jko_chain) and score (a reference for "
                          "`mfgpde validate`)")
    if kind in PRESET_KEYS:
        # a misspelt key of a preset (lamda, nt in [model]) was ignored and its default used
        check_keys(cfg, {"name", "preset", "grid", "time", "model", "data", "solver"} | PRESET_KEYS[kind].get("", set()),
                   "top level")
        for sec, keys in (("grid", SECTION_KEYS["grid"]), ("time", SECTION_KEYS["time"]),
                          ("model", PRESET_KEYS[kind]["model"]), ("solver", SOLVER_KEYS)):
            if sec in cfg:
                check_keys(cfg[sec], keys, sec)
    gt = _get(cfg, "grid", "top level", required=True)
    grid = TensorGrid(gt["bounds"], gt["shape"], gt.get("boundary", "noflux"))
    tt = cfg.get("time", {})
    data_tab = _get(cfg, "data", "top level", required=True)
    data = _density_callable(data_tab, "data")
    name = cfg.get("name", kind)
    model = cfg.get("model", {})
    if kind == "cnf":
        return cnf_problem(grid, data, lam=model.get("lam", 1.0), T=tt.get("T", 1.0), nt=tt.get("nt", 32),
                           tail_tol=model.get("tail_tol", 1e-4), name=name)
    if kind == "score_mfg":
        return score_mfg_problem(grid, lambda *xs: np.log(np.maximum(data(*xs), 1e-300)), nu=model.get("nu", 1.0),
                                 T=tt.get("T", 1.0), nt=tt.get("nt", 32), name=name)
    if kind == "jko":
        log_pi = getattr(data, "log_density", None) or (lambda *xs: np.log(np.maximum(data(*xs), 1e-300)))
        eps = model.get("kl_eps", 0.0)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
            raise ConfigError(f"[model] kl_eps must be a number >= 0, got {eps!r}")
        if "start" in cfg:
            start = _density_callable(cfg["start"], "start")
        else:
            log_n = standard_normal_log_density(grid.dim)
            start = lambda *xs: np.exp(log_n(*xs))
        return jko_step_problem(grid, start, KL(log_pi, eps=float(eps)), tau=tt.get("T", 1.0), nt=tt.get("nt", 8),
                                name=name)
    if kind == "score":
        raise ConfigError("preset = 'score' is a score-model reference, not an MFG to solve: check a model "
                          "against it with `mfgpde validate CONFIG --model MOD:FN --kind score --out DIR`, or "
                          "study its convergence with `mfgpde wellposed CONFIG --refine N 2N 4N --out DIR`")
    raise AssertionError(f"preset {kind!r} is in PRESET_KEYS but has no builder")
