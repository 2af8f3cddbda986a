"""Solution objects: fields, history, diagnostics, saving (NetCDF) and plotting."""

from __future__ import annotations

import json

import numpy as np

from .io import atomic_write, load_netcdf, save_netcdf, write_json  # noqa: F401  (the writers' old home)


def base_diagnostics(log, status, method, wall_time, mass_error, min_density):
    """The diagnostics every solution carries (FD and FEM alike)."""
    last = log.records[-1]
    return {"converged": status == "converged", "status": status, "method": method,
            "iterations": int(last["iteration"]), "residual": last["residual"],
            "hjb_residual": last["hjb_residual"], "fp_residual": last["fp_residual"],
            "mass_error": float(mass_error), "min_density": float(min_density), "wall_time_s": float(wall_time)}


def mass_error(masses, problem, integrate):
    """``max_n |M_n - M_0 - sum_{k=1..n} dt int s_m(t_k)| / M_0``: the drift of the discrete mass
    ``M_n = int m(t_n)``, net of what an FP source adds (the scheme's FP step to ``t_k`` takes
    ``s_m(t_k)``; without a source the sum is zero).
    """
    masses = np.asarray(masses, float)
    expected = np.full_like(masses, masses[0])
    source = getattr(problem, "fp_source", None)
    if source is not None:
        gains = np.array([problem.dt * integrate(s) for s in source[1:]])
        expected[1:] += np.cumsum(gains)
    return float(np.max(np.abs(masses - expected)) / masses[0])


class SolutionBase:
    """What FD and FEM solutions share: status accessors, the error estimate and the JSON summary."""

    #: the lower-order fields ``(U, m)`` (ergodic: ``(u, m)``) on the same grid from which
    #: :attr:`error_estimate` was computed (see :mod:`mfgpde.iterations.richardson`), or None
    companion = None

    @property
    def error_estimate(self):
        """Estimated discretisation errors of this result (a dict of norms), or ``None``.

        Computed from a Richardson ladder of grids (:mod:`mfgpde.iterations.richardson`):
        ``m_L1_final``, ``m_L1_max``, ``m_max_rel_final``, ``U_max_support``, ``grad_U_weighted``
        (ergodic: ``m_L1``, ``m_max_rel``, ``u_max_support``, ``grad_u_weighted``, ``rho``), with
        the ``order`` of the result and the ``levels`` used. ``None`` when it was not computed
        (``diagnostics["error_estimate_unavailable"]`` says why, if it was asked for).
        """
        return self.diagnostics.get("error_estimate")

    @property
    def converged(self):
        return self.diagnostics["converged"]

    @property
    def status(self):
        return self.diagnostics["status"]

    @property
    def iterations(self):
        return self.diagnostics["iterations"]

    def summary(self) -> dict:
        """JSON-friendly diagnostics plus the problem description."""
        out = dict(self.diagnostics)
        out["problem"] = self.problem.describe()
        return out


class MFGResult(SolutionBase):
    """The solution of a time-dependent MFG on a grid.

    Attributes
    ----------
    U, m : ndarray, shape (N_t + 1,) + grid.shape
        Value function and density at the times :attr:`times`.
    grid : TensorGrid
    times : ndarray (N_t + 1,)
    history : list of dict
        Per iteration: HJB/FP residuals, overall residual, elapsed time.
    diagnostics : dict
        ``converged, status, iterations, residual, hjb_residual, fp_residual, mass_error,
        min_density, wall_time_s, method``.
    """

    def __init__(self, problem, U, m, history, diagnostics):
        self.problem = problem
        self.grid = problem.grid
        self.times = problem.times
        self.U, self.m = U, m
        self.history = history
        self.diagnostics = diagnostics

    @classmethod
    def from_arrays(cls, problem, U, M, log, status, method, wall_time):
        shape = (problem.nt + 1,) + problem.grid.shape
        h = problem.grid.cell_volume
        masses = M.sum(axis=1) * h
        diag = base_diagnostics(log, status, method, wall_time, mass_error(masses, problem, lambda s: s.sum() * h), M.min())
        return cls(problem, U.reshape(shape), M.reshape(shape), log.records, diag)

    def mass(self):
        """Mass ``int m(t) dx`` at every time."""
        return self.m.reshape(len(self.times), -1).sum(axis=1) * self.grid.cell_volume

    def __repr__(self):
        d = self.diagnostics
        return (f"MFGResult({self.problem.name!r}, status={d['status']}, iterations={d['iterations']}, "
                f"residual={d['residual']:.2e}, mass_error={d['mass_error']:.1e}, wall_time={d['wall_time_s']:.2f}s)")

    # --------------------------------------------------------------- I/O
    def to_xarray(self):
        import xarray as xr

        names = ["x", "y", "z"][: self.grid.dim]
        coords = {"t": self.times}
        coords.update({n: a for n, a in zip(names, self.grid.axes)})
        attrs = {"mfgpde_problem": json.dumps(self.problem.describe(), default=str),
                 "mfgpde_diagnostics": json.dumps(self.diagnostics, default=float),
                 "convention": "-U_t - nu Lap U - b.grad U + H(grad U, m) = f[m]; m_t - nu Lap m + div(m(b - H_p)) = 0"}
        hist = {k: ("iteration", np.array([r.get(k, np.nan) for r in self.history], float))
                for k in ("residual", "hjb_residual", "fp_residual", "time_s")}
        ds = xr.Dataset({"U": (("t", *names), self.U), "m": (("t", *names), self.m), **hist},
                        coords={**coords, "iteration": np.arange(len(self.history))}, attrs=attrs)
        ds["U"].attrs["long_name"] = "value function"
        ds["m"].attrs["long_name"] = "density"
        return ds

    def save(self, path):
        """Save to a self-describing NetCDF file (atomic write)."""
        return save_netcdf(self.to_xarray(), path)

    @staticmethod
    def load_dataset(path):
        """Open a saved solution as an ``xarray.Dataset``, verified against the per-variable
        checksums written with it (:func:`mfgpde.io.load_netcdf`): a truncated or corrupted file
        raises ``ValueError`` instead of loading zeros.
        """
        return load_netcdf(path)

    def plot(self, path=None, snapshots=4):
        """Density snapshots (or space-time map), value function and convergence history.

        Parameters
        ----------
        path : str, optional
            Write the figure there (atomically); otherwise return the figure.
        snapshots : int
            Number of time snapshots.
        """
        from .plotting import plot_result

        return plot_result(self, path=path, snapshots=snapshots)


class ErgodicResult(SolutionBase):
    """Solution ``(u, m, rho)`` of an ergodic MFG with its history and diagnostics."""

    def __init__(self, problem, u, m, rho, history, diagnostics):
        self.problem, self.grid = problem, problem.grid
        self.u, self.m, self.rho = u, m, rho
        self.history, self.diagnostics = history, diagnostics

    def summary(self):
        return dict(super().summary(), rho=float(self.rho))

    def __repr__(self):
        d = self.diagnostics
        return f"ErgodicResult(status={d['status']}, rho={self.rho:.6g}, iterations={d['iterations']}, residual={d['residual']:.2e})"

    def save(self, path):
        import xarray as xr

        names = ["x", "y", "z"][: self.grid.dim]
        ds = xr.Dataset({"u": (names, self.u), "m": (names, self.m)},
                        coords=dict(zip(names, self.grid.axes)),
                        attrs={"rho": float(self.rho), "mfgpde_diagnostics": json.dumps(self.diagnostics, default=float),
                               "mfgpde_problem": json.dumps(self.problem.describe(), default=str)})
        return save_netcdf(ds, path)

    def plot(self, path=None):
        """m, u and the residual history; saved atomically to ``path`` when given."""
        from .plotting import plot_ergodic

        return plot_ergodic(self, path)
