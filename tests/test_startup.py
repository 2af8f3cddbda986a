"""Start-up: ``import mfgpde`` (and so ``mfgpde --help``) loads no heavy optional module."""

import json
import subprocess
import sys

import numpy as np

HEAVY = ("scipy.signal", "scipy.stats", "matplotlib", "xarray", "petsc4py", "dolfinx", "torch")


def test_import_loads_no_heavy_module():
    code = ("import json, sys, mfgpde; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_convolution_without_scipy_signal_is_the_linear_convolution(rng):
    """The FFT convolution that replaced scipy.signal.fftconvolve: the direct sum, in 1D and 2D."""
    from mfgpde.couplings import _linear_convolution

    a, b = rng.random(7), rng.random(5)
    assert abs(_linear_convolution(a, b) - np.convolve(a, b)).max() < 1e-13
    A, B = rng.random((4, 6)), rng.random((3, 5))
    direct = np.zeros((6, 10))
    for i in range(4):
        for j in range(6):
            direct[i:i + 3, j:j + 5] += A[i, j] * B
    assert abs(_linear_convolution(A, B) - direct).max() < 1e-13


def test_cli_start_loads_no_heavy_module():
    """What ``mfgpde --help`` loads (the parser of every verb): none of the heavy modules, nor SciPy,
    Numba or the zoo's catalogue (whose toy densities import scipy.special: 0.25 s of every start)."""
    heavy = (*HEAVY, "scipy", "numba", "mfgpde.zoo.catalogue", "mfgpde.generative.toys")
    code = ("import argparse, json, sys; from mfgpde import cli; "
            "cli._register_extra_verbs(argparse.ArgumentParser().add_subparsers()); "
            f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
