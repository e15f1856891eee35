"""Quantization: configs, pure primitives, the packed linear module and the transforms."""

from . import angle as _angle  # noqa: F401  (registers the AngleQuant transform)
from . import methods as _methods  # noqa: F401  (registers the linear-layer transforms)
from . import squeezellm as _squeezellm  # noqa: F401  (registers the SqueezeLLM transform)
from . import qat as _qat  # noqa: F401  (registers the QAT transform)
from . import omniquant as _omniquant  # noqa: F401  (registers the OmniQuant transform)
from .angle import angle_codes, angle_values, circular_distance
from .awq import search_clip, search_scale
from .configs import AWQ, GPTQ, RTN, AngleQuant, LLMInt8, SmoothQuant, SqueezeLLM, QAT, OmniQuant
from .gptq import gptq_quantize
from .modules import QuantizedLinear
from .omniquant import lwc_fake_quantize, lwc_quantize
from .primitives import (
    dequantize_weight,
    fake_quantize,
    pack_bits,
    quantize_per_token,
    quantize_weight,
    unpack_bits,
)
from .squeezellm import LUTQuantizedLinear, dense_sparse_split, squeezellm_quantize, weighted_kmeans

__all__ = [
    "AWQ", "GPTQ", "RTN", "AngleQuant", "LLMInt8", "SmoothQuant", "QuantizedLinear",
    "angle_codes", "angle_values", "circular_distance", "search_clip", "search_scale", "gptq_quantize",
    "dequantize_weight", "fake_quantize", "pack_bits", "quantize_per_token", "quantize_weight", "unpack_bits",
    "SqueezeLLM", "QAT", "LUTQuantizedLinear", "dense_sparse_split", "squeezellm_quantize", "weighted_kmeans", "lwc_fake_quantize",
    "OmniQuant", "lwc_quantize",
]
