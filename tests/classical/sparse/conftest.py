import pytest
import torch


@pytest.fixture
def tiny_llama():
    """A randomly initialised 2-block Llama with grouped-query attention (6 query heads, 2 KV heads)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                                   num_attention_heads=6, num_key_value_heads=2, head_dim=8,
                                   max_position_embeddings=128)
    return transformers.LlamaForCausalLM(cfg).eval()


@pytest.fixture
def token_calib():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 96, (1, 24), generator=g) for _ in range(3)]
