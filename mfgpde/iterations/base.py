"""Shared bookkeeping: residual history, progress lines and divergence diagnostics."""

from __future__ import annotations

import sys
import time

import numpy as np


class ConvergenceError(FloatingPointError):
    """A solve diverged (non-finite or exploding residual); the message says where."""


class IterationLog:
    """Residual history of an iteration with optional progress output.

    Parameters
    ----------
    method : str
    verbose : bool or None
        Print one line per iteration to stderr. ``None`` prints only when the solve has
        lasted more than two seconds (long solves), so short solves stay quiet.
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
            more = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items())
            print(f"[mfgpde {self.method}] it {iteration:4d}  residual {rec['residual']:.3e}  "
                  f"(HJB {hjb:.2e}, FP {fp:.2e})  {more}  t={rec['time_s']:.2f}s", file=sys.stderr, flush=True)
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
