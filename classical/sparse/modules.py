"""``SparseLinear``: a linear layer with a fixed sparsity mask and a compressed stored form."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .masks import pack_mask, unpack_mask


class SparseLinear(nn.Linear):
    """``y = x @ (W * mask)^T + b`` with a fixed bool ``mask`` (True = kept).

    It is an ``nn.Linear`` (peft's LoRA and other tools wrap it as one). The mask is applied in every
    forward, so later fine-tuning of ``weight`` cannot revive a pruned weight: its gradient is zero.

    Stored form (``state_dict``): the kept values in row-major order (``values``, ``nnz`` floats) and
    a bitmask (``mask_bits``, one bit per weight), so ``state_bytes`` reports the real size of the
    pruned layer: ``4 * nnz + out * in / 8`` bytes in float32 (for 2:4 the bitmask is 4 bits per group
    of 4, the size of cuSPARSELt's metadata). The compute is a dense matmul with zeros: speed
    ``kernel = "simulated"``; real 2:4 kernels come from :func:`to_semi_structured`.
    """

    kernel = "simulated"

    def __init__(self, weight: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None = None, *,
                 pattern: str | None = None, method: str = ""):
        out, inp = weight.shape
        super().__init__(inp, out, bias=bias is not None, device=weight.device, dtype=weight.dtype)
        if mask.shape != weight.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} differs from weight shape {tuple(weight.shape)}")
        with torch.no_grad():
            self.weight.copy_(weight * mask)
            if bias is not None:
                self.bias.copy_(bias)
        self.register_buffer("mask", mask.to(device=weight.device, dtype=torch.bool), persistent=False)
        self.pattern, self.method = pattern, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)

    def effective_weight(self) -> torch.Tensor:
        return (self.weight * self.mask).detach()

    @property
    def sparsity(self) -> float:
        """Fraction of weights removed."""
        return 1.0 - float(self.mask.sum()) / self.mask.numel()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sparsity={self.sparsity:.3f}" + (f", pattern={self.pattern}" if self.pattern else "")

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        w = self.weight if keep_vars else self.weight.detach()
        destination[prefix + "values"] = w[self.mask]
        destination[prefix + "mask_bits"] = pack_mask(self.mask)
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias if keep_vars else self.bias.detach()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        keys = [prefix + "values", prefix + "mask_bits"] + ([prefix + "bias"] if self.bias is not None else [])
        missing = [k for k in keys if k not in state_dict]
        if missing:
            missing_keys.extend(missing)
            return
        mask = unpack_mask(state_dict[prefix + "mask_bits"].to(self.weight.device), tuple(self.weight.shape))
        with torch.no_grad():
            self.mask = mask
            self.weight.zero_()
            self.weight[mask] = state_dict[prefix + "values"].to(self.weight)
            if self.bias is not None:
                self.bias.copy_(state_dict[prefix + "bias"])
        if strict:
            for k in state_dict:
                if k.startswith(prefix) and k not in keys and "." not in k[len(prefix):]:
                    unexpected_keys.append(k)
