"""PETSc for the distributed finite-difference scheme: import, options and the step solver.

Options follow the DOLFINx pattern: a scheme keeps the user's options (``check_options``) and
pushes those of one prefix into PETSc's database only around each ``setFromOptions``
(:func:`options_pushed`), so nested schemes cannot
remove each other's. :class:`StepSolver` solves one step operator given as a stencil on the
ghosted patch with a PETSc KSP (``mfgpde_sweep_`` for the half-sweeps, ``mfgpde_step_`` for the
Newton preconditioner's steps).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..iterations.base import ConvergenceError

#: Relative tolerance of the accurate step solves (half-sweeps); the serial iterative step
#: solves run to 1e-13 (:mod:`mfgpde.fd.linear`).
STEP_RTOL = 1e-12
#: Relative tolerance of the preconditioner's step solves: the serial preconditioner applies
#: two V-cycles (a contraction of ~0.04); FGMRES tolerates an inexact, varying preconditioner.
PC_STEP_RTOL = 1e-3
OPTIONS_PREFIX = "mfgpde_"
INSTALL_HINT = ("a distributed finite-difference solve needs petsc4py (and mpi4py): pip install 'mfgpde[fem]' "
                "(PETSc through dolfinx-solver-real, Python >= 3.12)")


def _petsc():
    try:
        from mpi4py import MPI  # noqa: F401  (initialises MPI before PETSc)
        from petsc4py import PETSc
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(INSTALL_HINT) from exc
    from ..parallel.stop import release_petsc_signals

    release_petsc_signals(PETSc)  # (SIGINT / SIGTERM are the package's: exit codes 130 / 143, every rank)
    return PETSc


def petsc_available() -> bool:
    """True when petsc4py and mpi4py can be imported (without importing them)."""
    import importlib.util

    return importlib.util.find_spec("petsc4py") is not None and importlib.util.find_spec("mpi4py") is not None


def check_options(options):
    """``petsc_options`` -> ``{"mfgpde_<key>": value}``, refusing keys outside the three solvers."""
    if not isinstance(options, dict):
        raise TypeError(f"petsc_options must be a dict, got {type(options).__name__}")
    out = {}
    for key, value in options.items():
        key = str(key).lstrip("-")
        if key.startswith(OPTIONS_PREFIX):
            key = key[len(OPTIONS_PREFIX):]
        if not key.startswith(("step_", "sweep_", "newton_")):
            raise ValueError(f"petsc_options: {key!r} must start with 'step_' (the step solves of the Newton "
                             "preconditioner), 'sweep_' (the accurate step solves of the half-sweeps) or 'newton_' "
                             "(the Newton systems' FGMRES)")
        out[OPTIONS_PREFIX + key] = "" if value is None else str(value)
    return out


@contextlib.contextmanager
def options_pushed(options, prefix):
    """The checked ``options`` (:func:`check_options`) under ``prefix`` in PETSc's options
    database for the duration of the block: pushed on entry, removed on exit, and a value the
    database held before (e.g. from the command line) restored. The DOLFINx pattern: options live
    in the object that owns them, so two schemes alive at once cannot remove each other's.
    """
    db = _petsc().Options()
    mine = {k: v for k, v in options.items() if k.startswith(prefix)}
    before = {k: db.getString(k) for k in mine if db.hasName(k)}
    for key, value in mine.items():
        db[key] = value
    try:
        yield mine
    finally:
        for key in mine:
            db.delValue(key)
            if key in before:
                db[key] = before[key]


def probe_options(options, comm):
    """Refuse PETSc options that PETSc itself rejects, before any solve (collective over ``comm``).

    ``options``: the checked dict of :func:`check_options`. The step and sweep options are set on a
    KSP of the kind the scheme builds (GMRES, block Jacobi) for a one-row-per-rank identity,
    which is set up and solved once; the Newton options on an FGMRES KSP of a shell matrix.
    A value PETSc refuses (an unknown ``pc_type``, a non-number where a number is expected) used
    to surface as a ``singular_jacobian`` status after the solve had run.
    """
    if not options:
        return
    PETSc = _petsc()
    pcomm = PETSc.Comm(comm)
    for group in ("step_", "sweep_", "newton_"):
        mine = {k: v for k, v in options.items() if k.startswith(OPTIONS_PREFIX + group)}
        if not mine:
            continue
        objs = []
        try:
            with options_pushed(mine, OPTIONS_PREFIX + group):
                _probe_ksp(PETSc, pcomm, group, objs)
        except PETSc.Error as exc:
            given = ", ".join(f"{k[len(OPTIONS_PREFIX):]}={v}" if v else k[len(OPTIONS_PREFIX):] for k, v in mine.items())
            raise ValueError(f"petsc_options: PETSc refused the {group[:-1]} options ({given}): PETSc error code "
                             f"{exc.ierr}; see the PETSc manual for the accepted values") from None
        finally:
            for obj in objs:
                obj.destroy()


def _probe_ksp(PETSc, pcomm, group, objs):
    """Set up and run once a KSP of the kind the scheme builds for ``group``, from the options
    database (on a one-row-per-rank identity); the PETSc objects are appended to ``objs``.
    """
    A = PETSc.Mat().createAIJ(((1, None), (1, None)), nnz=1, comm=pcomm)
    objs.append(A)
    A.setValue(A.getOwnershipRange()[0], A.getOwnershipRange()[0], 1.0)
    A.assemble()
    ksp = PETSc.KSP().create(comm=pcomm)
    objs.append(ksp)
    ksp.setOptionsPrefix(OPTIONS_PREFIX + group)
    ksp.setType(PETSc.KSP.Type.FGMRES if group == "newton_" else PETSc.KSP.Type.GMRES)
    if group != "newton_":
        ksp.getPC().setType(PETSc.PC.Type.BJACOBI)
    ksp.setOperators(A)
    ksp.setFromOptions()
    x, b = A.createVecs()
    objs += [x, b]
    b.set(1.0)
    ksp.solve(b, x)


class StepSolver:
    """Distributed solves of one step operator given as a stencil on the ghosted patch.

    AIJ matrices preallocated once from the stencil pattern (local indices, COO), whose values are
    replaced per step: one with its KSP for the accurate half-sweep steps (prefix
    ``mfgpde_sweep_``), one for the preconditioner's steps (prefix ``mfgpde_step_``).
    """

    def __init__(self, scheme):
        PETSc = scheme.PETSc
        self.PETSc, self.scheme = PETSc, scheme
        cols = scheme.patch.stencil[0]
        _, hm, hp = scheme.patch.stencil
        own = scheme.owned
        rows = np.repeat(own, cols.shape[1]).astype(PETSc.IntType)
        c = cols[own].copy()
        for k in range(scheme.grid.dim):  # neighbours across a wall (or the patch edge) carry no entry
            c[~hm[k][own], 1 + 2 * k] = -1
            c[~hp[k][own], 2 + 2 * k] = -1
        self.rows, self.cols = rows, c.ravel().astype(PETSc.IntType)
        self.lgmap = scheme.da.getLGMap()
        self.A, self.ksp = self._matrix(), None
        self.x, self.b = self.A.createVecs()
        self.pc_A = self.pc_ksp = None

    def _matrix(self):
        PETSc, s = self.PETSc, self.scheme
        A = PETSc.Mat().create(comm=s.pcomm)
        A.setSizes(((s.N, s.grid.size), (s.N, s.grid.size)))
        A.setType(PETSc.Mat.Type.AIJ)
        A.setLGMap(self.lgmap, self.lgmap)
        # (PETSc maps the index arrays to global indices in place: hand it copies)
        A.setPreallocationCOOLocal(self.rows.copy(), self.cols.copy())
        return A

    def _ksp(self, A, rtol, prefix):
        PETSc = self.PETSc
        ksp = PETSc.KSP().create(comm=self.scheme.pcomm)
        ksp.setOptionsPrefix(OPTIONS_PREFIX + prefix)
        ksp.setType(PETSc.KSP.Type.GMRES)
        ksp.getPC().setType(PETSc.PC.Type.BJACOBI)
        ksp.setTolerances(rtol=rtol, atol=0.0, max_it=2000)
        ksp.setOperators(A)
        with self.scheme.options_scope(OPTIONS_PREFIX + prefix):
            ksp.setFromOptions()
        return ksp

    def _run(self, ksp, b, x, rhs, what):
        b.getArray()[:] = rhs
        x.set(0.0)
        ksp.solve(b, x)
        reason = ksp.getConvergedReason()
        if reason < 0 and reason != self.PETSc.KSP.ConvergedReason.DIVERGED_ITS:
            raise ConvergenceError(f"{what}: the distributed step solve failed (PETSc KSP reason {reason}, "
                                   f"{ksp.getIterationNumber()} iterations)")
        out = x.getArray(readonly=True).copy()
        return out

    def solve(self, vals, rhs, rtol):
        """Solve ``A x = rhs`` for one stencil operator ``vals`` (N_patch, s); x at owned points."""
        own = self.scheme.owned
        self.A.setValuesCOO(np.ascontiguousarray(vals[own]).ravel())
        if self.ksp is None:
            self.ksp = self._ksp(self.A, rtol, "sweep_")
        else:
            self.ksp.setOperators(self.A)
        self.ksp.setTolerances(rtol=rtol)
        x = self._run(self.ksp, self.b, self.x, rhs, "half-sweep")
        if not np.all(np.isfinite(x)):
            raise ConvergenceError("half-sweep: the distributed step solve produced non-finite values")
        return x

    def apply(self, vals, rhs):
        """One step of the Newton preconditioner: ``A x = rhs`` to ``PC_STEP_RTOL``.

        One matrix and one KSP serve every step: the values are replaced (same pattern) instead of
        keeping 2 N_t matrices, their preconditioners and Krylov work vectors (gigabytes at
        128^2 x 128).
        """
        if self.pc_ksp is None:
            self.pc_A = self._matrix()
            self.pc_ksp = self._ksp(self.pc_A, PC_STEP_RTOL, "step_")
        self.pc_A.setValuesCOO(np.ascontiguousarray(vals[self.scheme.owned]).ravel())
        self.pc_ksp.setOperators(self.pc_A)
        return self._run(self.pc_ksp, self.b, self.x, rhs, "Newton preconditioner")

    def destroy(self):
        for obj in (self.ksp, self.A, self.pc_ksp, self.pc_A, self.x, self.b):
            if obj is not None:
                obj.destroy()
        self.ksp = self.A = self.pc_ksp = self.pc_A = self.x = self.b = None
