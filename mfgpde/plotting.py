"""Figures of solutions: density, value function and convergence history."""

from __future__ import annotations

import numpy as np


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    """Save a figure atomically and close it."""
    from .result import atomic_write

    fmt = str(path).rsplit(".", 1)[-1]
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight"), "." + fmt)
    _mpl().close(fig)
    return path


def plot_result(result, path=None, snapshots=4):
    """Figure of a solution: m and U at ``snapshots`` times, and the residual history.

    1D: curves; 2D: images; 3D: the mid-plane in z. Returns the figure, or saves it atomically
    to ``path`` (:func:`save_figure`) and returns what that returns.
    """
    plt = _mpl()
    g, t = result.grid, result.times
    idx = np.unique(np.linspace(0, len(t) - 1, snapshots).round().astype(int))
    if g.dim == 1:
        fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
        x = g.axes[0]
        im = ax[0].pcolormesh(x, t, result.m, shading="auto", cmap="viridis")
        fig.colorbar(im, ax=ax[0])
        ax[0].set(xlabel="x", ylabel="t", title="density m(x, t)")
        for i in idx:
            ax[1].plot(x, result.m[i], label=f"t={t[i]:.2f}")
            ax[2].plot(x, result.U[i], label=f"t={t[i]:.2f}")
        ax[1].set(xlabel="x", title="density snapshots")
        ax[2].set(xlabel="x", title="value function U")
        ax[1].legend(fontsize=7)
        hist_ax = ax[3]
    else:
        fig, ax = plt.subplots(2, len(idx) + 1, figsize=(3.6 * (len(idx) + 1), 6.6), squeeze=False)
        X = [g.axes[0], g.axes[1]]

        def section(a):
            # 3D: the mid-plane z = const
            return a if g.dim == 2 else a[..., g.shape[2] // 2]

        for j, i in enumerate(idx):
            for r, (field, name) in enumerate(((result.m, "m"), (result.U, "U"))):
                im = ax[r, j].pcolormesh(X[0], X[1], section(field[i]).T, shading="auto",
                                         cmap="viridis" if r == 0 else "magma")
                fig.colorbar(im, ax=ax[r, j])
                ax[r, j].set_title(f"{name}, t={t[i]:.2f}" + (" (mid z)" if g.dim == 3 else ""), fontsize=9)
                ax[r, j].set_aspect("equal")
        ax[1, -1].axis("off")
        hist_ax = ax[0, -1]
    it = [r["iteration"] for r in result.history]
    hist_ax.semilogy(it, [r["hjb_residual"] for r in result.history], "o-", label="HJB")
    hist_ax.semilogy(it, [r["fp_residual"] for r in result.history], "s-", label="FP")
    hist_ax.set(xlabel="iteration", title=f"{result.diagnostics['method']}: residual")
    hist_ax.legend()
    fig.suptitle(f"{result.problem.name}: {result.diagnostics['status']}, "
                 f"{result.diagnostics['wall_time_s']:.2f} s", fontsize=10)
    fig.tight_layout()
    if path is None:
        return fig
    return save_figure(fig, path)
