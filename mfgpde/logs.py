"""Progress and diagnostics through :mod:`logging`: one logger per module, rank 0 only.

Every module logs to ``logging.getLogger(__name__)`` (children of the ``"mfgpde"`` logger). A
library does not configure logging for its user; two exceptions keep the package usable
without set-up: a solve asked for progress (``verbose=True``) and the command line attach one
stderr handler to ``"mfgpde"`` when neither it nor the root logger has one. Under ``mpiexec``
that handler passes the records of rank 0 only (:class:`RankZeroFilter`): every rank runs the
same iteration and would print the same line N times.
"""

from __future__ import annotations

import logging
import os
import sys
import time

PACKAGE = "mfgpde"
#: environment variables that carry the MPI rank (MPICH/Hydra, Open MPI, PMIx), read without
#: importing mpi4py (which would initialise MPI)
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


def mpi_rank():
    """The rank of this process under ``mpiexec`` (0 without one)."""
    for var in RANK_VARIABLES:
        value = os.environ.get(var)
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0


class RankZeroFilter(logging.Filter):
    """Pass the records of MPI rank 0 only."""

    def filter(self, record):
        return mpi_rank() == 0


class _Handler(logging.StreamHandler):
    """The package's own stderr handler (recognised so that it is attached once)."""


def enable(level=logging.INFO):
    """Show the package's records at ``level`` and above on stderr (rank 0), once.

    Does nothing to the handlers when the application configured logging itself (a handler on
    ``"mfgpde"`` or on the root logger); the level of ``"mfgpde"`` is set either way.
    """
    logger = logging.getLogger(PACKAGE)
    logger.setLevel(level)
    if any(isinstance(h, _Handler) for h in logger.handlers):
        return logger
    if logger.handlers or logging.getLogger().handlers:
        return logger
    handler = _Handler(sys.stderr)
    handler.setFormatter(logging.Formatter("[mfgpde] %(message)s"))
    handler.addFilter(RankZeroFilter())
    logger.addHandler(handler)
    return logger


class Progress:
    """How far a job of ``total`` items is: ``what: k of n (label), elapsed T s, about R s left``.

    One record per finished item through ``logger`` (rank 0's reach stderr with the package's
    handler). The time left assumes the items left cost what the finished ones did on average,
    which the record says ("about"): members of a sweep in nu or in the grid size do not.
    """

    def __init__(self, logger, what, total):
        self.logger, self.what, self.total = logger, what, int(total)
        self.done_items, self.t0 = 0, time.monotonic()

    def done(self, label=""):
        """Record one finished item (``label`` says which and how it ended)."""
        self.done_items += 1
        elapsed = time.monotonic() - self.t0
        left = elapsed / self.done_items * (self.total - self.done_items)
        self.logger.info("%s: %d of %d%s, elapsed %.1f s%s", self.what, self.done_items, self.total,
                         f" ({label})" if label else "", elapsed,
                         f", about {left:.0f} s left" if self.done_items < self.total else "")
