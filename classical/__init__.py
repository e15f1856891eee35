"""qlite.classical: compression toolkit for any torch model.

``compress(model, [GPTQ(bits=4, group_size=128)], calib=...)`` applies a recipe of configs;
``evaluate(model, tokens, ...)`` measures perplexity, bytes and latency with one fixed protocol.
Importing this package imports torch only; transformers, torchao and bitsandbytes load lazily.
"""

from .blocks import Blocks, find_blocks, linear_layers
from .compress import CompressionReport, CompressionResult, compress
from .config import CompressionConfig, recipe_from_json, recipe_to_json
from .granularity import PerChannel, PerGroup, PerTensor
from .quant import AWQ, GPTQ, RTN, AngleQuant, LLMInt8, QuantizedLinear, SmoothQuant, SqueezeLLM, QAT
from .quant import OmniQuant
from .gqa import GQA, convert_gqa
from .lowrank import FactorizedEmbedding, LoRARecover, LowRank, LowRankLinear
from .sparse import Magnitude, NMPattern, SparseGPT, SparseLinear, StructuredPrune, Wanda
from .dynamic import ActivationSparsity, LayerSkip, NeuronPredictor, ShareLayers, SparseMLP
from .transform import LayerRecord, LinearTransform, Transform, state_bytes, transform_for


def __getattr__(name):
    # The evaluation harness and the model loader import lazily (they pull in optional packages).
    if name in ("evaluate", "EvalResult", "perplexity", "measure_latency", "latency_runner", "corpus_tokens",
                "calibration_segments", "split_halves", "results_markdown", "kernel_label"):
        from . import evaluation as _ev

        return getattr(_ev, name)
    if name in ("distill", "kd_loss", "sink_cache", "h2o_cache", "pruning_cache", "scoring_attention", "lora_recover"):
        from . import distillation as _d, kvcache as _kv
        from .lowrank import lora as _lora

        return getattr(next(m for m in (_d, _kv, _lora) if hasattr(m, name)), name)
    if name in ("SparseAttention", "with_sparse_attention", "sparse_mask"):
        # (the context manager stays qlite.classical.sparse_attention.sparse_attention: the submodule owns the name)
        import importlib

        return getattr(importlib.import_module(".sparse_attention", __name__), name)
    if name in ("MoLoRA", "molora_recover", "lorahub", "LoRAModule", "lora_module"):
        from . import lowrank as _lr

        return getattr(_lr, name)
    if name in ("export_torchao", "export_bitsandbytes", "torchao_configs"):
        from . import export as _x

        return getattr(_x, name)
    if name in ("export_compressed_tensors", "load_compressed_tensors"):
        from . import serving as _s

        return getattr(_s, name)
    if name in ("export_gguf", "read_gguf_weights", "llama_cpp_model", "llama_cpp_logits"):
        from . import gguf_export as _g

        return getattr(_g, name)
    if name in ("load_causal_lm", "smollm2_gguf_path"):
        from . import models as _m

        return getattr(_m, name)
    raise AttributeError(f"module 'qlite.classical' has no attribute {name!r}")


__all__ = [
    "ActivationSparsity", "NeuronPredictor", "LayerSkip", "ShareLayers", "SparseMLP",
    "compress", "CompressionReport", "CompressionResult", "CompressionConfig", "recipe_from_json",
    "recipe_to_json", "PerChannel", "PerGroup", "PerTensor", "RTN", "LLMInt8", "SmoothQuant", "GPTQ", "AWQ",
    "AngleQuant", "SqueezeLLM", "QAT", "OmniQuant", "QuantizedLinear", "Blocks", "find_blocks", "linear_layers", "LayerRecord", "LinearTransform",
    "Transform", "state_bytes", "transform_for", "evaluate", "load_causal_lm", "smollm2_gguf_path",
    "Magnitude", "Wanda", "SparseGPT", "NMPattern", "StructuredPrune", "SparseLinear", "LowRank", "LoRARecover", "FactorizedEmbedding",
    "LowRankLinear", "GQA", "convert_gqa", "distill", "kd_loss", "sink_cache", "h2o_cache", "scoring_attention",
    "lora_recover", "export_torchao", "export_bitsandbytes", "torchao_configs",
    "export_compressed_tensors", "load_compressed_tensors", "export_gguf", "read_gguf_weights", "llama_cpp_model", "llama_cpp_logits",
    "pruning_cache", "SparseAttention", "with_sparse_attention", "sparse_mask",
    "MoLoRA", "molora_recover", "lorahub", "LoRAModule", "lora_module",
]
