"""Rating a model against a zoo reference, and the leaderboard.

:func:`score` runs the validator of the entry's family (:func:`~mfgpde.validate.validator.validate_flow`,
:func:`~mfgpde.validate.validator.validate_score` or
:func:`~mfgpde.validate.validator.validate_stationary`) against the stored reference, so every metric
``mfgpde validate`` reports comes with the reference's error bar and a verdict: ``resolved`` (the
model's value exceeds twice the bar: a real difference from the reference) or ``below the
reference's resolution``.

The leaderboard is a JSON list of rows (entry, model, kind, the headline metrics, their bars and
verdicts, the date) and its Markdown rendering beside it (``FILE.md`` for ``FILE.json``); both are
rewritten atomically on every append.
"""

from __future__ import annotations

import datetime
import os

from ..io import atomic_write, write_json
from ..validate.validator import metric_value, validate_flow, validate_score, validate_stationary, verdicts_for
from .catalogue import entry
from .store import exact_marginal, reference

#: the headline metrics of a row, per reference family: (key in the metrics, column title)
HEADLINES = {"flow": (("final.L1", "L1 m(T)"), ("final.W2", "W2 m(T)"), ("velocity_error_weighted", "velocity err")),
             "score": (("generated_vs_data.L1", "L1 generated"), ("generated_vs_data.W2", "W2 generated"),
                       ("score_error_weighted", "score err")),
             "ergodic": (("stationary.L1", "L1 stationary"), ("stationary.W2", "W2 stationary"),
                         ("velocity_error_weighted", "velocity err"))}


def score(name, model, *, kind=None, model_name="model", timeout=None):
    """Rate ``model`` on the zoo entry ``name`` (its reference is built first if needed).

    Parameters
    ----------
    name : str
    model : callable ``f(x, t)``, torch module or JAX function
        See :mod:`mfgpde.validate.models`.
    kind : str, optional
        One of the entry's kinds (default its first: ``velocity`` or ``score``).
    model_name : str
    timeout : float, optional
        Seconds one model call may take.

    Returns
    -------
    metrics : dict
        The validator's metrics with ``reference_error`` and ``verdicts``, plus ``entry``,
        ``reference_grid``, ``reference_build_time_s``.
    fields : dict
        Densities and maps for the report.
    """
    e = entry(name)
    kind = kind or e.kinds[0]
    if kind not in e.kinds:
        raise ValueError(f"--kind {kind} does not fit zoo entry {e.name} (a {e.reference} reference); allowed: "
                         f"{', '.join(e.kinds)}")
    ref = reference(e.name)
    if e.reference == "score":
        sm, data, p = ref.result
        est = ref.error_estimate or {}
        known = ((est["score_error_weighted"], est["data_gap_L1"]) if "data_gap_L1" in est else None)
        metrics, fields = validate_score(sm, data, model, name=model_name, kind=kind, timeout=timeout, forward=p,
                                         exact_marginal=exact_marginal(e), known_errors=known)
        if metrics.get("reference_error") is None and ref.error_estimate:
            # no exact law: the stored evaluation floor is the bar of the generated-density metrics
            _floor_verdicts(metrics, ref.error_estimate, sm.grid, sm.nt)
    elif e.reference == "ergodic":
        metrics, fields = validate_stationary(ref.result, model, kind=kind, name=model_name, timeout=timeout)
    else:
        metrics, fields = validate_flow(ref.result, model, kind=kind, name=model_name, timeout=timeout)
    metrics.update({"entry": e.name, "family": e.family, "reference": e.reference, "mfg": e.mfg, "reference_grid": e.grid,
                    "reference_file": ref.path, "reference_build_time_s": ref.build_time_s})
    return metrics, fields


def _floor_verdicts(metrics, bars, grid, nt):

    metrics["reference_error"] = dict(bars)
    metrics["verdicts"] = verdicts_for(bars, metrics, grid, nt, 1)
    metrics.pop("reference_error_unavailable", None)


def leaderboard_row(metrics, model_name, kind):
    """The leaderboard row of one rating."""
    family = metrics["reference"]
    verdicts = metrics.get("verdicts") or {}
    cells = []
    for key, title in HEADLINES[family]:
        v = verdicts.get(key, {})
        cells.append({"metric": key, "title": title, "value": metric_value(metrics, key),
                      "reference_error": v.get("reference_error"), "verdict": v.get("verdict", "no error bar")})
    return {"entry": metrics["entry"], "model": model_name, "kind": kind, "reference_grid": metrics["reference_grid"],
            "metrics": cells, "date": datetime.date.today().isoformat()}


def append_leaderboard(path, row):
    """Append ``row`` to the JSON leaderboard ``path`` and rewrite its Markdown beside it."""
    import json


    base = path[:-5] if path.endswith(".json") else path
    jpath, mpath = base + ".json", base + ".md"
    rows = []
    if os.path.exists(jpath):
        try:
            with open(jpath) as fh:
                rows = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--leaderboard {jpath!r} is not a leaderboard JSON file ({exc}); not overwritten") from None
        if not isinstance(rows, list):
            raise ValueError(f"--leaderboard {jpath!r} is not a leaderboard (a JSON list of rows); not overwritten")
    rows.append(row)
    write_json(jpath, rows)
    def write_md(tmp):
        with open(tmp, "w") as fh:
            fh.write(render_markdown(rows))

    atomic_write(mpath, write_md, ".md")
    return jpath, mpath


def _fmt(cell):
    if cell["value"] is None:
        return "-"
    text = f"{cell['value']:.2e}"
    if cell["reference_error"] is not None:
        text += f" ± {cell['reference_error']:.1e}"
    if cell["verdict"] == "resolved":
        text += " *"
    return text


def render_markdown(rows):
    """The leaderboard as Markdown tables, one per entry (``*``: resolved, i.e. the model
    differs from the reference by more than twice the reference's error bar).
    """
    out = ["# mfgpde zoo leaderboard", "",
           "value ± the reference's error bar; `*` marks a value that exceeds twice the bar (the model "
           "measurably differs from the reference). Lower is better.", ""]
    by_entry = {}
    for r in rows:
        by_entry.setdefault(r["entry"], []).append(r)
    for name, group in by_entry.items():
        titles = [c["title"] for c in group[0]["metrics"]]
        out += [f"## {name} (reference {group[0]['reference_grid']})", "",
                "| model | kind | " + " | ".join(titles) + " | date |",
                "|---|---|" + "---|" * len(titles) + "---|"]
        for r in group:
            out.append(f"| {r['model']} | {r['kind']} | " + " | ".join(_fmt(c) for c in r["metrics"])
                       + f" | {r['date']} |")
        out.append("")
    return "\n".join(out)
