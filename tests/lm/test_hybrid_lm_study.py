"""experiments/hybrid_lm.py in its quick mode (the CI slice of issue 12's study)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _study():
    spec = importlib.util.spec_from_file_location("hybrid_lm", ROOT / "experiments" / "hybrid_lm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_study_records_every_arm_and_resumes(tmp_path, shared_data):
    study = _study()
    assert study.main(["--quick", "--results", str(tmp_path)]) == 0
    runs = [json.loads(line) for line in (tmp_path / "hybrid_lm_C_quick.jsonl").read_text().splitlines()]
    arms = {r["arm"] for r in runs}
    assert len(runs) == 3 and any(a.startswith("quantum-ffn") for a in arms)
    q = next(r for r in runs if r["arm"] == "quantum-ffn")
    eq = next(r for r in runs if r["arm"].startswith("mlp-equal-params"))
    # equal parameters means equal within one MLP width step (3 * hidden per unit of width, per block)
    assert abs(q["ledger"]["total_trainable"] - eq["ledger"]["total_trainable"]) <= 3 * 32
    assert q["ledger"]["circuit_angles"] == (2 + 1) * 2 * 4 * 3  # one block, one head: (L + 1) * sublayers * n * 3
    for r in runs:
        assert r["test"]["n_tokens"] == r["test"]["n_windows"] * 31 and 1 < r["test"]["perplexity"] < 200
    summary = json.loads((tmp_path / "hybrid_lm_quick.json").read_text())["summary"]
    assert {s["arm"] for s in summary} == arms
    md = (tmp_path / "hybrid_lm_quick.md").read_text()
    assert "| quantum-ffn |" in md and "scored tokens" in md
    # a second run finds every (arm, lr, seed) done and adds nothing
    assert study.main(["--quick", "--results", str(tmp_path)]) == 0
    assert len((tmp_path / "hybrid_lm_C_quick.jsonl").read_text().splitlines()) == 3


def test_unknown_arm_is_refused(tmp_path, shared_data):
    with pytest.raises(SystemExit):
        _study().main(["--quick", "--arms", "nope", "--results", str(tmp_path)])
