"""Figures of solutions: density, value function and convergence history, on grids and meshes."""

from __future__ import annotations

import numpy as np

from .io import atomic_write


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    """Save a figure atomically and close it."""
    fmt = str(path).rsplit(".", 1)[-1]
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight"), "." + fmt)
    _mpl().close(fig)
    return path


def _finish(fig, path, title):
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig if path is None else save_figure(fig, path)


def _history(ax, result, title):
    """The residual history: HJB and FP residuals per recorded iteration."""
    for key, style, label in (("hjb_residual", "o-", "HJB"), ("fp_residual", "s-", "FP")):
        ax.semilogy([r[key] for r in result.history], style, ms=3, label=label)
    ax.set(xlabel="iteration", title=title)
    ax.legend()


def _grid_field(fig, ax, grid, values, **style):
    """A field on a tensor grid: a curve in 1D, an image in 2D, the mid-plane z = const in 3D."""
    if grid.dim == 1:
        ax.plot(grid.axes[0], values)
        return
    section = values if grid.dim == 2 else values[..., grid.shape[2] // 2]
    im = ax.pcolormesh(grid.axes[0], grid.axes[1], section.T, shading="auto", **style)
    fig.colorbar(im, ax=ax)
    ax.set_aspect("equal")


def _mesh_field(fig, ax, coords, values, cells=None, **style):
    """A P1 field at mesh vertices: shaded triangles in 2D (Delaunay without cells), else against x."""
    if coords.shape[1] != 2:
        order = np.argsort(coords[:, 0])
        ax.plot(coords[order, 0], values[order], "." if coords.shape[1] == 3 else "-", ms=1)
        ax.set_xlabel("x")
        return
    im = ax.tripcolor(coords[:, 0], coords[:, 1], values, triangles=cells, shading="gouraud", **style)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_aspect("equal")


def _snapshots(times, snapshots):
    return np.unique(np.linspace(0, len(times) - 1, snapshots).round().astype(int))


def plot_result(result, *, path=None, snapshots=4):
    """Figure of a grid solution: m and U at ``snapshots`` times, and the residual history.

    1D: a space-time map and curves; 2D: images; 3D: the mid-plane in z. Returns the figure,
    or saves it atomically to ``path`` (:func:`save_figure`) and returns what that returns.
    """
    plt = _mpl()
    g, t = result.grid, result.times
    idx = _snapshots(t, snapshots)
    if g.dim == 1:
        fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
        x = g.axes[0]
        im = ax[0].pcolormesh(x, t, result.m, shading="auto", cmap="viridis")
        fig.colorbar(im, ax=ax[0])
        ax[0].set(xlabel="x", ylabel="t", title="density m(x, t)")
        for i in idx:
            ax[1].plot(x, result.m[i], label=f"t={t[i]:.2f}")
            ax[2].plot(x, result.U[i], label=f"t={t[i]:.2f}")
        if result.companion is not None:
            # the error bar of the estimate: the final density +- |m - companion| (see error_estimate)
            band = np.abs(result.m[-1] - np.asarray(result.companion[1])[-1])
            ax[1].fill_between(x, result.m[-1] - band, result.m[-1] + band, color="k", alpha=0.25,
                               label="estimated error, t=T")
        ax[1].set(xlabel="x", title="density snapshots")
        ax[2].set(xlabel="x", title="value function U")
        ax[1].legend(fontsize=7)
        hist_ax = ax[3]
    else:
        fig, ax = plt.subplots(2, len(idx) + 1, figsize=(3.6 * (len(idx) + 1), 6.6), squeeze=False)
        for j, i in enumerate(idx):
            for r, (field, name) in enumerate(((result.m, "m"), (result.U, "U"))):
                _grid_field(fig, ax[r, j], g, field[i], cmap="viridis" if r == 0 else "magma")
                ax[r, j].set_title(f"{name}, t={t[i]:.2f}" + (" (mid z)" if g.dim == 3 else ""), fontsize=9)
        ax[1, -1].axis("off")
        hist_ax = ax[0, -1]
    d = result.diagnostics
    _history(hist_ax, result, f"{d['method']}: residual")
    est = result.error_estimate
    accuracy = (f", order {d.get('order', 1)}, estimated error of m(T): L1 {est['m_L1_final']:.1e}, "
                f"max {est['m_max_rel_final']:.1e} (relative)") if est else ""
    return _finish(fig, path, f"{result.problem.name}: {d['status']}, {d['wall_time_s']:.2f} s{accuracy}")


def plot_mesh_result(result, *, path=None, snapshots=4):
    """Figure of a mesh solution (rank 0): m at ``snapshots`` times, U at t = 0, residual history."""
    plt = _mpl()
    t = result.times
    idx = _snapshots(t, snapshots)
    fig, axes = plt.subplots(1, len(idx) + 2, figsize=(3.6 * (len(idx) + 2), 3.4))
    for ax, k in zip(axes, idx):
        # one colour scale per panel: the density spreads out and would fade on a common one
        vmax = max(float(result.m[k].max()), 1e-300)
        _mesh_field(fig, ax, result.coords, result.m[k], result.cells, vmin=0.0, vmax=vmax, cmap="viridis")
        ax.set_title(f"m, t = {t[k]:.3g} (max {vmax:.3g})")
    _mesh_field(fig, axes[len(idx)], result.coords, result.U[0], result.cells, cmap="magma")
    axes[len(idx)].set_title("U, t = 0")
    _history(axes[-1], result, "residual (max-norm)")
    est = result.error_estimate
    accuracy = (f", estimated error of m(T): L1 {est['m_L1_final']:.1e}, max {est['m_max_rel_final']:.1e} "
                "(relative)") if est else ""
    return _finish(fig, path, f"{result.problem.name}: P1 FEM, {result.diagnostics['dofs']} dofs, {len(t) - 1} steps"
                   + accuracy)


def plot_ergodic(result, path=None):
    """Figure of an ergodic solution (grid or mesh): m, u and the residual history."""
    plt = _mpl()
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    for a, (field, name) in zip(ax[:2], ((result.m, "m"), (result.u, "u"))):
        if hasattr(result, "coords"):
            _mesh_field(fig, a, result.coords, field)
        else:
            _grid_field(fig, a, result.grid, field)
        a.set_title(f"{name} (ergodic, rho={result.rho:.4g})")
    _history(ax[2], result, "residual (each floor stage restarts)")
    est = result.error_estimate
    accuracy = f", estimated error: rho {est['rho']:.1e}, m L1 {est['m_L1']:.1e}" if est and "rho" in est else ""
    return _finish(fig, path, f"{result.problem.name}: {result.diagnostics['status']}{accuracy}")
