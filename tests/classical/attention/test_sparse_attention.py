"""Sparse Transformer masks against brute-force sets, masked prefill against an explicit 4D mask, and
context pruning that drops exactly the tokens below its threshold."""

import pytest
import torch

from qlite.classical.kvcache import pruning_cache, scoring_attention
from qlite.classical.sparse_attention import SparseAttention, sparse_attention, sparse_mask, with_sparse_attention


def _brute(p: SparseAttention, T: int) -> torch.Tensor:
    """Child et al. (2019), section 4.2, one (i, j) pair at a time."""
    m = torch.zeros(T, T, dtype=torch.bool)
    for i in range(T):
        for j in range(i + 1):
            if p.kind == "fixed":
                ok = j // p.window == i // p.window or j % p.window >= p.window - p.summary
            else:
                ok = max(0, i - p.window) < j <= i if i >= p.window else True
                if p.kind == "strided":
                    ok = ok or (i - j) % p.stride == 0
            m[i, j] = ok
    return m


@pytest.mark.parametrize("p", [SparseAttention("local", 3), SparseAttention("strided", 4), SparseAttention("strided", 3, stride=5),
                               SparseAttention("fixed", 4, summary=1), SparseAttention("fixed", 5, summary=2)], ids=str)
def test_masks_match_brute_force(p):
    assert torch.equal(sparse_mask(p, 13), _brute(p, 13))
    # a decode step (query at position 12 over 13 keys) is the last row
    assert torch.equal(sparse_mask(p, 1, 13, q_offset=12)[0], _brute(p, 13)[12])


@pytest.mark.parametrize("p", [SparseAttention("strided", 4, stride=3), SparseAttention("fixed", 4, summary=1)], ids=str)
def test_masked_prefill_equals_eager_attention_with_the_same_4d_mask(tiny_llm, p):
    model, _ = tiny_llm
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(3))
    before = model.config._attn_implementation
    with torch.no_grad():
        with sparse_attention(model, p):
            got = model(ids).logits
        assert model.config._attn_implementation == before  # restored
        ref_model = with_sparse_attention(model, p)  # a copy: the caller's model is untouched
        assert model.config._attn_implementation == before and ref_model is not model
        model.set_attn_implementation("eager")
        mask = torch.where(sparse_mask(p, 16), 0.0, torch.finfo(torch.float32).min)[None, None].expand(2, 1, 16, 16)
        ref = model(ids, attention_mask=mask).logits
        dense = model(ids).logits
        model.set_attn_implementation(before)
        torch.testing.assert_close(ref_model(ids).logits, got)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert (got - dense).abs().max() > 1e-3  # the pattern changes something


def test_bad_patterns_name_the_value_and_the_fix(tiny_llm):
    model, windows = tiny_llm
    with pytest.raises(ValueError, match=r"window=16 is not shorter than the sequence of 16 tokens.*below 16"):
        with sparse_attention(model, SparseAttention("strided", 16)):
            model(windows[0])
    with pytest.raises(ValueError, match="window=20 is not shorter"):
        sparse_mask(SparseAttention("local", 20), 8)
    with pytest.raises(ValueError, match=r"kind must be one of .*'dilated'"):
        SparseAttention("dilated", 4)
    with pytest.raises(ValueError, match="summary=5 is larger than the block"):
        SparseAttention("fixed", 4, summary=5)
    with pytest.raises(ValueError, match="stride is only used by kind='strided'"):
        SparseAttention("local", 4, stride=2)
    with pytest.raises(ValueError, match="window must be a positive integer, got 0"):
        SparseAttention("local", 0)
    assert SparseAttention.from_dict(SparseAttention("fixed", 8, summary=2).to_dict()) == SparseAttention("fixed", 8, summary=2)


def _kv(positions, heads=2, dim=4):
    t = torch.zeros(1, heads, len(positions), dim)
    t[..., 0] = torch.tensor(positions, dtype=torch.float32)
    return t, t.clone()


def test_pruning_drops_exactly_the_tokens_below_the_threshold():
    tau, recent = 0.12, 2
    cache = pruning_cache(tau, recent=recent)
    rng = torch.Generator().manual_seed(0)
    acc, cnt, kept = {}, {}, []
    for step in range(12):
        cache.update(*_kv([step]), 0)
        layer = cache.layers[0]
        T = layer.keys.shape[-2]
        probs = torch.softmax(3 * torch.randn(1, 4, 1, T, generator=rng), -1)  # 4 query heads, 1 query
        kept = kept + [step]
        for j, pos in enumerate(kept):
            acc[pos] = acc.get(pos, 0.0) + float(probs[0, :, 0, j].sum())
            cnt[pos] = cnt.get(pos, 0) + 4
        judged = kept[:-recent]
        kept = [q for q in kept if q not in judged or acc[q] / cnt[q] >= tau]
        layer.observe(probs)
        assert layer.keys[0, 0, :, 0].long().tolist() == kept, step
        assert layer.positions.tolist() == kept
        torch.testing.assert_close(layer.mean_attention()[0], torch.tensor([acc[q] / cnt[q] for q in kept]))
    assert len(kept) < 12 and layer.dropped == 12 - len(kept)  # the cache shrank
    assert layer.get_seq_length() == 12


def test_pruning_in_generate_shrinks_the_cache_and_threshold_zero_changes_nothing(tiny_llm):
    model, windows = tiny_llm
    ids = windows[0]
    full = model.generate(ids, max_new_tokens=12, do_sample=False)
    c0 = pruning_cache(0.0, recent=4)
    with scoring_attention(model):
        same = model.generate(ids, cache=c0, max_new_tokens=12, do_sample=False)
    assert torch.equal(same, full) and all(l.keys.shape[-2] == 27 for l in c0.layers)
    c = pruning_cache(0.05, recent=4)
    with scoring_attention(model):
        out = model.generate(ids, cache=c, max_new_tokens=12, do_sample=False)
    assert out.shape == full.shape and c.get_seq_length() == 27
    assert all(l.keys.shape[-2] + l.dropped == 27 and l.dropped > 0 for l in c.layers)


def test_pruning_bad_input():
    with pytest.raises(ValueError, match=r"threshold .* \[0, 1\), got 1.5"):
        pruning_cache(1.5)
    with pytest.raises(ValueError, match="recent must be a non-negative number of tokens, got -1"):
        pruning_cache(0.01, recent=-1)
