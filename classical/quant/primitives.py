"""Pure tensor primitives of integer quantization: choose scales, quantize, dequantize, pack bits.

Conventions (one grid for every method, so RTN, GPTQ and AWQ are compared on equal terms):

* A weight ``W`` has shape ``(out, in)``; a group is ``group_size`` consecutive input columns of one row
  (``group_size == in`` is per channel). Per tensor uses one group for the whole matrix.
* Asymmetric ``b``-bit: codes ``q`` in ``[0, 2**b - 1]``, ``scale = (max - min) / (2**b - 1)`` with the
  range widened to contain 0 (as GPTQ's quantizer does), ``zero = round(-min / scale)``,
  ``w ~ scale * (q - zero)``.
* Symmetric ``b``-bit: ``scale = absmax / (2**(b-1) - 1)``, signed values in ``[-2**(b-1), 2**(b-1) - 1]``
  stored as codes ``q = value + 2**(b-1)``, so ``zero = 2**(b-1)`` is implicit (8-bit gives the usual
  ``absmax / 127`` int8 of LLM.int8() and SmoothQuant).
* Scales are rounded to ``scale_dtype`` (float16 by default, as stored) *before* the codes are computed,
  so the stored scale reproduces the dequantized weight exactly.
"""

from __future__ import annotations

import torch


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """The signed value range ``(lo, hi)`` before the code offset."""
    if symmetric:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def choose_qparams(
    w: torch.Tensor, bits: int, symmetric: bool, scale_dtype: torch.dtype = torch.float16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of each group along the last dimension.

    Args:
        w: ``(..., g)`` float tensor; every slice along the last dim is one group.
    Returns:
        ``scale`` and ``zero`` of shape ``(...)``: scale as float32 holding ``scale_dtype`` values,
        zero as float32 integer values (the code of the real value 0).
    """
    w = w.float()
    if symmetric:
        amax = w.abs().amax(dim=-1)
        scale = amax / (2 ** (bits - 1) - 1)
        zero = torch.full_like(scale, 2 ** (bits - 1))
    else:
        wmin = w.amin(dim=-1).clamp(max=0)
        wmax = w.amax(dim=-1).clamp(min=0)
        scale = (wmax - wmin) / (2**bits - 1)
    # An all-zero group: any positive scale represents it exactly.
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    cast = scale.to(scale_dtype).float()
    if torch.isinf(cast).any():
        raise ValueError(f"weights up to {float(w.abs().max()):.3g} need a quantization step of {float(scale.max()):.3g}, "
                         f"beyond {scale_dtype}'s range; rescale the layer or store scales in float32")
    # fp16 may round a tiny scale to 0: fall back to the smallest normal fp16 step.
    scale = torch.where(cast > 0, cast, torch.full_like(cast, 6.1e-5))
    if not symmetric:
        zero = torch.clamp(torch.round(-wmin / scale), 0, 2**bits - 1)
    return scale, zero


def quantize(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes ``clamp(round(w / scale) + zero, 0, 2**b - 1)`` as uint8; ``scale``/``zero`` broadcast to ``w``."""
    q = torch.round(w.float() / scale) + zero
    return q.clamp_(0, 2**bits - 1).to(torch.uint8)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """``scale * (q - zero)`` in float32."""
    return scale * (q.float() - zero)


def fake_quantize(w: torch.Tensor, bits: int, symmetric: bool, group_size: int, scale_dtype=torch.float16):
    """Quantize-dequantize a ``(out, in)`` weight per group; returns a float tensor of ``w``'s shape."""
    codes, scale, zero = quantize_weight(w, bits, symmetric, group_size, scale_dtype)
    return dequantize_weight(codes, scale, zero, group_size).to(w.dtype)


def quantize_weight(
    w: torch.Tensor, bits: int, symmetric: bool, group_size: int, scale_dtype=torch.float16, per_tensor=False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round-to-nearest quantization of a ``(out, in)`` weight.

    Returns:
        ``codes`` ``(out, in)`` uint8, ``scale`` and ``zero`` ``(out, in // group_size)`` float32
        (``(1, 1)`` when ``per_tensor``).
    """
    out, inp = w.shape
    if per_tensor:
        scale, zero = choose_qparams(w.reshape(1, 1, -1), bits, symmetric, scale_dtype)
        return quantize(w, scale, zero, bits), scale, zero
    pad = (-inp) % group_size
    # A shorter last group is padded with zeros, which change neither its range (the grid always
    # contains 0) nor its scale; the padded codes are dropped.
    wp = torch.nn.functional.pad(w.float(), (0, pad)) if pad else w
    wg = wp.reshape(out, (inp + pad) // group_size, group_size)  # (out, n_groups, g)
    scale, zero = choose_qparams(wg, bits, symmetric, scale_dtype)  # (out, n_groups)
    codes = quantize(wg, scale[..., None], zero[..., None], bits)
    return codes.reshape(out, inp + pad)[:, :inp].contiguous(), scale, zero


def dequantize_weight(
    codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int, g_idx: torch.Tensor | None = None
) -> torch.Tensor:
    """Inverse of :func:`quantize_weight`; ``g_idx`` (``(in,)``) maps each column to its group when the
    groups are not contiguous (GPTQ with act_order)."""
    out, inp = codes.shape
    if g_idx is None and inp % group_size:
        g_idx = torch.arange(inp, device=codes.device) // group_size
    if g_idx is not None:
        g = g_idx.long()
        return (codes.float() - zero[:, g]) * scale[:, g]
    if scale.shape[-1] == 1 and scale.shape[0] == 1 and out > 1:  # per tensor
        return dequantize(codes, scale, zero)
    n = inp // group_size
    cg = codes.reshape(out, n, group_size)
    return dequantize(cg, scale[..., None], zero[..., None]).reshape(out, inp)


_PLANES = {1: (1,), 2: (2,), 3: (2, 1), 4: (4,), 5: (4, 1), 6: (4, 2), 7: (4, 2, 1), 8: (8,)}


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack ``b``-bit codes (any shape, values < 2**b) into a flat uint8 stream.

    Widths that divide 8 put ``8 // b`` codes in each byte, code ``i`` at bit ``b*i`` (little endian).
    Other widths are split into such planes, low bits first (3 = 2 + 1, 5 = 4 + 1, 6 = 4 + 2,
    7 = 4 + 2 + 1), so unpacking is a few byte shifts per plane; the stream then holds
    ``sum_k ceil(n*k/8)`` bytes, exactly ``n*b/8`` when ``n`` is a multiple of 8.
    """
    if bits not in _PLANES:
        raise ValueError(f"pack_bits supports 1 to 8 bits, got {bits}")
    flat = codes.reshape(-1).to(torch.uint8)
    parts, offset = [], 0
    for k in _PLANES[bits]:
        plane = (flat >> offset) & (2**k - 1)
        per = 8 // k
        pad = (-plane.numel()) % per
        if pad:
            plane = torch.cat([plane, plane.new_zeros(pad)])
        shifts = torch.arange(per, device=flat.device, dtype=torch.uint8) * k
        parts.append((plane.reshape(-1, per) << shifts).sum(dim=1, dtype=torch.uint8))  # fields are disjoint
        offset += k
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _unpack_plane(packed: torch.Tensor, k: int, numel: int) -> torch.Tensor:
    if k == 8:
        return packed[:numel]
    per = 8 // k
    shifts = torch.arange(per, device=packed.device, dtype=torch.uint8) * k
    return ((packed[:, None] >> shifts) & (2**k - 1)).reshape(-1)[:numel]  # (bytes * per,)


def unpack_bits(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: the first ``numel`` codes as a flat uint8 tensor."""
    if bits not in _PLANES:
        raise ValueError(f"unpack_bits supports 1 to 8 bits, got {bits}")
    out, start, offset = None, 0, 0
    for k in _PLANES[bits]:
        nbytes = -(-numel // (8 // k))
        plane = _unpack_plane(packed[start : start + nbytes], k, numel)
        out = plane if out is None else out | (plane << offset)
        start += nbytes
        offset += k
    return out


def quantize_per_token(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Dynamic symmetric per-token fake quantization of activations ``(..., in)`` (SmoothQuant, LLM.int8()):
    each token (row) gets ``scale = absmax / (2**(b-1) - 1)``; returns the dequantized float tensor."""
    qmax = 2 ** (bits - 1) - 1
    scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / qmax
    return torch.round(x / scale).clamp(-qmax - 1, qmax) * scale
