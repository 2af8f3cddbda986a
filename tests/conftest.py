import os

import numpy as np
import pytest

# pytest-xdist already runs one test per core: `wellposed` runs its starts one after the other
os.environ.setdefault("MFGPDE_WORKERS", "1")

import mfgpde as mp


def b1_problem(N=200, nt=200):
    g = mp.TensorGrid([(0, 1)], N, "periodic")
    x = g.axes[0]
    return mp.MFGProblem(g, T=1.0, nt=nt, nu=0.05, hamiltonian=mp.CongestionHamiltonian(1, 4, 1.5),
                         m0=np.where((x >= 0.375) & (x <= 0.625), 4.0, 0.0),
                         coupling=mp.PowerCoupling(1.0) + mp.PotentialCoupling(0.1),
                         terminal=lambda x: 10 * np.minimum((x - 0.3) ** 2, (x - 0.7) ** 2), name="B1")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def small_c1_config(tmp_path):
    """The shipped C1 configuration (solvers/cnf_gaussian_1d.toml) at 64 cells x 16 steps, as a file."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = open(os.path.join(root, "solvers", "cnf_gaussian_1d.toml")).read()
    cfg = tmp_path / "c.toml"
    cfg.write_text(text.replace("shape = [200]", "shape = [64]").replace("nt = 48", "nt = 16"))
    return cfg


@pytest.fixture(autouse=True, scope="session")
def _zoo_cache(tmp_path_factory):
    """Zoo references built by the tests (the README's example, ...) go to a temporary cache, not
    the user's ~/.cache/mfgpde (tests that need their own set MFGPDE_CACHE again)."""
    previous = os.environ.get("MFGPDE_CACHE")
    os.environ["MFGPDE_CACHE"] = str(tmp_path_factory.mktemp("zoo-cache"))
    yield
    if previous is None:
        os.environ.pop("MFGPDE_CACHE", None)
    else:
        os.environ["MFGPDE_CACHE"] = previous
