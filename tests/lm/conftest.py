import pytest
import torch


def _tiny(kind: str):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "llama":  # grouped-query attention: k/v are narrower than q (48 -> 16)
        cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                                       num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64)
        return transformers.LlamaForCausalLM(cfg).eval()
    if kind == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64)
        return transformers.GPT2LMHeadModel(cfg).eval()
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64)
    return transformers.BertForMaskedLM(cfg).eval()


@pytest.fixture
def tiny_llama():
    return _tiny("llama")


@pytest.fixture(params=["llama", "gpt2", "bert"])
def tiny_lm(request):
    return request.param, _tiny(request.param)


@pytest.fixture
def tokens():
    return torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(3))
