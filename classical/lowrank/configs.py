"""Low-rank configs (issue 6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import CompressionConfig

METHODS = ("svd", "asvd", "svd-llm")


@dataclass(frozen=True)
class LowRank(CompressionConfig):
    """Replace each linear layer by two (:class:`LowRankLinear`) of rank ``k``.

    Args:
        removed: fraction of each layer's weight parameters **removed**, in ``(0, 1)`` (the same word as
            the sparsity configs'): ``k`` is the largest rank with ``k * (in + out) <= (1 - removed) * in * out``
            (so ``removed=0.2`` keeps 80% of the parameters). ``0`` is refused: even the largest such
            rank truncates the spectrum.
        method: ``"svd"`` (truncated SVD of ``W``), ``"asvd"`` (activation-aware scaling, Yuan et al.
            2023) or ``"svd-llm"`` (truncation-aware whitening with the Cholesky factor of the activation
            covariance, Wang et al. 2024); the last two need calibration data.
        rank: an explicit rank instead of ``removed`` (must not exceed ``min(in, out)`` of any target).
        alpha: ASVD's scaling exponent (0.5 in the paper).
        damp: SVD-LLM's relative diagonal dampening of the covariance before its Cholesky factorisation.
        allocation: ``"uniform"`` (every layer loses ``removed`` of its parameters) or ``"sensitivity"``
            (ASVD's rank search, :mod:`~qlite.classical.lowrank.allocation`: per-layer ranks from the
            loss on calibration inputs, ``removed`` of all targeted parameters removed overall; layers
            may stay dense). Needs calibration data, for every method.
        search_samples: calibration inputs the sensitivity search measures its losses on (the first
            ones given; the search runs 9 forwards over them per layer).
        search_tokens: crop those inputs (token-id tensors and the sequence dimension of dicts of them)
            to their first ``search_tokens`` positions, for speed; ``None`` keeps them whole.
    """

    removed: float | None = 0.2
    method: str = "svd"
    rank: int | None = None
    alpha: float = 0.5
    damp: float = 0.0
    allocation: str = "uniform"
    search_samples: int = 4
    search_tokens: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.method not in METHODS:
            raise ValueError(f"LowRank: method must be one of {METHODS}, got {self.method!r}")
        if self.rank is not None:
            if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
                raise ValueError(f"LowRank: rank must be a positive integer, got {self.rank!r}")
            object.__setattr__(self, "removed", None)
        elif isinstance(self.removed, bool) or not isinstance(self.removed, (int, float)) or not 0.0 <= self.removed < 1.0:
            raise ValueError(f"LowRank: removed is the fraction of parameters removed and must lie in (0, 1), "
                             f"got {self.removed!r}")
        elif self.removed == 0:
            # Not an identity: the largest rank with k (in + out) <= in * out is below full rank, so the
            # factorisation would still truncate (and add error) while promising to remove nothing.
            raise ValueError("LowRank: removed=0 removes no parameters, but a factorisation still truncates the "
                             "spectrum; leave LowRank out of the recipe, or give the rank to keep with rank=k")
        if not isinstance(self.alpha, (int, float)) or not 0 <= self.alpha <= 1:
            raise ValueError(f"LowRank: alpha must lie in [0, 1], got {self.alpha!r}")
        if not isinstance(self.damp, (int, float)) or self.damp < 0:
            raise ValueError(f"LowRank: damp must be >= 0, got {self.damp!r}")
        if self.allocation not in ("uniform", "sensitivity"):
            raise ValueError(f"LowRank: allocation must be 'uniform' or 'sensitivity', got {self.allocation!r}")
        if self.allocation == "sensitivity" and self.rank is not None:
            raise ValueError("LowRank: allocation='sensitivity' chooses the ranks itself; give removed, not rank")
        if not isinstance(self.search_samples, int) or isinstance(self.search_samples, bool) or self.search_samples < 1:
            raise ValueError(f"LowRank: search_samples must be a positive integer, got {self.search_samples!r}")
        if self.search_tokens is not None and (not isinstance(self.search_tokens, int) or self.search_tokens < 2):
            raise ValueError(f"LowRank: search_tokens must be an integer >= 2 or None, got {self.search_tokens!r}")

    @property
    def requires_calibration(self) -> bool:
        return self.method != "svd" or self.allocation == "sensitivity"

    @property
    def name(self) -> str:
        size = f"rank={self.rank}" if self.rank is not None else f"{self.removed:g} removed"
        how = ", sensitivity ranks" if self.allocation == "sensitivity" else ""
        return f"LowRank({self.method}, {size}{how})"


@dataclass(frozen=True)
class FactorizedEmbedding(CompressionConfig):
    """Replace each ``nn.Embedding`` by a :class:`~qlite.classical.lowrank.embedding.TensorizedEmbedding`
    (``method="tt"`` tensor-train or ``"tucker"``, through tensorly). ``rank``: TT ranks / Tucker core size
    (an int for every mode). An output head tied to the table keeps its own dense copy (the bytes say so)."""

    method: str = "tt"
    rank: int = 64
    n_factors: int = 3

    def __post_init__(self):
        super().__post_init__()
        if self.method not in ("tt", "tucker"):
            raise ValueError(f"FactorizedEmbedding: method must be 'tt' or 'tucker', got {self.method!r}")
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise ValueError(f"FactorizedEmbedding: rank must be a positive integer, got {self.rank!r}")
        if not isinstance(self.n_factors, int) or self.n_factors < 2:
            raise ValueError(f"FactorizedEmbedding: n_factors must be an integer >= 2, got {self.n_factors!r}")


LORA_LOSSES = ("lm", "forward", "reverse", "mixed")


@dataclass(frozen=True)
class LoRARecover(CompressionConfig):
    """LoRA recovery fine-tuning as a recipe step (:func:`~qlite.classical.lowrank.lora.lora_recover`):
    ``compress(model, [Magnitude(0.5), LoRARecover(r=8, steps=100)], calib=...)`` trains adapters on
    the calibration inputs after the steps before it.

    Args:
        r, alpha, dropout: the LoRA rank, scale numerator (``alpha / r``) and dropout.
        steps, lr: AdamW steps over the calibration inputs (cycled) and their learning rate.
        loss: ``"lm"`` (next-token loss) or a distillation loss (``"forward"``, ``"reverse"``, ``"mixed"``)
            against the model as it was given to ``compress`` (the uncompressed teacher).
        targets: qualified names of the layers to adapt; ``None``: every linear layer outside ``skip``.
        merge: fold the adapters into the base weights (refused for sparse / 4-bit bases).
    The training's randomness comes from ``compress``'s ``seed``.
    """

    needs_calibration: ClassVar[bool] = True
    r: int = 8
    alpha: float = 16
    dropout: float = 0.0
    steps: int = 100
    lr: float = 1e-4
    loss: str = "lm"
    targets: tuple[str, ...] | None = None
    merge: bool = False

    def __post_init__(self):
        super().__post_init__()
        for f in ("r", "steps"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"LoRARecover: {f} must be a positive integer, got {v!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise ValueError(f"LoRARecover: alpha must be a positive number, got {self.alpha!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"LoRARecover: dropout must lie in [0, 1), got {self.dropout!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"LoRARecover: lr must be a positive number, got {self.lr!r}")
        if self.loss not in LORA_LOSSES:
            raise ValueError(f"LoRARecover: loss must be one of {LORA_LOSSES}, got {self.loss!r}")
        if not isinstance(self.merge, bool):
            raise TypeError(f"LoRARecover: merge must be True or False, got {self.merge!r}")
        if self.targets is not None:
            if isinstance(self.targets, str) or not all(isinstance(t, str) for t in self.targets) or not self.targets:
                raise TypeError(f"LoRARecover: targets must be a non-empty tuple of layer names or None, "
                                f"got {self.targets!r}")
            object.__setattr__(self, "targets", tuple(self.targets))

    @property
    def requires_teacher(self) -> bool:
        return self.loss != "lm"

    @property
    def name(self) -> str:
        return f"LoRARecover(r={self.r}, {self.loss}, {self.steps} steps)"
