"""Sink and H2O caches: exactly the tokens they should keep, identical to the full cache when the
budget covers everything, usable with generate, and bad input."""

import pytest
import torch
from torch import nn

from qlite.classical.kvcache import h2o_cache, sink_cache, cache_kwarg, cache_bytes, scoring_attention, streaming_nll


def _kv(positions, heads=2, dim=4):
    """Key/value states whose feature 0 is the token position (so kept tokens can be read back)."""
    t = torch.zeros(1, heads, len(positions), dim)
    t[..., 0] = torch.tensor(positions, dtype=torch.float32)
    return t, t.clone()


def _positions(layer):
    return layer.keys[0, :, :, 0].long().tolist()  # (heads, kept)


def test_sink_cache_keeps_the_sinks_and_the_recent_window():
    cache = sink_cache(budget=6, sinks=2)
    k, v = cache.update(*_kv(range(4)), 0)
    assert k.shape[-2] == 4
    for t in range(4, 12):
        k, v = cache.update(*_kv([t]), 0)
        assert k.shape[-2] == min(t + 1, 7)  # the step attends to the kept budget plus the new token
    layer = cache.layers[0]
    assert _positions(layer) == [[0, 1, 8, 9, 10, 11]] * 2
    assert layer.get_seq_length() == 12 and layer.get_mask_sizes(1) == (7, 6)
    assert cache_bytes(cache) == 2 * 6 * 2 * 4 * 4


def test_h2o_cache_keeps_the_recent_window_and_the_heaviest_accumulated_scores():
    cache = h2o_cache(budget=4, recent=2)
    layer_idx = 0
    rng = torch.Generator().manual_seed(0)
    acc = {h: {} for h in range(2)}  # hand bookkeeping: accumulated score of every kept position per kv head
    kept = {0: [], 1: []}
    for step in range(9):
        cache.update(*_kv([step]), layer_idx)
        layer = cache.layers[0]
        T = layer.keys.shape[-2]
        probs = torch.softmax(torch.randn(1, 4, 1, T, generator=rng), -1)  # 4 query heads -> 2 kv heads
        for h in range(2):
            kept[h] = kept[h] + [step]
            for j, pos in enumerate(kept[h]):
                acc[h][pos] = acc[h].get(pos, 0.0) + float(probs[0, 2 * h, 0, j] + probs[0, 2 * h + 1, 0, j])
            if len(kept[h]) > 4:
                old, recent = kept[h][:-2], kept[h][-2:]
                heavy = sorted(sorted(old, key=lambda p: -acc[h][p])[:2])
                kept[h] = heavy + recent
        layer.observe(probs)
        assert _positions(layer) == [kept[0], kept[1]], step
        torch.testing.assert_close(layer.scores[0], torch.tensor([[acc[h][p] for p in kept[h]] for h in range(2)]))


@pytest.mark.parametrize("make", [lambda: sink_cache(64, sinks=4), lambda: h2o_cache(64, recent=8)], ids=["sinks", "h2o"])
def test_budget_covering_the_window_matches_the_full_forward(tiny_llm, make):
    model, _ = tiny_llm
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 64, (1, 40), generator=g)
    with torch.no_grad():
        lp = torch.log_softmax(model(ids).logits[0].float(), -1)
    full_nll = -float(lp[torch.arange(39), ids[0, 1:]].mean())
    r = streaming_nll(model, ids, make(), prefill=5)
    assert r["nll"] == pytest.approx(full_nll, rel=1e-5)
    assert r["cache_tokens"] == 39
    # No cache: the full DynamicCache, token by token from the first token.
    assert streaming_nll(model, ids, None)["nll"] == pytest.approx(full_nll, rel=1e-5)


def test_small_budgets_evict_and_hold_the_cache_at_the_budget(tiny_llm):
    model, _ = tiny_llm
    ids = torch.randint(0, 64, (1, 48), generator=torch.Generator().manual_seed(4))
    full = streaming_nll(model, ids, None, prefill=47)
    for cache in (sink_cache(12, sinks=2), h2o_cache(12)):
        r = streaming_nll(model, ids, cache)
        assert r["cache_tokens"] == 12  # measured between steps: the budget
        assert cache.layers[0].keys.shape[-2] == 12 and r["nll"] != pytest.approx(full["nll"], rel=1e-6)
        assert r["cache_bytes"] < full["cache_bytes"] * 0.4


def test_generate_with_compressed_caches(tiny_llm):
    model, _ = tiny_llm
    kw = cache_kwarg(model)  # "cache" in transformers >= 5.2x, "past_key_values" before
    x = torch.randint(0, 64, (1, 10), generator=torch.Generator().manual_seed(5))
    gen = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False)
    ref = model.generate(x, **gen)
    big = model.generate(x, **gen, **{kw: sink_cache(64, sinks=4)})
    assert torch.equal(big, ref)
    with scoring_attention(model):
        h = model.generate(x, **gen, **{kw: h2o_cache(64)})
    assert torch.equal(h, ref)
    assert model.config._attn_implementation != "qlite_scoring"  # restored
    small = sink_cache(6, sinks=2)
    out = model.generate(x, **gen, **{kw: small})
    assert out.shape == (1, 18) and small.layers[0].keys.shape[-2] == 6
    with scoring_attention(model):
        hc = h2o_cache(6)
        out = model.generate(x, **gen, **{kw: hc})
    assert out.shape == (1, 18) and hc.layers[0].keys.shape[-2] == 6


def test_h2o_scores_follow_their_beams_and_caches_work_after_low_rank(tiny_llm):
    from qlite.classical import LowRank, compress

    model, (x, *_) = tiny_llm
    cache = h2o_cache(8)
    kw = cache_kwarg(model)
    with scoring_attention(model):
        model(x.expand(2, -1)[:, :6], use_cache=True, **{kw: cache})
    layer = cache.layers[0]
    keys, scores = layer.keys.clone(), layer.scores.clone()
    cache.reorder_cache(torch.tensor([1, 0]))
    torch.testing.assert_close(layer.keys, keys[[1, 0]])
    torch.testing.assert_close(layer.scores, scores[[1, 0]])
    # a low-rank model still has attention the caches can read
    low = compress(model, LowRank(0.3)).model
    with scoring_attention(low):
        out = low.generate(x, max_new_tokens=3, do_sample=False, **{kw: h2o_cache(6)})
    assert out.shape == (1, x.shape[1] + 3)


def test_bad_input(tiny_llm):
    model, _ = tiny_llm
    with pytest.raises(ValueError, match="budget 3 is smaller than the sink count"):
        sink_cache(3, sinks=4)
    with pytest.raises(ValueError, match="smaller than the recent window"):
        h2o_cache(4, recent=6)
    with pytest.raises(ValueError, match="positive number of tokens"):
        sink_cache(0)
    with pytest.raises(ValueError, match="has no attention modules"):
        with scoring_attention(nn.Sequential(nn.Linear(3, 3))):
            pass
    with pytest.raises(ValueError, match="has no attention modules"):
        streaming_nll(nn.Sequential(nn.Linear(3, 3)), torch.zeros(1, 4, dtype=torch.long))
    # H2O outside scoring_attention: the scores never arrive, and the cache says how to fix it.
    ids = torch.randint(0, 64, (1, 6))
    cache = h2o_cache(8)
    kw = cache_kwarg(model)
    model(ids, use_cache=True, **{kw: cache})
    with pytest.raises(RuntimeError, match="scoring_attention"):
        model(ids[:, :1], use_cache=True, **{kw: cache})


def test_h2o_scores_reach_the_cache_without_a_side_channel(tiny_llm):
    """The scores travel through the attention module the cache was passed to, only inside
    scoring_attention: no thread-local is left behind, and the hooks are gone afterwards."""
    import qlite.classical.kvcache as kv

    assert not hasattr(kv, "_PENDING") and "threading" not in vars(kv)
    model, (x, *_) = tiny_llm
    attn = [m for n, m in model.named_modules() if n.endswith("self_attn")]
    hooks = [(len(m._forward_pre_hooks), len(m._forward_hooks)) for m in attn]
    cache = h2o_cache(8)
    with scoring_attention(model):
        model(x[:, :10], use_cache=True, **{cache_kwarg(model): cache})
    assert [(len(m._forward_pre_hooks), len(m._forward_hooks)) for m in attn] == hooks
    assert not any(hasattr(m, "_qlite_scoring_cache") for m in attn)
    layer = cache.layers[0]
    assert layer._returned is None and layer.keys.shape[-2] == 8
    # the probabilities of 10 causal queries from each of the 2 query heads of a key/value group sum to
    # 20 per key/value head, less what the two evicted tokens had collected
    total = layer.scores.sum(-1)
    assert (total <= 20 + 1e-4).all() and (total > 10).all()


def test_cache_factories_have_lower_case_names():
    """They build a transformers Cache, they are not classes: the names say so (issue 15)."""
    import inspect

    import qlite.classical as qc

    assert inspect.isfunction(qc.sink_cache) and inspect.isfunction(qc.h2o_cache)
    for old in ("SinkCache", "H2OCache"):
        with pytest.raises(AttributeError):
            getattr(qc, old)
