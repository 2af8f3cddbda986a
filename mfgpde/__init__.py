"""mfgpde: mean-field game PDE systems solved with classical discretisations.

>>> import mfgpde as mp
>>> grid = mp.TensorGrid([(0, 1)], 100, "periodic")
>>> problem = mp.MFGProblem(grid, T=1.0, nt=50, nu=0.05, hamiltonian=mp.QuadraticHamiltonian(),
...                         m0=lambda x: 1 + 0.5 * np.cos(2 * np.pi * x), coupling=mp.LogCoupling())
>>> result = mp.solve(problem, method="newton")   # doctest: +SKIP
"""

import os as _os

# Under mpiexec every rank is one process per core: BLAS/OpenMP thread pools would oversubscribe
# the cores and their spinning threads slow the other ranks down (measured: an FP sweep on 2
# ranks took 6.2 s instead of 0.3 s). Must happen before numpy is imported; the user's
# explicit settings win.
if any(int(_os.environ.get(v, "1") or 1) > 1 for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")):
    for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        _os.environ.setdefault(_v, "1")

from . import lazy as _lazy

__version__ = "0.1.0"

#: public name -> the module that defines it. Loaded on first use (PEP 562): ``import mfgpde``
#: and ``mfgpde --help`` stay free of NumPy, SciPy and Numba until a name is used (the eager
#: imports cost 1.5 s, mostly Numba and SciPy, on every CLI start).
_LAZY = {
    **dict.fromkeys(["CallableCoupling", "ConvolutionCoupling", "Coupling", "LogCoupling", "PotentialCoupling",
                     "PowerCoupling", "ZeroCoupling", "gaussian_log_density", "kl_terminal"], ".couplings"),
    "TensorGrid": ".grid",
    **dict.fromkeys(["CongestionHamiltonian", "CustomHamiltonian", "Hamiltonian", "PowerHamiltonian",
                     "QuadraticHamiltonian"], ".hamiltonians"),
    "ConvergenceError": ".iterations.base",
    "ErgodicMFGProblem": ".problem", "MFGProblem": ".problem",
    "MFGResult": ".result",
    "continuation": ".solver", "solve": ".solver",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = _lazy.attach(__name__, _LAZY)
