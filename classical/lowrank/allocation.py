"""Sensitivity-based rank allocation: ASVD's Sensitivity-based Truncation Rank Searching (STRS, Yuan
et al. 2023, arXiv:2312.05821, Sec. 3.3), usable with every low-rank method.

A uniform cut removes the same fraction of parameters from every layer, although layers differ widely
in how much they tolerate. STRS measures, for every layer alone and every kept-parameter fraction in
``KEEP_GRID`` (0.1 ... 0.9), the loss on a few calibration inputs with only that layer replaced by its
rank-``k`` approximation; it then sorts these losses and finds by binary search the smallest loss
threshold ``t`` such that giving every layer the smallest fraction whose loss stays within ``t`` meets
the overall parameter budget. A layer with no fraction within ``t`` stays dense.

The loss is the next-token cross-entropy when the model returns logits for token-id inputs (the
paper's perplexity), and otherwise the relative squared change of the model's outputs.

Cost: ``len(KEEP_GRID)`` forwards over the search inputs per layer (the approximations come from one
decomposition per layer). The search inputs must be large enough for single-layer loss changes to
stand out of the sample's noise: measured on SmolLM2 with 2 x 128 tokens, the search lifted ASVD at
20% removed from ppl 341,443 (uniform) to 172, but made SVD-LLM worse (525 vs 121), because the
threshold it chose lay within the noise and concentrated the cut on a quarter of the layers. The
ASVD paper searches on 32 x 2048 tokens.
"""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from ..calibration import call_model, output_logits
from ..layers import linear_weight
from .factor import decompose, rank_for_ratio

log = logging.getLogger(__name__)

KEEP_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class _Approximator:
    """``approx(k)``: the rank-``k`` approximation of one layer's weight by ``method``, from one
    :func:`~qlite.classical.lowrank.factor.decompose` (reused for every kept fraction)."""

    def __init__(self, W: torch.Tensor, method: str, stat: torch.Tensor | None, *, alpha: float, damp: float):
        U, s, V = decompose(W, method, stat, alpha=alpha, damp=damp)
        self.left = (U * s[None, :]).float()
        self.right = V.float()

    def approx(self, k: int) -> torch.Tensor:
        return self.left[:, :k] @ self.right[:k]


def _is_lm(model: nn.Module, x) -> bool:
    ids = x.get("input_ids") if isinstance(x, dict) else x
    if not (isinstance(ids, torch.Tensor) and not ids.is_floating_point() and ids.dim() == 2):
        return False
    with torch.no_grad():
        out = call_model(model, x)
    logits = output_logits(out) if isinstance(out, torch.Tensor) or hasattr(out, "logits") else None
    return logits is not None and logits.dim() == 3 and logits.shape[:2] == ids.shape


class CalibrationLoss:
    """The search's loss on fixed inputs: next-token cross-entropy for language models, else the
    relative squared change of the outputs against the unmodified model."""

    def __init__(self, model: nn.Module, inputs: list):
        self.model, self.inputs = model, inputs
        self.lm = _is_lm(model, inputs[0])
        self.ref = None
        if not self.lm:
            with torch.no_grad():
                self.ref = [output_logits(call_model(model, x)).detach() for x in inputs]

    @torch.no_grad()
    def __call__(self) -> float:
        total, norm = 0.0, 0.0
        for i, x in enumerate(self.inputs):
            y = output_logits(call_model(self.model, x)).float()
            if self.lm:
                ids = x.get("input_ids") if isinstance(x, dict) else x
                ce = nn.functional.cross_entropy(y[:, :-1].reshape(-1, y.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum")
                total, norm = total + float(ce), norm + ids[:, 1:].numel()
            else:
                ref = self.ref[i].float()
                total, norm = total + float(((y - ref) ** 2).sum()), norm + float((ref**2).sum())
        return total / max(norm, 1e-30)


def _params(out_f: int, in_f: int, keep: float | None) -> tuple[int | None, int]:
    """``(rank or None for dense, parameters)`` of a layer kept at fraction ``keep``."""
    if keep is None:
        return None, out_f * in_f
    k = max(1, rank_for_ratio(out_f, in_f, 1.0 - keep))
    return k, k * (out_f + in_f)


@torch.no_grad()
def sensitivity_ranks(model: nn.Module, layers: dict[str, nn.Module], stats: dict[str, torch.Tensor | None],
                      inputs: list, *, removed: float, method: str, alpha: float = 0.5, damp: float = 0.0,
                      grid: tuple[float, ...] = KEEP_GRID) -> dict[str, int | None]:
    """Per-layer ranks (``None``: keep the layer dense) removing at least ``removed`` of the parameters
    of ``layers`` in total, chosen by STRS (module docstring). ``stats``: each layer's input ``mean|x|``
    (ASVD) or covariance (SVD-LLM); ``inputs``: the calibration inputs the losses are measured on."""
    loss = CalibrationLoss(model, inputs)
    base = loss()
    t0 = time.perf_counter()
    table: dict[str, dict[float, float]] = {}
    for i, (name, mod) in enumerate(layers.items()):
        w = linear_weight(mod)
        approx = _Approximator(w, method, stats.get(name), alpha=alpha, damp=damp)
        orig = w.detach().clone()
        table[name] = {}
        try:
            for keep in grid:
                k, _ = _params(*w.shape, keep)
                w.copy_(approx.approx(k).to(w.dtype).reshape(w.shape))
                table[name][keep] = loss()
        finally:
            w.copy_(orig)
        if i % 20 == 0:
            log.info("rank search: %d/%d layers (%.0fs), %s at %g kept: loss %.4f (dense %.4f)", i + 1, len(layers),
                     time.perf_counter() - t0, name, grid[0], table[name][grid[0]], base)
    shapes = {n: tuple(linear_weight(m).shape) for n, m in layers.items()}
    total = sum(o * i for o, i in shapes.values())
    budget = (1.0 - removed) * total

    def choose(t: float) -> dict[str, float | None]:
        return {n: next((f for f in sorted(grid) if table[n][f] <= t), None) for n in layers}

    def size(choice) -> int:
        return sum(_params(*shapes[n], f)[1] for n, f in choice.items())

    thresholds = sorted({v for row in table.values() for v in row.values()})
    lo, hi = 0, len(thresholds) - 1  # find the smallest threshold whose choice fits the budget
    if size(choose(thresholds[hi])) > budget:
        raise ValueError(f"LowRank: removing {removed:g} of the parameters needs more than every layer at the smallest "
                         f"kept fraction {min(grid)}; remove less")
    while lo < hi:
        mid = (lo + hi) // 2
        if size(choose(thresholds[mid])) <= budget:
            hi = mid
        else:
            lo = mid + 1
    choice = choose(thresholds[lo])
    log.info("rank search: threshold loss %.4f (dense %.4f), %d of %d layers factorised, %.1f%% of parameters removed",
             thresholds[lo], base, sum(f is not None for f in choice.values()), len(choice),
             100 * (1 - size(choice) / total))
    return {n: _params(*shapes[n], f)[0] for n, f in choice.items()}
