"""MHA <-> GQA conversion: exact expansion, exact round trip, mean pooling, bad input."""

import copy

import pytest
import torch
from torch import nn

from qlite.classical import compress
from qlite.classical.gqa import GQA, convert_gqa, pool_kv_heads


def test_pool_kv_heads_is_the_mean_of_each_group_by_hand():
    hd, n_in = 2, 3
    w = torch.arange(3 * hd * n_in, dtype=torch.float64).reshape(3 * hd, n_in)  # 3 kv heads
    out = pool_kv_heads(w, None, n_heads=6, n_kv_heads=3, head_dim=hd, target=1)[0]
    heads = w.reshape(3, hd, n_in)
    torch.testing.assert_close(out, heads.mean(0))  # each kv head serves 2 query heads: equal weights
    b = torch.arange(6.0)
    _, pb = pool_kv_heads(w, b, n_heads=6, n_kv_heads=3, head_dim=hd, target=1)
    torch.testing.assert_close(pb, b.reshape(3, 2).mean(0))


def test_smollm2_shaped_attention_to_mqa_and_mha_round_trip(llama_factory):
    # SmolLM2-135M's attention layout: hidden 576, 9 query heads, 3 key/value heads of 64.
    model = llama_factory(hidden=576, heads=9, kv=3, head_dim=64, layers=1, inter=64, vocab=32)
    before = copy.deepcopy(model.state_dict())
    x = torch.randint(0, 32, (1, 12))
    ref = model(x).logits
    mha = convert_gqa(model, 9)
    att = mha.model.layers[0].self_attn
    assert att.k_proj.weight.shape == (576, 576) and att.num_key_value_groups == 1
    torch.testing.assert_close(mha(x).logits, ref, rtol=1e-5, atol=1e-5)  # expansion is exact
    back = convert_gqa(mha, 3)
    orig = model.model.layers[0].self_attn
    for p in ("k_proj", "v_proj"):
        torch.testing.assert_close(getattr(back.model.layers[0].self_attn, p).weight, getattr(orig, p).weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(back(x).logits, ref, rtol=1e-5, atol=1e-5)
    mqa = convert_gqa(model, 1)
    a1 = mqa.model.layers[0].self_attn
    assert a1.k_proj.weight.shape == (64, 576) and a1.num_key_value_groups == 9 and mqa.config.num_key_value_heads == 1
    torch.testing.assert_close(a1.k_proj.weight, orig.k_proj.weight.reshape(3, 64, 576).mean(0))
    assert torch.isfinite(mqa(x).logits).all() and not torch.allclose(mqa(x).logits, ref)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # caller's model untouched
    out = mqa.generate(x, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 15)


def test_gqa_config_in_a_recipe_and_bad_input(llama_factory):
    model = llama_factory(heads=4, kv=2)
    res = compress(model, GQA(1))
    assert res.model.model.layers[0].self_attn.k_proj.out_features == 8
    assert res.report.bytes_after < res.report.bytes_before
    with pytest.raises(ValueError, match="positive divisor of the 4 query heads"):
        convert_gqa(model, 3)
    with pytest.raises(ValueError, match="has no attention modules"):
        convert_gqa(nn.Sequential(nn.Linear(4, 4)), 1)
    with pytest.raises(ValueError, match="has no attention modules"):
        compress(nn.Sequential(nn.Linear(4, 4)), GQA(1))
    with pytest.raises(ValueError, match="positive integer"):
        GQA(0)
    with pytest.raises(ValueError, match="would convert 1 of 2 attention modules"):
        convert_gqa(model, 1, skip=("model.layers.0*",))
    with pytest.raises(ValueError, match="leaves no attention module"):
        convert_gqa(model, 1, skip=("*self_attn",))
    from qlite.classical import LowRank

    low = compress(model, LowRank(0.3)).model
    with pytest.raises(ValueError, match=r"k_proj is a LowRankLinear.*apply convert_gqa before"):
        convert_gqa(low, 1)
