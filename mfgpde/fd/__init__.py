"""Monotone finite differences on tensor grids: kernels, scheme, linearisation, step solvers, distribution."""
