"""KV-cache compression usable with transformers' ``generate``: attention sinks (StreamingLLM) and
heavy-hitter eviction (H2O).

* :func:`sink_cache` (Xiao et al. 2023, "Efficient Streaming Language Models with Attention Sinks"):
  keep the first ``sinks`` tokens (the attention sinks) and the most recent ``budget - sinks``.
* :func:`h2o_cache` (Zhang et al. 2023, "H2O: Heavy-Hitter Oracle", Alg. 1): keep the ``recent`` most
  recent tokens plus the ``budget - recent`` earlier tokens with the largest *accumulated* attention
  score (the sum, over every query so far, of the softmax probability it gave the token). Scores and
  evictions are per key/value head; with grouped-query attention a key/value head's score is the sum
  over the query heads of its group.

* :func:`pruning_cache` (a training-free form of Anagnostidis et al. 2023, "Dynamic Context Pruning for
  Efficient and Interpretable Autoregressive Transformers"): after every step, drop each token whose
  accumulated attention, averaged over the queries that have seen it and the query heads, stays below
  ``threshold``; the ``recent`` newest tokens (not yet judged) and the ``sinks`` first ones are kept.
  As in their method a token leaves a layer for every head at once (per layer, not per head), so the
  cache stays one rectangular tensor and shrinks by a different amount in every layer.

Sinks and H2O hold at most ``budget`` tokens per layer between forward calls: a step attends to the kept tokens
plus the new ones, then the cache evicts down to ``budget`` (as the H2O reference does after each
step). Cached keys keep the rotary position of their original place in the text and new tokens get
their true positions. StreamingLLM instead re-assigns positions inside the cache, which matters only
for texts longer than the model's trained context (not reached in our evaluations); that re-rotation
is not implemented here.

H2O and context pruning need the attention probabilities, which the fused kernels do not expose: inside
:func:`scoring_attention` the model computes attention with the eager formula (same result as eager
attention) and hands the probabilities to the H2O cache layer that produced the keys. The cache
reaches the attention function through the attention module it was passed to (a pre-forward hook
records it for the duration of that call), so no thread-local or global state is involved. Sinks need no
scores and work with any attention implementation. Example::

    cache = h2o_cache(budget=256, recent=128)
    with scoring_attention(model):
        out = model.generate(ids, past_key_values=cache, max_new_tokens=64)
"""

from __future__ import annotations

import contextlib
import logging
import math
from functools import partial

import torch
from torch import nn

from .attention import require_attention

log = logging.getLogger(__name__)

SCORING = "qlite_scoring"
_CACHE_ATTR = "_qlite_scoring_cache"  # set on an attention module only while it runs inside scoring_attention


def _require_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("KV-cache compression works on transformers models: pip install 'qlite[llm]'") from e
    from transformers.cache_utils import Cache, DynamicLayer

    return Cache, DynamicLayer


def _check_budget(budget, keep, what: str) -> None:
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ValueError(f"budget must be a positive number of tokens, got {budget!r}")
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
        raise ValueError(f"{what} must be a non-negative number of tokens, got {keep!r}")
    if budget < keep:
        raise ValueError(f"cache budget {budget} is smaller than the {what} ({keep}); the budget must hold them: "
                         f"raise budget to at least {keep} or lower {what}")


def _layers():
    Cache, DynamicLayer = _require_transformers()

    class _Evicting(DynamicLayer):
        """Shared bookkeeping: ``seen`` counts every token that ever entered, so positions stay true."""

        def __init__(self, budget: int):
            super().__init__()
            self.budget = budget
            self.seen = 0

        def get_seq_length(self) -> int:
            return self.seen

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            # Kept tokens sit, for the mask, just before the new ones (all are visible to every new query).
            kept = 0 if not self.is_initialized or self.keys.numel() == 0 else self.keys.shape[-2]
            return kept + query_length, self.seen - kept

        def kept(self) -> int:
            return 0 if not self.is_initialized or self.keys.numel() == 0 else self.keys.shape[-2]

        def crop(self, tokens_to_remove: int) -> None:
            raise NotImplementedError("an evicting KV cache cannot be cropped (assisted decoding is not supported)")

        def reset(self) -> None:
            super().reset()
            self.seen = 0

    class SinkLayer(_Evicting):
        def __init__(self, budget: int, sinks: int):
            super().__init__(budget)
            self.sinks = sinks

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            self.seen += key_states.shape[-2]
            k = torch.cat([self.keys, key_states], dim=-2)
            v = torch.cat([self.values, value_states], dim=-2)
            n = k.shape[-2]
            if n > self.budget:
                keep = torch.cat([torch.arange(self.sinks), torch.arange(n - (self.budget - self.sinks), n)]).to(k.device)
                self.keys, self.values = k.index_select(-2, keep), v.index_select(-2, keep)
            else:
                self.keys, self.values = k, v
            return k, v  # this step attends to everything kept so far plus the new tokens

    class H2OLayer(_Evicting):
        def __init__(self, budget: int, recent: int):
            super().__init__(budget)
            self.recent = recent
            self.scores: torch.Tensor | None = None  # (B, H_kv, kept) accumulated attention
            self._returned: torch.Tensor | None = None

        def update(self, key_states, value_states, *args, **kwargs):
            if self._returned is not None:
                raise RuntimeError(
                    "the h2o_cache got no attention scores for the previous step: run the model inside "
                    "qlite.classical.kvcache.scoring_attention(model) so the scores reach the cache"
                )
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            self.seen += key_states.shape[-2]
            self.keys = torch.cat([self.keys, key_states], dim=-2)
            self.values = torch.cat([self.values, value_states], dim=-2)
            B, H, T = key_states.shape[0], key_states.shape[1], key_states.shape[-2]
            new = key_states.new_zeros(B, H, T, dtype=torch.float32)
            self.scores = new if self.scores is None else torch.cat([self.scores, new], dim=-1)
            self._returned = self.keys
            return self.keys, self.values

        def observe(self, probs: torch.Tensor) -> None:
            """Add this step's attention ``probs`` ``(B, H_q, T_q, T_k)`` to the accumulated scores, then
            evict down to the budget."""
            B, Hq, _, Tk = probs.shape
            Hkv = self.keys.shape[1]
            acc = probs.float().sum(dim=-2).reshape(B, Hkv, Hq // Hkv, Tk).sum(dim=2)  # (B, H_kv, T_k)
            self.scores = self.scores + acc
            self._returned = None
            n = self.keys.shape[-2]
            if n <= self.budget:
                return
            heavy = self.budget - self.recent
            old = n - self.recent  # candidates for the heavy hitters: everything but the recent window
            idx = torch.topk(self.scores[..., :old], heavy, dim=-1).indices.sort(dim=-1).values if heavy else \
                self.scores.new_zeros(B, Hkv, 0, dtype=torch.long)
            rec = torch.arange(old, n, device=idx.device).expand(B, Hkv, self.recent)
            keep = torch.cat([idx, rec], dim=-1)  # (B, H_kv, budget)
            D = self.keys.shape[-1]
            g = keep[..., None].expand(B, Hkv, self.budget, D)
            self.keys = self.keys.gather(2, g)
            self.values = self.values.gather(2, g)
            self.scores = self.scores.gather(2, keep)

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            """Beam search reorders the batch: the accumulated scores follow their keys."""
            super().reorder_cache(beam_idx)
            if self.scores is not None:
                self.scores = self.scores.index_select(0, beam_idx.to(self.scores.device))

        def reset(self) -> None:
            super().reset()
            self.scores, self._returned = None, None

    class PruningLayer(_Evicting):
        """Context pruning by a threshold on each token's mean received attention (module docstring)."""

        ragged = True  # layers keep different numbers of tokens (the scoring attention rebuilds their masks)

        def __init__(self, threshold: float, recent: int, sinks: int):
            super().__init__(budget=0)
            self.threshold, self.recent, self.sinks = threshold, recent, sinks
            self.scores: torch.Tensor | None = None  # (B, kept) attention summed over query heads and queries
            self.counts: torch.Tensor | None = None  # (kept,) queries x query heads that have seen each token
            self.positions: torch.Tensor | None = None  # (kept,) original position of each kept token
            self.dropped = 0
            self._returned: torch.Tensor | None = None

        def update(self, key_states, value_states, *args, **kwargs):
            if self._returned is not None:
                raise RuntimeError(
                    "the pruning_cache got no attention scores for the previous step: run the model inside "
                    "qlite.classical.kvcache.scoring_attention(model) so the scores reach the cache"
                )
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            B, T = key_states.shape[0], key_states.shape[-2]
            pos = torch.arange(self.seen, self.seen + T, device=key_states.device)
            self.seen += T
            self.keys = torch.cat([self.keys, key_states], dim=-2)
            self.values = torch.cat([self.values, value_states], dim=-2)
            z = key_states.new_zeros(B, T, dtype=torch.float32)
            self.scores = z if self.scores is None else torch.cat([self.scores, z], dim=-1)
            c = key_states.new_zeros(T, dtype=torch.float32)
            self.counts = c if self.counts is None else torch.cat([self.counts, c])
            self.positions = pos if self.positions is None else torch.cat([self.positions, pos])
            self._returned = self.keys
            return self.keys, self.values

        def observe(self, probs: torch.Tensor) -> None:
            """Add this step's attention ``probs`` ``(B, H_q, T_q, T_k)`` to the scores, then drop every
            judged token whose mean received attention is below the threshold in every sequence."""
            B, Hq, Tq, Tk = probs.shape
            self.scores = self.scores + probs.float().sum(dim=(1, 2))  # (B, T_k)
            # queries of this step that may see each key: all of them for the kept tokens, fewer for the
            # new ones (causal: the k-th new token is seen by the T_q - k queries from it on)
            seen_by = torch.full((Tk,), float(Tq), device=probs.device)
            seen_by[Tk - Tq:] = torch.arange(Tq, 0, -1, device=probs.device, dtype=torch.float32)
            self.counts = self.counts + Hq * seen_by
            self._returned = None
            judged = torch.ones(Tk, dtype=torch.bool, device=probs.device)
            judged[max(0, Tk - self.recent):] = False
            judged &= self.positions >= self.sinks
            low = (self.scores / self.counts < self.threshold).all(dim=0)  # (T_k,)
            drop = judged & low
            if not bool(drop.any()):
                return
            keep = (~drop).nonzero().squeeze(-1)
            self.dropped += int(drop.sum())
            self.keys, self.values = self.keys.index_select(-2, keep), self.values.index_select(-2, keep)
            self.scores, self.counts = self.scores.index_select(-1, keep), self.counts.index_select(0, keep)
            self.positions = self.positions.index_select(0, keep)

        def mean_attention(self) -> torch.Tensor:
            """``(B, kept)``: each kept token's accumulated attention per query head and query that saw it."""
            return self.scores / self.counts

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            super().reorder_cache(beam_idx)
            if self.scores is not None:
                self.scores = self.scores.index_select(0, beam_idx.to(self.scores.device))

        def reset(self) -> None:
            super().reset()
            self.scores = self.counts = self.positions = self._returned = None
            self.dropped = 0

    return Cache, SinkLayer, H2OLayer, PruningLayer


# Lower-case factories, not classes: the transformers Cache they build is imported only when called
# (importing qlite.classical must not import transformers).
def sink_cache(budget: int, sinks: int = 4):
    """A transformers ``Cache`` keeping ``sinks`` first tokens + the ``budget - sinks`` most recent, per layer.

    Raises:
        ValueError: ``budget`` smaller than ``sinks`` (or not a positive integer).
    """
    _check_budget(budget, sinks, "sink count")
    Cache, SinkLayer, _, _ = _layers()
    c = Cache(layer_class_to_replicate=partial(SinkLayer, budget, sinks))
    c.budget, c.policy = budget, f"sinks({sinks})"
    return c


def h2o_cache(budget: int, recent: int | None = None):
    """A transformers ``Cache`` keeping the ``recent`` most recent tokens + the ``budget - recent``
    heavy hitters, per layer and key/value head. ``recent`` defaults to ``budget // 2`` (H2O's equal
    split of heavy-hitter and recent budgets). Use the model inside :func:`scoring_attention`.

    Raises:
        ValueError: ``budget`` smaller than ``recent`` (or not a positive integer).
    """
    recent = budget // 2 if recent is None and isinstance(budget, int) else recent
    _check_budget(budget, recent, "recent window")
    Cache, _, H2OLayer, _ = _layers()
    c = Cache(layer_class_to_replicate=partial(H2OLayer, budget, recent))
    c.budget, c.policy = budget, f"h2o(recent={recent})"
    c.needs_scores = True
    return c


def pruning_cache(threshold: float, *, recent: int = 16, sinks: int = 0):
    """A transformers ``Cache`` that prunes the context as generation goes (see the module docstring):
    after each step a layer drops every token, outside the ``recent`` newest and the ``sinks`` first,
    whose accumulated attention per query head and per query that saw it is below ``threshold``
    (uniform attention over ``n`` tokens gives ``1 / n``). Dropped keys and values leave the cache; a
    dropped token never returns. Use the model inside :func:`scoring_attention`.

    Raises:
        ValueError: ``threshold`` outside ``[0, 1)``, or negative ``recent`` / ``sinks``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
        raise ValueError(f"threshold is a mean attention probability and must lie in [0, 1), got {threshold!r}; "
                         "uniform attention over n tokens gives 1/n, so useful values are around 1/context")
    for what, v in (("recent", recent), ("sinks", sinks)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{what} must be a non-negative number of tokens, got {v!r}")
    Cache, _, _, PruningLayer = _layers()
    c = Cache(layer_class_to_replicate=partial(PruningLayer, float(threshold), recent, sinks))
    c.budget, c.policy = None, f"prune(threshold={threshold:g}, recent={recent}, sinks={sinks})"
    c.needs_scores = True
    return c


def _scoring_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention (the formula of transformers' ``eager_attention_forward``) that also gives the
    probabilities to the H2O layer that returned ``key``."""
    groups = query.shape[1] // key.shape[1]
    k = key.repeat_interleave(groups, dim=1) if groups > 1 else key
    v = value.repeat_interleave(groups, dim=1) if groups > 1 else value
    scaling = scaling if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
    w = torch.matmul(query, k.transpose(2, 3)) * scaling  # (B, H_q, T_q, T_k)
    cache = getattr(module, _CACHE_ATTR, None)
    layers = getattr(cache, "layers", None)
    idx = getattr(module, "layer_idx", None)
    layer = layers[idx] if layers is not None and idx is not None and idx < len(layers) else None
    if attention_mask is not None:
        Tq, Tk = query.shape[-2], k.shape[-2]
        if attention_mask.shape[-1] != Tk and getattr(layer, "ragged", False):
            # A pruning cache keeps a different number of tokens in every layer, and the model builds one
            # mask from layer 0's sizes. Every kept token precedes the new queries, so all of them are
            # visible; the new tokens keep the mask's own (causal) columns. (Padding is not carried over.)
            new = attention_mask[..., -Tq:]
            attention_mask = torch.cat([new.new_zeros(*new.shape[:-1], Tk - Tq), new], dim=-1)
        w = w + attention_mask[..., :Tk]
    p = torch.softmax(w, dim=-1, dtype=torch.float32).to(query.dtype)
    if layer is not None and getattr(layer, "_returned", None) is key:
        layer.observe(p.detach())
    p = nn.functional.dropout(p, p=dropout, training=module.training)
    out = torch.matmul(p, v).transpose(1, 2).contiguous()  # (B, T_q, H_q, D)
    return out, p


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    if SCORING not in AttentionInterface._global_mapping:
        AttentionInterface.register(SCORING, _scoring_attention_forward)
        AttentionMaskInterface.register(SCORING, eager_mask)


@contextlib.contextmanager
def scoring_attention(model: nn.Module):
    """Run ``model`` with attention that reports its probabilities to an :func:`h2o_cache` (eager math;
    outputs equal eager attention's). The model's attention implementation is restored on exit."""
    require_attention(model, "scoring_attention")
    _require_transformers()
    _register()
    if not hasattr(model, "set_attn_implementation"):
        raise TypeError(f"{type(model).__name__} is not a transformers model with set_attn_implementation")
    before = model.config._attn_implementation
    handles = []
    for info in require_attention(model, "scoring_attention"):
        handles.append(info.module.register_forward_pre_hook(_remember_cache, with_kwargs=True))
        handles.append(info.module.register_forward_hook(_forget_cache))
    model.set_attn_implementation(SCORING)
    try:
        yield model
    finally:
        model.set_attn_implementation(before)
        for h in handles:
            h.remove()
        for info in require_attention(model, "scoring_attention"):
            if hasattr(info.module, _CACHE_ATTR):
                delattr(info.module, _CACHE_ATTR)


def _remember_cache(module, args, kwargs):
    """The cache this attention call updates (``cache`` in transformers >= 5.2x, ``past_key_values``
    before), kept on the module for the call so the scoring attention can hand it the probabilities."""
    setattr(module, _CACHE_ATTR, kwargs.get("cache", kwargs.get("past_key_values")))


def _forget_cache(module, args, output):
    if hasattr(module, _CACHE_ATTR):
        delattr(module, _CACHE_ATTR)


def cache_bytes(cache) -> int:
    """Bytes of the key and value tensors held by a transformers cache."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def cache_kwarg(model) -> str:
    """Name of the KV-cache argument of ``model.forward``: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@torch.no_grad()
def streaming_nll(model: nn.Module, ids: torch.Tensor, cache=None, *, prefill: int | None = None) -> dict:
    """Next-token NLL of one ``(1, T)`` window decoded with ``cache`` (``None``: the model's full cache).

    The first ``prefill`` tokens go in one forward (default: the cache budget, or 1 without one: up to
    the budget nothing is evicted, so one forward gives the same cache, scores and logits as feeding
    them one by one); every later token is fed alone, so evictions happen exactly as in generation.
    Returns ``nll`` (mean over the ``T - 1`` predictions), ``tokens``, and ``cache_bytes`` / ``cache_tokens``
    (largest over the window, measured after each step; ``cache_tokens`` counts layer 0) and
    ``mean_cache_tokens`` (kept tokens per layer, averaged over the layers and the decode steps).
    """
    require_attention(model, "streaming_nll")
    if ids.dim() != 2 or ids.shape[0] != 1:
        raise ValueError(f"ids must be one (1, T) window, got shape {tuple(ids.shape)}")
    T = ids.shape[1]
    kw = cache_kwarg(model)
    if cache is None:
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache()
    budget = getattr(cache, "budget", None)
    p = max(1, min(prefill if prefill is not None else (budget or 1), T - 1))
    scoring = bool(getattr(cache, "needs_scores", False))
    ctx = scoring_attention(model) if scoring else contextlib.nullcontext()
    nll, peak, peak_tok, sum_tok = 0.0, 0, 0, 0
    lsm = torch.nn.functional.log_softmax
    with ctx:
        out = model(ids[:, :p], use_cache=True, **{kw: cache})
        lp = lsm(out.logits[0].float(), -1)  # (p, V)
        nll -= float(lp[torch.arange(p - 1), ids[0, 1:p]].sum()) if p > 1 else 0.0
        last = lp[-1]
        for t in range(p, T):
            nll -= float(last[ids[0, t]])
            peak = max(peak, cache_bytes(cache))
            kept = sum(layer.keys.shape[-2] for layer in cache.layers) / len(cache.layers)  # mean over layers
            peak_tok = max(peak_tok, cache.layers[0].keys.shape[-2])
            sum_tok += kept
            if t == T - 1:
                break
            out = model(ids[:, t : t + 1], use_cache=True, **{kw: cache})
            last = lsm(out.logits[0, -1].float(), -1)
    return {"nll": nll / (T - 1), "tokens": T - 1, "cache_bytes": peak, "cache_tokens": peak_tok,
            "mean_cache_tokens": sum_tok / (T - p)}


def streaming_perplexity(model: nn.Module, tokens: torch.Tensor, *, seqlen: int, n_windows: int,
                         make_cache=None, prefill: int | None = None) -> dict:
    """Perplexity over ``n_windows`` non-overlapping ``seqlen`` windows of ``tokens`` (the evaluation
    protocol's windows), each decoded token by token with a fresh ``make_cache()`` (``None``: full cache)."""
    total = tokens.numel() // seqlen
    if not 1 <= n_windows <= total:
        raise ValueError(f"n_windows={n_windows} but the tokens hold {total} windows of {seqlen}")
    dev = next(model.parameters()).device
    s, n, peak, peak_tok, mean_tok = 0.0, 0, 0, 0, 0.0
    for w in range(n_windows):
        ids = tokens[w * seqlen : (w + 1) * seqlen].reshape(1, -1).to(dev)
        r = streaming_nll(model, ids, None if make_cache is None else make_cache(), prefill=prefill)
        s += r["nll"] * r["tokens"]
        n += r["tokens"]
        peak, peak_tok = max(peak, r["cache_bytes"]), max(peak_tok, r["cache_tokens"])
        mean_tok += r["mean_cache_tokens"] / n_windows
    return {"perplexity": math.exp(s / n), "nll": s / n, "n_tokens": n, "seqlen": seqlen, "n_windows": n_windows,
            "cache_bytes": peak, "cache_tokens": peak_tok, "mean_cache_tokens": mean_tok}
