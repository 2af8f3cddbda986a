"""The end-to-end neural study at reduced size (runs where torch is installed: .venv-neural)."""

import json
import os
import sys

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed here: the neural extra needs Python 3.11 + "
                            "torch==2.13.0; `make setup` creates .venv-neural and `make test` runs this file there")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "validation"))


def test_reduced_neural_study(tmp_path):
    import neural_models

    assert neural_models.main(["--reduced", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "neural.json").read_text())
    flows = data["flows"]
    for name in ("kinetic", "kinetic+hjb"):
        m = flows[name]
        assert m["final"]["L1"] < 2.0 and m["hjb_residual"] >= 0
        assert abs(m["final"]["KL_model_reference"]) < 10
    assert flows["score"]["generated_vs_data"]["L1"] < 2.0
    assert (tmp_path / "report.md").read_text().count("HJB regulariser") >= 1
    for sub in ("kinetic", "kinetic_hjb", "score"):
        assert (tmp_path / sub / "metrics.json").exists()
