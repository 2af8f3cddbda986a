"""The bad-input trial: bad or unusual inputs through the CLI and the Python API, each classified.

Every case is run in this process (the command line through :func:`mfgpde.cli.main`, the API
directly) and gets one verdict:

* ``refused``: a non-zero exit (CLI) or a ``ValueError`` / ``TypeError`` (API) whose message
  names the expected parameter, before or instead of a solve, and no traceback;
* ``warned``: accepted with a warning that names it (where accepting is right: a valid but
  suspicious input);
* ``ran``: a valid unusual input that solves (exit 0);
* ``vague``: refused, but the message does not name the parameter;
* ``traceback``: an exception escaped the CLI, or the API raised an exception of another kind
  (IndexError, KeyError, ...);
* ``silent``: accepted where a refusal or a warning was expected.

The first three are what a user should see; the trial fails (exit 1) on any other verdict.
Cases follow the issue "Hardening" (configuration keys, expressions, sizes beyond memory,
solver options, Gaussian data, model parameters, output folders, the sweep / wellposed /
validate verbs) and add the neighbouring inputs of each.

Run:  python validation/bad_inputs.py [--out validation/out/bad_inputs]
"""

import argparse
import contextlib
import copy
import io
import os
import sys
import tempfile
import time
import traceback
import warnings

import numpy as np

import mfgpde as mp
from mfgpde.cli import main as cli
from mfgpde.report import markdown_table, write_report
from mfgpde.result import write_json

BASE = """name = "trial"
[grid]
bounds = [[-1.5, 1.7]]
shape = 24
boundary = "noflux"

[time]
T = 0.5
nt = 6

[model]
nu = 0.1

[hamiltonian]
type = "quadratic"
lam = 1.0

[[coupling]]
type = "potential"
expr = "0.5 * (x - 0.1)**2"

[terminal]
type = "potential"
expr = "0.5 * (x - 0.1)**2"

[m0]
type = "gaussian"
mean = [0.1]
cov = 0.04

[solver]
method = "newton"
tol = 1e-8
"""

CONGESTION = '[hamiltonian]\ntype = "congestion"\nc0 = 1.0\nc1 = 4.0\nbeta = 1.5\n'


def edit(*pairs):
    """The base configuration with each ``old -> new`` replacement applied (``old`` must occur)."""
    text = BASE
    for old, new in pairs:
        if old not in text:
            raise AssertionError(f"trial case edit {old!r} does not apply")
        text = text.replace(old, new)
    return text


def add(section, line):
    """The base configuration with ``line`` added at the top of ``[section]``."""
    return edit((f"[{section}]\n", f"[{section}]\n{line}\n"))


# (id, configuration text, extra CLI arguments, expected verdict, word the message must contain)
CONFIG_CASES = [
    # unknown keys and sections: refused with the closest valid key
    ("unknown key model.nuu", add("model", "nuu = 0.05"), [], "refused", "nuu"),
    ("unknown key grid.shap", add("grid", "shap = 20"), [], "refused", "shap"),
    ("unknown key time.NT", add("time", "NT = 10"), [], "refused", "NT"),
    ("unknown top-level normalise_m0", "normalise_m0 = true\n" + BASE, [], "refused", "normalise_m0"),
    ("unknown section [modle]", BASE + "\n[modle]\nnu = 1\n", [], "refused", "modle"),
    ("unknown coupling key scal", add("[coupling]", "scal = 2.0"), [], "refused", "scal"),
    ("kind = ergodc", "kind = \"ergodc\"\n" + BASE, [], "refused", "ergodc"),
    ("linear_solver = dirct", add("solver", 'linear_solver = "dirct"'), [], "refused", "linear_solver"),
    ("unknown solver key damping_", add("solver", "dampng = 0.5"), [], "refused", "dampng"),
    ("hamiltonian type quadratc", edit(('type = "quadratic"', 'type = "quadratc"')), [], "refused", "quadratc"),
    ("coupling type logg", edit(('type = "potential"\nexpr = "0.5 * (x - 0.1)**2"\n\n[terminal]',
                                 'type = "logg"\n\n[terminal]')), [], "refused", "logg"),
    ("m0 type gaussain", edit(('type = "gaussian"', 'type = "gaussain"')), [], "refused", "gaussain"),
    ("preset = cnff", "preset = \"cnff\"\n" + BASE, [], "refused", "cnff"),
    # solver options
    ("max_iter = -1", add("solver", "max_iter = -1"), [], "refused", "max_iter"),
    ("max_iter = 5 as a string", add("solver", 'max_iter = "5"'), [], "refused", "max_iter"),
    ("max_iter = 2.5", add("solver", "max_iter = 2.5"), [], "refused", "max_iter"),
    ("max_iter = 0 is honoured", add("solver", "max_iter = 0"), [], "ran", ""),
    ("tol as a string", edit(("tol = 1e-8", 'tol = "1e-10"')), [], "refused", "tol"),
    ("tol = 0", edit(("tol = 1e-8", "tol = 0.0")), [], "refused", "tol"),
    ("tol = -1", edit(("tol = 1e-8", "tol = -1.0")), [], "refused", "tol"),
    ("tol = nan", edit(("tol = 1e-8", "tol = nan")), [], "refused", "tol"),
    ("method = newtn", edit(('method = "newton"', 'method = "newtn"')), [], "refused", "method"),
    ("damping = 5", edit(('method = "newton"', 'method = "fixed_point"\ndamping = 5.0')), [], "refused", "damping"),
    ("damping = 0", edit(('method = "newton"', 'method = "fixed_point"\ndamping = 0.0')), [], "refused", "damping"),
    ("viscosity_continuation = yes", add("solver", 'viscosity_continuation = "yes"'), [], "refused",
     "viscosity_continuation"),
    ("grid_sequencing = maybe", add("solver", 'grid_sequencing = "maybe"'), [], "refused", "grid_sequencing"),
    ("backend = gpu", add("solver", 'backend = "gpu"'), [], "refused", "backend"),
    ("normalize_m0 = no (a string)", 'normalize_m0 = "no"\n' + BASE, [], "refused", "normalize_m0"),
    # grid and time
    ("shape = 50.7", edit(("shape = 24", "shape = 50.7")), [], "refused", "shape"),
    ("shape = 0", edit(("shape = 24", "shape = 0")), [], "refused", "shape"),
    ("shape = -5", edit(("shape = 24", "shape = -5")), [], "refused", "shape"),
    ("shape = 1", edit(("shape = 24", "shape = 1")), [], "refused", "shape"),
    ("shape as a string", edit(("shape = 24", 'shape = "24"')), [], "refused", "shape"),
    ("shape of the wrong length", edit(("shape = 24", "shape = [24, 24]")), [], "refused", "shape"),
    ("shape = 1e9 (memory)", edit(("shape = 24", "shape = 1000000000")), [], "refused", "memory"),
    ("shape = [1e5, 1e5] (memory)", edit(("bounds = [[-1.5, 1.7]]", "bounds = [[-1.5, 1.7], [-1.5, 1.7]]"),
                                         ("shape = 24", "shape = [100000, 100000]"), ("mean = [0.1]", "mean = [0.1, 0.1]"),
                                         ("expr = \"0.5 * (x - 0.1)**2\"\n\n[terminal]", "expr = \"x + y\"\n\n[terminal]")),
     [], "refused", "memory"),
    ("nt = 1e9 (memory)", edit(("nt = 6", "nt = 1000000000")), [], "refused", "memory"),
    ("nt = 0", edit(("nt = 6", "nt = 0")), [], "refused", "nt"),
    ("nt = 2.5", edit(("nt = 6", "nt = 2.5")), [], "refused", "nt"),
    ("T = 0", edit(("T = 0.5", "T = 0.0")), [], "refused", "T"),
    ("T = -1", edit(("T = 0.5", "T = -1.0")), [], "refused", "T"),
    ("T = inf", edit(("T = 0.5", "T = inf")), [], "refused", "T"),
    ("bounds reversed", edit(("bounds = [[-1.5, 1.7]]", "bounds = [[1.7, -1.5]]")), [], "refused", "bounds"),
    ("bounds = [[0, 1e-300]]", edit(("bounds = [[-1.5, 1.7]]", "bounds = [[0.0, 1e-300]]")), [], "refused", "bounds"),
    ("bounds with nan", edit(("bounds = [[-1.5, 1.7]]", "bounds = [[nan, 1.7]]")), [], "refused", "bounds"),
    ("1D bounds as one pair [lo, hi]", edit(("bounds = [[-1.5, 1.7]]", "bounds = [-1.5, 1.7]")), [], "ran", ""),
    ("bounds not pairs", edit(("bounds = [[-1.5, 1.7]]", "bounds = [[-1.5, 0.0, 1.7]]")), [], "refused", "bounds"),
    ("bounds as a string", edit(("bounds = [[-1.5, 1.7]]", 'bounds = "0, 1"')), [], "refused", "bounds"),
    ("boundary = periodc", edit(('boundary = "noflux"', 'boundary = "periodc"')), [], "refused", "boundary"),
    ("boundary list too long", edit(('boundary = "noflux"', 'boundary = ["noflux", "noflux"]')), [], "refused",
     "boundary"),
    ("missing [grid]", edit(("[grid]\nbounds = [[-1.5, 1.7]]\nshape = 24\nboundary = \"noflux\"\n", "")), [],
     "refused", "grid"),
    ("missing [m0]", edit(("[m0]\ntype = \"gaussian\"\nmean = [0.1]\ncov = 0.04\n", "")), [], "refused", "m0"),
    ("periodic grid, non-periodic terminal 10*x",
     edit(('boundary = "noflux"', 'boundary = "periodic"'),
          ('[terminal]\ntype = "potential"\nexpr = "0.5 * (x - 0.1)**2"', '[terminal]\ntype = "potential"\nexpr = "10*x"')),
     [], "warned", "periodic"),
    # model parameters
    ("nu = -1", edit(("nu = 0.1", "nu = -1.0")), [], "refused", "nu"),
    ("nu = nan", edit(("nu = 0.1", "nu = nan")), [], "refused", "nu"),
    ("nu as a string", edit(("nu = 0.1", 'nu = "0.1"')), [], "refused", "nu"),
    ("lam = 0", edit(("lam = 1.0", "lam = 0.0")), [], "refused", "lam"),
    ("lam = -1", edit(("lam = 1.0", "lam = -1.0")), [], "refused", "lam"),
    ("congestion c0 = nan", edit(('[hamiltonian]\ntype = "quadratic"\nlam = 1.0\n', CONGESTION.replace("c0 = 1.0", "c0 = nan"))),
     [], "refused", "c0"),
    ("congestion c1 = inf", edit(('[hamiltonian]\ntype = "quadratic"\nlam = 1.0\n', CONGESTION.replace("c1 = 4.0", "c1 = inf"))),
     [], "refused", "c1"),
    ("congestion beta = abc", edit(('[hamiltonian]\ntype = "quadratic"\nlam = 1.0\n',
                                    CONGESTION.replace("beta = 1.5", 'beta = "abc"'))), [], "refused", "beta"),
    ("power-law delta = nan", edit(('type = "quadratic"\nlam = 1.0', 'type = "power"\nq = 3.0\ndelta = nan')), [],
     "refused", "delta"),
    ("power coupling scale = inf", edit(('type = "potential"\nexpr = "0.5 * (x - 0.1)**2"\n\n[terminal]',
                                         'type = "power"\np = 1.0\nscale = inf\n\n[terminal]')), [], "refused", "scale"),
    ("log coupling floor = tiny", edit(('type = "potential"\nexpr = "0.5 * (x - 0.1)**2"\n\n[terminal]',
                                        'type = "log"\nfloor = "tiny"\n\n[terminal]')), [], "refused", "floor"),
    # Gaussian data
    ("cov = -0.04", edit(("cov = 0.04", "cov = -0.04")), [], "refused", "cov"),
    ("cov = 0", edit(("cov = 0.04", "cov = 0.0")), [], "refused", "cov"),
    ("2D mean on a 1D grid", edit(("mean = [0.1]", "mean = [0.1, 0.2]")), [], "refused", "mean"),
    ("mean with nan", edit(("mean = [0.1]", "mean = [nan]")), [], "refused", "mean"),
    ("mean far outside the box", edit(("mean = [0.1]", "mean = [50.0]")), [], "refused", "m0"),
    # expressions
    ("guarded where(x > 0, 1/x, 0) terminal", edit(('expr = "0.5 * (x - 0.1)**2"\n\n[m0]', 'expr = "where(x > 0, 1/x, 0)"\n\n[m0]')),
     [], "ran", ""),
    ("m0 expr log(x - 0.5)", edit(('[m0]\ntype = "gaussian"\nmean = [0.1]\ncov = 0.04', '[m0]\ntype = "expr"\nexpr = "log(x - 0.5)"')),
     [], "refused", "m0"),
    ("terminal log(x - 0.5)", edit(('expr = "0.5 * (x - 0.1)**2"\n\n[m0]', 'expr = "log(x - 0.5)"\n\n[m0]')), [],
     "refused", "terminal"),
    ("coupling log(x - 0.5)", edit(('expr = "0.5 * (x - 0.1)**2"\n\n[terminal]', 'expr = "log(x - 0.5)"\n\n[terminal]')), [],
     "refused", "coupling"),
    ("expression 1/0 + x", edit(('expr = "0.5 * (x - 0.1)**2"\n\n[m0]', 'expr = "1/0 + x"\n\n[m0]')), [], "refused",
     "terminal"),
    ("expression x[1000]", edit(('expr = "0.5 * (x - 0.1)**2"\n\n[m0]', 'expr = "x[1000]"\n\n[m0]')), [], "refused",
     "terminal"),
    ("expression y on a 1D grid", edit(('expr = "0.5 * (x - 0.1)**2"\n\n[m0]', 'expr = "y"\n\n[m0]')), [], "refused", "y"),
    ("expression __import__('os')", edit(('expr = "0.5 * (x - 0.1)**2"\n\n[m0]', 'expr = "__import__(\'os\')"\n\n[m0]')), [],
     "refused", "terminal"),
    ("expression syntax error", edit(('expr = "0.5 * (x - 0.1)**2"\n\n[m0]', 'expr = "0.5 * (x"\n\n[m0]')), [], "refused",
     "terminal"),
    ("expression not a string", edit(('expr = "0.5 * (x - 0.1)**2"\n\n[m0]', "expr = 3\n\n[m0]")), [], "refused", "expr"),
    ("drift = xy", add("model", 'drift = "xy"'), [], "refused", "drift"),
    ("drift of the wrong length", add("model", 'drift = ["x", "x"]'), [], "refused", "drift"),
    ("m0 expr negative", edit(('[m0]\ntype = "gaussian"\nmean = [0.1]\ncov = 0.04', '[m0]\ntype = "expr"\nexpr = "x"')),
     [], "refused", "m0"),
    ("m0 expr zero", edit(('[m0]\ntype = "gaussian"\nmean = [0.1]\ncov = 0.04', '[m0]\ntype = "expr"\nexpr = "0 * x"')),
     [], "refused", "m0"),
    # files and folders
    ("TOML syntax error", BASE.replace("shape = 24", "shape = = 24"), [], "refused", "toml"),
    ("empty file", "", [], "refused", "grid"),
    # command-line options
    ("--max-iter -3", BASE, ["--max-iter", "-3"], "refused", "max"),
    ("--max-iter 0 is honoured", BASE, ["--max-iter", "0"], "ran", ""),
    ("--tol abc", BASE, ["--tol", "abc"], "refused", "tol"),
    ("--tol -1", BASE, ["--tol", "-1"], "refused", "tol"),
    ("--method foo", BASE, ["--method", "foo"], "refused", "method"),
    ("--petsc-option without a key", BASE, ["--petsc-option", "=3"], "refused", "petsc-option"),
    ("--petsc-option on a serial solve", BASE, ["--petsc-option", "step_pc_type=gamg"], "warned", "petsc_options"),
    # order 2 and the error estimate (the sharp-references issue)
    ("--order 3", BASE, ["--order", "3"], "refused", "order"),
    ("[solver] order = 3", add("solver", "order = 3"), [], "refused", "order"),
    ("[solver] order = true", add("solver", "order = true"), [], "refused", "order"),
    ("order 2 on a grid without a ladder (24 cells, 6 steps)", BASE, ["--order", "2"], "refused", "ladder"),
    ("[solver] error_estimate = yes", add("solver", 'error_estimate = "yes"'), [], "refused", "error_estimate"),
]


def _solve_args(cfg, out, extra):
    return ["solve", cfg, "--out", out, "--no-plot"] + extra


def run_cli(argv):
    """``(exit code, stderr + stdout + warnings, escaped exception or None)`` of ``mfgpde argv``."""
    out, err = io.StringIO(), io.StringIO()
    escaped = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            code = cli(argv)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except Exception as exc:  # (escaping the CLI is what the trial looks for)
            code, escaped = 1, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    text = err.getvalue() + out.getvalue() + "".join(f"\nwarning: {x.message}" for x in w)
    return code, text, escaped


def classify_cli(code, text, escaped, expect, word):
    if escaped or "Traceback (most recent call last)" in text:
        return "traceback"
    named = word.lower() in text.lower()
    if expect == "refused":
        if code == 0:
            return "silent"
        return "refused" if named else "vague"
    if expect == "warned":
        if code != 0:
            return "vague"  # refused what should run
        return "warned" if named and "warning" in text.lower() else "silent"
    return "ran" if code == 0 else "vague"


def classify_api(fn, expect, word):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            fn()
        # (AttributeError: setting an attribute of an immutable problem, as a frozen dataclass refuses)
        except (ValueError, TypeError, AttributeError) as exc:
            if expect != "refused":
                return "vague", str(exc)
            return ("refused" if word.lower() in str(exc).lower() else "vague"), str(exc)
        except Exception as exc:  # another kind than ValueError / TypeError / AttributeError: unhelpful
            return "traceback", f"{type(exc).__name__}: {exc}"
    messages = " ".join(str(x.message) for x in w)
    if expect == "warned":
        return ("warned" if word.lower() in messages.lower() else "silent"), messages
    return ("ran" if expect == "ran" else "silent"), messages


def _problem(**over):
    g = over.pop("grid", None) or mp.TensorGrid([(-1.5, 1.7)], 24, "noflux")
    kw = dict(T=0.5, nt=6, nu=0.1, hamiltonian=mp.QuadraticHamiltonian(),
              m0=lambda x: np.exp(-0.5 * (x - 0.1) ** 2 / 0.04), coupling=mp.PotentialCoupling(lambda x: 0.5 * x**2))
    kw.update(over)
    return mp.MFGProblem(g, **kw)


def api_cases():
    p = _problem()
    g2 = mp.TensorGrid([(-1, 1), (-1, 1)], 8, "noflux")
    return [
        ("solve('problem')", lambda: mp.solve("problem"), "refused", "problem"),
        ("solve order=3", lambda: mp.solve(p, order=3), "refused", "order"),
        ("solve order=True", lambda: mp.solve(p, order=True), "refused", "order"),
        ("solve order=2 without a ladder", lambda: mp.solve(p, order=2), "refused", "ladder"),
        ("solve error_estimate='no'", lambda: mp.solve(p, error_estimate="no"), "refused", "error_estimate"),
        ("MFGProblem.replace(nu=-1)", lambda: p.replace(nu=-1.0), "refused", "nu"),
        ("MFGProblem.replace(bogus=1)", lambda: p.replace(bogus=1), "refused", "bogus"),
        ("p.nu = -1 on a copy of a checked problem", lambda: setattr(copy.copy(p), "nu", -1.0), "refused", "replace"),
        ("p.nt = 0 on a checked problem", lambda: setattr(p, "nt", 0), "refused", "replace"),
        ("p.m0[:] = -1 on a checked problem", lambda: p.m0.__setitem__(slice(None), -1.0), "refused", "read-only"),
        ("solve max_iter=-1", lambda: mp.solve(p, max_iter=-1), "refused", "max_iter"),
        ("solve max_iter=2.5", lambda: mp.solve(p, max_iter=2.5), "refused", "max_iter"),
        ("solve max_iter=0", lambda: mp.solve(p, max_iter=0), "ran", ""),
        ("solve damping=5", lambda: mp.solve(p, method="fixed_point", damping=5), "refused", "damping"),
        ("solve viscosity_continuation='yes'", lambda: mp.solve(p, viscosity_continuation="yes"), "refused",
         "viscosity_continuation"),
        ("solve linear_solver='bogus'", lambda: mp.solve(p, linear_solver="bogus"), "refused", "linear_solver"),
        ("solve method='x'", lambda: mp.solve(p, method="x"), "refused", "method"),
        ("solve tol='1e-10'", lambda: mp.solve(p, tol="1e-10"), "refused", "tol"),
        ("solve tol=0", lambda: mp.solve(p, tol=0.0), "refused", "tol"),
        ("solve tol=nan", lambda: mp.solve(p, tol=float("nan")), "refused", "tol"),
        ("solve backend='gpu'", lambda: mp.solve(p, backend="gpu"), "refused", "backend"),
        ("solve grid_sequencing='x'", lambda: mp.solve(p, grid_sequencing="x"), "refused", "grid_sequencing"),
        ("solve initial of the wrong shape", lambda: mp.solve(p, initial=(np.zeros(3), np.zeros(3))), "refused",
         "initial"),
        ("solve petsc_options not a dict", lambda: mp.solve(p, petsc_options="x"), "refused", "petsc_options"),
        ("solve petsc_options on a serial solve", lambda: mp.solve(p, petsc_options={"step_pc_type": "gamg"}), "warned",
         "petsc_options"),
        ("continuation nu = -1", lambda: mp.continuation(p, "nu", [-1.0]), "refused", "nu"),
        ("continuation nu = nan", lambda: mp.continuation(p, "nu", [float("nan")]), "refused", "nu"),
        ("continuation parameter nuu", lambda: mp.continuation(p, "nuu", [1.0]), "refused", "parameter"),
        ("continuation values not numbers", lambda: mp.continuation(p, "nu", ["a"]), "refused", "nu"),
        ("continuation values a string", lambda: mp.continuation(p, "nu", "0.1"), "refused", "nu"),
        ("TensorGrid bounds reversed", lambda: mp.TensorGrid([(1, -1)], 10), "refused", "bounds"),
        ("TensorGrid shape 0", lambda: mp.TensorGrid([(0, 1)], 0), "refused", "shape"),
        ("TensorGrid shape -5", lambda: mp.TensorGrid([(0, 1)], -5), "refused", "shape"),
        ("TensorGrid shape 10.5", lambda: mp.TensorGrid([(0, 1)], 10.5), "refused", "shape"),
        ("TensorGrid boundary 'x'", lambda: mp.TensorGrid([(0, 1)], 10, "x"), "refused", "boundary"),
        ("TensorGrid bounds nan", lambda: mp.TensorGrid([(float("nan"), 1)], 10), "refused", "bounds"),
        ("TensorGrid 4D", lambda: mp.TensorGrid([(0, 1)] * 4, 4), "refused", "dim"),
        ("MFGProblem nu=-1", lambda: _problem(nu=-1.0), "refused", "nu"),
        ("MFGProblem nu=nan", lambda: _problem(nu=float("nan")), "refused", "nu"),
        ("MFGProblem T=0", lambda: _problem(T=0.0), "refused", "T"),
        ("MFGProblem nt=0", lambda: _problem(nt=0), "refused", "nt"),
        ("MFGProblem nt=2.5", lambda: _problem(nt=2.5), "refused", "nt"),
        ("MFGProblem m0 negative", lambda: _problem(m0=lambda x: x), "refused", "m0"),
        ("MFGProblem m0 zero", lambda: _problem(m0=lambda x: 0 * x), "refused", "m0"),
        ("MFGProblem m0 nan array", lambda: _problem(m0=np.full(24, np.nan)), "refused", "m0"),
        ("MFGProblem m0 wrong shape", lambda: _problem(m0=np.ones(7)), "refused", "m0"),
        ("MFGProblem hamiltonian as a string", lambda: _problem(hamiltonian="quadratic"), "refused", "hamiltonian"),
        ("MFGProblem coupling = 42", lambda: _problem(coupling=42), "refused", "coupling"),
        ("MFGProblem grid = list", lambda: _problem(grid=[0, 1]), "refused", "grid"),
        ("MFGProblem drift nan array", lambda: _problem(drift=np.full((1, 24), np.nan)), "refused", "drift"),
        ("MFGProblem drift wrong shape", lambda: _problem(drift=np.ones((2, 24))), "refused", "drift"),
        ("MFGProblem 1D m0 on a 2D grid", lambda: _problem(grid=g2, m0=np.ones(8)), "refused", "m0"),
        ("QuadraticHamiltonian lam=0", lambda: mp.QuadraticHamiltonian(lam=0.0), "refused", "lam"),
        ("QuadraticHamiltonian lam=nan", lambda: mp.QuadraticHamiltonian(lam=float("nan")), "refused", "lam"),
        ("CongestionHamiltonian c0=nan", lambda: mp.CongestionHamiltonian(c0=float("nan")), "refused", "c0"),
        ("CongestionHamiltonian beta='abc'", lambda: mp.CongestionHamiltonian(beta="abc"), "refused", "beta"),
        ("LogCoupling scale=nan", lambda: mp.LogCoupling(scale=float("nan")), "refused", "scale"),
        ("LogCoupling floor=0", lambda: mp.LogCoupling(floor=0.0), "refused", "floor"),
        ("PowerCoupling scale=inf", lambda: mp.PowerCoupling(scale=float("inf")), "refused", "scale"),
        ("PotentialCoupling not callable", lambda: mp.PotentialCoupling("x**2"), "refused", "potential"),
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "bad_inputs"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mfgpde-trial-") as tmp:
        for i, (name, text, extra, expect, word) in enumerate(CONFIG_CASES):
            cfg = os.path.join(tmp, f"case{i}.toml")
            with open(cfg, "w") as fh:
                fh.write(text)
            code, out, escaped = run_cli(_solve_args(cfg, os.path.join(tmp, f"out{i}"), extra))
            verdict = classify_cli(code, out, escaped, expect, word)
            rows.append({"case": name, "via": "config/CLI", "expected": expect, "verdict": verdict, "exit": code,
                         "message": (escaped or out).strip().splitlines()[-1][:200] if (escaped or out).strip() else ""})
        cfg = os.path.join(tmp, "base.toml")
        with open(cfg, "w") as fh:
            fh.write(BASE)
        file_out = os.path.join(tmp, "a-file")
        open(file_out, "w").close()
        verbs = [
            ("config path does not exist", ["solve", os.path.join(tmp, "nope.toml"), "--out", tmp], "refused", "nope"),
            ("config is a folder", ["solve", tmp, "--out", os.path.join(tmp, "o")], "refused", "folder"),
            ("--out is a file", ["solve", cfg, "--out", file_out], "refused", "--out"),
            ("--out below a file", ["solve", cfg, "--out", os.path.join(file_out, "x")], "refused", "--out"),
            ("unknown verb", ["solv", cfg], "refused", "solv"),
            ("sweep --param grid.bounds.0.5=1", ["sweep", cfg, "--out", os.path.join(tmp, "s1"), "--param",
                                                 "grid.bounds.0.5=1"], "refused", "bounds"),
            ("sweep --param repeated", ["sweep", cfg, "--out", os.path.join(tmp, "s2"), "--param", "model.nu=0.1",
                                        "--param", "model.nu=0.2"], "refused", "twice"),
            ("sweep --param unknown key", ["sweep", cfg, "--out", os.path.join(tmp, "s3"), "--param", "model.nuu=0.1"],
             "refused", "nuu"),
            ("sweep --param without values", ["sweep", cfg, "--out", os.path.join(tmp, "s4"), "--param", "model.nu="],
             "refused", "model.nu"),
            ("sweep --param normalize_m0=maybe", ["sweep", cfg, "--out", os.path.join(tmp, "s5"), "--param",
                                                  "normalize_m0=maybe"], "refused", "normalize_m0"),
            ("sweep where every member fails", ["sweep", cfg, "--out", os.path.join(tmp, "s6"), "--param",
                                                "solver.tol=1e-300"], "refused", "0 converged"),
            ("wellposed --starts 0", ["wellposed", cfg, "--out", os.path.join(tmp, "w1"), "--starts", "0"], "refused",
             "starts"),
            ("wellposed --starts -1", ["wellposed", cfg, "--out", os.path.join(tmp, "w2"), "--starts", "-1"], "refused",
             "starts"),
            ("wellposed --nt 0", ["wellposed", cfg, "--out", os.path.join(tmp, "w3"), "--nt", "0"], "refused", "nt"),
            ("wellposed --shape -4", ["wellposed", cfg, "--out", os.path.join(tmp, "w4"), "--shape", "-4"], "refused",
             "shape"),
            ("wellposed --lambdas -1", ["wellposed", cfg, "--out", os.path.join(tmp, "w5"), "--lambdas", "-1"], "refused",
             "lambda"),
            ("validate --model without a colon", ["validate", cfg, "--model", "nomodule", "--out",
                                                  os.path.join(tmp, "v1")], "refused", "model"),
            ("validate --model missing module", ["validate", cfg, "--model", "no_such_module_x:make", "--out",
                                                 os.path.join(tmp, "v2")], "refused", "no_such_module_x"),
            ("validate --model-timeout -1", ["validate", cfg, "--model", "numpy:zeros", "--out", os.path.join(tmp, "v3"),
                                             "--model-timeout", "-1"], "refused", "timeout"),
            ("validate --kind bogus", ["validate", cfg, "--model", "numpy:zeros", "--kind", "bogus", "--out",
                                       os.path.join(tmp, "v4")], "refused", "kind"),
            ("zoo score of an unknown entry", ["zoo", "score", "cnf-moon", "--model", "exact", "--out",
                                               os.path.join(tmp, "z1")], "refused", "did you mean"),
            ("zoo score --kind score on a flow entry", ["zoo", "score", "cnf-moons", "--model", "numpy:zeros",
                                                        "--kind", "score", "--out", os.path.join(tmp, "z2")],
             "refused", "kind"),
            ("zoo score --model exact without one", ["zoo", "score", "cnf-moons", "--model", "exact", "--out",
                                                     os.path.join(tmp, "z3")], "refused", "exact"),
            ("zoo score --model-timeout -1", ["zoo", "score", "c2-score-ou-1d", "--model", "exact",
                                              "--model-timeout", "-1", "--out", os.path.join(tmp, "z4")],
             "refused", "timeout"),
            ("zoo build without names", ["zoo", "build"], "refused", "--all"),
            ("zoo build with names and --all", ["zoo", "build", "c1-cnf-gaussian-1d", "--all"], "refused", "not both"),
        ]
        for name, argv_, expect, word in verbs:
            code, out, escaped = run_cli(argv_)
            verdict = classify_cli(code, out, escaped, expect, word)
            rows.append({"case": name, "via": "CLI verb", "expected": expect, "verdict": verdict, "exit": code,
                         "message": (escaped or out).strip().splitlines()[-1][:200] if (escaped or out).strip() else ""})
    for name, fn, expect, word in api_cases():
        verdict, message = classify_api(fn, expect, word)
        rows.append({"case": name, "via": "Python API", "expected": expect, "verdict": verdict, "exit": None,
                     "message": message.strip().splitlines()[-1][:200] if message.strip() else ""})
    good = {"refused", "warned", "ran"}
    bad = [r for r in rows if r["verdict"] not in good]
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("refused", "warned", "ran", "vague", "traceback", "silent")}
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, "bad_inputs.json"), {"counts": counts, "cases": rows})
    table = markdown_table(["case", "via", "expected", "verdict", "message"],
                           [[r["case"], r["via"], r["expected"], r["verdict"], r["message"]] for r in rows])
    write_report(os.path.join(args.out, "report.md"), "Bad-input trial", [
        ("Counts", f"{len(rows)} inputs: " + ", ".join(f"{k} {v}" for k, v in counts.items())),
        ("Cases", table),
        ("Run time", f"{time.perf_counter() - t0:.0f} s"),
    ])
    print(f"{len(rows)} inputs: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" -> {args.out}/report.md")
    for r in bad:
        print(f"  {r['verdict']:9s} {r['case']}: {r['message']}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
