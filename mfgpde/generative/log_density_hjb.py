r"""The log-density HJB of a forward SDE: a metric and a regulariser for score models.

Derivation (sign conventions of shared/REFERENCE.md, C5)
--------------------------------------------------------
The forward (noising) SDE ``dX = f(x, t) dt + g(t) dW`` carries the data to noise; its law
``p_t`` solves the Fokker-Planck equation

    dp/dt = -div(f p) + nu Lap p,          nu = g^2 / 2.

With ``phi = log p_t`` (so ``p = e^phi``, ``grad p = p grad phi``,
``Lap p = p (Lap phi + |grad phi|^2)``) and dividing by ``p > 0``:

    dphi/dt = -div f - f . grad phi + nu (Lap phi + |grad phi|^2).               (HJB)

This is a viscous Hamilton-Jacobi-Bellman equation, forward in time: with ``U(t) = -phi(T - t)``
it reads ``-dU/dtau - nu Lap U + nu |grad U|^2 - f . grad U = div f`` (time ``tau = T - t``,
drift reversed), i.e. the HJB of the MFG with ``H = |p|^2 / (2 lambda)``, ``lambda = 1/(2 nu)``,
of :func:`mfgpde.generative.presets.score_mfg_problem`: its optimal control
``v* = -grad U / lambda = sigma^2 grad phi`` is ``sigma^2`` times the score, which is why the
reverse SDE has drift ``-f + sigma^2 s``. The score ``s = grad phi`` is the optimal feedback,
and ``Lap phi = div s``.

Two residuals
-------------
* **Potential form** (a model of ``phi``, ``kind = "score-potential"``)::

      R = dphi/dt + div f + f . grad phi - nu (Lap phi + |grad phi|^2).

  A potential is a log-density only up to a constant ``c(t)`` (the normalisation), which shifts
  ``R`` by ``c'(t)``; the grid metric removes the ``p_t``-weighted mean of ``R`` at each time, so
  it does not depend on the normalisation.
* **Score form** (a vector field ``s``, ``kind = "score"``): the gradient of the HJB, with no
  constant to fix,

      R_s = ds/dt + grad( div f + f . s - nu (div s + |s|^2) ).

  ``R_s = grad R`` when ``s = grad phi``; it vanishes for the exact score and, unlike
  ``R``, also sees a non-conservative (curl) part of a neural score.

The metric is the ``p_t``-weighted, time-averaged root mean square

    ||R|| = ( (1/(T - t_min)) int_{t_min}^T int p_t |R|^2 dx dt )^(1/2),     t_min = T/10 by default.

Why not from ``t = 0``: near the data the score changes on the time scale of the data's own
variance (0.09 on the shipped 1D case), so there the residual of even the *exact* score measures
the time step, and a window that starts at the first level ``dt`` grows with refinement. Measured
on the C2 mixture (score_ou_1d, exact closed-form score): from the first level the residual falls
0.61, 0.27, 0.10, 0.032 (observed order 1.2 to 1.7) as ``h, dt`` halve; from ``t_min = 0.3``
it falls 0.086, 0.021, 0.0051, 0.0013 (order 2.0). On the grid every derivative is a second-order
centred difference (one-sided second order at the ends of the time interval and at no-flux
walls), so the exact score's residual falls like ``h^2 + dt^2``.
For training, :func:`torch_residual` evaluates the same residual with autograd on a batch of
noised samples ``x ~ p_t``; its mean square is the HJB regulariser.
"""

from __future__ import annotations

import numpy as np

KINDS = ("score", "score-potential")


def forward_coefficients(score_model):
    """``(f, div_f, nu)`` of the forward SDE of a :class:`ScoreModel`.

    ``f(x)`` works on NumPy arrays and torch tensors alike (``(..., d)`` points, last axis the
    components); ``div_f`` is a number (both shipped SDEs have a linear drift).
    """
    d = score_model.grid.dim
    if score_model.sde == "vp":
        return (lambda x: -x), -float(d), score_model.nu
    return (lambda x: 0.0 * x), 0.0, score_model.nu


def _d(field, grid, axis):
    """Second-order centred derivative along grid axis ``axis`` of a ``grid.shape`` array."""
    h = grid.h[axis]
    if grid.boundary[axis] == "periodic":
        return (np.roll(field, -1, axis) - np.roll(field, 1, axis)) / (2 * h)
    return np.gradient(field, h, axis=axis, edge_order=2)


def grid_residual(score_model, values, kind="score"):
    """HJB residual of a model on the grid at every time level.

    Parameters
    ----------
    score_model : ScoreModel
        Supplies the grid, the times and the forward SDE.
    values : ndarray
        ``(nt + 1, d) + grid.shape`` (a score, ``kind = "score"``) or ``(nt + 1,) + grid.shape``
        (a log-density potential, ``kind = "score-potential"``), at the levels
        ``score_model.times``.
    kind : {"score", "score-potential"}

    Returns
    -------
    ndarray
        ``R_s`` of shape ``(nt + 1, d) + grid.shape`` (score form) or ``R`` of shape
        ``(nt + 1,) + grid.shape`` (potential form, not yet centred).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    g, times = score_model.grid, score_model.times
    f, div_f, nu = forward_coefficients(score_model)
    X = np.stack(g.coordinates(), axis=-1)                     # grid.shape + (d,)
    fx = np.moveaxis(f(X), -1, 0)                              # (d,) + shape
    dt_axis = dict(axis=0, edge_order=2)
    vals = np.asarray(values, float)
    if kind == "score-potential":
        phi = vals
        out = np.gradient(phi, times, **dt_axis)
        for n in range(len(times)):
            grad = [_d(phi[n], g, k) for k in range(g.dim)]
            lap = sum(_d(grad[k], g, k) for k in range(g.dim))
            out[n] += div_f + sum(fx[k] * grad[k] for k in range(g.dim)) - nu * (lap + sum(q * q for q in grad))
        return out
    s = vals
    out = np.gradient(s, times, **dt_axis)
    for n in range(len(times)):
        div = sum(_d(s[n, k], g, k) for k in range(g.dim))
        G = div_f + np.sum(fx * s[n], axis=0) - nu * (div + np.sum(s[n] ** 2, axis=0))
        for k in range(g.dim):
            out[n, k] += _d(G, g, k)
    return out


def first_level(times, t_min=None):
    """Index of the first time level ``>= t_min`` (default ``T/10``; at least level 1)."""
    times = np.asarray(times, float)
    t_min = 0.1 * times[-1] if t_min is None else float(t_min)
    if not 0.0 <= t_min < times[-1]:
        raise ValueError(f"t_min must be in [0, T) = [0, {times[-1]:g}), got {t_min}")
    return max(1, int(np.searchsorted(times, t_min - 1e-12 * times[-1])))


def weighted_norm(R, p, grid, times, t_min=None):
    """``( (1/(T - t_min)) int_{t_min}^T int p |R|^2 dx dt )^(1/2)`` (trapezoid in time).

    ``t_min`` is rounded up to a time level (:func:`first_level`). A scalar ``R`` (potential
    form) is centred first: its ``p``-weighted mean is removed at every time (the
    normalisation constant of a log-density potential).
    """
    start = first_level(times, t_min)
    R = np.asarray(R, float)
    p = np.asarray(p, float)
    nl = len(times)
    if R.ndim == p.ndim:                                       # scalar residual: centre it
        mass = p.reshape(nl, -1).sum(axis=1)
        mean = (R * p).reshape(nl, -1).sum(axis=1) / np.maximum(mass, 1e-300)
        R = (R - mean.reshape((nl,) + (1,) * (R.ndim - 1)))[:, None]
    sq = (np.sum(R**2, axis=1) * p).reshape(nl, -1).sum(axis=1) * grid.cell_volume
    t = np.asarray(times)[start:]
    return float(np.sqrt(np.trapezoid(sq[start:], t) / (t[-1] - t[0])))


def residual_map(R, p, times, t_min=None):
    """Space-time picture ``p |R|`` (``(nt + 1,) + grid.shape``), zero before ``t_min``."""
    start = first_level(times, t_min)
    R = np.asarray(R, float)
    mag = np.abs(R) if R.ndim == np.ndim(p) else np.sqrt(np.sum(R**2, axis=1))
    out = np.asarray(p) * mag
    out[:start] = 0.0
    return out


def torch_residual(model, x, t, *, score_model=None, sde="vp", sigma=None, kind="score"):
    """The HJB residual of a torch score (or potential) network on a batch, by autograd.

    Parameters
    ----------
    model : callable
        ``model(x, t)`` with ``x`` of shape ``(n, d)`` and ``t`` of shape ``(n, 1)``; returns the
        score ``(n, d)`` (``kind = "score"``) or the log-density ``(n,)`` / ``(n, 1)``
        (``kind = "score-potential"``).
    x, t : torch.Tensor
        Points ``(n, d)`` and times ``(n, 1)``; for the regulariser draw ``x ~ p_t`` (noised
        data), so the batch mean of ``|R|^2`` estimates ``E_{p_t} |R|^2``. They need not
        require gradients; leaf copies that do are made here.
    score_model : ScoreModel, optional
        Takes the forward SDE from it; otherwise ``sde`` (``"vp"``: ``f = -x``, ``g = sqrt 2``;
        ``"ve"``: ``f = 0``, ``g = sigma``).
    kind : {"score", "score-potential"}

    Returns
    -------
    torch.Tensor
        ``R_s`` of shape ``(n, d)`` or ``R`` of shape ``(n,)``, differentiable with respect to
        the network's parameters (``create_graph=True``). Penalise e.g.
        ``(R ** 2).sum(-1).mean()``.

    Examples
    --------
    >>> R = torch_residual(net, xt, t, sde="vp")                      # doctest: +SKIP
    >>> loss = dsm_loss + 0.1 * (var_t**2 * (R**2).sum(1, keepdim=True)).mean()  # doctest: +SKIP
    """
    import torch  # only when a torch model is used

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if score_model is not None:
        sde, nu = score_model.sde, score_model.nu
    else:
        if sde not in ("vp", "ve"):
            raise ValueError(f"sde must be 'vp' or 've', got {sde!r}")
        if sde == "ve" and (sigma is None or not sigma > 0):
            raise ValueError(f"sigma must be > 0 for the VE SDE, got {sigma}")
        nu = 1.0 if sde == "vp" else 0.5 * float(sigma) ** 2
    x = x.detach().clone().requires_grad_(True)
    t = t.detach().clone().requires_grad_(True)
    d = x.shape[1]
    f = -x if sde == "vp" else torch.zeros_like(x)
    div_f = -float(d) if sde == "vp" else 0.0

    def grad(y, wrt):
        return torch.autograd.grad(y.sum(), wrt, create_graph=True)[0]

    out = model(x, t)
    if kind == "score-potential":
        phi = out.reshape(-1)
        gx = grad(phi, x)
        lap = sum(grad(gx[:, k], x)[:, k] for k in range(d))
        return grad(phi, t)[:, 0] + div_f + (f * gx).sum(1) - nu * (lap + (gx**2).sum(1))
    s = out
    ds_dt = torch.stack([grad(s[:, k], t)[:, 0] for k in range(d)], dim=1)
    div = sum(grad(s[:, k], x)[:, k] for k in range(d))
    G = div_f + (f * s).sum(1) - nu * (div + (s**2).sum(1))
    return ds_dt + grad(G, x)
