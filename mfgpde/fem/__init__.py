"""Finite elements on DOLFINx meshes (the ``fem`` extra).

P1 Lagrange with a lumped mass matrix, reduced to the edge graph of the stiffness matrix
(see :mod:`mfgpde.fem.domain` and :mod:`mfgpde.fem.scheme`); Newton is the shared driver with
PETSc GMRES on its systems (see :mod:`mfgpde.fem.linearisation`).
Importing this package does not import DOLFINx; :func:`require_dolfinx` does, with a clear
message when the extra is missing.
"""

from __future__ import annotations

import importlib.util

INSTALL_HINT = ("the FEM backend needs the FEM extra: pip install 'mfgpde[fem]' (DOLFINx 0.11 through "
                "dolfinx-solver-real, Python >= 3.12 only); `make setup` installs it when such a Python is on "
                "the machine")


def fem_available() -> bool:
    """True when DOLFINx can be imported (without importing it)."""
    return importlib.util.find_spec("dolfinx") is not None and importlib.util.find_spec("petsc4py") is not None


def require_dolfinx():
    """Import DOLFINx (mpi4py first, as the wheel requires) or raise a clear ``ImportError``."""
    if not fem_available():
        raise ImportError(INSTALL_HINT)
    import importlib

    importlib.import_module("mpi4py.MPI")  # initialises MPI; must precede the DOLFINx import
    dolfinx = importlib.import_module("dolfinx")
    from ..parallel.stop import release_petsc_signals

    # (DOLFINx initialises PETSc, whose signal handlers would pre-empt the package's)
    release_petsc_signals(importlib.import_module("petsc4py.PETSc"))
    return dolfinx
