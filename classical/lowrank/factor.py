"""Pure low-rank factorisation primitives: ``W (out, in) ~ A @ B`` with ``A (out, k)``, ``B (k, in)``.

* :func:`svd_factors`: truncated SVD, optimal for ``||W - W'||_F`` (Eckart-Young).
* :func:`asvd_factors`: ASVD (Yuan et al. 2023, arXiv:2312.05821): scale the input channels by
  ``S = diag(mean|X_j|^alpha)`` before the SVD, ``W S = U Sigma V^T``, ``W' = U_k Sigma_k V_k^T S^-1``,
  so channels that carry large activations are approximated more accurately (Sec. 3.2, alpha = 0.5).
* :func:`whitened_svd_factors`: SVD-LLM's truncation-aware data whitening (Wang et al. 2024,
  arXiv:2403.07378, Sec. 3.1): with the Cholesky factor ``S`` of the input covariance, ``S S^T = X X^T``,
  ``W S = U Sigma V^T`` and ``W' = U_k Sigma_k V_k^T S^-1``. Since ``S^-1 X`` has orthonormal rows,
  ``||(W - W') X||_F^2 = sum_{i > k} sigma_i^2``: truncating the smallest singular values is exactly
  the best rank-``k`` choice for the layer output (their Theorem 3.2), unlike plain SVD.

Each returns ``(A, B)`` with ``sqrt(Sigma_k)`` split between the two factors (as SVD-LLM does), in the
dtype of ``W``; the decompositions run in float64.
"""

from __future__ import annotations

import torch


def rank_for_ratio(out_features: int, in_features: int, ratio: float) -> int:
    """The largest rank ``k`` with ``k * (out + in) <= (1 - ratio) * out * in``: ``ratio`` is the fraction
    of the layer's weight parameters **removed** by storing two factors instead of ``W``."""
    return int((1.0 - ratio) * out_features * in_features / (out_features + in_features))


def _check_rank(W: torch.Tensor, k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= min(W.shape):
        raise ValueError(f"rank must be an integer in [1, {min(W.shape)}] for a {tuple(W.shape)} matrix, got {k!r}")


def _split(U, s, Vh, k, dtype):
    r = s[:k].sqrt()
    return (U[:, :k] * r[None, :]).to(dtype), (r[:, None] * Vh[:k]).to(dtype)


def decompose(W: torch.Tensor, method: str = "svd", stat: torch.Tensor | None = None, *, alpha: float = 0.5,
              damp: float = 0.0, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(U, sigma, V)`` in float64 with ``U[:, :k] diag(sigma[:k]) V[:k]`` the method's rank-``k``
    approximation of ``W`` for every ``k``: the SVD of ``W T`` with ``V = Vh T^-1``, where ``T`` is the
    identity (``"svd"``), ASVD's ``diag(stat ** alpha)`` (``stat`` = the inputs' mean ``|x|``) or SVD-LLM's
    Cholesky factor of ``stat`` = the input covariance (``"svd-llm"``, see :func:`whitening_factor`)."""
    W = W.detach().double()
    if method == "svd":
        return torch.linalg.svd(W, full_matrices=False)
    if method == "asvd":
        scale = stat.detach().double().to(W.device).clamp(min=eps).pow(alpha)
        U, s, Vh = torch.linalg.svd(W * scale[None, :], full_matrices=False)
        return U, s, Vh / scale[None, :]
    if method == "svd-llm":
        S = whitening_factor(stat.to(W.device), damp=damp)
        U, s, Vh = torch.linalg.svd(W @ S, full_matrices=False)
        # Vh S^-1 by a triangular solve: X S = Vh  <=>  S^T X^T = Vh^T.
        return U, s, torch.linalg.solve_triangular(S.t(), Vh.t(), upper=True).t()
    raise ValueError(f"method must be 'svd', 'asvd' or 'svd-llm', got {method!r}")


def svd_factors(W: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated SVD of ``W`` to rank ``k``."""
    _check_rank(W, k)
    return _split(*decompose(W, "svd"), k, W.dtype)


def asvd_factors(W: torch.Tensor, act_absmean: torch.Tensor, k: int, *, alpha: float = 0.5, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """ASVD: ``act_absmean[j] = mean_t |x_tj|`` of the layer's inputs, scaled by ``S_jj = act_absmean_j ** alpha``."""
    _check_rank(W, k)
    return _split(*decompose(W, "asvd", act_absmean, alpha=alpha, eps=eps), k, W.dtype)


def whitening_factor(H: torch.Tensor, *, damp: float = 0.0) -> torch.Tensor:
    """Lower Cholesky factor ``S`` of ``H + damp * mean(diag H) * I`` (``H ~ X X^T``), float64.

    If ``H`` is only positive semi-definite (fewer calibration tokens than inputs, dead inputs) the
    dampening is raised tenfold until the factorisation succeeds, starting from ``1e-6`` when
    ``damp`` is 0 (SVD-LLM's reference adds a small diagonal shift in that case too)."""
    H = H.detach().double()
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    scale = torch.diag(H).mean().clamp(min=1e-30)
    d = damp
    for _ in range(12):
        S, info = torch.linalg.cholesky_ex(H + d * scale * eye)
        if int(info) == 0:
            return S
        d = 1e-6 if d == 0 else d * 10
    raise ValueError("the activation covariance is not positive definite even after dampening; check the calibration data")


def whitened_svd_factors(W: torch.Tensor, H: torch.Tensor, k: int, *, damp: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SVD-LLM: ``(A, B, sigma)`` where ``sigma`` are all singular values of ``W S`` (so the output error
    of rank ``k`` is ``sum(sigma[k:]**2)`` in the units of ``H``)."""
    _check_rank(W, k)
    U, s, V = decompose(W, "svd-llm", H, damp=damp)
    A, B = _split(U, s, V, k, W.dtype)
    return A, B, s
