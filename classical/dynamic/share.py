"""Cross-layer weight sharing (issue 17, item 5): MobileLLM's block-wise sharing (Liu et al. 2024,
Sec. 2.3) — the blocks of a group hold the *same* parameter tensors for their MLP and / or attention
linear layers, so the state dict stores them once (``state_bytes`` counts a storage once)."""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..attention import attention_modules
from ..blocks import find_blocks
from ..layers import is_linear
from .activation import mlp_modules

log = logging.getLogger(__name__)


def share_groups(n_blocks: int, groups) -> list[tuple[int, ...]]:
    """Explicit groups of block indices from a group size or explicit groups; checked against ``n_blocks``."""
    if isinstance(groups, int):
        if groups > n_blocks:
            raise ValueError(f"ShareLayers: group size {groups} exceeds the model's {n_blocks} blocks; give at most {n_blocks}")
        out = [tuple(range(s, min(s + groups, n_blocks))) for s in range(0, n_blocks, groups)]
        return [g for g in out if len(g) >= 2]
    bad = [i for g in groups for i in g if i >= n_blocks]
    if bad:
        raise ValueError(f"ShareLayers: block indices {bad} do not exist (the model has {n_blocks} blocks, 0..{n_blocks - 1})")
    return [tuple(g) for g in groups]


def _linears(block: nn.Module, parts: tuple[str, ...], prefix: str, model: nn.Module) -> list[str]:
    """Relative names of the linear layers of ``block`` under the chosen parts."""
    names = []
    mlps = {n for n, _ in mlp_modules(model)}
    attns = {a.name for a in attention_modules(model)}
    for n, m in block.named_modules():
        full = f"{prefix}.{n}" if prefix else n
        if not is_linear(m):
            continue
        parent = full.rsplit(".", 1)[0]
        if ("mlp" in parts and parent in mlps) or ("attn" in parts and parent in attns):
            names.append(n)
    return names


@torch.no_grad()
def share_layers(model: nn.Module, groups=2, *, parts=("mlp", "attn"), init: str = "mean",
                 inplace: bool = False) -> tuple[nn.Module, list[dict]]:
    """Tie the linear weights of each group of blocks (module docstring). Returns the model (a copy unless
    ``inplace``) and one record per group: ``{"blocks", "layers"}``."""
    import copy

    m = model if inplace else copy.deepcopy(model)
    blocks = find_blocks(m)
    n = len(blocks.blocks)
    if blocks.container is None or n < 2:
        raise ValueError(f"ShareLayers: the model has no repeated blocks to share (found {n})")
    gs = share_groups(n, groups)
    out = []
    for g in gs:
        first = blocks.blocks[g[0]]
        names = _linears(first, parts, blocks.name(g[0]), m)
        if not names:
            raise ValueError(f"ShareLayers: block {g[0]} has no linear layers under parts={parts!r}")
        for ln in names:
            mods = [blocks.blocks[i].get_submodule(ln) for i in g]
            shapes = {tuple(x.weight.shape) for x in mods}
            if len(shapes) != 1:
                raise ValueError(f"ShareLayers: {ln} has different shapes {sorted(shapes)} across blocks {g}; share "
                                 "blocks of one shape only (before structured pruning)")
            for attr in ("weight", "bias"):
                ps = [getattr(x, attr) for x in mods]
                if ps[0] is None:
                    continue
                shared = nn.Parameter(torch.stack([p.detach() for p in ps]).mean(0) if init == "mean" else ps[0].detach().clone())
                for x in mods:
                    setattr(x, attr, shared)
        out.append({"blocks": list(g), "layers": names})
    return m, out


def _register():
    from ..transform import LayerRecord, Transform, state_bytes, transform_for
    from .configs import ShareLayers

    @transform_for(ShareLayers)
    class _ShareLayers(Transform):
        def run(self, model, calib, ctx):
            c = self.config
            before = state_bytes(model)
            _, groups = share_layers(model, c.groups, parts=c.parts, init=c.init, inplace=True)
            extra = {}
            if c.heal_steps:
                from ..distillation import distill

                _, hist = distill(model, ctx.teacher, list(calib), loss="forward", steps=c.heal_steps, lr=c.heal_lr,
                                  inplace=True, generator=torch.Generator().manual_seed(ctx.seed))
                extra = {"heal_loss_first": hist[0], "heal_loss_last": hist[-1]}
                model.requires_grad_(False)
            after = state_bytes(model)
            return [LayerRecord("+".join(str(i) for i in g["blocks"]), c.name, (), 0, 0, extra={**g, **extra})
                    for g in groups] + [LayerRecord("(model)", c.name, (), before, after, extra=extra)]


_register()
