import json

import pytest
import torch

from qlite.lm import (QuantumAdapterConfig, QuantumFFNConfig, QuantumLoRAConfig, UnitaryAdapterConfig, inject,
                      load_adapters, save_adapters)


def _train_a_little(model, tokens):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def test_save_then_load_onto_a_fresh_base_gives_identical_logits(tiny_llama, tokens, tmp_path):
    fresh = type(tiny_llama)(tiny_llama.config).eval()
    fresh.load_state_dict(tiny_llama.state_dict())
    hybrid = inject(tiny_llama, QuantumLoRAConfig(r=2, features="free"), target_modules=["q_proj", "v_proj"])
    hybrid = inject(hybrid, QuantumAdapterConfig(n_qubits=3, spectrum_layers=1), target_modules=["o_proj"])
    hybrid = inject(hybrid, UnitaryAdapterConfig(r=2), target_modules=["k_proj"])
    hybrid = inject(hybrid, QuantumFFNConfig(n_qubits=3), target_modules=["layers.1.mlp"])
    _train_a_little(hybrid, tokens)
    path = save_adapters(hybrid, tmp_path / "ad")
    index = json.loads(path.read_text())
    assert [r["config"]["type"] for r in index["records"]] == ["QuantumLoRAConfig", "QuantumAdapterConfig",
                                                              "UnitaryAdapterConfig", "QuantumFFNConfig"]
    assert not any(".base." in k for k in index["tensors"])  # the base stays out of the adapter file
    size = (tmp_path / "ad" / "adapters.safetensors").stat().st_size
    assert size < sum(t.numel() * 4 for t in tiny_llama.state_dict().values()) / 3
    loaded = load_adapters(fresh, tmp_path / "ad")
    with torch.no_grad():
        assert torch.equal(loaded(tokens).logits, hybrid(tokens).logits)
    assert not hasattr(fresh, "qlite_adapters")  # the fresh base itself was not modified


def test_loading_refuses_another_base_a_corrupt_file_and_overwriting(tiny_llama, tokens, tmp_path):
    hybrid = inject(tiny_llama, QuantumLoRAConfig(r=2), target_modules=["q_proj"])
    save_adapters(hybrid, tmp_path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_adapters(hybrid, tmp_path)
    save_adapters(hybrid, tmp_path, overwrite=True)
    other = type(tiny_llama)(tiny_llama.config)  # same shapes, other weights
    with pytest.raises(ValueError, match="trained on another base model"):
        load_adapters(other, tmp_path)
    with pytest.raises(ValueError, match="already holds qlite.lm adapters"):
        load_adapters(hybrid, tmp_path)
    data = bytearray((tmp_path / "adapters.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "adapters.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        load_adapters(tiny_llama, tmp_path)
    with pytest.raises(FileNotFoundError, match="adapters.json"):
        load_adapters(tiny_llama, tmp_path / "nothing")
    with pytest.raises(ValueError, match="no adapters injected"):
        save_adapters(tiny_llama, tmp_path / "x")


def test_loading_onto_another_shape_is_refused(tiny_llama, tmp_path):
    import transformers

    hybrid = inject(tiny_llama, UnitaryAdapterConfig(r=2), target_modules=["q_proj"])
    save_adapters(hybrid, tmp_path)
    wider = transformers.LlamaForCausalLM(tiny_llama.config.__class__(**{**tiny_llama.config.to_dict(), "hidden_size": 96}))
    with pytest.raises(ValueError, match="another base model"):
        load_adapters(wider, tmp_path)
    with pytest.raises(ValueError, match="do not fit this model"):
        load_adapters(wider, tmp_path, check_base=False)
