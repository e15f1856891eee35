"""Sparsity: magnitude, Wanda and SparseGPT pruning (unstructured or N:M), structured channel / head
pruning, and PyTorch's 2:4 semi-structured kernels. ``removed`` is the fraction removed (as in ``LowRank``);
N:M patterns are :class:`NMPattern` values."""

from . import methods as _methods  # noqa: F401  (registers the linear-layer transforms)
from . import structured as _structured  # noqa: F401  (registers StructuredPrune)
from .configs import Magnitude, SparseGPT, StructuredPrune, Wanda
from .masks import NMPattern, nm_mask, pack_mask, parse_pattern, unpack_mask, unstructured_mask, wanda_scores
from .modules import SparseLinear
from .semistructured import benchmark_semi_structured_mlp, to_semi_structured
from .sparsegpt import sparsegpt_prune
from .structured import mlp_groups

__all__ = [
    "Magnitude", "Wanda", "SparseGPT", "StructuredPrune", "SparseLinear", "NMPattern", "parse_pattern", "nm_mask",
    "unstructured_mask", "wanda_scores", "pack_mask", "unpack_mask", "sparsegpt_prune", "mlp_groups",
    "to_semi_structured", "benchmark_semi_structured_mlp",
]
