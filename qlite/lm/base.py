"""What the adapter modules share: the wrapped layer's widths, initialisation from an explicit
generator, the ``base(x) + delta(x)`` forward and merging into a plain weight."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

# Base layers a dense update cannot be folded into without undoing their compression.
_UNMERGEABLE_BASES = ("QuantizedLinear", "SparseLinear", "LowRankLinear", "Linear4bit", "Linear8bitLt")


def linear_dims(module: nn.Module) -> tuple[int, int] | None:
    """``(in_features, out_features)`` of a Linear-like layer (``nn.Linear`` and its subclasses,
    qlite's compressed linears, bitsandbytes' layers, GPT-2's ``Conv1D``), else ``None``."""
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return int(module.weight.shape[0]), int(module.nf)
    d_in, d_out = getattr(module, "in_features", None), getattr(module, "out_features", None)
    if isinstance(d_in, int) and isinstance(d_out, int):
        return d_in, d_out
    return None


def module_device(module: nn.Module) -> torch.device:
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


def new_linear(d_in: int, d_out: int, *, bias: bool, generator: torch.Generator | None, zero: bool = False,
               device=None) -> nn.Linear:
    """An ``nn.Linear`` initialised like PyTorch's default (Kaiming-uniform, ``U(-1/sqrt(d_in), 1/sqrt(d_in))``
    for the bias) from ``generator``, or zero: the process-wide RNG is never touched."""
    layer = nn.utils.skip_init(nn.Linear, d_in, d_out, bias=bias, device=device if device is not None else "cpu")
    with torch.no_grad():
        bound = 1.0 / math.sqrt(d_in)
        if zero:
            layer.weight.zero_()
        else:
            layer.weight.uniform_(-bound, bound, generator=generator)
        if bias:
            layer.bias.zero_() if zero else layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


class LinearAdapter(nn.Module):
    """``y = base(x) + delta(x)`` for a frozen Linear-like ``base``; subclasses give ``delta``.

    The adapter computes in float32 whatever the base's dtype (circuits run in float32 / complex64)
    and returns the base's dtype.
    """

    mergeable = False

    def __init__(self, base: nn.Module):
        super().__init__()
        dims = linear_dims(base)
        if dims is None:
            raise TypeError(f"{type(self).__name__} wraps Linear-like layers, got {type(base).__name__}")
        self.in_features, self.out_features = dims
        self.base = base

    def delta(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        return y + self.delta(x).to(y.dtype)

    def delta_weight(self) -> torch.Tensor:
        """The ``(out, in)`` update that merging adds to the base weight."""
        raise ValueError(f"{type(self).__name__} runs a circuit on every token: its output is not a linear map of "
                         "the input, so it cannot be merged into the base weight. Keep it as a module, or use "
                         "QuantumLoRAConfig / UnitaryAdapterConfig for adapters that merge.")

    @torch.no_grad()
    def merge(self) -> nn.Module:
        """A plain copy of the base layer with the update folded into its weight (this adapter is
        unchanged). Refused for per-token adapters and for compressed bases."""
        dw = self.delta_weight()
        name = type(self.base).__name__
        if name in _UNMERGEABLE_BASES:
            raise ValueError(f"the base layer is a {name}: folding a dense update into it would undo its compression; "
                             "keep the adapter unmerged")
        merged = copy.deepcopy(self.base)
        w = merged.weight
        if name == "Conv1D":  # GPT-2 stores (in, out)
            w.add_(dw.t().to(w.dtype))
        else:
            w.add_(dw.to(w.dtype))
        merged.requires_grad_(False)
        return merged
