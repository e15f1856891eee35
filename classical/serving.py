"""Export to serving formats (issue 14, item 4): compressed-tensors checkpoints (the format vLLM and
llm-compressor read) written and read back with the ``compressed-tensors`` library.

The codes go in as they are: qlite's ``b``-bit codes ``q`` (0 .. 2**b - 1) with zero point ``z`` are
compressed-tensors' signed values ``q - 2**(b-1)`` with zero point ``z - 2**(b-1)`` (0 for symmetric
grids), scales unchanged, so the library's dequantization ``(x_q - zp) * s`` is qlite's ``s * (q - z)``
exactly. What the format cannot hold is refused with the reason and the nearest choice, never exported
as a different model: activation quantization (W8A8 / LLM.int8()), an AWQ / SmoothQuant input scale,
GPTQ's act_order groups that are not contiguous (this library has no ``g_idx``), groups that do not
divide the input dimension.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from torch import nn

from .quant.modules import QuantizedLinear

log = logging.getLogger(__name__)

CT_WEIGHTS = "model.safetensors"


def _require_ct():
    try:
        import compressed_tensors  # noqa: F401
    except ImportError as e:
        raise ImportError("compressed-tensors export needs the compressed-tensors package: pip install 'qlite[llm]'") from e


def prepare_out_dir(out: str | Path, overwrite: bool) -> Path:
    """``out`` as a fresh directory: an existing non-empty one is refused unless ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; choose another output path")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"output directory {out} exists and is not empty; pass overwrite=True "
                                  "(--overwrite) to replace it, or choose another directory")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _ct_weight_args(name: str, q: QuantizedLinear) -> dict:
    """compressed-tensors' weight arguments for ``q``, or a ValueError naming what it cannot hold."""
    if q.act_bits is not None or q.outlier_threshold is not None or q.outlier_idx is not None:
        raise ValueError(f"layer {name!r} quantizes its activations ({q.method}); the W{q.bits}A16 pack-quantized "
                         "format is weight-only; export a weight-only recipe (RTN / GPTQ)")
    if q.input_scale is not None:
        raise ValueError(f"layer {name!r} carries a per-channel input scale ({q.method}: AWQ / SmoothQuant); "
                         "compressed-tensors' pack-quantized layers have none (llm-compressor folds it into the "
                         "preceding norm); export RTN or GPTQ, or fold the scale first")
    K = q.in_features
    if q.g_idx is not None:
        contiguous = torch.equal(q.g_idx.long().cpu(), torch.arange(K) // q.group_size)
        if not contiguous:
            raise ValueError(f"layer {name!r}: GPTQ act_order groups are not contiguous (a g_idx) and this "
                             "compressed-tensors has no g_idx; quantize with GPTQ(..., static_groups=True) or "
                             "act_order=False")
    args = {"num_bits": q.bits, "type": "int", "symmetric": bool(q.symmetric)}
    if q.scale.shape == (1, 1) and q.out_features > 1:
        args["strategy"] = "tensor"
    elif q.scale.shape[-1] == 1:
        args["strategy"] = "channel"
    else:
        if K % q.group_size:
            fits = [s for s in (32, 64, 128) if K % s == 0]
            hint = f"a divisor of {K} such as {fits[-1]}" if fits else f"a group size dividing {K}, or per channel"
            raise ValueError(f"layer {name!r}: groups of {q.group_size} do not divide its {K} inputs (a shorter "
                             f"last group); compressed-tensors groups must divide the input dimension: use {hint}")
        args.update(strategy="group", group_size=q.group_size)
    return args


def export_compressed_tensors(model: nn.Module, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``model`` as a compressed-tensors ``pack-quantized`` checkpoint in ``out``: ``model.safetensors``
    (every quantized layer's ``weight_packed`` / ``weight_scale`` / ``weight_zero_point`` / ``weight_shape``
    packed by the library, other tensors as they are) and ``config.json`` (the model's config, when it
    has one, with ``quantization_config``). Returns ``out``.

    Raises:
        ValueError: a layer the format cannot represent (message names it, the reason and the fix), no
        quantized layer at all.
        FileExistsError: ``out`` exists and is not empty, without ``overwrite=True``.
    """
    _require_ct()
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
    from compressed_tensors.quantization import QuantizationArgs
    from safetensors.torch import save_file

    layers = {n: m for n, m in model.named_modules() if isinstance(m, QuantizedLinear)}
    if not layers:
        raise ValueError("the model has no quantized layer (QuantizedLinear); compress it first, e.g. "
                         "compress(model, [GPTQ(4, group_size=128)])")
    groups: dict[str, dict] = {}
    args_of = {}
    for name, q in layers.items():
        args = _ct_weight_args(name, q)
        QuantizationArgs(**args)  # the library validates the arguments
        key = json.dumps(args, sort_keys=True)
        groups.setdefault(key, {"targets": [], "weights": args, "input_activations": None, "output_activations": None})
        groups[key]["targets"].append(name)
        args_of[name] = args
    out = prepare_out_dir(out, overwrite)

    tensors, skip = {}, set()
    for name, q in layers.items():
        off = 2 ** (q.bits - 1)
        values = (q.codes().to(torch.int16) - off).to(torch.int8)  # compressed-tensors' signed values
        tensors[f"{name}.weight_packed"] = pack_to_int32(values, q.bits)
        scale = q.scale.float()  # float32 holds the float16 scales exactly: dequantization stays exact
        if args_of[name]["strategy"] == "tensor":
            scale = scale.reshape(1)
        tensors[f"{name}.weight_scale"] = scale.contiguous()
        tensors[f"{name}.weight_shape"] = torch.tensor([q.out_features, q.in_features])
        if not q.symmetric:
            zp = (q.zero().to(torch.int16) - off).to(torch.int8)
            tensors[f"{name}.weight_zero_point"] = pack_to_int32(zp, q.bits, packed_dim=0).contiguous()
        if q.bias is not None:
            tensors[f"{name}.bias"] = q.bias.detach().contiguous()
        skip.add(name + ".")
    seen = {}
    for k, v in model.state_dict().items():
        if any(k.startswith(s) for s in skip) or not isinstance(v, torch.Tensor):
            continue
        ptr = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
        if ptr in seen:  # tied weights (embedding / lm_head) are written once, as transformers does
            continue
        seen[ptr] = k
        tensors[k] = v.detach().contiguous()
    qconfig = {"quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
               "config_groups": {f"group_{i}": g for i, g in enumerate(groups.values())},
               "ignore": [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]}
    save_file(tensors, str(out / CT_WEIGHTS), metadata={"format": "pt"})
    cfg = getattr(model, "config", None)
    config = cfg.to_dict() if hasattr(cfg, "to_dict") else {}
    config["quantization_config"] = qconfig
    (out / "config.json").write_text(json.dumps(config, indent=1, default=str))
    log.info("wrote %d quantized layers to %s", len(layers), out)
    return out


def load_compressed_tensors(out: str | Path) -> dict[str, torch.Tensor]:
    """The float state dict of a pack-quantized checkpoint, decompressed by the compressed-tensors
    library (``PackedQuantizationCompressor.decompress``): quantized layers get their ``weight`` back."""
    _require_ct()
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationScheme
    from safetensors.torch import load_file

    out = Path(out)
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    if config.get("format") != "pack-quantized":
        raise ValueError(f"{out}: format {config.get('format')!r}; this reader takes pack-quantized checkpoints")
    state = load_file(str(out / CT_WEIGHTS))
    for group in config["config_groups"].values():
        scheme = QuantizationScheme(targets=group["targets"], weights=group["weights"])
        for name in group["targets"]:
            local = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
            dec = PackedQuantizationCompressor.decompress(local, scheme)
            for k in list(local):
                state.pop(f"{name}.{k}")
            for k, v in dec.items():
                if k not in ("weight_shape", "weight_zero_point", "weight_scale"):
                    state[f"{name}.{k}"] = v
    return state
