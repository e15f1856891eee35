"""AWQ's two searches (Lin et al. 2023, arXiv:2306.00978) as pure functions.

* Scale search (Sec. 3.2): weights salient to large activations lose less when scaled up before
  quantization. For layers sharing an input ``x``, with ``s_x = mean|x|`` per input channel, try
  ``s = s_x^r`` for ``r`` in ``{0, 1/n, ..., (n-1)/n}`` (normalised by ``sqrt(max s * min s)``) and keep the
  one minimising ``|| Q(W diag(s)) diag(s)^-1 x - W x ||^2`` (Eq. 5).
* Clipping search: per output row and group, shrink the clipping range ``max|w|`` by up to 50% in
  ``n_grid`` steps, keeping the one minimising the group's partial output error on sampled tokens.

Both act on the concatenation of the group's weights, as the reference does for q/k/v and gate/up. The
reference measures the scale search on the output of the enclosing module (the attention or the MLP);
without a per-architecture registry we measure it on the group's own linear outputs.
"""

from __future__ import annotations

import torch

from .primitives import choose_qparams, fake_quantize


def search_scale(
    x: torch.Tensor, W: torch.Tensor, x_absmean: torch.Tensor, *, bits: int, group_size: int, symmetric: bool, n_grid: int = 20
) -> tuple[torch.Tensor, list[float]]:
    """Best per-input-channel scale ``s`` ``(in,)`` and the loss of every grid point.

    Args:
        x: ``(rows, in)`` sampled inputs; W: ``(out, in)`` concatenated weights of the group;
        x_absmean: ``(in,)`` mean ``|x|`` over all calibration tokens.
    """
    x = x.float()
    W = W.float()
    ref = x @ W.t()  # (rows, out)
    losses = []
    best, best_loss = torch.ones_like(x_absmean), float("inf")
    for k in range(n_grid):
        r = k / n_grid
        s = x_absmean.float().pow(r).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        Wq = fake_quantize(W * s, bits, symmetric, group_size) / s
        loss = float((x @ Wq.t() - ref).pow(2).mean())
        losses.append(loss)
        if loss < best_loss:
            best, best_loss = s, loss
    return best, losses


def search_clip(
    x: torch.Tensor, W: torch.Tensor, *, bits: int, group_size: int, symmetric: bool, n_grid: int = 20, max_shrink: float = 0.5, row_batch: int = 64
) -> torch.Tensor:
    """Best clipping magnitude per ``(out, n_groups)`` (the weight is later clamped to ``[-m, m]``).

    Args:
        x: ``(rows, in)`` sampled inputs; W: ``(out, in)``.
    """
    out, n = W.shape
    pad = (-n) % group_size  # a shorter last group: zero columns change neither outputs nor ranges
    x = torch.nn.functional.pad(x.float(), (0, pad))
    W = torch.nn.functional.pad(W.float(), (0, pad))
    ng = (n + pad) // group_size
    xg = x.reshape(-1, ng, group_size)  # (rows, ng, g)
    best_all = []
    for r0 in range(0, out, row_batch):
        w = W[r0 : r0 + row_batch].float().reshape(-1, ng, group_size)  # (ob, ng, g)
        ref = torch.einsum("tgk,ogk->otg", xg, w)  # (ob, rows, ng): each group's partial output
        amax = w.abs().amax(dim=-1)  # (ob, ng)
        best = amax.clone()
        best_err = torch.full_like(amax, float("inf"))
        for i in range(int(max_shrink * n_grid)):
            m = amax * (1 - i / n_grid)
            wc = torch.maximum(torch.minimum(w, m[..., None]), -m[..., None])
            s, z = choose_qparams(wc, bits, symmetric)
            wq = s[..., None] * (torch.clamp(torch.round(wc / s[..., None]) + z[..., None], 0, 2**bits - 1) - z[..., None])
            err = (torch.einsum("tgk,ogk->otg", xg, wq) - ref).pow(2).mean(dim=1)  # (ob, ng)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best = torch.where(better, m, best)
        best_all.append(best)
    return torch.cat(best_all)
