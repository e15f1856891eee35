"""Low-rank factorisation: SVD / ASVD / SVD-LLM replacement of linear layers (``removed`` = fraction of
parameters removed), tensor-train / Tucker embeddings through tensorly, LoRA / QLoRA recovery via peft."""

from . import methods as _methods  # noqa: F401  (registers the transforms)
from .configs import FactorizedEmbedding, LoRARecover, LowRank
from .embedding import TensorizedEmbedding, factorize_embedding
from .factor import asvd_factors, rank_for_ratio, svd_factors, whitened_svd_factors, whitening_factor
from .lora import lora_recover, lora_targets
from .modules import LowRankLinear
from .molora import MoLoRA, MoLoRALinear, molora_recover
from .lorahub import LoRAModule, combine as lorahub_combine, lora_module, lorahub

__all__ = [
    "LowRank", "FactorizedEmbedding", "LoRARecover", "LowRankLinear", "TensorizedEmbedding", "factorize_embedding", "svd_factors",
    "asvd_factors", "whitened_svd_factors", "whitening_factor", "rank_for_ratio", "lora_recover", "lora_targets",
    "MoLoRA", "MoLoRALinear", "molora_recover", "LoRAModule", "lora_module", "lorahub", "lorahub_combine",
]
