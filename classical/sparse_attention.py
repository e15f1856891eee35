"""Fixed sparse attention patterns (Sparse Transformer, Child et al. 2019) for the prefill of any
Hugging Face causal LM.

A query at position ``i`` attends to the key positions ``j <= i`` of (Child et al., section 4.2):

* ``"local"``: the window ``i - window < j <= i`` only (sliding-window attention);
* ``"strided"``: the window, plus every ``stride``-th position behind ``i``: ``(i - j) mod stride == 0``
  (their ``A^(1) = {j : max(0, i - l) < j <= i}`` and ``A^(2) = {j : (i - j) mod l = 0}`` with ``l`` =
  ``window`` = ``stride`` by default);
* ``"fixed"``: the block of ``i`` (blocks of ``window`` positions: ``floor(j / window) = floor(i / window)``),
  plus the last ``summary`` positions of every block (``j mod window >= window - summary``, their ``c``).

Both parts of a pattern are merged into one mask shared by every head (their "merged" head, the form
that needs no head-specific kernels). The pattern reaches the model as a transformers attention
implementation: the mask function below is registered with ``AttentionMaskInterface`` under a name
that encodes the pattern, beside PyTorch's scaled-dot-product attention, so every model that builds its
masks through ``transformers.masking_utils`` (Llama, Mistral, Qwen2, SmolLM2, ...) uses it with no
per-architecture code. The masks are dense boolean tensors: this shows the accuracy of a pattern; the
speed of a block-sparse kernel is not claimed.

Example::

    pattern = SparseAttention("strided", window=64)
    with sparse_attention(model, pattern):
        logits = model(ids).logits
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from typing import Any

import torch
from torch import nn

from .attention import require_attention

KINDS = ("local", "strided", "fixed")
_PREFIX = "qlite_sparse"


def _positive_int(name: str, v) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"SparseAttention: {name} must be a positive integer, got {v!r}")


@dataclasses.dataclass(frozen=True)
class SparseAttention:
    """A fixed attention pattern (see the module docstring).

    Args:
        kind: ``"local"``, ``"strided"`` or ``"fixed"``.
        window: local window (``"local"`` / ``"strided"``) or block length (``"fixed"``), in tokens.
        stride: the stride of ``"strided"`` (default: ``window``, Child et al.'s ``l``).
        summary: positions at the end of each block that every later query sees (``"fixed"``'s ``c``).
    Raises:
        ValueError: unknown ``kind``, non-positive sizes, ``summary > window``.
    """

    kind: str = "strided"
    window: int = 64
    stride: int | None = None
    summary: int = 1

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"SparseAttention: kind must be one of {KINDS}, got {self.kind!r}")
        _positive_int("window", self.window)
        _positive_int("summary", self.summary)
        if self.kind == "strided":
            object.__setattr__(self, "stride", self.window if self.stride is None else self.stride)
            _positive_int("stride", self.stride)
        elif self.stride is not None:
            raise ValueError(f"SparseAttention: stride is only used by kind='strided', got stride={self.stride!r} "
                             f"with kind={self.kind!r}; leave it None")
        if self.summary > self.window:
            raise ValueError(f"SparseAttention: summary={self.summary} is larger than the block (window={self.window}); "
                             f"use summary <= window")

    @property
    def name(self) -> str:
        if self.kind == "strided":
            return f"strided(window={self.window}, stride={self.stride})"
        if self.kind == "fixed":
            return f"fixed(block={self.window}, summary={self.summary})"
        return f"local(window={self.window})"

    @property
    def key(self) -> str:
        """The attention-implementation name the pattern is registered under."""
        return f"{_PREFIX}_{self.kind}_{self.window}_{self.stride or 0}_{self.summary}"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "SparseAttention", **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SparseAttention":
        d = {k: v for k, v in d.items() if k != "type"}
        return cls(**d)

    def allowed(self, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        """Boolean "may attend" for broadcastable absolute positions (causality included)."""
        causal = kv_idx <= q_idx
        if self.kind == "fixed":
            same_block = torch.div(kv_idx, self.window, rounding_mode="floor") == torch.div(
                q_idx, self.window, rounding_mode="floor")
            summary = torch.remainder(kv_idx, self.window) >= self.window - self.summary
            return causal & (same_block | summary)
        local = kv_idx > q_idx - self.window
        if self.kind == "local":
            return causal & local
        return causal & (local | (torch.remainder(q_idx - kv_idx, self.stride) == 0))

    def mask_function(self):
        """The pattern as a transformers index-based mask function ``(batch, head, q, kv) -> bool``."""

        def inner(batch_idx, head_idx, q_idx, kv_idx):
            return self.allowed(q_idx, kv_idx)

        return inner

    def check_sequence(self, length: int) -> None:
        """A ValueError when the pattern would keep every causal pair of a ``length``-token sequence."""
        if self.window >= length:
            raise ValueError(f"SparseAttention: window={self.window} is not shorter than the sequence of {length} "
                             f"tokens, so {self.name} would be plain causal attention; use a window below {length} "
                             "(Child et al. take about sqrt(length)) or run the model without sparse attention")


def sparse_mask(pattern: SparseAttention, q_length: int, kv_length: int | None = None, *, q_offset: int = 0,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """The ``(q_length, kv_length)`` boolean mask of ``pattern`` (``True``: attend) for queries at
    positions ``q_offset ... q_offset + q_length - 1`` over keys ``0 ... kv_length - 1``.

    Raises:
        ValueError: the window covers the whole sequence (see :meth:`SparseAttention.check_sequence`).
    """
    kv_length = q_offset + q_length if kv_length is None else kv_length
    pattern.check_sequence(kv_length)
    q = torch.arange(q_offset, q_offset + q_length, device=device)[:, None]
    kv = torch.arange(kv_length, device=device)[None, :]
    return pattern.allowed(q, kv)


def density(pattern: SparseAttention, length: int) -> float:
    """Fraction of the causal (query, key) pairs of a ``length``-token sequence the pattern keeps."""
    m = sparse_mask(pattern, length)
    return float(m.sum()) / (length * (length + 1) / 2)


def _register(pattern: SparseAttention) -> str:
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, and_masks, sdpa_mask

    key = pattern.key
    if key in AttentionInterface._global_mapping:
        return key
    extra = pattern.mask_function()

    def mask(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, mask_function=None, attention_mask=None,
             **kwargs):
        if q_length > 1:  # a prefill: the whole sequence so far is known (decode steps see one new token)
            pattern.check_sequence(kv_length + kv_offset)
        kwargs.pop("allow_is_causal_skip", None)
        fn = extra if mask_function is None else and_masks(mask_function, extra)
        return sdpa_mask(batch_size, q_length, kv_length, q_offset=q_offset, kv_offset=kv_offset, mask_function=fn,
                         attention_mask=attention_mask, allow_is_causal_skip=False, **kwargs)

    AttentionInterface.register(key, sdpa_attention_forward)
    AttentionMaskInterface.register(key, mask)
    return key


def _require(model: nn.Module, tool: str) -> None:
    require_attention(model, tool)
    try:
        import transformers  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("sparse attention works on transformers models: pip install 'qlite[llm]'") from e
    if not hasattr(model, "set_attn_implementation"):
        raise TypeError(f"{tool}: {type(model).__name__} is not a transformers model with set_attn_implementation")


@contextlib.contextmanager
def sparse_attention(model: nn.Module, pattern: SparseAttention):
    """Run ``model`` with ``pattern`` (scaled-dot-product attention under the pattern's mask) inside the
    block; its attention implementation is restored on exit.

    Raises:
        TypeError: ``pattern`` is not a :class:`SparseAttention`, or ``model`` is not a transformers model.
        ValueError: the model has no Llama-family attention; at a prefill, a window covering the sequence.
    """
    if not isinstance(pattern, SparseAttention):
        raise TypeError(f"pattern must be a SparseAttention, got {type(pattern).__name__}")
    _require(model, "sparse_attention")
    before = model.config._attn_implementation
    model.set_attn_implementation(_register(pattern))
    try:
        yield model
    finally:
        model.set_attn_implementation(before)


def with_sparse_attention(model: nn.Module, pattern: SparseAttention, *, inplace: bool = False) -> nn.Module:
    """``model`` (a copy unless ``inplace``) switched to ``pattern`` for good (undo with
    ``set_attn_implementation("sdpa")``)."""
    if not isinstance(pattern, SparseAttention):
        raise TypeError(f"pattern must be a SparseAttention, got {type(pattern).__name__}")
    _require(model, "with_sparse_attention")
    m = model if inplace else copy.deepcopy(model)
    m.set_attn_implementation(_register(pattern))
    return m
