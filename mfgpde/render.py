"""Figures drawn in a second process while the solver writes its other outputs.

``mfgpde solve`` writes a NetCDF file, a figure and a summary. Drawing the figure is the
largest part of a small solve's run as a whole process (B1, measured on 2 cores: importing
matplotlib 0.4 s and drawing 0.5 s, of about 2.3 s), and it needs nothing of the solve but
its arrays. :class:`FigureProcess` starts a Python process when the command starts; it imports
matplotlib while the parent imports the solver and solves, receives the fields (a pickle of
plain arrays, not the problem, whose functions need not be picklable) and draws while the
parent writes the NetCDF file. The parent waits for it before publishing the outputs, so the
folder is complete or absent as before, and a figure that fails fails the command as before.

Run as ``python -m mfgpde.render``: the worker (reads one job from stdin).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from types import SimpleNamespace

#: the attributes the figure functions read (:mod:`mfgpde.plotting`)
FIELDS = ("grid", "times", "m", "U", "u", "rho", "history", "diagnostics", "companion", "coords", "cells")

#: set to "0" to draw in the solver's own process (``mfgpde solve`` then runs as before)
ENV = "MFGPDE_FIGURE_PROCESS"


def _payload(result):
    """The figure's data: plain arrays and dicts (a grid pickles; a problem's callables may not)."""
    data = {k: getattr(result, k) for k in FIELDS if hasattr(result, k)}
    if getattr(data.get("grid"), "is_mesh", False):
        del data["grid"]           # a mesh result is drawn from its coordinates (a DOLFINx mesh does not pickle)
    data["problem"] = SimpleNamespace(name=result.problem.name)
    data["kind"] = "ergodic" if hasattr(result, "rho") else "evolutive"
    return data


class FigureProcess:
    """A worker process that draws one solution figure (see the module docstring).

    Use as a context manager: leaving it kills a worker that was not waited for.
    """

    def __init__(self):
        env = dict(os.environ, MPLBACKEND="Agg")
        self.proc = subprocess.Popen([sys.executable, "-m", "mfgpde.render"], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        self.sent = False

    @classmethod
    def wanted(cls, plot, serial):
        """A worker for a serial run that draws a figure, unless ``MFGPDE_FIGURE_PROCESS=0``."""
        if not plot or not serial or os.environ.get(ENV, "1") == "0":
            return None
        try:
            return cls()
        except OSError:          # no process to spare: draw in this one
            return None

    def draw(self, result, path):
        """Send the job: ``result``'s figure to ``path`` (drawn while the caller goes on).

        Returns False when the fields cannot be pickled or the worker is gone (it failed to
        start, or was killed): the caller then draws the figure itself.
        """
        try:
            job = pickle.dumps((_payload(result), os.fspath(path)), protocol=pickle.HIGHEST_PROTOCOL)
        except (TypeError, AttributeError, pickle.PicklingError):
            return False
        if self.proc.poll() is not None:
            # gone already: writing would raise BrokenPipeError, or end a process whose SIGPIPE is
            # not ignored (Python ignores it; a host such as a test runner's worker may not)
            return False
        try:
            self.proc.stdin.write(job)
            self.proc.stdin.close()
        except OSError:              # (BrokenPipeError: the worker ended before its job)
            return False
        self.sent = True
        return True

    def wait(self):
        """Wait for the figure; raise ``RuntimeError`` with the worker's message if it failed."""
        err = self.proc.stderr.read().decode(errors="replace")
        if self.proc.wait() != 0:
            raise RuntimeError(f"the figure could not be drawn: {err.strip().splitlines()[-1] if err.strip() else ''}"
                               f" (exit {self.proc.returncode})")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _work():
    # import the figure machinery before the job arrives: this is what runs beside the solve
    from . import plotting

    plotting._mpl()
    job = sys.stdin.buffer.read()
    if not job:                       # the parent ended without a figure (an error, --no-plot)
        return 0
    data, path = pickle.loads(job)
    kind = data.pop("kind")
    result = SimpleNamespace(**data)
    result.error_estimate = result.diagnostics.get("error_estimate")
    if kind == "ergodic":
        plotting.plot_ergodic(result, path)
    else:
        plotting.plot_result(result, path=path)
    return 0


if __name__ == "__main__":
    sys.exit(_work())
