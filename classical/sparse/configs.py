"""Sparsity configs (issue 6). ``removed`` is always the fraction **removed** (of the weights, or of the
channels for :class:`StructuredPrune`), the same word as :class:`~qlite.classical.LowRank`'s."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ..config import CompressionConfig
from .masks import NMPattern, check_sparsity, parse_pattern


@dataclass(frozen=True)
class _Sparsity(CompressionConfig):
    """Shared fields: ``removed`` (the fraction of weights removed, in [0, 1)) and an optional N:M
    ``pattern`` (an :class:`NMPattern`; the string ``"2:4"`` is read as ``NMPattern(2, 4)``).

    With a pattern the removed fraction is implied (``1 - N/M``); giving a different one is an error.
    Without either, 50% unstructured.
    """

    removed: float | None = None
    pattern: NMPattern | None = None

    def __post_init__(self):
        super().__post_init__()
        method = type(self).__name__
        nm = parse_pattern(self.pattern)
        object.__setattr__(self, "pattern", nm)
        if nm is not None:
            if self.removed is not None and not math.isclose(check_sparsity(self.removed, method), nm.sparsity):
                raise ValueError(
                    f"{method}: pattern {nm} removes {nm.sparsity:g} of the weights but removed={self.removed!r}; "
                    "give one of them"
                )
            object.__setattr__(self, "removed", nm.sparsity)
        else:
            object.__setattr__(self, "removed", check_sparsity(0.5 if self.removed is None else self.removed, method))

    @property
    def name(self) -> str:
        return f"{type(self).__name__}({self.pattern or f'{self.removed:g}'})"


@dataclass(frozen=True)
class Magnitude(_Sparsity):
    """Magnitude pruning: remove the smallest ``|W|`` of each layer (over the whole matrix, or per
    ``M``-run with a pattern). No calibration. ``Magnitude(0.5)``, ``Magnitude(pattern=NMPattern(2, 4))``."""


@dataclass(frozen=True)
class Wanda(_Sparsity):
    """Wanda (Sun et al. 2023): remove the smallest ``|W_ij| * ||X_j||_2`` in each output row (or
    per ``M``-run with a pattern), no weight update. Needs calibration inputs."""

    needs_calibration: ClassVar[bool] = True


@dataclass(frozen=True)
class SparseGPT(_Sparsity):
    """SparseGPT (Frantar & Alistarh 2023): OBS row updates with the calibration Hessian, adaptive mask
    selection per block of ``block_size`` columns, lazy batched updates, N:M. Needs calibration."""

    needs_calibration: ClassVar[bool] = True
    block_size: int = 128
    damp: float = 0.01

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.block_size, int) or isinstance(self.block_size, bool) or self.block_size < 1:
            raise ValueError(f"SparseGPT: block_size must be a positive integer, got {self.block_size!r}")
        nm = self.pattern
        if nm is not None and self.block_size % nm.m:
            raise ValueError(f"SparseGPT: block_size {self.block_size} must be a multiple of M={nm.m} of pattern {nm}")
        if not isinstance(self.damp, (int, float)) or not self.damp > 0:
            raise ValueError(f"SparseGPT: damp must be a positive number, got {self.damp!r}")


@dataclass(frozen=True)
class StructuredPrune(CompressionConfig):
    """Structured pruning that shrinks the matrices (in the spirit of LLM-Pruner, Ma et al. 2023).

    Args:
        removed: fraction of the channels **removed** in each block: of the MLP's intermediate channels
            (``targets`` holds ``"mlp"``) and of the query heads of each key/value group (``"heads"``).
        targets: which coupled groups to prune, ``("mlp",)``, ``("heads",)`` or both.
        importance: ``"taylor"`` (first-order Taylor ``sum |w * dL/dw|`` over every weight of the group,
            LLM-Pruner's element-wise first-order estimate, from one backward pass of the LM loss on the
            calibration data) or ``"activation"`` (``sum_j ||X_j|| * ||W_out[:, j]||`` over the channels
            of the group, the structured Wanda / FLAP-style estimate from one forward pass).
        multiple_of: round the number of kept MLP channels down to a multiple of this (kernel friendliness).
    """

    needs_calibration: ClassVar[bool] = True
    reshapes_layers: ClassVar[bool] = True
    removed: float = 0.2
    targets: tuple[str, ...] = ("mlp",)
    importance: str = "taylor"
    multiple_of: int = 1

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.removed, bool) or not isinstance(self.removed, (int, float)) or not 0.0 <= self.removed < 1.0:
            raise ValueError(f"StructuredPrune: removed is the fraction of channels removed and must lie in [0, 1), "
                             f"got {self.removed!r}")
        if isinstance(self.targets, str):
            object.__setattr__(self, "targets", (self.targets,))
        object.__setattr__(self, "targets", tuple(self.targets))
        bad = [t for t in self.targets if t not in ("mlp", "heads")]
        if bad or not self.targets:
            raise ValueError(f"StructuredPrune: targets must be a non-empty subset of ('mlp', 'heads'), got {self.targets!r}")
        if self.importance not in ("taylor", "activation"):
            raise ValueError(f"StructuredPrune: importance must be 'taylor' or 'activation', got {self.importance!r}")
        if not isinstance(self.multiple_of, int) or self.multiple_of < 1:
            raise ValueError(f"StructuredPrune: multiple_of must be a positive integer, got {self.multiple_of!r}")

    @property
    def name(self) -> str:
        return f"StructuredPrune({self.removed:g}, {'+'.join(self.targets)}, {self.importance})"


__all__ = ["Magnitude", "Wanda", "SparseGPT", "StructuredPrune"]
