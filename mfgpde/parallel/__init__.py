"""MPI parameter sweeps: independent members spread over the ranks (the ``sweep`` verb)."""
