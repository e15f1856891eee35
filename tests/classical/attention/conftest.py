import pytest
import torch


@pytest.fixture
def llama_factory():
    """Build a random Llama of a given attention layout (eager attention, so scores are comparable)."""
    transformers = pytest.importorskip("transformers")

    def make(*, hidden=32, heads=4, kv=2, head_dim=8, layers=2, inter=64, vocab=64, seed=0):
        torch.manual_seed(seed)
        cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                                       head_dim=head_dim, max_position_embeddings=256)
        return transformers.LlamaForCausalLM(cfg).eval()

    return make
