"""The GPTQ algorithm (Frantar, Ashkboos, Hoefler, Alistarh 2022, arXiv:2210.17323), as a pure function.

For a layer ``W`` (out, in) with calibration inputs ``X`` it minimises ``||W X - Q X||^2`` one column at a
time (Optimal Brain Quantization with a fixed column order): quantize column ``q``, then update the
remaining columns ``F`` by ``delta_F = -(w_q - quant(w_q)) / [H_F^-1]_qq * (H_F^-1)_{:,q}`` (Eq. 2/3).
Three ideas make it fast and stable (Sec. 4):

* arbitrary (here: given) column order, so ``H^-1`` is shared by all rows;
* lazy batch updates: columns are processed in blocks of ``block_size``; inside a block updates touch the
  block only, the rest of the matrix is updated once per block with one matmul (Alg. 1, last line);
* Cholesky reformulation: the rows of ``H_F^-1`` needed at step ``q`` are the rows of the upper Cholesky
  factor of ``H^-1`` (scaled), computed once after dampening ``H += damp * mean(diag H) * I``.
"""

from __future__ import annotations

import torch

from ..hessian import drop_dead_inputs, inverse_cholesky
from .primitives import choose_qparams


def gptq_quantize(
    W: torch.Tensor,
    H: torch.Tensor,
    *,
    bits: int,
    group_size: int | None,
    symmetric: bool,
    act_order: bool = True,
    damp: float = 0.01,
    block_size: int = 128,
    static_groups: bool = False,
    scale_dtype: torch.dtype = torch.float16,
    group_params_from: str = "updated",
) -> dict:
    """Quantize ``W`` ``(out, in)`` given the Hessian proxy ``H = 2 X X^T / n`` ``(in, in)``.

    Returns:
        dict with ``codes`` ``(out, in)`` uint8 in the original column order, ``scale`` / ``zero``
        ``(out, n_groups)``, ``g_idx`` ``(in,)`` long or ``None`` (only with act_order and dynamic
        groups, where a group is a run of columns in *processing* order), ``loss`` (the sum over columns
        of ``err^2 / 2`` of Alg. 1, i.e. the OBQ objective).
    Raises:
        torch.linalg.LinAlgError if the dampened Hessian is not positive definite (raise ``damp``).
    """
    # Inputs that are always zero carry no information: their weights are set to 0 (GPTQ reference).
    W, H = drop_dead_inputs(W.float(), H)
    out, n = W.shape
    gs = group_size or n
    maxq = 2**bits - 1

    # With act_order and static_groups, the scale of each contiguous original group is fixed up front;
    # otherwise it is chosen when the group's first column comes up (below), on updated weights.
    static = None
    if static_groups and gs < n:
        groups = [choose_qparams(W[:, a : a + gs], bits, symmetric, scale_dtype) for a in range(0, n, gs)]
        static = (torch.stack([g[0] for g in groups], 1), torch.stack([g[1] for g in groups], 1))

    perm = None
    if act_order:
        perm = torch.argsort(torch.diag(H), descending=True)
        W = W[:, perm]
        H = H[perm][:, perm]
    if group_params_from not in ("updated", "stale", "original"):
        raise ValueError(f"group_params_from must be 'updated', 'stale' or 'original', got {group_params_from!r}")
    W0 = W.clone() if group_params_from == "original" else None

    # The upper Cholesky factor U of the dampened H^-1 gives, row by row, H_F^-1[q, q:] / sqrt(H_F^-1[q, q]).
    U = inverse_cholesky(H, damp)

    Q = torch.zeros_like(W)
    codes = torch.zeros(out, n, dtype=torch.uint8, device=W.device)
    n_groups = -(-n // gs) if gs < n else 1  # a shorter last group when gs does not divide n
    scales = torch.zeros(out, n_groups, device=W.device)
    zeros = torch.zeros(out, n_groups, device=W.device)
    g_idx = torch.zeros(n, dtype=torch.long, device=W.device)
    losses = torch.zeros(out, device=W.device)

    # Block size: a multiple of the group size so every group starts inside one block, where its
    # columns already carry all updates from earlier columns.
    B = block_size if gs >= n else max(gs, (block_size // gs) * gs)
    scale = zero = None
    if gs >= n:
        s, z = choose_qparams(W, bits, symmetric, scale_dtype)  # per row
        scale, zero = s, z
        scales[:, 0], zeros[:, 0] = s, z

    for i1 in range(0, n, B):
        i2 = min(i1 + B, n)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            w = W1[:, i]
            if gs < n:
                if static is not None:
                    g = int(perm[col]) // gs if perm is not None else col // gs
                    scale, zero = static[0][:, g], static[1][:, g]
                    g_idx[col] = g
                elif col % gs == 0:
                    g = col // gs
                    # The group's weights as they stand now ("updated": all earlier columns' updates), as
                    # the reference reads them (W outside the block: "stale", missing this block's
                    # earlier updates) or before any update ("original").
                    src = {"updated": W1[:, i : i + gs], "stale": W[:, col : col + gs],
                           "original": W0[:, col : col + gs] if W0 is not None else None}[group_params_from]
                    scale, zero = choose_qparams(src, bits, symmetric, scale_dtype)
                    scales[:, g], zeros[:, g] = scale, zero
                    g_idx[col] = g
                else:
                    g_idx[col] = col // gs
            q = torch.clamp(torch.round(w / scale) + zero, 0, maxq)
            codes[:, col] = q.to(torch.uint8)
            wq = scale * (q - zero)
            Q1[:, i] = wq
            dq = U1[i, i]
            losses += (w - wq) ** 2 / dq**2 / 2
            err = (w - wq) / dq  # (out,)
            # Update the rest of the block (Alg. 1 inner loop): W_{:, j>i} -= err * U[i, j].
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
            Err1[:, i] = err
        Q[:, i1:i2] = Q1
        # Lazy batch update of all later columns at once.
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]

    if static is not None:
        scales, zeros = static
    if perm is not None:
        inv = torch.argsort(perm)
        codes = codes[:, inv]
        Q = Q[:, inv]
        g_idx = g_idx[inv]
    keep_gidx = act_order and gs < n and static is None
    if gs < n and not keep_gidx:
        g_idx = None
    return {
        "codes": codes,
        "scale": scales,
        "zero": zeros,
        "g_idx": g_idx if keep_gidx else None,
        "dequantized": Q,
        "loss": float(losses.sum()),
    }
