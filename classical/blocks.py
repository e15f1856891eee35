"""Find a model's repeated blocks and its linear layers, with no per-architecture registry.

The blocks of a Hugging Face Llama (``model.layers``), GPT-2 (``transformer.h``) or BERT
(``encoder.layer``) are the ``nn.ModuleList`` / ``nn.Sequential`` of identical-class modules that holds
the most parameters. A plain ``nn.Sequential`` of mixed layers is its own container: each child is a
block. A model with neither is one block.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from torch import nn

from .layers import is_linear


@dataclass
class Blocks:
    """The block container of a model.

    Attributes:
        prefix: qualified name of the container (``""`` when the model itself is the container).
        container: the ``nn.ModuleList`` / ``nn.Sequential`` itself, or ``None`` when the whole model is
            treated as one block.
        blocks: the block modules in call order.
    """

    prefix: str
    container: nn.Module | None
    blocks: list[nn.Module]

    def name(self, i: int) -> str:
        if self.container is None:
            return ""
        return f"{self.prefix}.{i}" if self.prefix else str(i)


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def find_blocks(model: nn.Module) -> Blocks:
    """The repeated blocks of ``model`` (see the module docstring for the rule)."""
    best, best_size = None, 0
    for name, m in model.named_modules():
        if isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) >= 2:
            kinds = {type(c) for c in m}
            size = _n_params(m)
            if len(kinds) == 1 and size > best_size:
                best, best_size = (name, m), size
    if best is not None:
        return Blocks(best[0], best[1], list(best[1]))
    seqs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Sequential) and len(m) >= 1]
    if seqs:
        name, m = max(seqs, key=lambda nm: _n_params(nm[1]))
        return Blocks(name, m, list(m))
    return Blocks("", None, [model])


def skipped(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def linear_layers(module: nn.Module, skip: tuple[str, ...] = (), prefix: str = "") -> list[tuple[str, nn.Module]]:
    """``(qualified name, layer)`` of every ``nn.Linear`` / GPT-2 ``Conv1D`` in ``module`` not matched by ``skip``.
    A layer reached under two names (tied weights) is listed once."""
    out, seen = [], set()
    for name, m in module.named_modules():
        full = f"{prefix}.{name}" if prefix and name else (prefix or name)
        if is_linear(m) and id(m) not in seen and not skipped(full, skip):
            seen.add(id(m))
            out.append((full, m))
    return out
