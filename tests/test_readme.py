"""The README's Python examples run as written (so the documentation cannot rot)."""

import importlib.util
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKS = re.findall(r"```python\n(.*?)```", open(os.path.join(ROOT, "README.md")).read(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block(index, tmp_path, monkeypatch):
    from mfgpde.fem import INSTALL_HINT, fem_available

    if "mfgpde.fem" in BLOCKS[index] and not fem_available():
        pytest.skip("FEM example: " + INSTALL_HINT)
    if "import torch" in BLOCKS[index] and importlib.util.find_spec("torch") is None:
        pytest.skip("torch example: runs in .venv-neural (tests/test_neural_study.py::test_readme_torch_blocks)")
    monkeypatch.chdir(tmp_path)  # the examples write files
    exec(compile(BLOCKS[index], f"README block {index}", "exec"), {})


@pytest.mark.parametrize("script", sorted(f for f in os.listdir(os.path.join(ROOT, "validation")) if f.endswith(".py")))
def test_validation_scripts_import_and_parse_their_options(script):
    """Every validation study imports against the installed package (no sys.path edits) and
    answers --help; the studies themselves are run by their own reduced tests or by hand."""
    import subprocess
    import sys

    path = os.path.join(ROOT, "validation", script)
    assert "sys.path" not in open(path).read()
    proc = subprocess.run([sys.executable, path, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage" in proc.stdout, proc.stderr[-2000:]


#: the arguments that run each numpy-only validation study at a tiny size (the torch studies run
#: reduced in .venv-neural: tests/test_score_hjb.py and tests/test_neural_study.py)
TINY = {
    "convergence_orders.py": ["--tiny"],
    "cnf_wellposedness.py": ["--tiny"],
    "jko_vs_fokker_planck.py": ["--n", "100"],
    "fem_convergence.py": ["--hs", "0.3", "0.2"],
    "reference_accuracy.py": ["--tiny"],
    "manufactured_orders.py": ["--tiny"],
}


#: studies that take minutes even at their tiny size: run by `make test-slow` (CI runs it); the
#: well-posedness study's controls are also tested in tests/test_studies.py
SLOW_STUDIES = {"cnf_wellposedness.py"}


@pytest.mark.parametrize("script", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW_STUDIES else s
                                    for s in sorted(TINY)])
def test_validation_studies_run_end_to_end_at_a_tiny_size(script, tmp_path):
    """Each study runs whole (solves, JSON, figure, report) at a tiny size, as a module: a study
    that no longer runs against the package fails here, not on the next person's cluster job."""
    import subprocess
    import sys

    if script == "fem_convergence.py":
        from mfgpde.fem import fem_available

        if not fem_available():
            pytest.skip("the FEM study needs the fem extra (DOLFINx)")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "validation", script), "--out", str(tmp_path)]
                          + TINY[script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "report.md").exists(), sorted(p.name for p in tmp_path.iterdir())
    assert any(p.suffix == ".json" for p in tmp_path.iterdir()) and any(p.suffix == ".png" for p in tmp_path.iterdir())
