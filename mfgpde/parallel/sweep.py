"""Parameter sweeps spread over MPI ranks.

``mpiexec -n N mfgpde sweep CONFIG.toml --param model.nu=0.05,0.1 --param hamiltonian.lam=1,2 --out DIR``
solves the Cartesian product of the values, member ``k`` on rank ``k mod N``, gathers one
table on rank 0 and writes ``DIR/sweep.csv`` and ``DIR/sweep.json`` (atomically). A member
that fails (bad value, divergence, an exception) is a row with ``status = "error"`` and the
message; the others carry on. Parameters are checked on every rank before any solve, so a
misspelt parameter stops the whole sweep with a clear message instead of N failed rows.
Runs serially (one rank) when MPI is absent or not launched.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import os
import time

import numpy as np

from .. import config
from ..io import atomic_write, write_json
from ..logs import Progress
from ..solver import solve

log = logging.getLogger(__name__)


def _comm():
    try:
        from mpi4py import MPI
    except ImportError:  # serial fallback
        return None
    return MPI.COMM_WORLD


def _self_comm():
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_SELF


def parse_params(specs):
    """``["a.b=1,2", "c=x"]`` -> ``[("a.b", [1, 2]), ("c", ["x"])]`` (numbers parsed)."""
    out = []
    for spec in specs:
        if "=" not in spec:
            raise ValueError(f"--param must look like section.key=v1,v2,..., got {spec!r}")
        key, vals = spec.split("=", 1)
        if key.strip() in [k for k, _ in out]:
            raise ValueError(f"--param {key.strip()} is given twice (only the last would count); give all its values "
                             f"in one: --param {key.strip()}=v1,v2,...")
        parsed = []
        for v in vals.split(","):
            v = v.strip()
            if not v:
                raise ValueError(f"--param {key.strip()}: empty value in {spec!r}; give section.key=v1,v2,...")
            if v.lower() in ("true", "false"):  # TOML booleans (normalize_m0=false,true)
                parsed.append(v.lower() == "true")
                continue
            for conv in (int, float):
                try:
                    parsed.append(conv(v))
                    break
                except ValueError:
                    continue
            else:
                parsed.append(v)
        out.append((key.strip(), parsed))
    return out


def members(cfg, params):
    """All parameter combinations; each name is checked against the configuration."""
    for key, _ in params:
        config.set_parameter(config.load(cfg), key, None)  # raises ConfigError naming the key
    keys = [k for k, _ in params]
    return [dict(zip(keys, combo)) for combo in itertools.product(*[v for _, v in params])]


def run_member(cfg, assignment, solve_opts):
    """Solve one member (the configuration with ``assignment`` applied); its row of the sweep table.

    A member that fails is a row with ``status = "error"`` and the message, not an exception, so
    the other members go on.
    """
    t0 = time.perf_counter()
    row = dict(assignment)
    try:
        c = config.load(cfg)
        for k, v in assignment.items():
            config.set_parameter(c, k, v)
        # a member is one serial solve: a [mesh] lives on this rank alone (COMM_SELF)
        problem = config.build_problem(c, comm=_self_comm())
        opts = config.solver_options(c)
        opts.update(solve_opts)
        r = solve(problem, verbose=False, **opts)
        d = r.diagnostics
        row.update(status=d["status"], converged=d["converged"], iterations=d["iterations"], residual=d["residual"],
                   mass_error=d["mass_error"], min_density=d["min_density"], message="")
        # solution functionals (root-mean-square of U and m over space-time, the mean of m(T)):
        # rows of two runs can be compared on the solutions, not only on their residuals
        U, m = np.asarray(r.U, float), np.asarray(r.m, float)
        row.update(U_rms=float(np.sqrt(np.mean(U**2))), m_rms=float(np.sqrt(np.mean(m**2))),
                   m_final_mean=float(np.mean(m[-1])))
    except Exception as exc:  # a failed member is reported, the sweep goes on
        row.update(status="error", converged=False, iterations=None, residual=None, mass_error=None,
                   min_density=None, U_rms=None, m_rms=None, m_final_mean=None,
                   message=f"{type(exc).__name__}: {exc}")
    row["wall_time_s"] = time.perf_counter() - t0
    return row


def sweep(cfg_path, params, out, solve_opts=None):
    """Run a sweep (collective over ``MPI.COMM_WORLD`` when launched with mpiexec).

    Returns
    -------
    list of dict on rank 0 (the table), None on the other ranks.
    """
    comm = _comm()
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    cfg = config.load(cfg_path)
    todo = members(cfg, params)
    mine = [(i, m) for i, m in enumerate(todo) if i % size == rank]
    progress = Progress(log, "sweep" if size == 1 else f"sweep, rank {rank}'s members", len(mine))
    for k, (i, m) in enumerate(mine):
        mine[k] = (i, run_member(cfg, m, solve_opts or {}))
        progress.done(f"member {i}: {mine[k][1]['status']}")
    for i, row in mine:
        row["member"], row["rank"] = i, rank
    gathered = comm.gather(mine, root=0) if comm is not None else [mine]
    if rank != 0:
        return None
    table = [row for _, row in sorted((p for part in gathered for p in part), key=lambda x: x[0])]
    os.makedirs(out, exist_ok=True)
    cols = ["member", "rank"] + [k for k, _ in params] + ["status", "converged", "iterations", "residual",
                                                           "mass_error", "min_density", "U_rms", "m_rms", "m_final_mean",
                                                           "wall_time_s", "message"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for row in table:
        w.writerow({k: row.get(k) for k in cols})

    def write_csv(tmp):
        with open(tmp, "w", newline="") as fh:
            fh.write(buf.getvalue())

    atomic_write(os.path.join(out, "sweep.csv"), write_csv, ".csv")
    write_json(os.path.join(out, "sweep.json"), {"config": os.path.abspath(cfg_path), "ranks": size, "members": table})
    return table
