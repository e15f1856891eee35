"""Module shells around the primitives: a linear layer whose weight is stored packed.

``QuantizedLinear`` keeps the real bytes (packed codes, float16 scales, packed zero points, optional
group index and input scale) and dequantizes in its forward, so its accuracy is exact for the stored
format while its speed is *simulated*: it says so through ``kernel == "simulated"``. After
:meth:`QuantizedLinear.use_kernel` (``compress`` calls it by default) a 4-bit grouped or 8-bit per-channel
layer keeps the same codes in the layout of a real CPU kernel (``qlite.classical.quant.kernels``) and
``kernel == "real-kernel"``; torchao and bitsandbytes layers come from ``qlite.classical.export``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import is_linear, linear_weight  # noqa: F401  (re-exported)
from . import kernels as _k
from .primitives import dequantize_weight, pack_bits, quantize_per_token, unpack_bits


_KERNEL_INPUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class QuantizedLinear(nn.Module):
    """``y = x' @ dequant(W).T + b`` with ``W`` stored as packed ``bits``-bit codes.

    ``x'`` is ``x * input_scale`` (the inverse of an AWQ / SmoothQuant per-channel weight scale, kept
    explicit instead of being folded into a preceding norm so that no architecture knowledge is
    needed), then, with ``act_bits``, fake-quantized per token (W8A8). With ``outlier_threshold`` the
    input columns holding any ``|x| >= threshold`` skip activation quantization (LLM.int8()'s
    mixed-precision decomposition, Dettmers et al. 2022, Eq. 3): since the dequantized weight is shared,
    ``X_o W_o + S * X_i8 W_i8`` is computed as one matmul of the recombined activation.
    """

    def __init__(
        self,
        codes: torch.Tensor,
        scale: torch.Tensor,
        zero: torch.Tensor,
        *,
        bits: int,
        symmetric: bool,
        group_size: int | None = None,
        bias: torch.Tensor | None = None,
        g_idx: torch.Tensor | None = None,
        input_scale: torch.Tensor | None = None,
        act_bits: int | None = None,
        outlier_threshold: float | None = None,
        method: str = "",
    ):
        super().__init__()
        out, inp = codes.shape
        self.in_features, self.out_features = inp, out
        self.bits, self.symmetric = bits, symmetric
        self.group_size = group_size or inp
        self.act_bits, self.outlier_threshold, self.method = act_bits, outlier_threshold, method
        self.register_buffer("packed", pack_bits(codes, bits))
        self.register_buffer("scale", scale.to(torch.float16))
        # Symmetric zero points are the constant 2**(b-1): nothing to store.
        self.register_buffer("zero_packed", None if symmetric else pack_bits(zero.to(torch.uint8), bits))
        self._zero_shape = tuple(zero.shape)
        self.register_buffer("g_idx", None if g_idx is None else g_idx.to(torch.int16))
        self.register_buffer("input_scale", None if input_scale is None else input_scale.float())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.register_buffer("outlier_idx", None)
        self.register_buffer("outlier_weight", None)
        self.layout = "packed"  # or a real-kernel layout: see use_kernel

    @property
    def kernel(self) -> str:
        """``real-kernel`` when the matmul runs on the low-bit data (a kernel layout on the CPU), else
        ``simulated`` (dequantized in every forward)."""
        on_cpu = self.scale.device.type == "cpu"
        return "real-kernel" if self.layout != "packed" and on_cpu else "simulated"

    def use_kernel(self) -> str | None:
        """Store the weight in a real CPU kernel's layout (same codes, scales and zero points) and run
        that kernel from now on; returns ``None``, or why the layer stays simulated (3-bit codes, W8A8,
        grouped 8-bit, a layer not on the CPU...)."""
        return _k.to_kernel_layout(self)

    def set_outlier_weights(self, idx: torch.Tensor, columns: torch.Tensor) -> None:
        """Keep float16 copies of the weight columns ``idx`` (``columns``: ``(out, len(idx))``): LLM.int8()'s
        outlier dimensions computed with 16-bit weights."""
        self.outlier_idx = idx.to(torch.int32)
        self.outlier_weight = columns.detach().to(torch.float16)

    def codes(self) -> torch.Tensor:
        if self.layout != "packed":
            return _k.kernel_codes(self)
        return unpack_bits(self.packed, self.bits, self.in_features * self.out_features).reshape(
            self.out_features, self.in_features
        )

    def zero(self) -> torch.Tensor:
        if self.symmetric:
            return torch.full(self._zero_shape, 2 ** (self.bits - 1), dtype=torch.float32, device=self.scale.device)
        n = 1
        for s in self._zero_shape:
            n *= s
        return unpack_bits(self.zero_packed, self.bits, n).reshape(self._zero_shape).float()

    def dequantized_weight(self) -> torch.Tensor:
        """The ``(out, in)`` float32 weight this module computes with (before ``input_scale``)."""
        w = dequantize_weight(self.codes(), self.scale.float(), self.zero(), self.group_size, self.g_idx)
        if self.outlier_idx is not None:
            w = w.index_copy(1, self.outlier_idx.long(), self.outlier_weight.float())
        return w

    def effective_weight(self) -> torch.Tensor:
        """The weight as seen by the unscaled input: ``dequant(W) * input_scale``."""
        w = self.dequantized_weight()
        return w if self.input_scale is None else w * self.input_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The kernels have no backward: an input that needs a gradient (LoRA / QAT through this layer)
        # takes the dequantizing path, as do other devices and dtypes.
        if (self.layout != "packed" and x.is_cpu and x.dtype in _KERNEL_INPUT_DTYPES
                and not (x.requires_grad and torch.is_grad_enabled())):
            return _k.kernel_forward(self, x)
        w = self.dequantized_weight().to(x.dtype)
        if self.input_scale is not None:
            x = x * self.input_scale.to(x.dtype)
        if self.act_bits is not None:
            if self.outlier_threshold is not None:
                # (in,) True for feature columns with an outlier anywhere in this batch.
                outlier = (x.abs() >= self.outlier_threshold).reshape(-1, x.shape[-1]).any(dim=0)
                x = torch.where(outlier, x, quantize_per_token(x.masked_fill(outlier, 0), self.act_bits))
            else:
                x = quantize_per_token(x, self.act_bits)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        s = f"in={self.in_features}, out={self.out_features}, bits={self.bits}, group={self.group_size}"
        s += f", sym={self.symmetric}, method={self.method!r}"
        if self.layout != "packed":
            s += f", layout={self.layout}"
        if self.act_bits:
            s += f", act_bits={self.act_bits}"
        if self.outlier_threshold is not None:
            s += f", threshold={self.outlier_threshold}"
        return s
