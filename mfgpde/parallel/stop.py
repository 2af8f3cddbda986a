"""Ranks that stop together: under ``mpiexec``, an error, SIGINT or SIGTERM on one rank ends every rank.

MPI collectives wait for every rank. A rank that stops alone (an exception, Ctrl-C, a batch
system's SIGTERM to one process) leaves the others waiting in their next collective for ever, and
on a cluster the hang burns the allocation. :class:`StopTogether` closes both paths:

* **Signals.** ``signal.set_wakeup_fd`` makes the interpreter's C-level handler write the signal
  number to a pipe the moment the signal arrives, even while the main thread is blocked inside an
  MPI call (where Python-level handlers cannot run). The main thread itself goes on (its Python
  handlers do nothing: an exception there would leave it between two collectives, and its
  clean-up would wait for the other ranks for ever); a watcher thread reads the pipe and calls
  ``MPI_Abort`` on ``COMM_WORLD`` with the documented exit code (130 for SIGINT, 143 for SIGTERM),
  which the process manager propagates to every rank and to ``mpiexec``. An abort waits for a
  critical section in progress (the swap of finished outputs into place, :meth:`critical`), so
  the previous results are either all old or all new.
* **Errors.** A rank that reports an error calls :meth:`failed`: a non-blocking barrier on a
  private duplicate of the communicator (so it cannot match a collective of the solver) waits
  :data:`GRACE_S` seconds for every rank to fail too, which is what happens when the error is
  reached collectively (each rank then prints it and exits 1 normally); otherwise the rank
  aborts them all.

PETSc installs its own handlers for these signals when it is initialised (and then ends the job
with exit 59 and an error dump); :func:`release_petsc_signals` removes them and re-arms Python's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

#: Exit codes of the signals that stop a job (the shell's 128 + signal number).
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
#: Seconds a failing rank waits for the others to fail as well before it aborts them.
GRACE_S = 5.0
#: Environment variables that process managers set in every rank they start (MPICH's Hydra and
#: PMI, Open MPI, PMIx, Slurm's srun): without any of them there is one process, and mpi4py
#: (whose import initialises MPI) is not imported just to find that out.
LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "SLURM_PROCID")


def launched_by_mpiexec() -> bool:
    """True when a process manager started this process (see :data:`LAUNCHER_VARIABLES`)."""
    return any(v in os.environ for v in LAUNCHER_VARIABLES)


class StopTogether:
    """Abort every rank of ``comm`` when one of them is signalled or fails alone.

    Create it on every rank (the constructor duplicates ``comm``, a collective), in the main
    thread; :meth:`close` restores the signal wake-up descriptor.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        Usually ``MPI.COMM_WORLD``.
    grace : float
        Seconds :meth:`failed` waits for the other ranks.
    """

    def __init__(self, comm, grace=GRACE_S):
        self.comm = comm
        self.grace = float(grace)
        self._private = comm.Dup()
        self._critical = threading.Lock()
        self._read, write = os.pipe()
        os.set_blocking(write, False)
        self._write = write
        self._previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        # the main thread must not stop by itself: an exception raised at a signal leaves the
        # solver between two collectives, and its clean-up (PETSc's collective destroys, which
        # hold the interpreter lock) then waits for the other ranks for ever, so the watcher
        # never gets the lock to abort (seen: 3 hangs in 24 signalled runs). The handlers do
        # nothing; the interpreter's C-level handler still wakes the watcher.
        self._previous_handlers = {signum: signal.signal(signum, _ignore) for signum in EXIT_CODES}
        self._thread = threading.Thread(target=self._watch, name="mfgpde-stop-together", daemon=True)
        self._thread.start()

    @classmethod
    def install(cls, grace=GRACE_S):
        """A :class:`StopTogether` on ``COMM_WORLD`` when this process is one of several ranks,
        else None (a single process stops by itself).
        """
        if not launched_by_mpiexec() or threading.current_thread() is not threading.main_thread():
            return None
        from mpi4py import MPI

        if MPI.COMM_WORLD.size < 2:
            return None
        return cls(MPI.COMM_WORLD, grace)

    def _watch(self):
        while True:
            try:
                data = os.read(self._read, 1)
            except OSError:  # the pipe was closed by close()
                return
            if not data:
                return
            signum = data[0]
            if signum in EXIT_CODES:
                self.abort(EXIT_CODES[signum], f"{signal.Signals(signum).name} on rank {self.comm.rank}")

    @contextlib.contextmanager
    def critical(self):
        """A section an abort waits for (at most 60 s): the swap of finished outputs into place."""
        with self._critical:
            yield

    def abort(self, code, why):
        """Print why, then end every rank with exit ``code`` (``MPI_Abort``)."""
        got = self._critical.acquire(timeout=60.0)
        try:
            print(f"mfgpde: {why}: stopping all {self.comm.size} ranks (exit {code})", file=sys.stderr, flush=True)
            self.comm.Abort(code)
        finally:  # (Abort does not return; kept for form)
            if got:
                self._critical.release()

    def failed(self, code=1):
        """Report that this rank failed: wait :attr:`grace` seconds for every rank to fail too
        (an error reached collectively); if some rank goes on (it would wait for this one in its
        next collective), abort them all with ``code``.
        """
        request = self._private.Ibarrier()
        deadline = time.monotonic() + self.grace
        while not request.Test():
            if time.monotonic() > deadline:
                self.abort(code, f"an error on rank {self.comm.rank} that the other ranks did not reach")
            time.sleep(0.01)

    def close(self):
        """Release what the job holds, at the same point on every rank, and restore the wake-up
        descriptor.

        PETSc objects left in reference cycles (the frames of a caught PETSc error hold a KSP)
        would otherwise be destroyed during interpreter shutdown, in an order that differs between
        the ranks: their destroys are collective, and the ranks deadlocked there (a solve ended by
        an unknown ``--petsc-option`` pc type never exited). A collection here destroys them in
        step; without DOLFINx (whose objects outlive this call) PETSc is also finalised here, so
        anything left is not destroyed later at all.
        """
        import gc

        gc.collect()
        petsc = sys.modules.get("petsc4py.PETSc")
        if petsc is not None and "dolfinx" not in sys.modules and hasattr(petsc, "_finalize"):
            petsc._finalize()
        with contextlib.suppress(ValueError):  # (not in the main thread: nothing was set there)
            signal.set_wakeup_fd(self._previous_fd)
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        with contextlib.suppress(OSError):
            os.close(self._write)


def _ignore(signum, frame):
    """The Python-level handler while a :class:`StopTogether` watches (see its constructor)."""


_released = False


def release_petsc_signals(PETSc):
    """Remove the signal handlers PETSc installed at its initialisation and re-arm Python's.

    PETSc's handler catches SIGTERM and SIGINT, prints an error dump and calls ``MPI_Abort`` with
    exit 59, pre-empting the package's handlers (143 / 130, staging clean-up, aborting the other
    ranks). Safe to call more than once; does nothing outside the main thread.
    """
    global _released
    if _released or threading.current_thread() is not threading.main_thread():
        return
    _released = True
    PETSc.Sys.popSignalHandler()
    for signum in EXIT_CODES:
        handler = signal.getsignal(signum)
        if handler is None:  # not set from Python: leave it
            continue
        signal.signal(signum, handler)  # re-installs the interpreter's C-level handler for it
