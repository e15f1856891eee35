"""Finding the attention modules of a model without a per-architecture registry.

An attention module here is any module with ``q_proj``, ``k_proj``, ``v_proj`` and ``o_proj`` linear
children (Hugging Face Llama, Mistral, Qwen2, SmolLM2, ...). Head counts come from the projection
shapes and the module's ``head_dim`` (or its config), so a pruned or converted module is read as it is
now, not as its config says.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .layers import is_linear

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass
class AttentionInfo:
    """One attention module and its current head layout."""

    name: str
    module: nn.Module
    head_dim: int
    n_heads: int
    n_kv_heads: int

    @property
    def group_size(self) -> int:
        """Query heads per key/value head."""
        return self.n_heads // self.n_kv_heads


def _head_dim(m: nn.Module) -> int | None:
    hd = getattr(m, "head_dim", None)
    if isinstance(hd, int):
        return hd
    cfg = getattr(m, "config", None)
    if cfg is not None:
        hd = getattr(cfg, "head_dim", None)
        if isinstance(hd, int):
            return hd
        if getattr(cfg, "num_attention_heads", None):
            return cfg.hidden_size // cfg.num_attention_heads
    return None


def _is_projection(m) -> bool:
    """A linear layer, or a compressed one standing in for it (``LowRankLinear``, ``QuantizedLinear``,
    ``SparseLinear``: anything with integer ``in_features`` / ``out_features``)."""
    if m is None:
        return False
    return is_linear(m) or (isinstance(getattr(m, "in_features", None), int) and isinstance(getattr(m, "out_features", None), int))


def require_plain_projections(info: "AttentionInfo", names: tuple[str, ...], tool: str) -> None:
    """Tools that edit projection weights need plain linear layers: a ValueError naming the layer and
    the order to apply the steps in otherwise."""
    for p in names:
        mod = getattr(info.module, p)
        if not is_linear(mod):
            raise ValueError(f"{tool}: {info.name}.{p} is a {type(mod).__name__}, not a plain linear layer; apply "
                             f"{tool} before low-rank factorisation, sparsity or quantization of the attention")


def attention_modules(model: nn.Module) -> list[AttentionInfo]:
    """Every attention module of ``model`` (see the module docstring), in ``named_modules`` order."""
    out = []
    for name, m in model.named_modules():
        if not all(_is_projection(getattr(m, p, None)) for p in PROJECTIONS):
            continue
        hd = _head_dim(m)
        if hd is None:
            continue
        q, k = m.q_proj.out_features, m.k_proj.out_features
        if q % hd or k % hd or (q // hd) % (k // hd):
            raise ValueError(f"attention module {name!r}: q_proj ({q}) and k_proj ({k}) widths are not whole "
                             f"head groups of head_dim {hd}")
        out.append(AttentionInfo(name, m, hd, q // hd, k // hd))
    return out


def require_attention(model: nn.Module, tool: str) -> list[AttentionInfo]:
    """:func:`attention_modules`, or a ValueError naming ``tool`` when the model has none."""
    found = attention_modules(model)
    if not found:
        raise ValueError(
            f"{tool}: {type(model).__name__} has no attention modules with q_proj / k_proj / v_proj / o_proj "
            "projections and a head_dim (Llama-family attention); this tool needs a model with such attention"
        )
    return found
