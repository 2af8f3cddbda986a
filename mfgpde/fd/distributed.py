"""The finite-difference scheme distributed over MPI ranks on a PETSc DMDA.

The tensor grid is split into boxes, one per rank, by a PETSc ``DMDA`` (petsc4py). Each rank
holds its owned points and a halo of ghost layers, refreshed by the DMDA's ghost exchange
(periodic axes wrap). The system needs **two** layers, not one, because the FP operator is the
adjoint of the linearised HJB operator: ``(A^T m)_i = sum_j A_ji m_j`` needs the stencil row of
every neighbour ``j`` of an owned point, and row ``j`` needs ``U`` at the neighbours of ``j``.
Where the boxes are wide enough the halo has :data:`OVERLAP` layers: the patch is also the
overlapping subdomain of the preconditioner's multigrid step solves.

On its ghosted patch every rank runs the serial Numba kernels unchanged
(:class:`mfgpde.fd.scheme.FDScheme` on a :class:`mfgpde.fd.patch.PatchGrid`, whose stencil stops at the patch
edge), and keeps only the values at its owned points: those are exact, the values on the
outermost ghost layer are not and are never used. So the discrete system is the serial one,
point for point, and a distributed solve reaches the serial solution to the solver tolerance.

What is distributed, and by whom:

* the space-time unknowns: every rank holds ``(N_t + 1, N_owned)`` slices of U and m;
* ghost exchange and the natural-order gather: the DMDA (``globalToLocal``, ``globalToNatural``);
* the Newton systems: PETSc FGMRES on a shell matrix (the matrix-free linearisation of
  :mod:`mfgpde.fd.linearisation` on each patch) with a shell preconditioner, the same
  block-triangular backward-HJB / forward-FP sweep as the serial solver
  (:mod:`mfgpde.fd.krylov`);
* the spatial step solves of that sweep: by default two V-cycles of the serial aggregation
  multigrid (:mod:`mfgpde.fd.multigrid`) on every rank's ghosted patch, of which the owned values
  are kept (a restricted additive Schwarz step with the patch as overlapping subdomain: one
  ghost exchange per step, no Krylov solve per step). Steps where the patch V-cycles do not
  contract (on any rank) are PETSc solves, as are all of them when ``petsc_options`` configure
  the step solver (``step_...`` keys);
* the spatial step solves of the half-sweeps, and those PETSc step solves: PETSc KSP on per-step
  AIJ matrices assembled from the stencils (``setValuesCOO``), GMRES with block Jacobi / ILU(0)
  by default, changeable through the PETSc options database under the prefixes
  ``mfgpde_step_`` (the preconditioner's steps), ``mfgpde_sweep_`` (the half-sweeps' steps) and
  ``mfgpde_newton_`` (the outer FGMRES), e.g. ``petsc_options={"step_pc_type": "gamg"}``;
* reductions (norms, the line search's merit, mass): ``MPI_Allreduce`` on scalars.

The Newton iteration itself is :func:`mfgpde.iterations.newton.newton`, the serial driver: this
scheme offers the same contract (residual, collective norm, half-sweeps, linearisation) plus
:meth:`DistributedFDScheme.solve_newton_system`, the backend's linear algebra.

Limits: time-dependent problems with ``nu > 0`` and local couplings (a convolution coupling needs
all of m on every rank); every rank's box must be at least two points wide along every axis.
"""

from __future__ import annotations

import numpy as np

from ..grid import TensorGrid
from ..iterations.implicit_step import MAX_NEWTON, check_sweep_data, round_off_tolerance, solve_implicit_step
from ..iterations.petsc_krylov import ShellNewtonSystem
from ..iterations.preconditioner import block_triangular_sweep
from ..iterations.sequencing import sequenced_newton
from ..options import SolveOptions
from ..result import MFGResult
from . import kernels
from .krylov import MG_CONTRACTION_LIMIT, MG_CYCLES
from .linearisation import Linearisation
from .patch import LocalProblem, PatchGrid
from .petsc import OPTIONS_PREFIX, STEP_RTOL, StepSolver, check_options, options_pushed
from .petsc import _petsc as petsc_module
from .scheme import FDScheme
from .solve import solve_fd

#: Ghost layers the discrete system needs (see the module docstring for why two).
GHOST = 2
#: Ghost layers asked for, by dimension, where every rank's box is this wide. The patch is also
#: the subdomain of the preconditioner's multigrid steps: a wider overlap brings them closer to
#: the global step solve, and costs redundant work on the ghosts, which grows like the patch's
#: surface. Measured on 2 ranks (2-core machine, time / Krylov iterations per fine Newton step):
#: LOG2D 128^2 with 2 / 4 / 8 layers 22.5-26.2 s (15-19) / 17.6-19.4 s (11-15) / 18.2-20.9 s
#: (9-13), the serial solver 20.9-22.8 s (9-13); CUBE3D 32^3 with 2 / 4 / 8 layers 7.7 / 9.8 /
#: 15.5 s (a 16 x 32 x 32 box: 8 layers make its patch 4.5 times the box).
OVERLAP = {1: 8, 2: 4, 3: 2}


class _TooSmall(ValueError):
    """The grid has fewer than :data:`GHOST` points per rank along some axis."""


def _check_distributable(problem):
    """Refuse, before any PETSc object exists, what the distributed scheme cannot solve."""
    g = problem.grid
    if getattr(g, "is_mesh", False) or not isinstance(g, TensorGrid):
        raise ValueError("a distributed finite-difference solve needs a TensorGrid problem")
    if problem.nu <= 0:
        raise ValueError("a distributed finite-difference solve (mpiexec -n N, or comm=) needs nu > 0: the "
                         "first-order case uses a viscosity continuation, which runs on one rank; solve it without "
                         "mpiexec / comm")
    for term in getattr(problem.coupling, "terms", [problem.coupling]) + [problem.terminal]:
        if not getattr(term, "local", True):
            raise ValueError(f"a distributed finite-difference solve (mpiexec -n N, or comm=) needs local couplings; "
                             f"{type(term).__name__} is nonlocal (it needs all of m on every rank); solve it "
                             "without mpiexec / comm")


class DistributedFDScheme:
    """The FD scheme of an :class:`MFGProblem` distributed over the ranks of ``comm``.

    Arrays passed to and returned by the methods hold the rank's **owned** points,
    ``(K, N_owned)`` in the C order of the owned box; :meth:`gather` assembles global arrays.

    Parameters
    ----------
    problem : MFGProblem
        On a :class:`TensorGrid`, ``nu > 0``, local couplings.
    comm : mpi4py.MPI.Comm
    petsc_options : dict, optional
        PETSc options set under the prefix ``mfgpde_`` for this solve and removed afterwards,
        e.g. ``{"step_pc_type": "gamg", "newton_ksp_monitor": None}``: keys start with
        ``step_``, ``sweep_`` or ``newton_``.
    """

    def __init__(self, problem, comm, petsc_options=None):
        _check_distributable(problem)
        self.PETSc = petsc_module()
        self.problem, self.comm, self.grid = problem, comm, problem.grid
        self.nt, self.dt = problem.nt, problem.dt
        self._options = {}
        options = check_options(petsc_options or {})
        self.pcomm = self.PETSc.Comm(comm)
        self._decompose()
        self.local = FDScheme(LocalProblem(problem, self.patch), linear_solver="direct")
        self.m0 = self.local.problem.m0.ravel()[self.owned]
        self._stack_das = {}
        # kept here, not in the global options database: each KSP pushes the options of its prefix
        # just before its setFromOptions and removes them right after (options_scope), so a nested
        # scheme (the coarse level of grid sequencing) cannot delete the options of this one
        self._options = dict(options)
        self._step = StepSolver(self)
        self._krylov = None
        # the preconditioner's step solves: patch multigrid unless the user configured PETSc's
        # (``step_...`` options). The half-sweeps keep PETSc's GMRES / ILU: as its preconditioner
        # the patch V-cycles needed ~11 per step solve to 1e-12 and saved nothing (LOG2D 128^2)
        self.step_method = "petsc" if any(k.startswith(OPTIONS_PREFIX + "step_") for k in options) else "multigrid"

    def _dmda(self, width):
        """The DMDA of the grid with ``width`` ghost layers."""
        g, bt = self.grid, self.PETSc.DM.BoundaryType
        # PETSc's x is the fastest axis, the last one of the grid's C order. A box (not star) halo:
        # the FP adjoint at an owned corner point reads U at diagonal neighbours (the stencil row
        # of its neighbour along x uses that neighbour's neighbours along y)
        return self.PETSc.DMDA().create(
            dim=g.dim, sizes=tuple(reversed(g.shape)), dof=1, stencil_width=width,
            stencil_type=self.PETSc.DMDA.StencilType.BOX, comm=self.pcomm,
            boundary_type=tuple(bt.PERIODIC if b == "periodic" else bt.NONE for b in reversed(g.boundary)))

    def _decompose(self):
        """PETSc's split of the grid over the ranks: this rank's owned box, its ghosted patch
        (``OVERLAP`` layers where every rank's box is that wide) and the owned points in it.
        """
        g, comm = self.grid, self.comm
        self.da = self._dmda(GHOST)
        ranges = list(reversed(self.da.getRanges()))
        widths = [b - a for a, b in ranges]
        narrowest = comm.allreduce(min(widths), op=_mpi_min())
        if narrowest < GHOST:
            self.destroy()
            raise _TooSmall(f"grid {g.shape} is too small for {comm.size} ranks: every rank's box must be at least "
                             f"{GHOST} points wide along every axis (this rank's box is {widths}); use fewer ranks")
        self.ghost_width = max(GHOST, min(OVERLAP[g.dim], narrowest))
        if self.ghost_width > GHOST:  # (the split depends on the sizes and ranks only, not the width)
            self.da.destroy()
            self.da = self._dmda(self.ghost_width)
            assert list(reversed(self.da.getRanges())) == ranges
        ghosts = list(reversed(self.da.getGhostRanges()))
        self.owned_shape, self.owned_ranges = tuple(widths), ranges
        self.patch = PatchGrid(g, [a for a, _ in ghosts], [b for _, b in ghosts])
        self.owned_grid = PatchGrid(g, [a for a, _ in ranges], [b for _, b in ranges])
        off = [a - ga for (a, _), (ga, _) in zip(ranges, ghosts)]
        sub = np.ix_(*[np.arange(o, o + w) for o, w in zip(off, widths)])
        self.owned = np.arange(self.patch.size).reshape(self.patch.shape)[sub].ravel()
        self.N = int(self.owned.size)

    # ------------------------------------------------------------------ PETSc plumbing

    def options_scope(self, prefix):
        """Push the solve's PETSc options under ``prefix`` into the database for one ``setFromOptions``
        (:func:`mfgpde.fd.petsc.options_pushed`).
        """
        return options_pushed(self._options, prefix)

    def destroy(self):
        """Free the PETSc objects."""
        if getattr(self, "_step", None) is not None:
            self._step.destroy()
        if getattr(self, "_krylov", None) is not None:
            self._krylov.free()
            self._krylov = None
        for da in getattr(self, "_stack_das", {}).values():
            da[0].destroy()
            da[1].destroy()
            da[2].destroy()
        self._stack_das = {}
        if getattr(self, "da", None) is not None:
            self.da.destroy()
            self.da = None

    def _stack_da(self, K):
        """A DMDA with K unknowns per point, same split as :attr:`da`, and its two vectors."""
        if K not in self._stack_das:
            da = self.da.duplicate(dof=K)  # (K = 1 too: the vectors of the ghost exchange)
            self._stack_das[K] = (da, da.createGlobalVec(), da.createLocalVec())
        return self._stack_das[K]

    def ghosted(self, X):
        """Owned slices ``(K, N_owned)`` -> the same on the ghosted patch ``(K, N_patch)``.

        One exchange per slice on the one-value DMDA: a ``K``-value DMDA interlaces the slices
        point by point, and the two transposes that costs took 2.8 s of a 27 s solve (LOG2D 128^2
        on one rank, 258 slices per Jacobian product); the slice loop costs ~15 us per slice.
        """
        X = np.asarray(X, dtype=float)
        da, gv, lv = self._stack_da(1)
        out = np.empty((X.shape[0], self.patch.size))
        owned, patch = gv.getArray(), lv.getArray(readonly=True)
        for k in range(X.shape[0]):
            owned[:] = X[k]
            da.globalToLocal(gv, lv)
            out[k] = patch
        return out

    def local_part(self, X):
        """Global ``(K, N)`` arrays -> this rank's owned slices ``(K, N_owned)``."""
        X = np.asarray(X, dtype=float)
        shape = (X.shape[0],) + tuple(self.grid.shape)
        return np.ascontiguousarray(self.owned_grid.restrict(X.reshape(shape)).reshape(X.shape[0], -1))

    def gather(self, X):
        """Owned slices ``(K, N_owned)`` -> the global array ``(K, N)`` on every rank."""
        PETSc = self.PETSc
        X = np.asarray(X, dtype=float)
        K = X.shape[0]
        da, gv, _ = self._stack_da(K)
        gv.getArray()[:] = X.T.ravel()
        nat = da.createNaturalVec()
        da.globalToNatural(gv, nat)
        scatter, full = PETSc.Scatter.toAll(nat)
        scatter.scatter(nat, full, False, PETSc.Scatter.Mode.FORWARD)
        out = full.getArray(readonly=True).reshape(self.grid.size, K).T.copy()
        for obj in (scatter, full, nat):
            obj.destroy()
        return out

    def allreduce(self, value, op="sum"):
        """Scalar reduction over the ranks (``"sum"``, ``"min"`` or ``"max"``)."""
        from mpi4py import MPI

        return self.comm.allreduce(value, op={"sum": MPI.SUM, "min": MPI.MIN, "max": MPI.MAX}[op])

    def norm(self, R):
        """Global ``max |R|`` (collective)."""
        return float(self.allreduce(float(np.abs(R).max()) if np.size(R) else 0.0, "max"))

    # ------------------------------------------------------------------ the discrete system
    def f(self, M):
        return self.problem.coupling.value(M.reshape((-1,) + self.owned_shape), self.owned_grid).reshape(M.shape)

    def g(self, mT):
        return self.problem.terminal.value(mT.reshape(self.owned_shape), self.owned_grid).ravel()

    def residual(self, U, M):
        """Residuals ``(R_U, R_m)`` at the owned points, each ``(N_t + 1, N_owned)``."""
        RU, Rm = self.local.residual(self.ghosted(U), self.ghosted(M))
        return np.ascontiguousarray(RU[:, self.owned]), np.ascontiguousarray(Rm[:, self.owned])

    def linearisation(self, U, M):
        """The Jacobian at ``(U, M)``: the serial :class:`Linearisation` on the ghosted patch."""
        return Linearisation(self.local, self.ghosted(U), self.ghosted(M))

    @property
    def step_solver(self):
        return "petsc"

    def solve_newton_system(self, lin, rhs, rtol, *, maxiter=400, step_solver=None, reuse=None, lag_budget=None):
        """FGMRES (PETSc) on ``J dz = rhs`` with the block-triangular sweep preconditioner.

        Same signature and returns as :func:`mfgpde.fd.krylov.solve_newton_system`
        (``reuse`` is ignored: the step solves have no factorisation worth lagging).
        """
        if self._krylov is None:
            n = 2 * (self.nt + 1)
            # FGMRES: the preconditioner's step solves are Krylov solves to PC_STEP_RTOL, so it varies
            # a little between applications; restart 30 (each vector pair is 2 (N_t + 1) N_owned x 16 B)
            with self.options_scope(OPTIONS_PREFIX + "newton_"):
                self._krylov = ShellNewtonSystem(self.pcomm, n * self.N, self._matvec, self._sweep,
                                                 OPTIONS_PREFIX + "newton_", ksp_type="fgmres", restart=30,
                                                 n_global=n * self.grid.size)
        return self._krylov.solve(lin, rhs, rtol, maxiter)

    def _split(self, z, points):
        nt = self.nt
        z = np.asarray(z)
        return z[: (nt + 1) * points].reshape(nt + 1, points), z[(nt + 1) * points:].reshape(nt + 1, points)

    def _matvec(self, lin, x):
        """``J x``: ghost exchange, the patch's matrix-free product, the owned rows."""
        dU, dM = self._split(x, self.N)
        both = self.ghosted(np.concatenate([dU, dM]))
        yU, yM = self._split(lin.matvec(both.ravel()), self.patch.size)
        return np.concatenate([yU[:, self.owned].ravel(), yM[:, self.owned].ravel()])

    def _sweep(self, lin, r):
        """The block-triangular preconditioner: the backward HJB sweep, the coupling block, the
        forward FP sweep, each step a patch multigrid step (:meth:`_patch_steps`) or a
        distributed KSP solve (:class:`mfgpde.fd.petsc.StepSolver`).
        """
        solve_u, solve_m = self._patch_steps(lin)
        return block_triangular_sweep(r, self.nt, self.dt, solve_u,
                                      lambda X: lin.hessian(self.ghosted(X))[:, self.owned], solve_m)

    def _patch_steps(self, lin):
        """The step solvers ``solve(n, rhs_owned) -> x_owned`` of the preconditioner at ``lin``
        (built once per linearisation): HJB steps with ``A_n``, FP steps with ``B_n^T``.

        Multigrid: :data:`MG_CYCLES` V-cycles from zero on the rank's ghosted patch, whose
        stencils (the linearisation's, cut at the patch edge) are an M-matrix of the same kind as
        the global step; the right-hand side is exchanged once, the owned values are kept. This
        is a fixed linear map, as the serial sweep's V-cycles are; its error is largest within a
        few points of the rank boundary, which the outer Krylov method absorbs. A step whose patch
        V-cycles contract by less than :data:`MG_CONTRACTION_LIMIT` on some rank is a PETSc solve
        on every rank (the decision is collective: those solves are).
        """
        cached = getattr(lin, "_distributed_steps", None)
        if cached is not None:
            return cached
        step = self._step
        if self.step_method == "petsc":
            # (the closures hold the stencils, not ``lin``: no reference cycle keeps a linearisation alive)
            steps = tuple((lambda n, rhs, v=v: step.apply(v[n], rhs)) for v in (lin.vals_uu, lin.vals_mmT))
        else:
            from mpi4py import MPI

            H = self.local.hierarchy()
            ops = (H.operators(lin.vals_uu), H.operators(lin.vals_mmT))
            bad = np.array([~(o.contraction(MG_CYCLES) <= MG_CONTRACTION_LIMIT) for o in ops], dtype=np.int8)
            self.comm.Allreduce(MPI.IN_PLACE, bad, op=MPI.MAX)
            own = self.owned

            def make(o, vals, bad):
                def solve(n, rhs):
                    if bad[n]:
                        return step.apply(vals[n], rhs)
                    return o.vcycles(n, self.ghosted(rhs[None, :])[0], MG_CYCLES)[own]
                return solve

            steps = (make(ops[0], lin.vals_uu, bad[0]), make(ops[1], lin.vals_mmT, bad[1]))
        lin._distributed_steps = steps
        return steps

    # ------------------------------------------------------------------ half-sweeps
    def solve_hjb(self, M, *, U_init=None, tol=1e-12, max_newton=MAX_NEWTON):
        """Backward sweep, distributed: the same per-step Newton and stopping rule as
        :meth:`FDScheme.solve_hjb`, with global norms and distributed step solves.
        """
        nt, dt, loc, own = self.nt, self.dt, self.local, self.owned
        U = np.empty((nt + 1, self.N))
        U[-1] = self.g(M[-1])
        F = self.f(M[1:])
        if loc.problem.hjb_source is not None:
            F = F + loc.problem.hjb_source[:-1, own]  # level n sees s_U(t_n), as in the residual
        check_sweep_data(U[-1], F, lambda a: self.allreduce(bool(np.all(np.isfinite(a))), "min"))
        Mg = self.ghosted(M[1:])
        # the step solves need not be more accurate than the level's tolerance asks: a solve to
        # 1e-3 tol relative to the residual leaves an error far below tol (a start's sweep to
        # tol = 1e-3 then solves to 1e-6, not 1e-12); the default tol keeps STEP_RTOL
        step_rtol = max(STEP_RTOL, min(1e-6, 1e-3 * tol))
        total = 0
        for n in range(nt - 1, -1, -1):
            u = U[n + 1].copy() if U_init is None else U_init[n].copy()
            mnext = Mg[n][None, :]
            L = loc.linear_stencil(n)
            rhs = U[n + 1] / dt + F[n]
            op_scale = self.allreduce(float(np.abs(L[own]).sum(axis=1).max()), "max") + 1.0 / dt
            atol = round_off_tolerance(tol, self.norm(np.r_[rhs, op_scale * u]))

            def res(v, L=L, mnext=mnext, rhs=rhs):  # (bound: the level's data)
                vg = self.ghosted(v[None, :])
                _S, ap, bm, phi, phiS = loc.hamiltonian_parts(vg, mnext)
                r = vg[0] / dt + kernels.apply_stencil(L[None], self.patch, vg)[0] + phi[0]
                return r[own] - rhs, (ap, bm, phiS)

            def solve(state, b, L=L):
                ap, bm, phiS = state
                vals = kernels.dS_stencil(ap, bm, self.patch, phiS) + L[None]
                vals[0, :, 0] += 1.0 / dt
                return self._step.solve(vals[0], b, step_rtol)

            U[n], steps = solve_implicit_step(u, res, solve, self.norm, atol, max_newton=max_newton, level=n, tol=tol)
            total += steps
        return U, total

    def solve_fp(self, U, *, M_lag=None, rtol=None):
        """Forward sweep, distributed (see :meth:`FDScheme.solve_fp`); mass restored globally.
        ``rtol``: of the step solves (default :data:`STEP_RTOL`; a starting guess may ask for less).
        """
        nt, dt, loc = self.nt, self.dt, self.local
        Ug = self.ghosted(U[:nt])
        lag = None if M_lag is None else self.ghosted(M_lag[1:])
        M = np.empty((nt + 1, self.N))
        M[0] = self.m0
        source = None if loc.problem.fp_source is None else loc.problem.fp_source[:, self.owned]
        for n in range(nt):
            m_lag = self.ghosted(M[n][None, :])[0] if lag is None else lag[n]
            vals = kernels.transpose_stencil(loc.fp_stencil(Ug[n], m_lag, n), self.patch.stencil[0])
            rhs = M[n] / dt if source is None else M[n] / dt + source[n + 1]
            m = self._step.solve(vals, rhs, STEP_RTOL if rtol is None else rtol)
            total = self.allreduce(float(m.sum()), "sum")
            if total > 0:  # the iterative solve conserves mass to its tolerance; restore it exactly
                # (plus dt sum s_m with a source, as in the serial sweep)
                gain = 0.0 if source is None else dt * float(source[n + 1].sum())
                m *= self.allreduce(float(M[n].sum()) + gain, "sum") / total
            M[n + 1] = m
        return M


def _mpi_min():
    from mpi4py import MPI

    return MPI.MIN


def solve_distributed(problem, comm, *, tol=1e-10, max_iter=50, verbose=None, petsc_options=None, grid_sequencing=True):
    """Solve a time-dependent MFG with finite differences distributed over ``comm``.

    Newton (:func:`mfgpde.iterations.newton.newton`, the serial driver) on the distributed
    scheme, started as the serial solver starts it (:func:`mfgpde.iterations.sequencing.sequenced_newton`):
    from the problem solved on the next coarser grid (grid sequencing; the coarse problem is
    itself solved over ``comm``, or by every rank alone when its grid is too small to split),
    followed by one fine fixed-point sweep; or, without a coarser level, from the fixed-point
    start. Collective: every rank of ``comm`` calls it with the same problem.

    Returns
    -------
    MFGResult
        The gathered solution, on every rank (the diagnostics add ``"ranks"``, the split
        ``"rank_grid"``, ``"ghost_layers"``, ``"preconditioner_steps"`` (``"multigrid"`` or
        ``"petsc"``) and ``"grid_sequencing"`` when a coarse start was tried).
    """
    import time


    t0 = time.perf_counter()
    scheme = DistributedFDScheme(problem, comm, petsc_options=petsc_options)

    def coarse_solve(coarse, coarse_tol):
        try:
            return solve_distributed(coarse, comm, tol=coarse_tol, max_iter=max_iter, verbose=False,
                                     petsc_options=petsc_options)
        except _TooSmall:
            # a coarse grid too small to split: every rank solves it alone (cheap, identical)
            rc = solve_fd(coarse, SolveOptions(tol=coarse_tol, max_iter=max_iter, verbose=False))
            rc.diagnostics["ranks"] = 1
            return rc

    try:
        talk = verbose if comm.rank == 0 else False
        U, M, log, status, sequenced = sequenced_newton(problem, scheme, coarse_solve if grid_sequencing else None,
                                                        tol, max_iter, verbose=talk, local=scheme.local_part)
        U, M = scheme.gather(U), scheme.gather(M)
        split = list(reversed(scheme.da.getProcSizes()))
        layout = {"ghost_layers": int(scheme.ghost_width), "preconditioner_steps": scheme.step_method}
    finally:
        scheme.destroy()
    res = MFGResult.from_arrays(problem, U, M, log, status, "newton", time.perf_counter() - t0)
    res.diagnostics["ranks"] = int(comm.size)
    res.diagnostics["rank_grid"] = [int(p) for p in split]
    res.diagnostics.update(layout)
    if sequenced is not None:
        res.diagnostics["grid_sequencing"] = sequenced
    return res
