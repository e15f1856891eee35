"""SparseGPT (Frantar & Alistarh 2023, arXiv:2301.00774), as a pure function.

For a layer ``W`` (out, in) with calibration Hessian ``H = 2 X X^T / n`` it prunes with Optimal Brain
Surgeon row updates: the columns are visited left to right; when column ``q`` of a row is masked, the
row's not-yet-visited weights ``F`` absorb the error,

    delta_F = -(w_q / [H_F^-1]_qq) * (H_F^-1)_{F,q}          (OBS, paper Eq. 3; Alg. 1)

Because every row visits the columns in the same order, the sequence of inverse Hessians ``H_F^-1`` is
shared by all rows, and its needed rows are the rows of the upper Cholesky factor ``U`` of ``H^-1``
(the same reformulation as GPTQ): ``[H_F^-1]_qq = U_qq^2`` and ``(H_F^-1)_{q,F} / [H_F^-1]_qq =
U_{q,F} / U_qq``. Alg. 1's further ingredients:

* **adaptive mask selection** (Sec. 3.3): the mask of a block of ``block_size`` columns is chosen when
  the block comes up, on the weights already updated by earlier blocks, by the OBS saliency
  ``w_q^2 / [H_F^-1]_qq = w_q^2 / U_qq^2`` over the whole block (all rows), removing ``sparsity`` of it;
* **N:M** (Sec. 3.4): the mask of each run of ``m`` columns is chosen when its first column comes up,
  keeping the ``n`` largest saliencies of each row;
* **lazy batched updates**: inside a block only the block is updated; the rest of the matrix receives
  the block's accumulated errors in one matmul.

Dampening ``H += damp * mean(diag H) * I`` and dead inputs (``diag H = 0``: weight zeroed) as GPTQ, through
the same functions (:mod:`qlite.classical.hessian`).
"""

from __future__ import annotations

import torch

from ..hessian import drop_dead_inputs, inverse_cholesky
from .masks import NMPattern


def sparsegpt_prune(
    W: torch.Tensor,
    H: torch.Tensor,
    *,
    sparsity: float,
    pattern: NMPattern | None = None,
    block_size: int = 128,
    damp: float = 0.01,
) -> dict:
    """Prune ``W`` ``(out, in)`` to ``sparsity`` (fraction **removed**) or to the N:M ``pattern``.

    Args:
        W: weights, any float dtype (computed in float32, or float64 when ``W`` is float64).
        H: ``(in, in)`` Hessian proxy of the layer inputs (any positive scale).
        sparsity: fraction removed in each block of columns (ignored with ``pattern``).
        pattern: N:M pattern (``m`` must divide ``in`` and ``block_size``).
        block_size: columns per lazy-update block (the mask-selection window).
        damp: relative dampening of ``H``.

    Returns:
        dict with ``weight`` (the updated, pruned ``(out, in)`` weights, float32 or float64), ``mask`` (bool, True =
        kept) and ``loss`` (``sum err^2 / 2`` of Alg. 1: the OBS estimate of the added output error
        ``||(W - W') X||^2`` in units of ``H``).
    Raises:
        ValueError if ``pattern.m`` does not divide ``in`` or ``block_size``;
        torch.linalg.LinAlgError if the dampened ``H`` is not positive definite (raise ``damp``).
    """
    dt = torch.float64 if W.dtype == torch.float64 else torch.float32
    out, n = W.shape
    if pattern is not None and (n % pattern.m or block_size % pattern.m):
        raise ValueError(f"pattern {pattern}: M={pattern.m} must divide the input dimension {n} and block_size {block_size}")

    W, H = drop_dead_inputs(W.to(dt), H)  # the same preparation as GPTQ (qlite.classical.hessian)
    U = inverse_cholesky(H, damp)

    mask = torch.ones(out, n, dtype=torch.bool, device=W.device)
    losses = torch.zeros(out, device=W.device)
    for i1 in range(0, n, block_size):
        i2 = min(i1 + block_size, n)
        W1 = W[:, i1:i2].clone()
        U1 = U[i1:i2, i1:i2]
        d1 = torch.diag(U1)  # (cols,) = sqrt([H_F^-1]_qq) at each column's turn
        Err1 = torch.zeros_like(W1)
        M1 = torch.ones_like(W1, dtype=torch.bool)
        if pattern is None:
            sal = W1**2 / d1[None, :] ** 2
            k = int(sal.numel() * sparsity)
            if k:
                M1.view(-1)[torch.topk(sal.reshape(-1), k, largest=False).indices] = False
        for i in range(i2 - i1):
            if pattern is not None and i % pattern.m == 0:
                sal = W1[:, i : i + pattern.m] ** 2 / d1[None, i : i + pattern.m] ** 2
                keep = torch.topk(sal, pattern.n, dim=1).indices
                M1[:, i : i + pattern.m] = torch.zeros_like(sal, dtype=torch.bool).scatter_(1, keep, True)
            w = W1[:, i]
            q = torch.where(M1[:, i], w, torch.zeros_like(w))
            err = (w - q) / d1[i]  # (out,); zero for kept weights
            losses += err**2 / 2
            # OBS update of the rest of the block (the row of U, scaled): W_{:, j>=i} -= err * U[i, j].
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
            W1[:, i] = q
            Err1[:, i] = err
        W[:, i1:i2] = W1
        mask[:, i1:i2] = M1
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]  # lazy batched update of all later columns
    W[~mask] = 0
    return {"weight": W, "mask": mask, "loss": float(losses.sum())}
