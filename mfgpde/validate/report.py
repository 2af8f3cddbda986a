"""``metrics.json`` and figures of a validation run, written only after everything was computed."""

from __future__ import annotations

import os

import numpy as np

from ..io import write_json
from ..plotting import _mpl, save_figure


def _show(ax, field, grid, title, cmap="viridis"):
    if grid.dim == 1:
        ax.plot(grid.axes[0], field)
    else:
        sec = field if grid.dim == 2 else field[..., grid.shape[2] // 2]
        im = ax.pcolormesh(grid.axes[0], grid.axes[1], sec.T, shading="auto", cmap=cmap)
        ax.figure.colorbar(im, ax=ax)
        ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)


def _flatten(d, prefix=""):
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += _flatten(v, f"{prefix}{k}.")
        elif isinstance(v, float):
            rows.append((prefix + k, f"{v:.4g}"))
    return rows


def write_validation_report(out, metrics, fields):
    """Write ``metrics.json``, ``densities.png``, ``errors.png`` and ``metrics.png`` into ``out``.

    Everything is first written to a staging folder next to the outputs and moved in only
    when all files exist, so a failure leaves no partial report behind.
    """
    import shutil
    import tempfile

    os.makedirs(out, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".staging-", dir=out)
    try:
        _write_all(stage, metrics, fields)
        for name in sorted(os.listdir(stage)):
            os.replace(os.path.join(stage, name), os.path.join(out, name))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _write_all(out, metrics, fields):
    plt = _mpl()
    g, times = fields["grid"], fields["times"]
    idx = np.unique(np.linspace(0, len(times) - 1, 4).round().astype(int))
    fig, ax = plt.subplots(2, len(idx), figsize=(3.8 * len(idx), 6.6), squeeze=False)
    for j, i in enumerate(idx):
        _show(ax[0, j], fields["m_ref"][i], g, f"reference, t={times[i]:.2f}")
        _show(ax[1, j], fields["m_model"][i], g, f"model, t={times[i]:.2f}")
    fig.tight_layout()
    save_figure(fig, os.path.join(out, "densities.png"))
    panels = [("model - reference (final)", fields["m_model"][-1] - fields["m_ref"][-1], "RdBu_r")]
    if "hjb_residual_map" in fields:
        panels.append(("time-integrated |HJB residual|", fields["hjb_residual_map"], "magma"))
    spacetime = fields.get("hjb_residual_spacetime")
    ncol = len(panels) + (spacetime is not None)
    fig, ax = plt.subplots(1, ncol, figsize=(5 * ncol, 4), squeeze=False)
    for a, (title, field, cmap) in zip(ax[0], panels):
        _show(a, field, g, title, cmap)
    if spacetime is not None:
        # 1D: the (t, x) map; 2D/3D: where in time the residual sits (space-integrated)
        a = ax[0, -1]
        if g.dim == 1:
            im = a.pcolormesh(times, g.axes[0], np.asarray(spacetime).T, shading="auto", cmap="magma")
            fig.colorbar(im, ax=a)
            a.set_xlabel("t")
            a.set_ylabel("x")
        else:
            a.semilogy(times[1:], [g.integrate(r) for r in spacetime[1:]])
            a.set_xlabel("t")
        a.set_title("p_t |HJB residual| over space-time", fontsize=9)
    fig.tight_layout()
    save_figure(fig, os.path.join(out, "errors.png"))
    rows = _flatten(metrics)
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 0.6))
    ax.axis("off")
    ax.table(cellText=[[k, v] for k, v in rows], colLabels=["metric", "value"], loc="center", cellLoc="left")
    save_figure(fig, os.path.join(out, "metrics.png"))
    write_json(os.path.join(out, "metrics.json"), metrics)
