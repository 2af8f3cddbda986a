"""Memory estimates checked before allocating: a size that cannot fit is refused with numbers.

A grid of 10^10 points or 10^9 time steps used to end in a ``MemoryError`` traceback after
minutes, or in the kernel's OOM killer (exit 137) with nothing said. :func:`require` compares a
lower-bound estimate with the memory the operating system reports as available and raises a
:class:`ValueError` naming both, before anything large is allocated.

Calibration of the space-time estimate (:data:`FLOATS_PER_SPACE_TIME_POINT`): the 2D Newton-Krylov
solve at 128^2 x 128 (2.1 million space-time points) peaked at 2.4 GB here (about 140 float64 per
point, most of it the GMRES basis). The estimate uses 64, a lower bound, so that no solve that
fits is refused; a request refused by it cannot fit.
"""

from __future__ import annotations

import os

#: float64 values per space-time point that any FD solve holds at once (U, m, residuals, the
#: Newton step and line-search copies, per-step stencils, part of the Krylov basis)
FLOATS_PER_SPACE_TIME_POINT = 64
#: float64 values per grid point held by a grid and a problem (coordinates, stencils, m0, fields)
FLOATS_PER_GRID_POINT = 16


def available_bytes():
    """Memory available to a new allocation (``MemAvailable`` on Linux; total RAM elsewhere), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n):
    return f"{n / 2**30:.3g} GiB"


def require(nbytes, what):
    """Raise ``ValueError`` when ``nbytes`` (a lower-bound estimate) exceeds the available memory.

    Parameters
    ----------
    nbytes : int
        Estimated bytes.
    what : str
        What needs them, e.g. ``"a grid of shape (100000, 100000)"``; named in the message.
    """
    avail = available_bytes()
    if avail is not None and nbytes > avail:
        raise ValueError(f"{what} needs at least {_gib(nbytes)} of memory (estimate) but {_gib(avail)} is available; "
                         "use a coarser grid or fewer time steps (or a distributed FEM solve under mpiexec)")
