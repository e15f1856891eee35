"""The reference libraries' own implementations of SmoothQuant, AWQ and GPTQ (torchao) and of
LLM.int8() (bitsandbytes), run on the same model and calibration data as qlite's, for cross-checks.

torchao's flows are *prepare -> feed data -> convert* over ``quantize_``; they observe the float
model in one pass (not block by block), measure each layer on its own (its AWQ has no clipping
search and scales each layer separately), and use their own rounding conventions, so agreement is
expected within a tolerance, not bit for bit. Each function raises the library's error where it does
not run (e.g. torchao's GPTQ asserts CUDA; its int4 layers need ``mslk``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .calibration import call_model, move
from .export import export_bitsandbytes


def _keep(skip=("lm_head",)):
    return lambda m, fqn: isinstance(m, nn.Linear) and not any(s in fqn for s in skip)


def _feed(model, calib, device):
    with torch.no_grad():
        for x in calib:
            call_model(model, move(x, device))


def torchao_smoothquant(model: nn.Module, calib: list, *, alpha: float = 0.5, device=None) -> nn.Module:
    """torchao's SmoothQuant W8A8 (int8 dynamic per-token activations, int8 per-channel weights)."""
    from torchao.prototype.smoothquant import SmoothQuantConfig
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    m = copy.deepcopy(model)
    base = Int8DynamicActivationInt8WeightConfig()
    quantize_(m, SmoothQuantConfig(base_config=base, step="prepare", alpha=alpha, use_running_absmax=True), _keep())
    _feed(m, calib, device)
    quantize_(m, SmoothQuantConfig(base_config=base, step="prepare_for_smoothquant_smoothing_factor", alpha=alpha, use_running_absmax=True), _keep())
    _feed(m, calib, device)
    quantize_(m, SmoothQuantConfig(base_config=base, step="convert", alpha=alpha, use_running_absmax=True), _keep())
    return m


def torchao_awq(model: nn.Module, calib: list, *, group_size: int = 64, bits: int = 4, device=None) -> nn.Module:
    """torchao's AWQ on its int4 weight-only layout (``bits=4``, needs ``mslk``) or int8 weight-only (``bits=8``)."""
    from torchao.prototype.awq import AWQConfig
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    base = Int4WeightOnlyConfig(group_size=group_size) if bits == 4 else Int8WeightOnlyConfig()
    m = copy.deepcopy(model)
    quantize_(m, AWQConfig(base_config=base, step="prepare"), _keep())
    _feed(m, calib, device)
    quantize_(m, AWQConfig(base_config=base, step="convert"), _keep())
    return m


def torchao_gptq(model: nn.Module, calib: list, *, group_size: int = 64, bits: int = 4, device=None) -> nn.Module:
    """torchao's GPTQ (int4 weight-only with ``mslk``, or int8 per-row); CUDA only in torchao."""
    from torchao.prototype.gptq import GPTQConfig
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    dev = next(model.parameters()).device
    if dev.type != "cuda":
        # Said up front: torchao 0.18's gptq_quantize asserts a CUDA device after the observe pass.
        raise RuntimeError(f"torchao's GPTQ runs only on CUDA (model is on {dev})")
    base = Int4WeightOnlyConfig(group_size=group_size) if bits == 4 else Int8WeightOnlyConfig()
    m = copy.deepcopy(model)
    quantize_(m, GPTQConfig(step="observe", base_config=base), _keep())
    _feed(m, calib, device)
    quantize_(m, GPTQConfig(step="convert", base_config=base), _keep())
    return m


def bnb_llm_int8(model: nn.Module, *, threshold: float = 6.0) -> nn.Module:
    """bitsandbytes' ``Linear8bitLt`` (LLM.int8() inference layout) on every linear layer but the head."""
    return export_bitsandbytes(model, "int8", threshold=threshold)
