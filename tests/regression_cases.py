"""Small versions of the benchmark cases whose discrete solutions are pinned in
``tests/data/regression_12d92f0.npz`` (computed by main at commit 12d92f0, before the fast
step solvers). A change of solver must not change the discrete solution."""

import os

import numpy as np

import mfgpde as mp
from mfgpde import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(name, **over):
    cfg = config.load(os.path.join(ROOT, "solvers", name))
    for key, value in over.items():
        config.set_parameter(cfg, key, value)
    return config.build_problem(cfg)


def b1():
    return _cfg("lst_case1.toml"), dict(tol=1e-11)


def b2():
    return _cfg("lst_case2.toml", **{"grid.shape": [20, 20], "time.nt": 20}), dict(tol=1e-11)


def log2d():
    g = mp.TensorGrid([(0, 1), (0, 1)], 24, "periodic")
    p = mp.MFGProblem(g, 1.0, 24, 0.1, mp.QuadraticHamiltonian(),
                      lambda x, y: 1 + 0.5 * np.cos(2 * np.pi * x) * np.cos(2 * np.pi * y),
                      coupling=mp.LogCoupling() + mp.PotentialCoupling(
                          lambda x, y: np.sin(2 * np.pi * x) + np.cos(2 * np.pi * y)),
                      terminal=lambda x, y: 0.5 * np.cos(2 * np.pi * (x - y)), normalize=True)
    return p, dict(tol=1e-11)


def noflux2d_drift():
    g = mp.TensorGrid([(-1, 1), (0, 2)], (20, 16), "noflux")
    p = mp.MFGProblem(g, 0.5, 16, 0.2, mp.QuadraticHamiltonian(),
                      lambda x, y: np.exp(-4 * ((x - 0.3) ** 2 + (y - 1) ** 2)),
                      coupling=mp.LogCoupling(), drift=lambda t, x, y: (0.5 + 0 * x, -0.3 + 0 * y),
                      terminal=lambda x, y: 0.5 * x**2, normalize=True)
    return p, dict(tol=1e-11)


def cube3d():
    g = mp.TensorGrid([(0, 1)] * 3, 8, "periodic")
    p = mp.MFGProblem(g, 1.0, 8, 0.1, mp.QuadraticHamiltonian(),
                      lambda x, y, z: 1 + 0.5 * np.cos(2 * np.pi * x) * np.cos(2 * np.pi * z),
                      coupling=mp.LogCoupling(), terminal=lambda x, y, z: 0.5 * np.cos(2 * np.pi * (x + y)),
                      normalize=True)
    return p, dict(tol=1e-11)


def cnf1d():
    return _cfg("cnf_gaussian_1d.toml", **{"grid.shape": [80], "time.nt": 20}), dict(tol=1e-10)


def cnf2d():
    return _cfg("cnf_gmm8_2d.toml", **{"grid.shape": [24, 24], "time.nt": 12}), dict(tol=1e-9)


CASES = {"b1": b1, "b2": b2, "log2d": log2d, "noflux2d_drift": noflux2d_drift, "cube3d": cube3d,
         "cnf1d": cnf1d, "cnf2d": cnf2d}


def b2_full():
    return _cfg("lst_case2.toml"), dict(tol=1e-10)
