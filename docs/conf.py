"""Sphinx configuration of the mfgpde documentation (``make docs``).

Four pages are generated from the code at build time so that they cannot drift from it:
the configuration reference (from the key schemas in :mod:`mfgpde.config`), the CLI reference
(from the argparse parser of :mod:`mfgpde.cli`), the benchmark tables (from
``benchmarks/results/*.json``) and the zoo catalogue (from :mod:`mfgpde.zoo.catalogue`, with the
build times and error estimates of ``benchmarks/results/zoo_build.json``). The gallery runs ``examples/plot_*.py``.
"""

import inspect
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import mfgpde  # noqa: E402

project = "mfgpde"
author = "the mfgpde developers"
copyright = "2026, the mfgpde developers"
release = version = mfgpde.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
numpydoc_show_class_members = False
numpydoc_validation_checks = set()
html_theme = "pydata_sphinx_theme"
html_title = "mfgpde"
html_static_path = []
html_theme_options = {"navigation_depth": 2, "show_toc_level": 2}
exclude_patterns = ["_build", "gallery/*.ipynb", "gallery/*.py", "gallery/*.zip"]
suppress_warnings = ["config.cache"]   # sphinx-gallery's config holds callables

sphinx_gallery_conf = {
    "examples_dirs": os.path.join(ROOT, "examples"),
    "gallery_dirs": os.path.join(HERE, "gallery"),
    "filename_pattern": r"plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
}


# ----------------------------------------------------------------------------- generated pages
def _table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join("=" * w for w in widths)
    fmt = "  ".join("{:<%d}" % w for w in widths)
    out = [line, fmt.format(*header), line]
    out += [fmt.format(*[str(c) for c in r]) for r in rows]
    out.append(line)
    return "\n".join(out)


def _config_reference():
    from mfgpde import config
    from mfgpde.config import PRESET_KEYS

    lines = ["Configuration reference", "=======================", "",
             "Generated from the key schemas of :mod:`mfgpde.config` (an unknown key is refused with the",
             "nearest valid one, so this list is exactly what is accepted).", "",
             "Top level", "---------", "",
             ", ".join(f"``{k}``" for k in sorted(config.TOP_LEVEL_KEYS)), ""]
    lines += ["Tables", "------", ""]
    rows = [(f"[{s}]", ", ".join(sorted(k))) for s, k in sorted(config.SECTION_KEYS.items())]
    rows.append(("[solver]", ", ".join(sorted(config.SOLVER_KEYS))))
    lines += [_table(rows, ("table", "keys")), ""]
    lines += ["Hamiltonians (``[hamiltonian] type``)", "-------------------------------------", ""]
    rows = []
    for name, cls in sorted(config.HAMILTONIANS.items()):
        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        rows.append((name, ", ".join(params), cls.__name__))
    lines += [_table(rows, ("type", "keys", "class")), ""]
    lines += ["Couplings and terminal costs (``[[coupling]]``, ``[terminal]``)",
              "----------------------------------------------------------------", ""]
    rows = [(k, ", ".join(sorted(v))) for k, v in sorted(config.COUPLING_KEYS.items())]
    lines += [_table(rows, ("type", "keys")), ""]
    lines += ["Initial densities (``[m0]``)", "----------------------------", ""]
    rows = [(k, ", ".join(sorted(v))) for k, v in sorted(config.DENSITY_KEYS.items())]
    lines += [_table(rows, ("type", "keys")), ""]
    lines += ["Meshes (``[mesh]``, FEM backend)", "--------------------------------", ""]
    rows = [(k, ", ".join(sorted(v))) for k, v in sorted(config.MESH_KEYS.items())]
    lines += [_table(rows, ("type", "keys")), ""]
    lines += ["Generative presets (``preset = ...``)", "-------------------------------------", ""]
    rows = []
    for name, tabs in sorted(PRESET_KEYS.items()):
        for tab, keys in sorted(tabs.items()):
            rows.append((name, f"[{tab}]" if tab else "top level", ", ".join(sorted(keys)) or "(none)"))
    lines += [_table(rows, ("preset", "table", "extra keys")), ""]
    lines += ["The format, with an example", "---------------------------", "", "::", ""]
    lines += ["    " + ln for ln in (config.__doc__ or "").splitlines()]
    return "\n".join(lines) + "\n"


def _cli_reference():
    import argparse

    from mfgpde import cli

    captured = {}
    real = argparse.ArgumentParser.parse_args

    def grab(self, args=None, namespace=None):
        captured["parser"] = self
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = grab
    try:
        cli.main(["--help"])
    except SystemExit:
        pass
    finally:
        argparse.ArgumentParser.parse_args = real
    parser = captured["parser"]
    lines = ["Command-line reference", "======================", "",
             "Generated from the argparse parser of :mod:`mfgpde.cli`.", "", "``mfgpde``", "----------", "", "::", ""]
    lines += ["    " + ln for ln in parser.format_help().splitlines()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                title = f"``mfgpde {name}``"
                lines += ["", title, "-" * len(title), "", "::", ""]
                lines += ["    " + ln for ln in sub.format_help().splitlines()]
    return "\n".join(lines) + "\n"


def _medians(case):
    """Per-variant median wall times (s) found in one benchmark case record."""
    out = {}
    if isinstance(case, dict):
        if "median_s" in case:
            out[""] = case["median_s"]
        for key in ("warm", "runs"):
            runs = case.get(key)
            if isinstance(runs, list) and runs and isinstance(runs[0], dict) and "wall_time_s" in runs[0]:
                out.setdefault("", statistics.median(r["wall_time_s"] for r in runs))
        for k, v in case.items():
            if isinstance(v, dict) and k not in ("machine",):
                for sub, val in _medians(v).items():
                    out[f"{k}{'/' + sub if sub else ''}"] = val
    return out


def _benchmarks():
    folder = os.path.join(ROOT, "benchmarks", "results")
    lines = ["Benchmarks", "==========", "",
             "Generated from ``benchmarks/results/*.json`` (written by ``benchmarks/run.py``,",
             "``benchmarks/compare.py`` and ``benchmarks/scaling.py``). Median wall times in seconds;",
             "each file records its machine. Timings from different files were taken on different",
             "days and machines: compare only within one table.", ""]
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(folder, name)) as fh:
            try:
                data = json.load(fh)
            except ValueError:
                continue
        cases = data.get("cases") if isinstance(data, dict) else None
        if not isinstance(cases, dict):
            continue
        rows = []
        for case, rec in cases.items():
            for variant, med in _medians(rec).items():
                rows.append((case, variant or "-", f"{med:.3g}"))
        if not rows:
            continue
        lines += [name, "-" * len(name), ""]
        machine = data.get("machine")
        meta = [f"machine: ``{json.dumps(machine)}``" if machine else "", f"date: {data.get('date', '?')}"]
        if data.get("base"):
            meta.append(f"base commit: ``{data['base']}``")
        lines += [", ".join(m for m in meta if m), ""]
        lines += [_table(rows, ("case", "variant", "median s")), ""]
    return "\n".join(lines) + "\n"


def _zoo_catalogue():
    from mfgpde.zoo.catalogue import ENTRIES

    built = {}
    path = os.path.join(ROOT, "benchmarks", "results", "zoo_build.json")
    if os.path.exists(path):
        with open(path) as fh:
            built = json.load(fh).get("entries", {})
    rows = []
    for e in ENTRIES.values():
        b = built.get(e.name, {})
        est = b.get("estimated_error")
        rows.append((e.name, e.family, "/".join(e.kinds), e.dim, e.grid.replace(", ", " "),
                     f"{est:.1e}" if est is not None else "-", f"{b['build_time_s']:.0f}" if "build_time_s" in b else "-",
                     "yes" if e.exact else "-"))
    lines = [".. Generated by docs/conf.py from mfgpde.zoo.catalogue; do not edit.", "",
             "The zoo catalogue", "=================", "",
             f"{len(rows)} entries. *est. error*: the L1 error of the final (flow), stationary (ergodic) or generated "
             "(score) density of the stored reference, from ``benchmarks/results/zoo_build.json`` (``mfgpde zoo "
             "build --all`` on the 2-core development machine; *build s* its build time). *exact*: the entry has an "
             "exact model (``--model exact``).", "",
             _table(rows, ("name", "family", "kinds", "dim", "grid", "est. error", "build s", "exact")), ""]
    board = os.path.join(ROOT, "benchmarks", "results", "zoo_leaderboard.json")
    if os.path.exists(board):
        with open(board) as fh:
            rows = json.load(fh)

        def cell(c):
            if c.get("value") is None:
                return "-"
            text = f"{c['value']:.2e}"
            if c.get("reference_error") is not None:
                text += f" +- {c['reference_error']:.1e}"
            return text + (" *" if c.get("verdict") == "resolved" else "")

        table = [(r["entry"], r["model"], *[f"{c['title']}: {cell(c)}" for c in r["metrics"]]) for r in rows]
        width = max(len(t) for t in table)
        table = [t + ("",) * (width - len(t)) for t in table]
        lines += ["Leaderboard of the reference models", "-----------------------------------", "",
                  "From ``benchmarks/results/zoo_leaderboard.json``: value +- the reference's error bar; ``*`` marks "
                  "a value beyond twice the bar (the model measurably differs from the reference).", "",
                  _table(table, ("entry", "model") + tuple(f"metric {i + 1}" for i in range(width - 2))), ""]
    lines += ["The MFG of each entry", "---------------------", ""]
    lines += [f"``{e.name}``\n    ``{e.mfg}``" for e in ENTRIES.values()]
    return "\n".join(lines) + "\n"


def _write_generated(app):
    gen = os.path.join(HERE, "generated")
    os.makedirs(gen, exist_ok=True)
    for fname, make in (("config_reference.rst", _config_reference), ("cli_reference.rst", _cli_reference),
                        ("benchmarks.rst", _benchmarks), ("zoo_catalogue.rst", _zoo_catalogue)):
        text = make()
        path = os.path.join(gen, fname)
        old = open(path).read() if os.path.exists(path) else None
        if old != text:              # rewrite only on change: Sphinx rebuilds what changed
            with open(path, "w") as fh:
                fh.write(text)


_write_generated(None)   # before Sphinx looks for source files
