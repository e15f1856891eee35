"""``LowRankLinear``: a linear layer stored as two thinner ones."""

from __future__ import annotations

import torch
from torch import nn


class LowRankLinear(nn.Module):
    """``y = up(down(x))`` with ``down: in -> rank`` (no bias) and ``up: rank -> out`` (the original bias).

    Both factors are plain ``nn.Linear`` layers, so the speed is real (two dense matmuls of
    ``rank * (in + out)`` multiply-adds instead of ``in * out``), they can be fine-tuned, and peft's LoRA
    can wrap them.
    """

    kernel = "dense"

    def __init__(self, A: torch.Tensor, B: torch.Tensor, bias: torch.Tensor | None = None, *, method: str = ""):
        super().__init__()
        out, k = A.shape
        k2, inp = B.shape
        if k != k2:
            raise ValueError(f"factor shapes {tuple(A.shape)} and {tuple(B.shape)} do not chain")
        self.in_features, self.out_features, self.rank, self.method = inp, out, k, method
        self.down = nn.Linear(inp, k, bias=False, device=B.device, dtype=B.dtype)
        self.up = nn.Linear(k, out, bias=bias is not None, device=A.device, dtype=A.dtype)
        with torch.no_grad():
            self.down.weight.copy_(B)
            self.up.weight.copy_(A)
            if bias is not None:
                self.up.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def effective_weight(self) -> torch.Tensor:
        return (self.up.weight @ self.down.weight).detach()

    @property
    def bias(self):
        return self.up.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"
