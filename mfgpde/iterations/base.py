"""Shared bookkeeping: residual history, progress lines and divergence diagnostics."""

from __future__ import annotations

import logging
import time

import numpy as np

from ..logs import enable as enable_logging

logger = logging.getLogger(__name__)


class ConvergenceError(FloatingPointError):
    """A solve diverged (non-finite or exploding residual); the message says where."""


class IterationLog:
    """Residual history of an iteration with optional progress output.

    Parameters
    ----------
    method : str
    verbose : bool or None
        Log one line per iteration (logger ``mfgpde.iterations.base``, level INFO; ``True``
        attaches a stderr handler when logging is not configured, see :mod:`mfgpde.logs`).
        ``None`` logs only once the solve has lasted more than two seconds (long solves), so
        short solves stay quiet.
    """

    def __init__(self, method, verbose=None):
        self.method = method
        self.verbose = verbose
        self.records = []
        self.t0 = time.perf_counter()

    def record(self, iteration, hjb, fp, **extra):
        for name, value in (("HJB", hjb), ("FP", fp)):
            if not np.isfinite(value):
                raise ConvergenceError(
                    f"{self.method}: the {name} residual became non-finite at iteration {iteration} "
                    f"(last finite history: {self.summary_tail()})")
        rec = {"iteration": int(iteration), "hjb_residual": float(hjb), "fp_residual": float(fp),
               "residual": float(max(hjb, fp)), "time_s": time.perf_counter() - self.t0}
        rec.update(extra)
        self.records.append(rec)
        show = self.verbose if self.verbose is not None else rec["time_s"] > 2.0
        if show:
            if self.verbose:
                enable_logging(min(logging.getLogger("mfgpde").getEffectiveLevel(), logging.INFO))
            more = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items())
            logger.info("%s it %4d  residual %.3e  (HJB %.2e, FP %.2e)  %s  t=%.2fs", self.method, iteration,
                        rec["residual"], hjb, fp, more, rec["time_s"])
        return rec["residual"]

    def summary_tail(self):
        return ", ".join(f"it {r['iteration']}: {r['residual']:.2e}" for r in self.records[-3:]) or "none"

    def check_divergence(self, iteration, limit=1e12):
        """Stop an iteration whose residual grew beyond ``limit`` times its start."""
        if len(self.records) > 2:
            r0, r = self.records[0]["residual"], self.records[-1]["residual"]
            if r > limit * max(r0, 1e-300):
                raise ConvergenceError(
                    f"{self.method}: residual grew from {r0:.2e} to {r:.2e} by iteration {iteration}; diverging")


def residual_norms(scheme, U, M):
    """``(|R_HJB|_inf, |R_FP|_inf, R_HJB, R_FP)``, the norms by ``scheme.norm`` (collective on
    distributed data: every rank gets the global maximum).
    """
    RU, Rm = scheme.residual(U, M)
    return scheme.norm(RU), scheme.norm(Rm), RU, Rm
