"""Generative models as MFGs: energies, presets (CNF, score, JKO), densities and transport."""
