"""Low-rank configs (issue 6)."""

from __future__ import annotations

from dataclasses import dataclass

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
