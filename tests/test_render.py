"""The figure worker of ``mfgpde solve`` (mfgpde.render): it draws what the solver's own process
draws, from the fields alone, and a figure that fails fails the command."""

import os

import numpy as np
import pytest

import mfgpde as mp
from mfgpde.render import FigureProcess


@pytest.fixture(scope="module")
def small():
    g = mp.TensorGrid([(0, 1)], 32, "periodic")
    p = mp.MFGProblem(g, T=0.2, nt=8, nu=0.1, hamiltonian=mp.QuadraticHamiltonian(),
                      m0=lambda x: 1 + 0.5 * np.cos(2 * np.pi * x), coupling=mp.LogCoupling(), name="small")
    return mp.solve(p, tol=1e-10)


def test_the_worker_draws_a_solution_and_an_ergodic_figure(small, tmp_path):
    """The problem's functions (lambdas) are not sent: the worker gets arrays only."""
    with FigureProcess() as fig:
        fig.draw(small, tmp_path / "a.png")
        fig.wait()
    small.plot(str(tmp_path / "b.png"))        # the same figure drawn in this process
    a, b = (tmp_path / "a.png").stat().st_size, (tmp_path / "b.png").stat().st_size
    assert a > 10_000 and abs(a - b) < 0.05 * b
    g = mp.TensorGrid([(-3, 3)], 40, "noflux")
    erg = mp.solve(mp.ErgodicMFGProblem(g, 0.5, mp.QuadraticHamiltonian(),
                                        coupling=mp.LogCoupling() + mp.PotentialCoupling(lambda x: x**2 / 2)))
    with FigureProcess() as fig:
        fig.draw(erg, tmp_path / "e.png")
        fig.wait()
    assert (tmp_path / "e.png").stat().st_size > 10_000


def test_a_figure_that_fails_raises_with_the_workers_message(small, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with FigureProcess() as fig:
        fig.draw(small, tmp_path / "file" / "a.png")        # a file where the folder should be
        with pytest.raises(RuntimeError, match="the figure could not be drawn: FileExistsError"):
            fig.wait()


def test_a_worker_without_a_job_ends_when_closed():
    fig = FigureProcess()
    fig.close()
    assert fig.proc.returncode is not None


def test_the_worker_is_skipped_when_not_wanted(monkeypatch):
    assert FigureProcess.wanted(False, serial=True) is None
    assert FigureProcess.wanted(True, serial=False) is None
    monkeypatch.setenv("MFGPDE_FIGURE_PROCESS", "0")
    assert FigureProcess.wanted(True, serial=True) is None
    monkeypatch.delenv("MFGPDE_FIGURE_PROCESS")
    fig = FigureProcess.wanted(True, serial=True)
    assert isinstance(fig, FigureProcess)
    fig.close()
    assert os.environ.get("MFGPDE_FIGURE_PROCESS") is None


def test_fields_that_do_not_pickle_are_drawn_by_the_caller(small):
    """draw() sends nothing and says so: the CLI then draws the figure in its own process."""
    from types import SimpleNamespace

    odd = SimpleNamespace(problem=small.problem, grid=small.grid, times=small.times, m=small.m, U=small.U,
                          history=lambda: None, diagnostics=small.diagnostics)
    with FigureProcess() as fig:
        assert fig.draw(odd, "unused.png") is False and not fig.sent


def test_a_worker_that_died_leaves_the_figure_to_the_caller(small):
    fig = FigureProcess()
    fig.proc.kill()
    fig.proc.wait()
    assert fig.draw(small, "unused.png") is False and not fig.sent
    fig.close()
