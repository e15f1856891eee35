"""The Hessian preparation shared by GPTQ and SparseGPT (pure tensor functions).

Both methods work on a layer's calibration Hessian proxy ``H = 2 X X^T / n`` ``(in, in)`` and need the
same three steps before their column loop (GPTQ reference ``fasterquant``, SparseGPT ``fasterprune``):

1. inputs that are always zero (``H_jj = 0``) carry no information: their weights are set to 0 and
   their diagonal entry to 1, so ``H`` stays invertible;
2. dampening ``H += damp * mean(diag H) * I`` (``damp`` relative to the mean diagonal);
3. the upper Cholesky factor ``U`` of ``H^-1``: row ``q`` of ``U`` holds ``H_F^-1[q, q:] / sqrt(H_F^-1[q, q])``
   for the inverse Hessian ``H_F^-1`` of the columns not yet visited (GPTQ Sec. 4, "Cholesky
   reformulation"), so one factorisation serves every step of the column loop.
"""

from __future__ import annotations

import torch


def drop_dead_inputs(W: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of ``W`` ``(out, in)`` and ``H`` ``(in, in)`` with the always-zero inputs' weights zeroed and
    their diagonal set to 1 (step 1). ``H`` is moved to ``W``'s device and dtype."""
    W = W.detach().clone()
    H = H.detach().clone().to(device=W.device, dtype=W.dtype)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    return W, H


def inverse_cholesky(H: torch.Tensor, damp: float) -> torch.Tensor:
    """The upper Cholesky factor ``U`` of ``(H + damp * mean(diag H) * I)^-1`` (steps 2 and 3).

    Raises:
        torch.linalg.LinAlgError if the dampened ``H`` is not positive definite (raise ``damp``).
    """
    n = H.shape[0]
    H = H + damp * torch.mean(torch.diag(H)) * torch.eye(n, dtype=H.dtype, device=H.device)
    L = torch.linalg.cholesky(H)
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
