"""experiments/hybrid_lm_tier_b.py (issue 12, tier B) in its quick mode, and its pieces on analytic ground truth."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
ARMS = {"base", "quantum-ffn", "narrow-mlp-k (I=3)", "gptq-w4", "awq-w4", "svd-llm", "structured", "wanda"}


def _load(name):
    sys.path.insert(0, str(ROOT / "experiments"))  # the scripts import study_io / hybrid_lm from their folder
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


class _Block(nn.Module):
    def __init__(self, mlp):
        super().__init__()
        self.mlp = mlp

    def forward(self, x):
        return x + self.mlp(x)


class _Stack(nn.Module):
    def __init__(self, mlps):
        super().__init__()
        self.layers = nn.ModuleList(_Block(m) for m in mlps)

    def forward(self, x):
        for b in self.layers:
            x = b(x)
        return x


def test_mlp_influence_is_one_minus_the_cosine_of_the_residual_update():
    tb = _load("hybrid_lm_tier_b")
    zero, rot = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        zero.weight.zero_()
        rot.weight.copy_(torch.tensor([[0.0, -1.0], [1.0, 0.0]]))  # h + R h with R a quarter turn: cos = 1 / sqrt(2)
    x = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(0))
    bi = tb.mlp_influence(_Stack([zero, rot]), [x])
    assert bi[0] == pytest.approx(0.0, abs=1e-7)
    assert bi[1] == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)


def test_plan_counts_the_parameters_it_moves():
    pytest.importorskip("transformers")
    tb = _load("hybrid_lm_tier_b")
    from qlite.lm import QuantumFFNConfig
    from qlite.models import small_llama

    m = small_llama(256, hidden_size=64, n_layers=4, n_heads=2, intermediate_size=192, seed=0)
    q = QuantumFFNConfig(n_qubits=4)
    total = sum(p.numel() for p in {id(p): p for p in m.parameters()}.values())
    per = 3 * 64 * 192 - q.parameters_for(64, 64)
    plan = tb.make_plan(m, q, [0.4, 0.1, 0.3, 0.2], 0.4)
    k = round(0.4 * total / per)
    assert len(plan.blocks) == k >= 2 and plan.blocks == tuple(sorted([1, 3, 2, 0][:k]))
    assert plan.removed == k * per and plan.spread_fraction == pytest.approx(k * per / (4 * 3 * 64 * 192))
    assert plan.narrow_width == round(q.parameters_for(64, 64) / (3 * 64))
    with pytest.raises(ValueError, match="fraction"):
        tb.make_plan(m, q, [0.0] * 4, 1.5)


def test_quick_tier_b_records_every_arm_resumes_and_merges(tmp_path, shared_data):
    pytest.importorskip("transformers")
    tb = _load("hybrid_lm_tier_b")
    assert tb.main(["--quick", "--results", str(tmp_path)]) == 0
    path = tmp_path / "hybrid_lm_B_quick.jsonl"
    runs = [json.loads(line) for line in path.read_text().splitlines()]
    assert {r["arm"] for r in runs} == ARMS
    healed = {r["arm"] for r in runs if r["family"] == "heal"}
    assert healed == ARMS - {"base", "gptq-w4", "awq-w4"}
    # the grid of 2 with seed 0 for every healed arm, then seed 1 at the chosen rate; one run for the others
    assert len(runs) == 3 + 3 * len(healed)
    by = {(r["arm"], r["lr"], r["seed"]): r for r in runs}
    base = by[("base", None, 0)]
    plan = base["meta"]["plan"]
    removed = {r["arm"]: base["ledger"]["weights_stored"] - r["ledger"]["weights_stored"] for r in runs}
    assert removed["quantum-ffn"] == plan["removed"]
    assert abs(removed["narrow-mlp-k (I=3)"] - plan["removed"]) <= 3 * 64  # one channel of a 64-wide SwiGLU
    for arm in ("svd-llm", "structured", "wanda"):  # spread: equal within a rank / channel step per layer
        assert removed[arm] == pytest.approx(plan["removed"], rel=0.05), arm
    q = by[("quantum-ffn", 1e-3, 0)]
    assert q["ledger"]["circuit_angles"] == (2 + 1) * 2 * 4 * 3  # one block, one head: (L + 1) * sublayers * n * 3
    assert q["ledger"]["total_trainable"] == 660 and q["final_loss"] < q["loss_first"]
    assert by[("gptq-w4", None, 0)]["test"]["bytes"] < 0.4 * base["test"]["bytes"]
    for r in runs:
        assert r["test"]["n_tokens"] == 8 * 63 and 1 < r["test"]["perplexity"] < 256
    # the unhealed QuantumFFN (zero up projection) is the teacher with that block's MLP dropped
    from qlite.classical import perplexity

    args = type("A", (), {"seqlen": 64})()
    data = tb.load_data(tb.byte_tokens, seqlen=64, max_chars=60_000)
    teacher = tb.quick_teacher(data, args)
    for name in plan["block_names"]:
        teacher.get_submodule(f"{name}.mlp").register_forward_hook(lambda m, a, out: torch.zeros_like(out))
    dropped = perplexity(teacher, data["val"], seqlen=64, batch_size=8)["perplexity"]
    assert q["unhealed_val"]["perplexity"] == pytest.approx(dropped, rel=1e-5)
    md = (tmp_path / "hybrid_lm_B_quick.md").read_text()
    assert "## Tier B" in md and "| quantum-ffn |" in md and "Pareto" in md
    assert (tmp_path / "hybrid_lm_B_quick_ppl_vs_bytes.png").stat().st_size > 0
    # a second run finds every run done and adds nothing
    assert tb.main(["--quick", "--results", str(tmp_path)]) == 0
    assert len(path.read_text().splitlines()) == len(runs)
    # hybrid_lm --merge tabulates tier B beside tier C
    hl = _load("hybrid_lm")
    assert hl.main(["--quick", "--results", str(tmp_path)]) == 0
    summary = hl.merge(sorted(tmp_path.glob("hybrid_lm_*.jsonl")), tmp_path / "hybrid_lm")
    assert {s["tier"] for s in summary} == {"B", "C"}
    md = (tmp_path / "hybrid_lm.md").read_text()
    assert "## Tier B" in md and "## Tier C" in md


def test_time_guard_starts_nothing_after_the_deadline(tmp_path, shared_data):
    pytest.importorskip("transformers")
    assert _load("hybrid_lm_tier_b").main(["--quick", "--stop-at", "1", "--results", str(tmp_path)]) == 0
    assert _load("hybrid_lm").main(["--quick", "--stop-at", "1", "--results", str(tmp_path)]) == 0
    assert not list(tmp_path.glob("*.jsonl"))


def test_unknown_arm_is_refused(tmp_path, shared_data):
    pytest.importorskip("transformers")
    with pytest.raises(SystemExit):
        _load("hybrid_lm_tier_b").main(["--quick", "--arms", "nope", "--results", str(tmp_path)])


def test_a_failing_arm_is_logged_and_the_sweep_goes_on(tmp_path, capsys):
    pytest.importorskip("transformers")
    tb = _load("hybrid_lm_tier_b")
    from qlite.models import small_llama

    base = small_llama(256, hidden_size=32, n_layers=2, n_heads=2, intermediate_size=64, max_seq_len=32, seed=0).eval()
    toks = torch.randint(0, 256, (2000,), generator=torch.Generator().manual_seed(0))
    data = {"heal": toks[:1000], "val": toks[1000:1200], "test": toks[1200:], "base_bytes": 1}
    args = type("A", (), {"steps": 1, "batch": 1, "seqlen": 32, "eval_batch": 4, "test_windows": 2, "seeds": "0,1",
                          "lrs": "1e-3", "stop_at": None})()

    def boom(base, seed):
        raise RuntimeError("planted failure")

    arms = {"boom": tb.Arm(boom, healed=True, trained=("model.layers.0.mlp",)),
            "base": tb.Arm(lambda b, s: b, healed=False)}
    path = tmp_path / "b.jsonl"
    assert tb.sweep(arms, base, data, args, torch.device("cpu"), path, {"tier": "B"}) == 0
    assert [json.loads(line)["arm"] for line in path.read_text().splitlines()] == ["base"]
    out = capsys.readouterr()
    assert "planted failure" in out.err and "boom: failed" in out.out
