"""Issue 17 item 3 on the real SmolLM2-135M (slow tier): the strided pattern's prefill equals eager
attention under the same explicit mask, and context pruning shrinks every layer's cache in generate."""

import pytest
import torch

from qlite.classical.kvcache import pruning_cache, scoring_attention
from qlite.classical.sparse_attention import SparseAttention, sparse_attention, sparse_mask

pytestmark = [pytest.mark.llm, pytest.mark.slow]


def test_strided_prefill_matches_eager_with_the_same_mask(smollm2):
    model, tok = smollm2
    ids = tok("The quick brown fox jumps over the lazy dog. " * 8, return_tensors="pt").input_ids[:, :64]
    p = SparseAttention("strided", window=8)
    before = model.config._attn_implementation
    with torch.no_grad():
        with sparse_attention(model, p):
            got = model(ids).logits
        model.set_attn_implementation("eager")
        try:
            mask = torch.where(sparse_mask(p, 64), 0.0, torch.finfo(torch.float32).min)[None, None]
            ref = model(ids, attention_mask=mask).logits
        finally:
            model.set_attn_implementation(before)
    torch.testing.assert_close(got, ref, atol=2e-4, rtol=1e-4)


def test_context_pruning_shrinks_the_cache_in_generate(smollm2):
    model, tok = smollm2
    ids = tok("The history of the city begins in the early middle ages, when", return_tensors="pt").input_ids
    c = pruning_cache(0.01, recent=4)
    with scoring_attention(model):
        out = model.generate(ids, cache=c, max_new_tokens=16, do_sample=False)
    n = out.shape[1] - 1
    assert c.get_seq_length() == n
    assert all(layer.keys.shape[-2] + layer.dropped == n for layer in c.layers)
    assert sum(layer.dropped for layer in c.layers) > 0
