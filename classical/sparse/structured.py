"""Structured pruning that shrinks the matrices: MLP intermediate channels and attention heads.

Coupled structures are found from shapes, with no per-architecture registry (in the spirit of
LLM-Pruner's dependency graph, Ma et al. 2023): inside each block, the linear layers whose output width
``d`` differs from the block's hidden size are *producers* of ``d`` channels, and the layer reading
``d`` inputs is their *consumer* (Llama: ``gate_proj``, ``up_proj`` -> ``down_proj``; GPT-2: ``c_fc`` ->
``c_proj``). Removing channel ``j`` removes row ``j`` of every producer and column ``j`` of the consumer.
Attention heads (modules with ``q_proj``/``k_proj``/``v_proj``/``o_proj``): removing query head ``h``
removes its ``head_dim`` rows of ``q_proj`` and columns of ``o_proj``; the same number of query heads is
removed from every key/value group so grouped-query attention stays valid.

Importance (the whole group's, estimated once on the uncompressed model, as LLM-Pruner does):
``taylor`` = ``sum |W * dL/dW|`` over all weights of the group (first-order Taylor expansion of the LM
loss, LLM-Pruner Eq. 4 element-wise, summed), ``activation`` = ``sum_j ||X_j||_2 * ||W_cons[:, j]||_2``
over the consumer's input channels of the group (Wanda's score aggregated per structure, as FLAP/Wanda-sp).
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import attention_modules, require_plain_projections
from ..blocks import find_blocks, skipped
from ..calibration import call_model, observe_inputs
from ..layers import is_linear, linear_weight
from ..transform import LayerRecord, Transform, state_bytes, transform_for
from .configs import StructuredPrune

log = logging.getLogger(__name__)


def mlp_groups(model: nn.Module, skip: tuple[str, ...] = ()) -> list[tuple[list[str], str, int]]:
    """``(producer names, consumer name, channels)`` of every MLP-like coupled group (module docstring)."""
    attn_layers = {f"{a.name}.{p}" for a in attention_modules(model) for p in ("q_proj", "k_proj", "v_proj", "o_proj")}
    blocks = find_blocks(model)
    out = []
    for i, block in enumerate(blocks.blocks):
        prefix = blocks.name(i)
        full = [(f"{prefix}.{n}" if prefix else n, m) for n, m in block.named_modules() if n]
        # the block itself counts too: in an nn.Sequential each layer is a block, and a factorised
        # layer's two inner linears would otherwise be read as a producer and its consumer
        for n, m in [(prefix, block), *full]:  # a factorised / compressed layer would be read as two unrelated linears
            if (not is_linear(m) and isinstance(getattr(m, "in_features", None), int) and n not in attn_layers
                    and not skipped(n, skip)):
                raise ValueError(f"StructuredPrune: {n} is a {type(m).__name__}, not a plain linear layer; prune "
                                 "channels before low-rank factorisation, sparsity or quantization (or skip the layer)")
        lins = [(n, m) for n, m in full if is_linear(m) and n not in attn_layers and not skipped(n, skip)]
        if not lins:
            continue
        hidden = Counter(linear_weight(m).shape[1] for _, m in lins).most_common(1)[0][0]
        for cname, c in lins:
            d = linear_weight(c).shape[1]
            if d == hidden:
                continue
            prods = [n for n, m in lins if linear_weight(m).shape[0] == d and n != cname]
            if prods:
                out.append((prods, cname, d))
    return out


def _lm_loss(out, x) -> torch.Tensor:
    logits = out if isinstance(out, torch.Tensor) else getattr(out, "logits", None)
    ids = x if isinstance(x, torch.Tensor) else (x.get("input_ids") if isinstance(x, dict) else None)
    if logits is None or ids is None or logits.shape[:-1] != ids.shape:
        raise ValueError(
            "StructuredPrune(importance='taylor') needs a causal LM called on token ids that returns logits "
            "(B, T, vocab); use importance='activation' for other models"
        )
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))


def taylor_scores(model: nn.Module, calib: list, names: list[str]) -> dict[str, torch.Tensor]:
    """``|W * dL/dW|`` ``(out, in)`` for each named linear, ``L`` = the summed LM loss over ``calib``."""
    mods = {n: model.get_submodule(n) for n in names}
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for m in mods.values():
        m.weight.requires_grad_(True)
        m.weight.grad = None
    try:
        with torch.enable_grad():
            for x in calib:
                _lm_loss(call_model(model, x), x).backward()
        out = {}
        for n, m in mods.items():
            g = m.weight.grad if isinstance(m, nn.Linear) else m.weight.grad.t()  # GPT-2 Conv1D stores (in, out)
            out[n] = (linear_weight(m).detach() * g).abs()
        return out
    finally:
        for m in mods.values():
            m.weight.grad = None
        for p, f in flags.items():
            p.requires_grad_(f)


def input_sqsum(model: nn.Module, calib: list, names: list[str]) -> dict[str, torch.Tensor]:
    """``sum_t x_tj^2`` of the inputs of each named linear over ``calib`` (one forward pass each)."""
    return {n: o.sqsum for n, o in observe_inputs(model, calib, names, sqsum=True).items()}


def _rebuild(m: nn.Module, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """A plain ``nn.Linear`` holding the selected output ``rows`` / input ``cols`` of ``m``."""
    w = linear_weight(m).detach()
    b = None if m.bias is None else m.bias.detach()
    if rows is not None:
        w = w[rows]
        b = None if b is None else b[rows]
    if cols is not None:
        w = w[:, cols]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
    new.weight.copy_(w)
    if b is not None:
        new.bias.copy_(b)
    return new


@transform_for(StructuredPrune)
class _StructuredPrune(Transform):
    def run(self, model, calib, ctx):
        c = self.config
        groups = mlp_groups(model, c.skip) if "mlp" in c.targets else []
        attns = [a for a in attention_modules(model) if not skipped(a.name, c.skip)] if "heads" in c.targets else []
        if "mlp" in c.targets and not groups:
            raise ValueError(f"{c.name}: found no MLP channel groups (a producer linear feeding a consumer linear "
                             "of a non-hidden width) in the model's blocks")
        if "heads" in c.targets and not attns:
            raise ValueError(f"{c.name}: the model has no attention modules with q_proj/k_proj/v_proj/o_proj to prune heads of")
        for a in attns:
            require_plain_projections(a, ("q_proj", "k_proj", "v_proj", "o_proj"), c.name)
        names = sorted({n for g in groups for n in (*g[0], g[1])} | {f"{a.name}.{p}" for a in attns for p in ("q_proj", "o_proj")})
        consumers = [g[1] for g in groups] + [f"{a.name}.o_proj" for a in attns]
        calib = list(calib)
        if c.importance == "taylor":
            s = taylor_scores(model, calib, names)

            def channel_scores(prods, cons):
                return sum(s[p].sum(1) for p in prods) + s[cons].sum(0)
        else:
            sq = input_sqsum(model, calib, consumers)

            def channel_scores(prods, cons):
                w = linear_weight(model.get_submodule(cons)).detach().float()
                return sq[cons].to(w.device).sqrt() * w.norm(dim=0)

        records: list[LayerRecord] = []

        def replace(name, new, shape):
            old = model.get_submodule(name)
            before = state_bytes(old)
            model.set_submodule(name, new)
            records.append(LayerRecord(name, c.name, shape, before, state_bytes(new), extra={"new_shape": list(new.weight.shape)}))

        cfg = getattr(model, "config", None)
        for prods, cons, d in groups:
            score = channel_scores(prods, cons)
            if c.multiple_of > d:
                raise ValueError(f"{c.name}: multiple_of={c.multiple_of} exceeds the {d} channels of {cons}'s input")
            keep_n = d - int(round(c.removed * d))
            if c.multiple_of > 1:
                keep_n = max(c.multiple_of, keep_n // c.multiple_of * c.multiple_of)
            keep = torch.topk(score, keep_n).indices.sort().values
            for p in prods:
                m = model.get_submodule(p)
                replace(p, _rebuild(m, rows=keep.to(linear_weight(m).device)), tuple(linear_weight(m).shape))
            m = model.get_submodule(cons)
            replace(cons, _rebuild(m, cols=keep.to(linear_weight(m).device)), tuple(linear_weight(m).shape))
            if cfg is not None and getattr(cfg, "intermediate_size", None) == d:
                cfg.intermediate_size = keep_n
        new_heads = new_kv = None
        for a in attns:
            gs, hd = a.group_size, a.head_dim
            # whole query heads per key/value group, so GQA stays valid; with one query head per group
            # (multi-head attention) whole groups go: their q, k, v rows and o columns
            unit, count = (a.n_kv_heads, 1) if gs == 1 else (gs, a.n_kv_heads)
            r = math.floor(c.removed * unit + 0.5)
            what = "key/value heads" if gs == 1 else f"query heads of each key/value group of {gs}"
            if r == 0:
                raise ValueError(f"{c.name}: removed={c.removed} removes none of the {unit} {what} in {a.name!r}; the "
                                 f"smallest fraction that removes one is {0.5 / unit:.3f} (or drop 'heads' from targets)")
            if r >= unit:
                raise ValueError(f"{c.name}: removed={c.removed} would remove all {unit} {what} in {a.name!r}; "
                                 f"use removed below {(unit - 0.5) / unit:.2f}")
            col = channel_scores([f"{a.name}.q_proj"], f"{a.name}.o_proj")  # (n_heads * hd,)
            head = col.reshape(count, unit, hd).sum(-1) if gs > 1 else col.reshape(1, unit, hd).sum(-1)
            kept = torch.topk(head, unit - r, dim=1).indices.sort(dim=1).values
            heads = (kept + torch.arange(kept.shape[0], device=kept.device)[:, None] * unit).reshape(-1)
            ch = (heads[:, None] * hd + torch.arange(hd, device=heads.device)[None, :]).reshape(-1)
            mod = a.module
            edit = [("q_proj", "rows"), ("o_proj", "cols")] + ([("k_proj", "rows"), ("v_proj", "rows")] if gs == 1 else [])
            for pname, axis in edit:
                lin = getattr(mod, pname)
                idx = ch.to(lin.weight.device)
                replace(f"{a.name}.{pname}", _rebuild(lin, **{axis: idx}), tuple(linear_weight(lin).shape))
            if gs == 1:
                new_kv = new_heads = unit - r
                if hasattr(mod, "num_key_value_heads"):
                    mod.num_key_value_heads = new_kv
            else:
                mod.num_key_value_groups = gs - r
                new_heads = a.n_kv_heads * (gs - r)
            if hasattr(mod, "num_heads"):
                mod.num_heads = new_heads
        if cfg is not None and new_heads is not None and getattr(cfg, "num_attention_heads", None):
            if getattr(cfg, "head_dim", None) is None:
                cfg.head_dim = cfg.hidden_size // cfg.num_attention_heads  # keep head_dim when the head count changes
            cfg.num_attention_heads = new_heads
            if new_kv is not None and getattr(cfg, "num_key_value_heads", None):
                cfg.num_key_value_heads = new_kv
        return records
