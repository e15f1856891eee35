"""MoLoRA: top-k routes exactly k experts, one expert is LoRA, training touches only the adapters,
quantum adapters as experts, bad input."""

import copy

import pytest
import torch

from qlite.classical.lowrank import MoLoRA, MoLoRALinear, molora_recover
from qlite.classical.lowrank.molora import route


def test_top_k_routes_exactly_k_experts_and_matches_the_selected_experts_sum():
    torch.manual_seed(0)
    base = torch.nn.Linear(12, 10)
    layer = MoLoRALinear(base, MoLoRA(n_experts=5, r=3, top_k=2), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(7, 12)
    g = layer.gates(x)
    assert ((g > 0).sum(-1) == 2).all()
    torch.testing.assert_close(g.sum(-1), torch.ones(7))
    probs = torch.softmax(x @ layer.router.weight.T, -1)
    y = base(x)
    for t in range(7):
        top = torch.topk(probs[t], 2).indices
        ref = base(x[t])
        for e in top:
            ref = ref + probs[t, e] / probs[t, top].sum() * layer.scale * (layer.lora_B[e] @ (layer.lora_A[e] @ x[t]))
        y[t] = ref
    torch.testing.assert_close(layer(x), y)
    assert torch.equal(route(torch.randn(3, 4), None).gt(0).sum(-1), torch.full((3,), 4))


def test_one_expert_equals_peft_lora(tiny_llm):
    peft = pytest.importorskip("peft")
    model, windows = tiny_llm
    names = ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"]
    m, _ = molora_recover(model, windows, MoLoRA(n_experts=1, r=2, alpha=4, targets=tuple(names), steps=1, lr=1e-2))
    pm = peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(r=2, lora_alpha=4, target_modules=names))
    with torch.no_grad():
        for n in names:
            mo, lo = m.get_submodule(n), pm.base_model.model.get_submodule(n)
            lo.lora_A["default"].weight.copy_(mo.lora_A[0])
            lo.lora_B["default"].weight.copy_(mo.lora_B[0])
        assert float(m.get_submodule(names[0]).lora_B.abs().max()) > 0  # the step trained B
        torch.testing.assert_close(m(windows[0]).logits, pm(windows[0]).logits, atol=1e-5, rtol=1e-5)


def test_training_touches_only_adapters_and_leaves_the_callers_model(tiny_llm):
    model, windows = tiny_llm
    ref = copy.deepcopy(model.state_dict())
    m, hist = molora_recover(model, windows, MoLoRA(n_experts=3, r=2, top_k=1, steps=3, lr=1e-2,
                                                    targets=("model.layers.0.self_attn.v_proj",)))
    assert len(hist) == 3
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ref.items())  # caller's model untouched
    layer = m.get_submodule("model.layers.0.self_attn.v_proj")
    assert isinstance(layer, MoLoRALinear) and not isinstance(model.get_submodule("model.layers.0.self_attn.v_proj"), MoLoRALinear)
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert trainable == 3 * 2 * (32 + 16) + 3 * 32  # experts (A: r x in, B: out x r) + router
    assert torch.equal(layer.base.weight, ref["model.layers.0.self_attn.v_proj.weight"])
    m2, _ = molora_recover(model, windows, MoLoRA(n_experts=2, r=2, steps=1, targets=("model.layers.0.self_attn.v_proj",)),
                           inplace=True)
    assert m2 is model


def test_quantum_adapters_as_experts(tiny_llm):
    from qlite.lm import QuantumAdapterConfig

    model, windows = tiny_llm
    cfg = QuantumAdapterConfig(n_qubits=2, spectrum_layers=1, sublayers=1)
    m, hist = molora_recover(model, windows[:1], MoLoRA(n_experts=2, top_k=1, steps=2, lr=1e-2,
                                                        targets=("model.layers.1.self_attn.q_proj",)),
                             expert=lambda base, g: cfg.build(base, generator=g))
    layer = m.get_submodule("model.layers.1.self_attn.q_proj")
    assert len(layer.experts) == 2 and type(layer.experts[0]).__name__ == "QuantumAdapter"
    assert not any(p.requires_grad for p in layer.base.parameters())
    assert len(hist) == 2


def test_bad_input_names_value_and_fix(tiny_llm):
    with pytest.raises(ValueError, match=r"top_k=5 is above n_experts=4.*top_k <= 4"):
        MoLoRA(n_experts=4, top_k=5)
    with pytest.raises(ValueError, match="n_experts must be a positive integer, got 0"):
        MoLoRA(n_experts=0)
    model, windows = tiny_llm
    with pytest.raises(ValueError, match="'model.norm' is a LlamaRMSNorm, not a linear layer"):
        molora_recover(model, windows, MoLoRA(targets=("model.norm",), steps=1))
