"""Building, storing and loading the zoo's references.

A reference is stored as one NetCDF file per entry in the cache directory (``$MFGPDE_CACHE``,
else ``$XDG_CACHE_HOME/mfgpde/zoo``, else ``~/.cache/mfgpde/zoo``), written atomically
(:func:`mfgpde.io.save_netcdf`: a temporary file, then a rename) with a SHA-256 of every
variable. Its attributes hold the configuration, the package version, the error estimate and
the **key**: the SHA-256 of the configuration and of :data:`FORMAT`. On load, a file that fails
its checksums (truncated, corrupted) or whose key differs from the entry's (the entry or the
storage format changed: stale) is never used: :func:`reference` rebuilds it, and says so in the
log. The package version is recorded but not part of the key, so a release that does not change
an entry keeps its cache.

Flow references store ``U``, ``m`` and, when the error estimate was computed, the companion
``U_companion, m_companion`` (the lower-order solution whose difference is the error bar);
ergodic ones ``u, m, rho`` and the companion; score references the forward densities ``p`` and
the error bars computed when the reference was built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time

import numpy as np

from .. import __version__, config
from ..closed_forms import ou_mixture_density_and_score
from ..generative import toys
from ..io import load_netcdf, save_netcdf
from ..result import ErgodicResult, MFGResult
from ..solver import solve
from ..validate.cli import build_reference
from ..validate.metrics import density_metrics
from ..validate.validator import exact_score_errors
from .catalogue import entry as _entry

logger = logging.getLogger(__name__)

#: Bumped when what is stored, or how it is computed, changes: every cached file becomes stale.
FORMAT = 3


def cache_dir():
    """The directory the references live in (created on first build)."""
    if os.environ.get("MFGPDE_CACHE"):
        return os.path.join(os.environ["MFGPDE_CACHE"], "zoo")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mfgpde", "zoo")


def key(e):
    """SHA-256 of the entry's configuration and the storage format."""
    text = json.dumps({"config": e.config, "format": FORMAT}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def path(e):
    """The file of an entry's reference."""
    return os.path.join(cache_dir(), f"{e.name}.nc")


def _version():

    return __version__


class Reference:
    """A built reference: the entry, the object its validator takes, and its stored facts.

    Attributes
    ----------
    entry : Entry
    result : MFGResult, ErgodicResult or (ScoreModel, data, p)
    error_estimate : dict or None
        The stored error estimate (flow and ergodic: the ladder's norms; score: the error bars).
    build_time_s : float
    path : str
    """

    def __init__(self, entry, result, error_estimate, build_time_s, path):
        self.entry, self.result, self.error_estimate = entry, result, error_estimate
        self.build_time_s, self.path = build_time_s, path

    @property
    def estimated_error(self):
        """One number for the catalogue: the L1 error of the final density (flow), of the
        stationary density (ergodic), or of what the exact grid score generates (score).
        """
        est = self.error_estimate or {}
        for k in ("m_L1_final", "m_L1", "generated_vs_data.L1"):
            if k in est:
                return float(est[k])
        return None

    def __repr__(self):
        return f"Reference({self.entry.name!r}, estimated error {self.estimated_error})"


# -------------------------------------------------------------------------------- building
def solve_reference(e):
    """Solve an entry's reference (no cache): the object its validator takes and the error estimate."""
    cfg = e.configuration()
    if e.reference == "score":

        _kind, sm, data = build_reference(cfg)
        p = sm.forward(data)
        return (sm, data, p), _score_bars(e, sm, data, p)
    problem = config.build_problem(cfg)
    result = solve(problem, **config.solver_options(cfg))
    if not result.converged:
        raise RuntimeError(f"zoo entry {e.name}: the reference solve did not converge ({result.status}, residual "
                           f"{result.diagnostics['residual']:.2e}); nothing was stored")
    return result, result.error_estimate


def _score_bars(e, sm, data, p):
    """Error bars of a score reference: those of :func:`~mfgpde.validate.validator.score_reference_error`
    when the noised law is known (the toy data sets), else the evaluation floor alone.
    """
    g = sm.grid
    s_grid = sm.grid_score(p)
    q = sm.generate(s_grid, start=p[-1] if sm.sde == "ve" else None)
    floor = density_metrics(q[-1], p[0], g)
    bars = {f"generated_vs_data.{k}": abs(v) for k, v in floor.items()}
    law = exact_marginal(e)
    if law is not None:

        score_bar, data_gap = exact_score_errors(sm, p, s_grid, law)
        bars["score_error_weighted"] = score_bar
        bars["generated_vs_data.L1"] += data_gap
        bars["data_gap_L1"] = data_gap
    return bars


def exact_marginal(e):
    """``t -> law of X_t`` for a score entry whose noised laws are known (None otherwise): the toy
    data sets (VP and VE) and Gaussian mixtures under the VP SDE (C2).
    """
    cfg = e.config
    if e.reference != "score":
        return None
    sde, data = cfg["sde"], cfg["data"]
    if data.get("type") == "mixture" and sde["type"] == "vp":
        return lambda t: _MixtureLaw(data, t)
    if data.get("type") != "toy":
        return None

    law = toys.toy(data["name"])
    if sde["type"] == "vp":
        return lambda t: toys.ou_marginal(law, t)
    return lambda t: toys.ve_marginal(law, t, sde["sigma"])


class _MixtureLaw:
    """The OU-noised Gaussian mixture at time ``t`` (closed form C2) with the toy laws' interface."""

    def __init__(self, data, t):
        self.data, self.t = data, float(t)

    def _eval(self, xs):

        shape = np.shape(xs[0])
        P = np.stack([np.ravel(x) for x in xs], axis=1)
        d = self.data
        dens, score = ou_mixture_density_and_score(d["weights"], d["means"], d["covs"], self.t, P)
        return dens.reshape(shape), np.moveaxis(score, 1, 0).reshape((len(xs),) + shape)

    def density(self, *xs):
        return self._eval(xs)[0]

    def score(self, *xs):
        return self._eval(xs)[1]


def _dataset(e, obj, estimate, build_time):
    import xarray as xr

    attrs = {"mfgpde_zoo_entry": e.name, "mfgpde_zoo_key": key(e), "mfgpde_version": _version(),
             "mfgpde_config": json.dumps(e.config, default=str),
             "mfgpde_error_estimate": json.dumps(estimate, default=float), "build_time_s": float(build_time)}
    names = ["x", "y", "z"][: e.dim]
    if e.reference == "score":
        sm, _data, p = obj
        coords = {"t": sm.times, **dict(zip(names, sm.grid.axes))}
        return xr.Dataset({"p": (("t", *names), p)}, coords=coords, attrs=attrs)
    g = obj.grid
    if e.reference == "ergodic":
        data = {"u": (names, obj.u), "m": (names, obj.m)}
        attrs["rho"] = float(obj.rho)
        if obj.companion is not None:
            data.update({"u_companion": (names, np.asarray(obj.companion[0])),
                         "m_companion": (names, np.asarray(obj.companion[1]))})
        return xr.Dataset(data, coords=dict(zip(names, g.axes)), attrs=attrs)
    dims = ("t", *names)
    data = {"U": (dims, obj.U), "m": (dims, obj.m)}
    if obj.companion is not None:
        data.update({"U_companion": (dims, np.asarray(obj.companion[0])),
                     "m_companion": (dims, np.asarray(obj.companion[1]))})
    attrs["mfgpde_diagnostics"] = json.dumps(obj.diagnostics, default=float)
    return xr.Dataset(data, coords={"t": obj.times, **dict(zip(names, g.axes))}, attrs=attrs)


def build(name, force=False):
    """Solve and store the reference of entry ``name``; return it as a :class:`Reference`.

    Unless ``force``, a valid stored reference (checksums and key) is loaded instead.

    Raises
    ------
    PermissionError
        The cache directory is not writable (checked before the solve).
    RuntimeError
        The reference solve did not converge (nothing is stored).
    """
    e = _entry(name)
    if not force:
        ref = load(e.name)
        if ref is not None:
            return ref
    target = path(e)
    _check_writable(os.path.dirname(target))
    t0 = time.perf_counter()
    obj, estimate = solve_reference(e)
    build_time = time.perf_counter() - t0
    save_netcdf(_dataset(e, obj, estimate, build_time), target)
    logger.info("zoo: built %s in %.1f s -> %s", e.name, build_time, target)
    return Reference(e, obj, estimate, build_time, target)


def _check_writable(directory):
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise PermissionError(f"the zoo cache directory {directory!r} cannot be created ({exc.strerror}); set "
                              "MFGPDE_CACHE to a writable directory") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"the zoo cache directory {directory!r} is not writable; set MFGPDE_CACHE to a "
                              "writable directory")


def _read(e):
    """``(state, dataset)``: the state of :func:`status` and the verified file (None unless built)."""
    target = path(e)
    if not os.path.exists(target):
        return "missing", None
    try:
        ds = load_netcdf(target)
    except ValueError:
        return "corrupted", None
    return ("built", ds) if ds.attrs.get("mfgpde_zoo_key") == key(e) else ("stale", None)


def status(name):
    """``"built"``, ``"missing"``, ``"stale"`` (built from another configuration or format) or
    ``"corrupted"`` (fails its checksums), checking only the file (no solve).
    """
    return _read(_entry(name))[0]


def stored_error(name):
    """``(state, estimated error)`` from the file alone (no problem is built): what ``zoo list`` shows."""
    state, ds = _read(_entry(name))
    if ds is None:
        return state, None
    estimate = json.loads(ds.attrs.get("mfgpde_error_estimate", "null")) or {}
    return state, Reference(None, None, estimate, None, None).estimated_error


def load(name):
    """The stored reference of ``name``, or None when it is missing, stale or corrupted (logged)."""
    e = _entry(name)
    target = path(e)
    if not os.path.exists(target):
        return None
    try:
        ds = load_netcdf(target)
    except ValueError as exc:
        logger.warning("zoo: %s: the stored reference is corrupted and will be rebuilt (%s)", e.name, exc)
        return None
    if ds.attrs.get("mfgpde_zoo_key") != key(e):
        logger.warning("zoo: %s: the stored reference is stale (built from another configuration or storage "
                       "format) and will be rebuilt", e.name)
        return None
    estimate = json.loads(ds.attrs.get("mfgpde_error_estimate", "null"))
    build_time = float(ds.attrs.get("build_time_s", float("nan")))
    cfg = e.configuration()
    if e.reference == "score":

        _kind, sm, data = build_reference(cfg)
        return Reference(e, (sm, data, ds["p"].values), estimate, build_time, target)
    problem = config.build_problem(cfg)
    if e.reference == "ergodic":

        result = ErgodicResult(problem, ds["u"].values, ds["m"].values, float(ds.attrs["rho"]), [],
                               {"converged": True, "status": "converged", "stored": target})
        if "u_companion" in ds:
            result.companion = (ds["u_companion"].values, ds["m_companion"].values)
        return Reference(e, result, estimate, build_time, target)

    diagnostics = json.loads(ds.attrs["mfgpde_diagnostics"])
    result = MFGResult(problem, ds["U"].values, ds["m"].values, [], diagnostics)
    if "U_companion" in ds:
        result.companion = (ds["U_companion"].values, ds["m_companion"].values)
    return Reference(e, result, estimate, build_time, target)


def reference(name):
    """The reference of entry ``name``: loaded from the cache, or built (and stored) when it is
    missing, stale or corrupted.
    """
    ref = load(name)
    return ref if ref is not None else build(name, force=True)
