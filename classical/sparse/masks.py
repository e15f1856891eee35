"""Pure mask primitives for unstructured and N:M sparsity (no module surgery here).

Convention everywhere in ``qlite.classical.sparse``: a mask is a bool tensor that is ``True`` where a
weight is **kept**; ``sparsity`` is the fraction of weights **removed** (set to zero); an ``N:M``
pattern keeps **N** non-zeros in every run of **M** consecutive input weights of a row (NVIDIA's
convention: ``2:4`` keeps 2 of 4, i.e. 50% sparsity), which is what PyTorch's semi-structured kernels
accept for ``2:4``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NMPattern:
    """``n`` kept weights in every run of ``m`` consecutive input columns of each row."""

    n: int
    m: int

    def __post_init__(self):
        if not (isinstance(self.n, int) and isinstance(self.m, int)) or not 0 < self.n < self.m:
            raise ValueError(f"an N:M pattern needs integers 0 < N < M, got {self.n}:{self.m}")

    @property
    def sparsity(self) -> float:
        """Fraction of weights removed, ``1 - n / m``."""
        return 1.0 - self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


def parse_pattern(pattern: str | NMPattern | None) -> NMPattern | None:
    """``"2:4"`` -> ``NMPattern(2, 4)``; ``None`` stays ``None`` (unstructured)."""
    if pattern is None or isinstance(pattern, NMPattern):
        return pattern
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be an NMPattern such as NMPattern(2, 4) (or the string '2:4'), or None; "
                        f"got {pattern!r}")
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", pattern)
    if not m:
        raise ValueError(f"pattern must look like 'N:M' (e.g. '2:4' or '4:8'), got {pattern!r}")
    return NMPattern(int(m.group(1)), int(m.group(2)))


def check_sparsity(sparsity, method: str) -> float:
    """Validate a removed fraction in ``[0, 1)``."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(
            f"{method}: removed is the fraction of weights removed and must lie in [0, 1), got {sparsity!r}"
        )
    return float(sparsity)


def n_removed(count: int, sparsity: float) -> int:
    """How many of ``count`` entries a ``sparsity`` fraction removes (rounded down, as the references do)."""
    return int(count * sparsity)


def unstructured_mask(scores: torch.Tensor, sparsity: float, *, per_row: bool = False) -> torch.Tensor:
    """Keep-mask removing the ``int(count * sparsity)`` lowest ``scores``, over the whole matrix or
    separately in each row (``per_row``: Wanda's comparison group). Exactly that many are removed even
    with ties (``topk`` breaks them by index)."""
    if per_row:
        k = n_removed(scores.shape[-1], sparsity)
        mask = torch.ones_like(scores, dtype=torch.bool)
        if k:
            idx = torch.topk(scores, k, dim=-1, largest=False).indices
            mask.scatter_(-1, idx, False)
        return mask
    k = n_removed(scores.numel(), sparsity)
    mask = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if k:
        mask[torch.topk(scores.reshape(-1), k, largest=False).indices] = False
    return mask.reshape(scores.shape)


def nm_mask(scores: torch.Tensor, pattern: NMPattern) -> torch.Tensor:
    """Keep-mask with the ``n`` largest ``scores`` of every run of ``m`` consecutive columns of each row.
    ``scores`` is ``(out, in)`` with ``in`` divisible by ``m``."""
    out, inp = scores.shape
    if inp % pattern.m:
        raise ValueError(f"pattern {pattern} needs the input dimension to be a multiple of {pattern.m}, got {inp}")
    g = scores.reshape(out, inp // pattern.m, pattern.m)
    idx = torch.topk(g, pattern.n, dim=-1).indices
    mask = torch.zeros_like(g, dtype=torch.bool).scatter_(-1, idx, True)
    return mask.reshape(out, inp)


def wanda_scores(weight: torch.Tensor, input_sqsum: torch.Tensor) -> torch.Tensor:
    """Wanda's importance ``S_ij = |W_ij| * ||X_j||_2`` (Sun et al. 2023, Eq. 1), with
    ``input_sqsum[j] = sum_t x_tj^2`` over every calibration token ``t``. ``(out, in)``."""
    return weight.abs().float() * input_sqsum.float().clamp(min=0).sqrt()[None, :]


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor as a flat uint8 bitmask, 8 entries per byte, entry ``i`` at bit ``i % 8``."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    shifts = torch.arange(8, device=flat.device, dtype=torch.uint8)
    return (flat.reshape(-1, 8) << shifts).sum(dim=1, dtype=torch.uint8)


def unpack_mask(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`pack_mask`."""
    numel = 1
    for s in shape:
        numel *= s
    shifts = torch.arange(8, device=packed.device, dtype=torch.uint8)
    bits = (packed[:, None] >> shifts) & 1
    return bits.reshape(-1)[:numel].bool().reshape(shape)
