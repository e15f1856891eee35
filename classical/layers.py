"""What counts as a linear layer: ``nn.Linear`` and transformers' GPT-2 ``Conv1D`` (weight ``(in, out)``)."""

from __future__ import annotations

import torch
from torch import nn


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (type(module).__name__ == "Conv1D" and hasattr(module, "nf"))


def linear_weight(module: nn.Module) -> torch.Tensor:
    """The ``(out, in)`` weight of a linear layer (a transposed view for GPT-2's ``Conv1D``)."""
    if isinstance(module, nn.Linear):
        return module.weight
    if is_linear(module):
        return module.weight.t()
    raise TypeError(f"not a linear layer: {type(module).__name__}")
