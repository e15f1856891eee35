"""Real low-bit CPU kernels for :class:`QuantizedLinear`: PyTorch's packed int4 matmul and its int8
weight-only matmul, fed with qlite's own codes (no re-quantization).

* int4 (``torch.ops.aten._weight_int4pack_mm_for_cpu``): weights packed by
  ``_convert_weight_to_int4pack_for_cpu``; per kernel group of ``kg`` input columns (32 / 64 / 128 /
  256) a scale ``s`` and an offset ``m`` with ``w = (q - 8) * s + m``. qlite's asymmetric grid
  ``w = s * (q - z)`` is that with ``m = s * (8 - z)``; symmetric 4-bit codes have ``z = 8``, ``m = 0``.
  A qlite group wider than ``kg`` is several kernel groups with the same scale (SmolLM2's 576 inputs
  in groups of 128 are 4 x 128 + 64, so the kernel runs groups of 64). GPTQ's act_order groups are
  contiguous in the order GPTQ quantized the columns, so the columns are stored in that order and the
  input is gathered into it (a permutation: exact).
* int8 (``torch.ops.aten._weight_int8pack_mm``): symmetric per-channel 8-bit codes ``q = v + 128`` are
  the int8 values ``v``, one scale per output row.

Activation dtype decides the speed (issue 14; measured on the 2-core AVX-512 CPU, torch 2.13, 1 thread,
2026-12-04, ``experiments/bench_int_kernels.py``): for a 1 x 576 -> 1536 product the int4 kernel takes
~49 us with bfloat16 activations and scales but ~1,500 us with float32 and ~1,600 us with float16, the
int8 kernel ~50 us with bfloat16 and ~725 us with float32 (dense float32: ~72 us). So the kernels run in
bfloat16 and the layer casts its input and output: the stored codes, scales and zero points are exactly
qlite's (``dequantized_weight()`` is unchanged), the kernel applies the scales rounded to bfloat16
(relative 2**-9, the same order as the bfloat16 activations) -- the "kernel's rounding".

The int8 kernel is a matrix-vector product: from 16 tokens on (a prefill) it is slower than dense
float32 (576 -> 1536 at 128 tokens: 2,988 us against 2,301 us), while the int8 values cast to a transient
bfloat16 weight (exact: ``|v| <= 128`` fits bfloat16's 8-bit significand) through the AVX512-BF16 GEMM
take 1,238 us, the per-row scale applied to the output. The crossover is 16 tokens on this CPU
(``experiments/bench_int_kernels.py``, second table), so from :data:`INT8_GEMM_MIN_TOKENS` tokens the
layer takes that path; the bfloat16 copy lives for the call only, nothing is cached. There is no such
path for int4: unpacking and scaling 4-bit codes in eager PyTorch costs more than the int4 kernel.
"""

from __future__ import annotations

import torch

# Measured fastest activation dtype of both CPU kernels (module docstring).
CPU_COMPUTE_DTYPE = torch.bfloat16
INT4_KERNEL_GROUPS = (256, 128, 64, 32)
LAYOUTS = ("packed", "int4_cpu", "int8_cpu")
# From this many tokens an int8 layer multiplies a transient bfloat16 copy of its int8 values (module docstring).
INT8_GEMM_MIN_TOKENS = 16


def _has(op: str) -> bool:
    return hasattr(torch.ops.aten, op)


def column_groups(q) -> torch.Tensor:
    """``(in,)`` index of the qlite group of every input column (per tensor / per channel: all 0)."""
    K = q.in_features
    if q.g_idx is not None:
        return q.g_idx.long().cpu()
    if q.scale.shape[-1] == 1:
        return torch.zeros(K, dtype=torch.long)
    return torch.arange(K) // q.group_size


def int4_plan(q) -> tuple[int, torch.Tensor] | str:
    """``(kernel_group, perm)`` for a 4-bit layer, or the reason it cannot run on the int4 kernel."""
    if q.bits != 4:
        return f"{q.bits}-bit codes (the int4 kernel takes 4-bit)"
    if q.out_features % 16:
        return f"out_features {q.out_features} is not a multiple of 16 (the int4 CPU kernel's block)"
    groups = column_groups(q)
    perm = torch.argsort(groups, stable=True)
    sg = groups[perm]
    for kg in INT4_KERNEL_GROUPS:
        if q.in_features % kg == 0 and bool((sg.reshape(-1, kg) == sg.reshape(-1, kg)[:, :1]).all()):
            return kg, perm
    return (f"no kernel group size in {INT4_KERNEL_GROUPS} divides in_features {q.in_features} and fits the "
            f"layer's groups of {q.group_size}")


def unsupported_reason(q) -> str | None:
    """Why ``q`` cannot run on a real CPU kernel, or ``None`` when it can."""
    if q.act_bits is not None or q.outlier_threshold is not None or q.outlier_idx is not None:
        return "activation quantization (W8A8 / LLM.int8()) has no weight-only kernel"
    if q.bits == 8:
        if not _has("_weight_int8pack_mm"):
            return "this torch has no _weight_int8pack_mm"
        if not q.symmetric:
            return "asymmetric 8-bit (the int8 kernel has no zero points)"
        if q.scale.shape[-1] != 1 or q.g_idx is not None:
            return "grouped 8-bit (the int8 kernel takes one scale per output row)"
        return None
    if q.bits == 4:
        if not _has("_weight_int4pack_mm_for_cpu"):
            return "this torch has no _weight_int4pack_mm_for_cpu"
        plan = int4_plan(q)
        return plan if isinstance(plan, str) else None
    return f"{q.bits}-bit codes have no kernel (4-bit grouped and 8-bit per-channel do)"


def pack_int4_cpu(codes: torch.Tensor) -> torch.Tensor:
    """Codes ``(N, K)`` (0..15) in the layout of ``_convert_weight_to_int4pack_for_cpu``."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32).contiguous(), 1)


def unpack_int4_cpu(packed: torch.Tensor, N: int, K: int) -> torch.Tensor:
    """Inverse of :func:`pack_int4_cpu` (uint8 codes ``(N, K)``). The layout (read off the op, checked by
    a test against it): blocks of 64 rows, each stored k-major; in a full block byte ``k * 32 + r`` holds
    row ``r`` (low nibble) and row ``r + 32`` (high nibble); a last block of ``n < 64`` rows stores byte
    ``k * n/2 + r // 2`` with even rows low, odd rows high."""
    flat = packed.reshape(-1)
    lo, hi = flat & 15, flat >> 4
    full, tail = divmod(N, 64)
    parts = []
    if full:
        n = full * 64 * K // 2
        l, h = lo[:n].reshape(full, K, 32), hi[:n].reshape(full, K, 32)
        parts.append(torch.cat([l, h], dim=2).permute(0, 2, 1).reshape(full * 64, K))
    if tail:
        n0 = full * 64 * K // 2
        l, h = lo[n0:].reshape(K, tail // 2), hi[n0:].reshape(K, tail // 2)
        parts.append(torch.stack([l, h], dim=2).reshape(K, tail).t())
    return torch.cat(parts).contiguous()


def to_kernel_layout(q) -> str | None:
    """Move ``q``'s weight into a real-kernel layout in place; returns ``None`` or the reason it stays
    simulated. The codes, scales and zero points are kept as they are."""
    if q.layout != "packed":
        return None
    reason = unsupported_reason(q)
    if reason is not None:
        return reason
    if q.scale.device.type != "cpu":
        return f"the kernels are CPU kernels; the layer is on {q.scale.device}"
    codes = q.codes()
    scale = q.scale.float()
    if scale.shape[0] == 1 and q.out_features > 1:  # per tensor
        scale = scale.expand(q.out_features, -1)
    if q.bits == 8:
        q.register_buffer("weight_int8", (codes.to(torch.int16) - 128).to(torch.int8))
        q.register_buffer("kernel_scale", scale[:, 0].to(CPU_COMPUTE_DTYPE).contiguous())
        q.layout = "int8_cpu"
    else:
        kg, perm = int4_plan(q)
        groups = column_groups(q)[perm][::kg]  # (K / kg,) qlite group of each kernel group
        zero = q.zero()
        if zero.shape[0] == 1 and q.out_features > 1:
            zero = zero.expand(q.out_features, -1)
        s, z = scale[:, groups], zero[:, groups]  # (N, K / kg)
        sz = torch.stack([s, s * (8 - z)], dim=-1).transpose(0, 1)  # (K / kg, N, 2): scale, offset
        identity = bool((perm == torch.arange(q.in_features)).all())
        q.register_buffer("weight_int4", pack_int4_cpu(codes[:, perm]))
        q.register_buffer("kernel_scale", sz.to(CPU_COMPUTE_DTYPE).contiguous())
        q.register_buffer("kernel_perm", None if identity else perm.to(torch.int32))
        q.kernel_group = kg
        q.layout = "int4_cpu"
    q.packed = None  # the generic packed copy goes: one copy of the weight is resident
    return None


def kernel_codes(q) -> torch.Tensor:
    """The ``(out, in)`` uint8 codes of a layer in a kernel layout."""
    if q.layout == "int8_cpu":
        return (q.weight_int8.to(torch.int16) + 128).to(torch.uint8)
    c = unpack_int4_cpu(q.weight_int4, q.out_features, q.in_features)
    if q.kernel_perm is None:
        return c
    out = torch.empty_like(c)
    out[:, q.kernel_perm.long()] = c
    return out


def kernel_forward(q, x: torch.Tensor) -> torch.Tensor:
    """``x' @ W.T + b`` on the real kernel, computed in :data:`CPU_COMPUTE_DTYPE`, returned in ``x``'s dtype.

    Called once per layer and token in a decode (211 times per SmolLM2 token), where the kernel itself
    takes ~20 us: the buffers are read from the module's dict once and the casts that would be no-ops are
    skipped in Python (each dispatch costs ~2 us on the 2-core CPU)."""
    buf = q._buffers  # nn.Module.__getattr__ would look each buffer up again
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    if buf["input_scale"] is not None:
        x2 = x2 * buf["input_scale"].to(x2.dtype)
    xb = x2 if x2.dtype == CPU_COMPUTE_DTYPE else x2.to(CPU_COMPUTE_DTYPE)
    sz = buf["kernel_scale"]
    if sz.dtype != CPU_COMPUTE_DTYPE:  # model.half() / .to(dtype) cast the buffer
        sz = sz.to(CPU_COMPUTE_DTYPE)
    if q.layout == "int8_cpu":
        if xb.shape[0] >= INT8_GEMM_MIN_TOKENS:  # (T, in) @ (in, out) in bfloat16, then the (out,) row scales
            y = torch.nn.functional.linear(xb, buf["weight_int8"].to(CPU_COMPUTE_DTYPE)) * sz
        else:
            y = torch.ops.aten._weight_int8pack_mm(xb.contiguous(), buf["weight_int8"], sz)
    else:
        perm = buf["kernel_perm"]
        xb = xb.index_select(1, perm) if perm is not None else xb.contiguous()
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(xb, buf["weight_int4"], q.kernel_group, sz)
    if y.dtype != x.dtype:
        y = y.to(x.dtype)
    if buf["bias"] is not None:
        y = y + buf["bias"].to(y.dtype)
    return y.view(*shape[:-1], q.out_features)
