"""Layer skipping (issue 17, item 2): block importance from the cosine similarity of each block's input
and output hidden states (Men et al. 2024, ShortGPT's "block influence"; Fan et al. 2024), static removal
of the least important blocks, and a dynamic per-token variant."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import find_blocks
from ..calibration import call_model, first_tensor, move

log = logging.getLogger(__name__)


class IdentityBlock(nn.Module):
    """A skipped block: returns its hidden-state input (the first argument) unchanged, in the form the
    block returned (a tensor, or a tuple whose first item is the hidden states)."""

    def __init__(self, returns_tuple: bool = False):
        super().__init__()
        self.returns_tuple = returns_tuple

    def forward(self, hidden_states, *args, **kwargs):
        return (hidden_states,) if self.returns_tuple else hidden_states


class TokenSkipBlock(nn.Module):
    """Dynamic per-token skipping: the block runs, and each token whose ``cos(input, output)`` exceeds
    ``threshold`` keeps its input (the block changes it little). Counts the skipped tokens in
    ``skipped`` / ``seen``. Speed is ``simulated`` (nothing is saved: the block ran for every token)."""

    kernel = "simulated"

    def __init__(self, block: nn.Module, threshold: float):
        super().__init__()
        self.block, self.threshold = block, float(threshold)
        self.skipped, self.seen = 0, 0

    def forward(self, hidden_states, *args, **kwargs):
        out = self.block(hidden_states, *args, **kwargs)
        y = first_tensor(out)
        cos = F.cosine_similarity(hidden_states.float(), y.float(), dim=-1)  # (B, T)
        keep_in = (cos > self.threshold).unsqueeze(-1)
        self.skipped += int(keep_in.sum())
        self.seen += keep_in.numel()
        y2 = torch.where(keep_in, hidden_states, y)
        return y2 if isinstance(out, torch.Tensor) else (y2, *out[1:])


@torch.no_grad()
def block_similarities(model: nn.Module, calib: list) -> list[float]:
    """Mean over calibration tokens of ``cos(x_i, x_{i+1})`` for each block ``i`` (input vs output hidden
    states); a value near 1 means the block changes its input little."""
    blocks = find_blocks(model)
    if blocks.container is None:
        raise ValueError("block_similarities: the model has no repeated blocks to score (find_blocks found one block)")
    sums = [0.0] * len(blocks.blocks)
    count = [0] * len(blocks.blocks)
    hooks = []
    for i, b in enumerate(blocks.blocks):
        def hook(_m, args, kwargs, out, i=i):
            x = args[0] if args else kwargs["hidden_states"]
            c = F.cosine_similarity(x.float(), first_tensor(out).float(), dim=-1)
            sums[i] += float(c.sum())
            count[i] += c.numel()
        hooks.append(b.register_forward_hook(hook, with_kwargs=True))
    dev = next(model.parameters()).device
    try:
        for x in calib:
            call_model(model, move(x, dev))
    finally:
        for h in hooks:
            h.remove()
    return [s / max(c, 1) for s, c in zip(sums, count)]


def skip_blocks(model: nn.Module, indices, *, inplace: bool = False) -> nn.Module:
    """``model`` with the blocks ``indices`` replaced by :class:`IdentityBlock` (a copy unless ``inplace``).
    The KV-cache slots of skipped blocks stay empty; the first block is never skipped by
    :class:`LayerSkip` because caches read the sequence length from it."""
    import copy

    blocks = find_blocks(model)
    n = len(blocks.blocks)
    idx = sorted(set(int(i) for i in indices))
    if any(not 0 <= i < n for i in idx):
        raise ValueError(f"skip_blocks: block indices {idx} must lie in [0, {n}) (the model has {n} blocks)")
    if len(idx) >= n:
        raise ValueError(f"skip_blocks: skipping all {n} blocks leaves no model; skip at most {n - 1}")
    m = model if inplace else copy.deepcopy(model)
    container = find_blocks(m).container
    for i in idx:
        container[i] = IdentityBlock()
    return m


def _register():
    from ..transform import LayerRecord, Transform, state_bytes, transform_for
    from .configs import LayerSkip

    @transform_for(LayerSkip)
    class _LayerSkip(Transform):
        def run(self, model, calib, ctx):
            c = self.config
            blocks = find_blocks(model)
            n = len(blocks.blocks)
            if blocks.container is None or n < 2:
                raise ValueError(f"{c.name}: the model has no repeated blocks to skip (found {n})")
            if c.threshold is not None:
                for i, b in enumerate(blocks.blocks):
                    blocks.container[i] = TokenSkipBlock(b, c.threshold)
                return [LayerRecord(blocks.name(i), c.name, (), state_bytes(b), state_bytes(b)) for i, b in enumerate(blocks.blocks)]
            if c.n_layers >= n:
                raise ValueError(f"{c.name}: cannot skip {c.n_layers} of the model's {n} blocks (skipping all leaves no "
                                 f"model); give n_layers of at most {n - 2} (the first block is always kept)")
            if c.n_layers > n - 1:
                raise ValueError(f"{c.name}: n_layers={c.n_layers} exceeds the {n - 1} skippable blocks")
            sims = block_similarities(model, calib)
            # the first block stays: caches read the sequence length from its slot, and it is never redundant
            order = sorted(range(1, n), key=lambda i: -sims[i])
            if c.n_layers > len(order):
                raise ValueError(f"{c.name}: n_layers={c.n_layers} but only {len(order)} blocks can be skipped "
                                 f"(the first of {n} is kept); give n_layers <= {len(order)}")
            chosen = sorted(order[: c.n_layers])
            recs = [LayerRecord(blocks.name(i), c.name, (), state_bytes(blocks.blocks[i]), 0,
                                extra={"cos_in_out": sims[i], "all_cos": sims}) for i in chosen]
            skip_blocks(model, chosen, inplace=True)
            log.info("%s: skipped blocks %s (cos %s)", c.name, chosen, [round(sims[i], 4) for i in chosen])
            return recs


_register()
