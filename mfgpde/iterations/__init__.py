"""Iterations on the discrete MFG system: they see residuals, Jacobians and half-sweeps only."""

from .base import ConvergenceError, IterationLog
from .contract import Discretisation, NewtonKrylovDiscretisation
from .fixed_point import fixed_point
from .newton import newton

__all__ = ["ConvergenceError", "Discretisation", "IterationLog", "NewtonKrylovDiscretisation", "fixed_point",
           "newton"]
