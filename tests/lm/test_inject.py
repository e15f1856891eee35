import copy

import pytest
import torch
from torch import nn

from qlite.lm import (QuantumAdapter, QuantumAdapterConfig, QuantumFFN, QuantumFFNConfig, QuantumLoRA,
                      QuantumLoRAConfig, UnitaryAdapter, UnitaryAdapterConfig, inject, merge_and_unload,
                      parameter_ledger)

LINEAR_TARGETS = {"llama": ["q_proj", "v_proj"], "gpt2": ["c_attn"], "bert": ["query", "value"]}
MLP_TARGETS = {"llama": ["mlp"], "gpt2": ["mlp"], "bert": ["intermediate"]}
CONFIGS = [QuantumAdapterConfig(n_qubits=4, spectrum_layers=1, sublayers=1), QuantumLoRAConfig(r=2),
           QuantumLoRAConfig(r=2, scope="layer", features="random"), UnitaryAdapterConfig(r=2, depth=2)]


def logits(model, x):
    with torch.no_grad():
        return model(x).logits


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{type(c).__name__}-{getattr(c, 'features', '')}")
def test_zero_initialised_adapters_leave_logits_unchanged(tiny_lm, tokens, cfg):
    kind, base = tiny_lm
    before = {k: v.clone() for k, v in base.state_dict().items()}
    ref = logits(base, tokens)
    hybrid = inject(base, cfg, target_modules=LINEAR_TARGETS[kind])
    assert torch.equal(logits(hybrid, tokens), ref)  # exactly: the adapters add zeros
    # the caller's model is untouched, the copy's base is frozen and only the adapters train
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())
    assert all(p.requires_grad for p in base.parameters())
    wrapped = [m for m in hybrid.modules() if isinstance(m, (QuantumAdapter, QuantumLoRA, UnitaryAdapter))]
    assert len(wrapped) == 2 * len(LINEAR_TARGETS[kind])  # two blocks
    trainable = [n for n, p in hybrid.named_parameters() if p.requires_grad]
    assert trainable and not any(".base." in n for n in trainable)


def test_inplace_modifies_the_model_itself(tiny_llama):
    out = inject(tiny_llama, QuantumLoRAConfig(r=2), target_modules=["q_proj"], inplace=True)
    assert out is tiny_llama and isinstance(tiny_llama.model.layers[0].self_attn.q_proj, QuantumLoRA)


@pytest.mark.parametrize("cfg", [QuantumLoRAConfig(r=2), QuantumLoRAConfig(r=3, scope="layer", features="free"),
                                 UnitaryAdapterConfig(r=2, depth=3)], ids=lambda c: type(c).__name__)
def test_merged_logits_equal_unmerged(tiny_llama, tokens, cfg):
    hybrid = inject(tiny_llama, cfg, target_modules=["q_proj", "k_proj", "v_proj", "down_proj"])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # move away from the zero start so the update is not trivially zero
        for p in hybrid.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
    out = logits(hybrid, tokens)
    assert (out - logits(tiny_llama, tokens)).abs().max() > 1e-3
    merged = merge_and_unload(hybrid)
    assert type(merged.model.layers[1].self_attn.v_proj) is nn.Linear
    assert not any(isinstance(m, (QuantumLoRA, UnitaryAdapter)) for m in merged.modules())
    assert not hasattr(merged, "qlite_generator")
    torch.testing.assert_close(logits(merged, tokens), out, atol=1e-5, rtol=0)
    led = parameter_ledger(merged)
    assert led.total_trainable == 0 and led.bytes_stored == parameter_ledger(tiny_llama).bytes_stored


def test_per_token_adapters_refuse_to_merge(tiny_llama):
    hybrid = inject(tiny_llama, QuantumAdapterConfig(n_qubits=3), target_modules=["v_proj"])
    with pytest.raises(ValueError, match="cannot be merged"):
        merge_and_unload(hybrid)
    with pytest.raises(ValueError, match="cannot be merged"):
        hybrid.model.layers[0].self_attn.v_proj.merge()
    with pytest.raises(ValueError, match="no qlite.lm adapters"):
        merge_and_unload(tiny_llama)


@pytest.mark.parametrize("kind_cfg", [QuantumFFNConfig(n_qubits=3, heads=2, spectrum_layers=1)], ids=["ffn"])
def test_quantum_ffn_replaces_the_mlp(tiny_lm, tokens, kind_cfg):
    kind, base = tiny_lm
    hybrid = inject(base, kind_cfg, target_modules=MLP_TARGETS[kind])
    ffns = [m for m in hybrid.modules() if isinstance(m, QuantumFFN)]
    assert len(ffns) == 2
    assert logits(hybrid, tokens).shape == logits(base, tokens).shape
    d_in, d_out = ffns[0].in_features, ffns[0].out_features
    led = parameter_ledger(hybrid)
    assert led.adapter_weights + led.circuit_angles == 2 * kind_cfg.parameters_for(d_in, d_out)
    # the loss trains through the circuits
    hybrid.train()
    out = hybrid(tokens).logits
    out.float().logsumexp(-1).mean().backward()
    assert ffns[0].circuits[1].weights.grad.abs().sum() > 0


def test_ledger_matches_a_hand_count():
    net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
    # QuantumAdapter on layer 0: down 8*3, LayerNorm 2*3, up 3*6; circuit (1+1)*1*3*3 angles
    a = inject(net, QuantumAdapterConfig(n_qubits=3, spectrum_layers=1, sublayers=1), target_modules=["0"])
    led = parameter_ledger(a)
    assert (led.circuit_angles, led.adapter_weights, led.other_trainable) == (18, 24 + 6 + 18, 0)
    assert led.frozen == 8 * 6 + 6 + 6 * 4 + 4
    assert led.bytes_inference == led.bytes_stored  # a per-token adapter stays at inference
    # UnitaryAdapter on layer 2 (6 -> 4): U on 2 qubits, V on 3 qubits, depth 2: (2 + 3) * 2 angles; s has r
    u = inject(net, UnitaryAdapterConfig(r=2, depth=2), target_modules=["2"])
    led = parameter_ledger(u)
    assert (led.circuit_angles, led.adapter_weights) == (10, 2)
    assert led.bytes_inference == 4 * (8 * 6 + 6 + 6 * 4 + 4)  # merged: the base's float32 weights only
    # QuantumLoRA r=1 on both: A 8 + 6, B 6 + 4 values in chunks of 4 -> 4 + 3 = 7 chunks -> 3 qubits
    q = inject(net, QuantumLoRAConfig(r=1, chunk_size=4, hidden=(5,), depth=2), target_modules=["0", "2"])
    gen = q.qlite_generator
    assert gen.n_qubits == 3 and (gen.n_a, gen.n_b) == (4, 3)
    mapping = (4 * 5 + 5) + 2 * (5 * 4 + 4)  # trunk (n+1 -> 5) and the A / B heads (5 -> chunk)
    led = parameter_ledger(q)
    assert (led.circuit_angles, led.adapter_weights) == (2 * 3, mapping)
    # the free-feature control replaces the 6 angles by one value per chunk (7)
    f = parameter_ledger(inject(net, QuantumLoRAConfig(r=1, chunk_size=4, hidden=(5,), features="free"),
                                target_modules=["0", "2"]))
    assert (f.circuit_angles, f.adapter_weights) == (0, mapping + 7)
    r = parameter_ledger(inject(net, QuantumLoRAConfig(r=1, chunk_size=4, hidden=(5,), features="random"),
                                target_modules=["0", "2"]))
    assert (r.circuit_angles, r.adapter_weights) == (0, mapping)


def test_shared_generator_runs_once_per_forward(tiny_llama, tokens):
    hybrid = inject(tiny_llama, QuantumLoRAConfig(r=2), target_modules=["q_proj", "v_proj", "o_proj"])
    calls = []
    hybrid.qlite_generator.source.register_forward_hook(lambda *a: calls.append(1))
    hybrid.train()
    for _ in range(2):
        hybrid(tokens).logits.sum().backward()
    assert len(calls) == 2  # six layers, one circuit run per forward
    with torch.no_grad():
        hybrid(tokens)
        hybrid(tokens)
    assert len(calls) == 3  # without gradients the factors are reused until a parameter changes
    with torch.no_grad():
        hybrid.qlite_generator.head_b.bias.add_(1.0)
        hybrid(tokens)
    assert len(calls) == 4


def test_a_copy_never_reuses_cached_factors(tiny_llama, tokens):
    hybrid = inject(tiny_llama, QuantumLoRAConfig(r=2), target_modules=["q_proj"])
    with torch.no_grad():
        hybrid(tokens)
    twin = copy.deepcopy(hybrid)
    assert twin.qlite_generator._cache is None
    assert twin.model.layers[0].self_attn.q_proj.weight_generator is twin.qlite_generator


def test_generate_works_on_an_injected_model(tiny_llama, tokens):
    hybrid = inject(tiny_llama, QuantumAdapterConfig(n_qubits=3, spectrum_layers=1), target_modules=["q_proj"])
    out = hybrid.generate(tokens[:1, :4], max_new_tokens=5, do_sample=False)
    ref = tiny_llama.generate(tokens[:1, :4], max_new_tokens=5, do_sample=False)
    assert torch.equal(out, ref)  # zero-initialised: the same greedy continuation


def test_bad_targets_and_widths(tiny_llama):
    with pytest.raises(ValueError, match=r"match no module.*q_proj"):
        inject(tiny_llama, QuantumLoRAConfig(r=2), target_modules=["qproj"])
    with pytest.raises(TypeError, match="wraps Linear-like layers.*self_attn"):
        inject(tiny_llama, QuantumLoRAConfig(r=2), target_modules=["self_attn"])
    with pytest.raises(TypeError, match="holds no linear layer"):
        inject(tiny_llama, QuantumFFNConfig(n_qubits=2), target_modules=["input_layernorm"])
    with pytest.raises(ValueError, match="n_qubits=12 is larger than the layer's input width 8"):
        inject(nn.Sequential(nn.Linear(8, 8)), QuantumAdapterConfig(n_qubits=12), target_modules=["0"])
    with pytest.raises(ValueError, match=r"r=17 must lie in \[1, 16\]"):
        inject(tiny_llama, UnitaryAdapterConfig(r=17), target_modules=["v_proj"])
    with pytest.raises(ValueError, match=r"r=20 must lie in \[1, 16\]"):
        inject(tiny_llama, QuantumLoRAConfig(r=20), target_modules=["v_proj"])
    with pytest.raises(ValueError, match="n_qubits=1 gives 2 basis states but 4 chunks"):
        inject(tiny_llama, QuantumLoRAConfig(r=2, n_qubits=1), target_modules=["v_proj"])
    with pytest.raises(ValueError, match="GiB per adapted layer"):
        inject(tiny_llama, QuantumAdapterConfig(n_qubits=16), target_modules=["q_proj"], tokens=10**9)
    with pytest.raises(TypeError, match="qlite.lm config"):
        inject(tiny_llama, {"r": 2}, target_modules=["q_proj"])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        inject("llama", QuantumLoRAConfig(), target_modules=["q_proj"])


def test_a_second_injection_does_not_wrap_adapters(tiny_llama):
    one = inject(tiny_llama, QuantumLoRAConfig(r=2), target_modules=["q_proj"])
    two = inject(one, UnitaryAdapterConfig(r=2), target_modules=["*proj"])
    q = two.model.layers[0].self_attn.q_proj
    assert isinstance(q, QuantumLoRA) and isinstance(q.base, nn.Linear)
    assert isinstance(two.model.layers[0].self_attn.k_proj, UnitaryAdapter)
    assert [r["config"]["type"] for r in two.qlite_adapters] == ["QuantumLoRAConfig", "UnitaryAdapterConfig"]


@pytest.mark.parametrize("cfg", [QuantumLoRAConfig(r=2), QuantumLoRAConfig(r=2, scope="layer"), UnitaryAdapterConfig(r=2)],
                         ids=["qlora-model", "qlora-layer", "unitary"])
def test_gradient_accumulation_over_two_forwards(tiny_llama, tokens, cfg):
    hybrid = inject(tiny_llama, cfg, target_modules=["q_proj", "v_proj"])
    hybrid.train()
    for _ in range(2):  # two micro-batches, one optimiser step: no freed graph is reused
        hybrid(tokens).logits.float().logsumexp(-1).mean().backward()
    grads = [p.grad for p in hybrid.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
