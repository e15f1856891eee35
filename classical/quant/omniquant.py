"""OmniQuant's learnable weight clipping (Shao et al., ICLR 2024, arXiv:2308.13137, Sec. 3.2, Eq. 2) as a
pure, differentiable primitive.

Per group (or output channel), two strengths ``gamma, beta`` in ``(0, 1]`` (sigmoids of learnable
logits) shrink the range the asymmetric grid covers:

    h = (gamma * max(W) - beta * min(W)) / (2**b - 1),   z = -round(beta * min(W) / h),
    W_q = h * (clamp(round(W / h) + z, 0, 2**b - 1) - z),

with straight-through rounding, so gradients reach the strengths (and, in block training, the
weights' transformations). At ``gamma = beta = 1`` this is exactly qlite's asymmetric RTN grid
(:func:`qlite.classical.quant.primitives.fake_quantize`): the range widened to contain 0, the step
rounded to float16 as stored.

Not built yet (issue 16 item 1): the block-wise training loop, the learnable equivalent transformation
(LET) and the folding into a ``QuantizedLinear``.
"""

from __future__ import annotations

import torch


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward, identity backward (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def lwc_fake_quantize(w: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Quantize-dequantize ``w`` ``(out, in)`` with clipping strengths ``gamma`` / ``beta`` of shape
    ``(out, n_groups)`` (broadcastable; ``n_groups = ceil(in / group_size)``, a shorter last group is
    padded with zeros, which change neither range nor step). Differentiable in ``w``, ``gamma`` and
    ``beta`` (straight-through rounding).

    Raises:
        ValueError: strengths outside ``(0, 1]`` or bits outside [2, 8].
    """
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"lwc_fake_quantize: bits must be an integer in [2, 8], got {bits!r}")
    with torch.no_grad():
        for n, s in (("gamma", gamma), ("beta", beta)):
            if not bool(((s > 0) & (s <= 1)).all()):
                raise ValueError(f"lwc_fake_quantize: {n} must lie in (0, 1] (a sigmoid of a logit), "
                                 f"got values in [{float(s.min()):.3g}, {float(s.max()):.3g}]")
    out, n = w.shape
    pad = (-n) % group_size
    wp = torch.nn.functional.pad(w, (0, pad)).reshape(out, -1, group_size)  # (out, n_groups, g)
    maxq = 2**bits - 1
    wmax = (gamma * wp.amax(dim=-1)).clamp(min=0)  # (out, n_groups); the grid contains 0 as in RTN
    wmin = (beta * wp.amin(dim=-1)).clamp(max=0)
    h = (wmax - wmin) / maxq
    h = torch.where(h > 0, h, torch.ones_like(h))
    h = h + (h.to(torch.float16).float().clamp(min=6.1e-5) - h).detach()  # float16 step, as stored
    z = torch.clamp(torch.round(-wmin / h), 0, maxq).detach()
    q = torch.clamp(round_ste(wp / h[..., None]) + z[..., None], 0, maxq)
    return (h[..., None] * (q - z[..., None])).reshape(out, -1)[:, :n]
