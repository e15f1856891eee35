"""Real low-bit kernels: export qlite's quantized layers to torchao and bitsandbytes, and run their
own implementations of the same methods for cross-checks.

What runs where (checked at run time by :func:`probe_backends`, never assumed): on a CPU, torchao's
int8 weight-only and int8 dynamic-activation layers run, its int4 weight-only layer needs the ``mslk``
kernels (CUDA), and its GPTQ asserts a CUDA device; bitsandbytes >= 0.45 has CPU paths for
``Linear8bitLt``. Whatever fails is reported with the library's own message.
"""

from __future__ import annotations

import copy
import logging
from typing import Callable

import torch
from torch import nn

from .layers import is_linear, linear_weight
from .quant.modules import QuantizedLinear

log = logging.getLogger(__name__)

BNB_SCHEMES = ("int8", "nf4", "fp4")


def _require(pkg: str):
    try:
        return __import__(pkg)
    except ImportError as e:
        raise ImportError(f"{pkg} is needed for real-kernel export: pip install 'qlite[llm]'") from e


def torchao_configs(group_size: int = 128) -> dict:
    """The torchao configs :func:`probe_backends` tries, by label: int8 weight-only, int8 dynamic
    activations + int8 weights, int4 weight-only in groups of ``group_size``."""
    _require("torchao")
    from torchao.quantization import Int4WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig

    return {"int8_weight_only": Int8WeightOnlyConfig(), "int8_dynamic": Int8DynamicActivationInt8WeightConfig(),
            "int4_weight_only": Int4WeightOnlyConfig(group_size=group_size)}


def _plain_linear(m: nn.Module) -> tuple[nn.Linear, torch.Tensor | None]:
    """A float ``nn.Linear`` holding what ``m`` computes with, and the input scale to re-apply (if any)."""
    if isinstance(m, QuantizedLinear):
        w, b, s = m.dequantized_weight(), m.bias, m.input_scale
    else:
        w, b, s = linear_weight(m).detach().float(), m.bias, None
    lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device)
    with torch.no_grad():
        lin.weight.copy_(w)
        if b is not None:
            lin.bias.copy_(b)
    return lin, s


def _replace_all(model: nn.Module, convert: Callable[[str, nn.Module], nn.Module | None]) -> nn.Module:
    for name, m in list(model.named_modules()):
        if isinstance(m, QuantizedLinear) or (is_linear(m) and not name.endswith("lm_head")):
            new = convert(name, m)
            if new is not None:
                model.set_submodule(name, new)
    return model


def export_torchao(model: nn.Module, config, *, inplace: bool = False) -> nn.Module:
    """Replace every quantized (and plain, except ``lm_head``) linear layer by a torchao low-bit layer.

    Args:
        config: a torchao config, e.g. ``torchao.quantization.Int8WeightOnlyConfig()``,
            ``Int8DynamicActivationInt8WeightConfig()`` or ``Int4WeightOnlyConfig(group_size=64)``
            (:func:`torchao_configs` lists these three).
        inplace: convert ``model`` itself; otherwise a converted copy.

    The torchao layer is built from the weight qlite's layer computes with; an AWQ / SmoothQuant input
    scale becomes torchao's ``act_pre_scale``. torchao re-derives its own scales from that weight, so an
    8-bit export of an 8-bit qlite layer reproduces it up to torchao's rounding convention.

    Raises:
        TypeError: ``config`` is not a torchao config (a scheme name such as ``"int8_weight_only"``
        included: build the config instead).
    """
    _require("torchao")
    from torchao.core.config import AOBaseConfig
    from torchao.quantization import quantize_

    if not isinstance(config, AOBaseConfig):
        hint = f"; for {config!r} use torchao_configs()[{config!r}]" if isinstance(config, str) else ""
        raise TypeError(f"export_torchao takes a torchao config such as torchao.quantization.Int8WeightOnlyConfig() "
                        f"or Int4WeightOnlyConfig(group_size=64), got {config!r}{hint}")
    cfg = config
    model = model if inplace else copy.deepcopy(model)

    def convert(name, m):
        lin, s = _plain_linear(m)
        holder = nn.Sequential(lin)
        quantize_(holder, cfg)
        new = holder[0]
        if s is not None:
            new.weight.act_pre_scale = s.to(new.weight.dtype if new.weight.dtype.is_floating_point else torch.float32)
        return new

    return _replace_all(model, convert)


def export_bitsandbytes(model: nn.Module, scheme: str = "int8", *, threshold: float = 6.0, inplace: bool = False) -> nn.Module:
    """Replace linear layers by bitsandbytes layers: ``Linear8bitLt`` (LLM.int8() with ``threshold``) or
    ``Linear4bit`` (``nf4`` / ``fp4``, bitsandbytes' own 4-bit grids). Layers with an input scale are
    not representable and are refused."""
    bnb = _require("bitsandbytes")
    if scheme not in BNB_SCHEMES:
        raise ValueError(f"unknown bitsandbytes scheme {scheme!r}; choose one of {BNB_SCHEMES}")
    model = model if inplace else copy.deepcopy(model)
    # a model of QuantizedLinear layers only keeps everything in buffers
    dev = next(iter([*model.parameters(), *model.buffers()]), torch.empty(0)).device

    def convert(name, m):
        lin, s = _plain_linear(m)
        if s is not None:
            raise ValueError(f"layer {name!r} carries an input scale (AWQ/SmoothQuant); bitsandbytes cannot hold it")
        if scheme == "int8":
            new = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                      has_fp16_weights=False, threshold=threshold)
        else:
            new = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                    quant_type=scheme, compute_dtype=torch.float32)
        new.load_state_dict(lin.state_dict(), strict=False)
        return new.to(dev)  # bitsandbytes quantizes on the move to a device

    return _replace_all(model, convert)


def probe_backends(device: str | torch.device = "cpu") -> dict[str, str]:
    """Which real-kernel paths run on ``device``: ``{path: "ok" or the failure message}``.

    Each path is tried on a small layer; nothing is assumed from the platform."""
    out: dict[str, str] = {}
    x = torch.randn(2, 128, device=device)
    base = nn.Sequential(nn.Linear(128, 64)).to(device)
    try:
        configs = torchao_configs(group_size=64)
    except ImportError as e:
        configs, missing = {}, f"ImportError: {e}"
        out.update({f"torchao:{s}": missing for s in ("int8_weight_only", "int8_dynamic", "int4_weight_only")})
    for scheme, cfg in configs.items():
        try:
            export_torchao(base, cfg)(x)
            out[f"torchao:{scheme}"] = "ok"
        except Exception as e:  # report the library's own reason
            out[f"torchao:{scheme}"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    for scheme in BNB_SCHEMES:
        try:
            export_bitsandbytes(base, scheme)(x)
            out[f"bitsandbytes:{scheme}"] = "ok"
        except Exception as e:
            out[f"bitsandbytes:{scheme}"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return out
