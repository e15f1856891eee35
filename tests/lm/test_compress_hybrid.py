"""qlite.classical on hybrid models: compress the classical layers, quantize circuit angles, and
train quantum adapters on a compressed base (the quantum analogue of QLoRA)."""

import pytest
import torch
import torch.nn.functional as F

from qlite.classical import GPTQ, AngleQuant, SparseGPT, compress, state_bytes
from qlite.lm import (QuantumAdapter, QuantumAdapterConfig, QuantumLoRAConfig, UnitaryAdapterConfig, adapter_patterns,
                      inject, merge_and_unload, parameter_ledger)


@pytest.fixture
def calib():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 64, (1, 16), generator=g) for _ in range(4)]


def _lm_loss(model, x):
    logits = model(x).logits
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), x[:, 1:].reshape(-1))


def _train(model, batches, steps=12, lr=3e-2):
    """Fit the first batch (the adapters can lower its loss even when the base cannot move)."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = _lm_loss(model, batches[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_gptq_on_the_classical_layers_leaves_adapters_in_float(tiny_llama, calib):
    hybrid = inject(tiny_llama, QuantumAdapterConfig(n_qubits=3, spectrum_layers=1), target_modules=["q_proj"])
    hybrid = inject(hybrid, QuantumLoRAConfig(r=2), target_modules=["v_proj"])
    skip = ("lm_head", *adapter_patterns(hybrid))
    res = compress(hybrid, [GPTQ(bits=4, group_size=16, skip=skip)], calib=calib)
    q = res.model.model.layers[0].self_attn.q_proj
    assert isinstance(q, QuantumAdapter)
    assert type(q.base).__name__ == "QuantizedLinear" and type(q.down).__name__ == "Linear"
    assert type(res.model.qlite_generator.head_a).__name__ == "Linear"  # the generator is an adapter: skipped
    names = {r.name for r in res.report.layers}
    assert "model.layers.0.self_attn.q_proj.base" in names and not any(n.endswith((".down", ".up")) or "qlite_generator" in n for n in names)
    assert res.report.bytes_after < res.report.bytes_before
    with torch.no_grad():
        assert torch.isfinite(res.model(calib[0]).logits).all()


def test_angle_quant_quantizes_every_circuit(tiny_llama, calib):
    hybrid = inject(tiny_llama, QuantumAdapterConfig(n_qubits=3, spectrum_layers=1), target_modules=["q_proj"])
    hybrid = inject(hybrid, QuantumLoRAConfig(r=2), target_modules=["v_proj"])
    hybrid = inject(hybrid, UnitaryAdapterConfig(r=2), target_modules=["k_proj"])
    with torch.no_grad():
        for p in hybrid.parameters():
            if p.requires_grad:
                p.add_(0.05)
        ref = hybrid(calib[0]).logits
    res = compress(hybrid, [AngleQuant(bits=8)])
    kinds = sorted({r.name.rsplit(".", 1)[0].rsplit(".", 1)[-1] for r in res.report.layers})
    # QuantumLayers, the generator's circuit, the unitary banks of k_proj's U (16 rows) and V (48 rows)
    assert kinds == ["circuit", "qlite_unitary_4q", "qlite_unitary_6q", "source"]
    assert len(res.report.layers) == 2 + 1 + 2
    assert parameter_ledger(res.model).circuit_angles == 0  # angles are now codes, not parameters
    with torch.no_grad():
        out = res.model(calib[0]).logits
    # 8-bit angles: close to, not equal to, the float model
    assert 0 < (out - ref).abs().max() < 0.05


@pytest.mark.parametrize("recipe", [lambda: [GPTQ(bits=4, group_size=16)], lambda: [SparseGPT(0.5)]],
                         ids=["gptq-w4", "sparsegpt-50"])
def test_quantum_adapters_recover_a_compressed_base(tiny_llama, calib, recipe):
    base = compress(tiny_llama, recipe(), calib=calib).model
    hybrid = inject(base, QuantumAdapterConfig(n_qubits=4, spectrum_layers=1), target_modules=["q_proj", "v_proj"])
    led = parameter_ledger(hybrid)
    assert led.other_trainable == 0 and led.circuit_angles > 0
    assert led.bytes_stored == state_bytes(hybrid)
    before = [p.clone() for p in base.state_dict().values()]
    losses = _train(hybrid, calib)
    assert losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(before, base.state_dict().values()))  # compressed base untouched


def test_merge_refuses_a_quantized_base(tiny_llama, calib):
    base = compress(tiny_llama, [GPTQ(bits=4, group_size=16)], calib=calib).model
    hybrid = inject(base, QuantumLoRAConfig(r=2), target_modules=["q_proj"])
    with pytest.raises(ValueError, match="QuantizedLinear.*undo its compression"):
        merge_and_unload(hybrid)


def test_quantum_adapters_on_an_nf4_base(tiny_llama, calib):
    pytest.importorskip("bitsandbytes")
    from qlite.classical.export import export_bitsandbytes

    q = export_bitsandbytes(tiny_llama, "nf4")
    assert type(q.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    hybrid = inject(q, QuantumLoRAConfig(r=2), target_modules=["q_proj", "v_proj"])
    losses = _train(hybrid, calib, steps=6)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
