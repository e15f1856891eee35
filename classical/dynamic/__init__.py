"""Dynamic and structural sparsity (issue 17): activation sparsity of MLPs (top-K, calibrated thresholds,
a low-rank neuron predictor with a sparse decode path), layer skipping (static and per token) and
cross-layer weight sharing. Every method is a config for :func:`qlite.classical.compress`."""

from .activation import SparseMLP, kept_count, mlp_modules, threshold_for, topk_mask, train_predictor
from .configs import ActivationSparsity, LayerSkip, NeuronPredictor, ShareLayers
from .share import share_layers
from .skip import IdentityBlock, TokenSkipBlock, block_similarities, skip_blocks

__all__ = [
    "ActivationSparsity", "NeuronPredictor", "LayerSkip", "ShareLayers", "SparseMLP", "topk_mask", "threshold_for",
    "kept_count", "mlp_modules", "train_predictor", "block_similarities", "skip_blocks", "IdentityBlock",
    "TokenSkipBlock", "share_layers",
]
