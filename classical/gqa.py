"""Multi-head -> grouped-query attention conversion (Ainslie et al. 2023, GQA, Sec. 2.1 "uptraining").

A model with ``H`` query heads and ``H_kv`` key/value heads becomes one with ``G`` key/value heads
(``G`` divides ``H``): first every query head gets its own key/value head (the current head of its
group: an exact, function-preserving expansion to multi-head attention), then the ``H / G`` consecutive
heads of each new group are mean-pooled into one (the paper's conversion: "the key and value projection
matrices of all heads in a group are mean pooled"). ``G = 1`` is multi-query attention; ``G = H`` is the
exact expansion to MHA. The paper follows the conversion with a short uptraining; here
:func:`qlite.classical.distillation.distill` does that with the original model as the teacher.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .attention import require_attention, require_plain_projections
from .blocks import skipped
from .config import CompressionConfig
from .transform import LayerRecord, Transform, state_bytes, transform_for

log = logging.getLogger(__name__)


def pool_kv_heads(weight: torch.Tensor, bias: torch.Tensor | None, *, n_heads: int, n_kv_heads: int, head_dim: int,
                  target: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """K or V projection ``(n_kv_heads * head_dim, in)`` -> ``(target * head_dim, in)``: expand to one head
    per query head (query head ``h`` uses kv head ``h // (n_heads / n_kv_heads)``), then average the
    ``n_heads / target`` consecutive heads of each new group."""
    rep = n_heads // n_kv_heads
    per = n_heads // target
    w = weight.reshape(n_kv_heads, head_dim, -1).repeat_interleave(rep, dim=0)  # (n_heads, hd, in)
    w = w.reshape(target, per, head_dim, -1).mean(dim=1).reshape(target * head_dim, -1)
    b = None
    if bias is not None:
        b = bias.reshape(n_kv_heads, head_dim).repeat_interleave(rep, dim=0).reshape(target, per, head_dim).mean(1).reshape(-1)
    return w, b


def _linear(w: torch.Tensor, b: torch.Tensor | None, like: nn.Linear) -> nn.Linear:
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=like.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def convert_gqa(model: nn.Module, num_kv_heads: int, *, inplace: bool = False, skip: tuple[str, ...] = ()) -> nn.Module:
    """Convert every attention module of ``model`` to ``num_kv_heads`` key/value heads (module docstring).

    Args:
        num_kv_heads: target number of key/value heads; must divide the number of query heads
            (1 = multi-query attention, the query-head count = multi-head attention).
        inplace: modify ``model``; otherwise a converted copy is returned and ``model`` is untouched.
    Raises:
        ValueError: the model has no (Llama-family) attention, or ``num_kv_heads`` does not divide the
        number of query heads.
    """
    infos = require_attention(model, "convert_gqa")
    for a in infos:
        if not isinstance(num_kv_heads, int) or isinstance(num_kv_heads, bool) or num_kv_heads < 1 or a.n_heads % num_kv_heads:
            raise ValueError(f"convert_gqa: num_kv_heads must be a positive divisor of the {a.n_heads} query heads of "
                             f"{a.name!r}, got {num_kv_heads!r}")
    todo = [a for a in infos if not skipped(a.name, skip)]
    if not todo:
        raise ValueError(f"convert_gqa: skip={skip!r} leaves no attention module to convert")
    if len(todo) != len(infos):
        # the model config holds one key/value head count for all layers (caches and reloading read it)
        raise ValueError(f"convert_gqa: skip={skip!r} would convert {len(todo)} of {len(infos)} attention modules; "
                         "a partial conversion leaves the model config wrong for the skipped layers: convert all or none")
    for a in todo:
        require_plain_projections(a, ("k_proj", "v_proj"), "convert_gqa")
    m = model if inplace else copy.deepcopy(model)
    from .attention import attention_modules

    for a in attention_modules(m):
        for p in ("k_proj", "v_proj"):
            lin = getattr(a.module, p)
            w, b = pool_kv_heads(lin.weight.detach(), None if lin.bias is None else lin.bias.detach(),
                                 n_heads=a.n_heads, n_kv_heads=a.n_kv_heads, head_dim=a.head_dim, target=num_kv_heads)
            setattr(a.module, p, _linear(w, b, lin))
        a.module.num_key_value_groups = a.n_heads // num_kv_heads
        if hasattr(a.module, "num_key_value_heads"):
            a.module.num_key_value_heads = num_kv_heads
    cfg = getattr(m, "config", None)
    if cfg is not None and hasattr(cfg, "num_key_value_heads"):
        cfg.num_key_value_heads = num_kv_heads
    return m


@dataclass(frozen=True)
class GQA(CompressionConfig):
    """Grouped-query conversion as a recipe step: ``compress(model, GQA(1))`` gives multi-query attention.
    ``num_kv_heads`` must divide every attention module's query-head count."""

    reshapes_layers: ClassVar[bool] = True
    num_kv_heads: int = 1

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.num_kv_heads, int) or isinstance(self.num_kv_heads, bool) or self.num_kv_heads < 1:
            raise ValueError(f"GQA: num_kv_heads must be a positive integer, got {self.num_kv_heads!r}")


@transform_for(GQA)
class _GQA(Transform):
    def run(self, model, calib, ctx):
        infos = require_attention(model, self.config.name)
        before = {f"{a.name}.{p}": (state_bytes(getattr(a.module, p)), tuple(getattr(a.module, p).weight.shape))
                  for a in infos for p in ("k_proj", "v_proj")}
        convert_gqa(model, self.config.num_kv_heads, inplace=True, skip=self.config.skip)
        recs = []
        for name, (b, shape) in before.items():
            new = model.get_submodule(name)
            recs.append(LayerRecord(name, self.config.name, shape, b, state_bytes(new), extra={"new_shape": list(new.weight.shape)}))
        return recs
