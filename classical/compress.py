"""``compress(model, recipe, calib)``: the one entry point of the compression toolkit."""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .config import CompressionConfig
from .transform import Context, LayerRecord, LinearTransform, state_bytes, transform_of

log = logging.getLogger(__name__)


@dataclass
class CompressionReport:
    """What ``compress`` did: the recipe, one record per changed layer, sizes and timings.
    ``evaluation`` is filled by callers that evaluate the result (see :func:`qlite.classical.evaluate`)."""

    recipe: list[dict]
    layers: list[LayerRecord]
    bytes_before: int
    bytes_after: int
    seconds: dict[str, float]
    calib_items: int
    evaluation: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.bytes_before / max(self.bytes_after, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "compression_ratio": self.ratio,
            "seconds": self.seconds,
            "calib_items": self.calib_items,
            "layers": [r.to_dict() for r in self.layers],
            "evaluation": self.evaluation,
            "notes": self.notes,
        }

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def to_markdown(self) -> str:
        lines = [
            f"recipe: {', '.join(r['type'] for r in self.recipe)}; bytes {self.bytes_before:,} -> "
            f"{self.bytes_after:,} (x{self.ratio:.2f}); time "
            + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()),
            "",
            "| layer | method | shape | bytes before | bytes after | weight rel. err | output rel. err |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for r in self.layers:
            we = "" if r.weight_rel_error is None else f"{r.weight_rel_error:.3g}"
            oe = "" if r.output_rel_error is None else f"{r.output_rel_error:.3g}"
            lines.append(
                f"| {r.name} | {r.method} | {'x'.join(map(str, r.shape))} | {r.bytes_before:,} | {r.bytes_after:,} | {we} | {oe} |"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"CompressionReport({'+'.join(r['type'] for r in self.recipe)}: {self.bytes_before:,} -> "
                f"{self.bytes_after:,} bytes, x{self.ratio:.2f}, {len(self.layers)} layers)")

    def _repr_html_(self) -> str:
        """Notebook display: recipe, bytes, ratio, time (and the evaluation when attached)."""
        from qlite.display import table

        rows = [["recipe", ", ".join(r["type"] for r in self.recipe)], ["bytes before", self.bytes_before],
                ["bytes after", self.bytes_after], ["compression ratio", round(self.ratio, 3)],
                ["layers changed", len(self.layers)], ["calibration items", self.calib_items]]
        rows += [[f"{k} seconds", v] for k, v in self.seconds.items()]
        if self.evaluation:
            rows += [[f"evaluation: {k}", v] for k, v in self.evaluation.items() if isinstance(v, (int, float, str))]
        return table(rows, ["", "value"], caption="compression report")


@dataclass
class CompressionResult:
    model: nn.Module
    report: CompressionReport


def _recipe_items(recipe) -> list[CompressionConfig]:
    if isinstance(recipe, CompressionConfig):
        return [recipe]
    if isinstance(recipe, (str, bytes, dict)) or not isinstance(recipe, (list, tuple)):
        raise TypeError(f"recipe must be a config or a list of configs such as [RTN(bits=4)], got {recipe!r}; "
                        "configs are classes of qlite.classical (a JSON recipe goes through recipe_from_json)")
    if not recipe:
        raise ValueError("recipe is empty; give at least one config such as RTN(bits=8)")
    for c in recipe:
        if not isinstance(c, CompressionConfig):
            raise TypeError(f"recipe items must be compression configs such as RTN(bits=4), got {c!r}")
    return list(recipe)


def _check_order(items: list[CompressionConfig]) -> None:
    """Steps that reshape layers must come before those that replace them: structured pruning and GQA
    read plain linear layers, and would prune the inner factors of a low-rank layer as if they were
    unrelated layers (or fail half way). Checked before any work."""
    for i, c in enumerate(items):
        if not c.reshapes_layers:
            continue
        earlier = [e.name for e in items[:i] if isinstance(transform_of(e), LinearTransform)]
        if earlier:
            raise ValueError(f"{c.name} comes after {earlier[0]}, which replaces the linear layers it would reshape; "
                             f"put {type(c).__name__} first in the recipe (reshape, then factorise / sparsify / "
                             "quantize)")


def _check_calibration(model: nn.Module, calib: list) -> None:
    """One forward of ``calib[0]`` where the model is, so data the model cannot take (wrong width,
    float instead of token ids...) is refused before any work, with its shape in the message."""
    from .calibration import call_model, move

    x = calib[0]
    if not isinstance(x, (torch.Tensor, dict, tuple, list)):
        raise TypeError(f"calibration items must be model inputs (tensors, dicts of tensors or tuples), got "
                        f"{type(x).__name__}")
    dev = next(iter([*model.parameters(), *model.buffers()]), torch.empty(0)).device
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            call_model(model, move(x, dev))
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise ValueError(f"the model cannot take calib[0] ({_describe(x)}): {str(err).splitlines()[0][:300]}; "
                         "give calibration inputs the model accepts, e.g. (1, seqlen) token-id tensors for a "
                         "causal LM or (batch, in_features) tensors for a network of linear layers") from err
    finally:
        model.train(was)


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)}, {str(x.dtype).replace('torch.', '')}"
    if isinstance(x, dict):
        return "dict " + ", ".join(f"{k}: {_describe(v)}" for k, v in x.items())
    if isinstance(x, (tuple, list)):
        return f"{type(x).__name__} of " + ", ".join(_describe(v) for v in x)
    return type(x).__name__


def compress(
    model: nn.Module,
    recipe: CompressionConfig | list[CompressionConfig],
    calib: list | None = None,
    *,
    inplace: bool = False,
    device: torch.device | str | None = None,
    offload: bool = False,
    seed: int = 0,
    kernels: bool = True,
) -> CompressionResult:
    """Apply the configs of ``recipe`` to ``model`` in order.

    Args:
        model: any ``torch.nn.Module`` (Hugging Face Llama / GPT-2 / BERT, a plain ``nn.Sequential``...).
        recipe: a config or a list of configs, e.g. ``[GPTQ(bits=4, group_size=128)]``.
        calib: calibration inputs, each fed as ``model(x)`` (a tensor such as ``(1, seqlen)`` token ids) or
            ``model(**x)`` (a dict). Required by methods whose ``needs_calibration`` is true.
        inplace: modify ``model`` itself; otherwise a deep copy is compressed and ``model`` is untouched.
        device: where calibration computes (default: where the model is).
        offload: keep only the block being calibrated on ``device`` (the rest stays where it is).
        seed: seeds the sampling done by calibrated methods.
        kernels: after the last step, store every quantized layer that a real CPU kernel can run (4-bit
            grouped, 8-bit per-channel weight-only, on a CPU) in that kernel's layout, with the same codes:
            it runs on low-bit data, in bfloat16 (``qlite.classical.quant.kernels``). Layers that stay
            simulated are listed in ``report.notes`` with the reason. ``False`` keeps every layer
            simulated (dequantized per call, the stored format's accuracy without bfloat16 rounding).

    Returns:
        :class:`CompressionResult` with ``.model`` and ``.report``.

    Raises:
        TypeError: ``model`` is not a module, the recipe (or an item of it) is not a config.
        ValueError: calibration data missing, empty or not accepted by the model (one forward of
        ``calib[0]`` is tried before any work), a step that reshapes layers (``StructuredPrune``,
        ``GQA``) after one that factorises, sparsifies or quantizes them, a layer the method cannot
        handle (named in the message, with the fix), no layers to compress.

    Example:
        >>> from torch import nn
        >>> from qlite.classical import compress, RTN
        >>> net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
        >>> res = compress(net, [RTN(bits=4, group_size=32)])
        >>> res.report.ratio > 3
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"compress takes a torch.nn.Module, got {type(model).__name__}; load the model first "
                        "(e.g. qlite.classical.load_causal_lm() or transformers' from_pretrained)")
    items = _recipe_items(recipe)
    if calib is not None and not isinstance(calib, (list, tuple)):
        raise TypeError(f"calib must be a list of model inputs, got {type(calib).__name__}")
    needs = [c.name for c in items if c.requires_calibration]
    if needs and not calib:
        raise ValueError(
            f"{', '.join(needs)} needs calibration data: pass calib=[...] (model inputs, e.g. a list of "
            "(1, seqlen) token-id tensors)"
        )
    _check_order(items)
    if needs:
        _check_calibration(model, calib)
    target = model if inplace else copy.deepcopy(model)
    # distillation steps learn from the model as it was given: the caller's (untouched) or, in place, a copy
    teacher = model if not inplace else copy.deepcopy(model) if any(c.requires_teacher for c in items) else None
    was_training = target.training
    target.eval()
    before = state_bytes(target)
    ctx = Context(device=device, offload=offload, seed=seed, teacher=teacher)
    records: list[LayerRecord] = []
    seconds: dict[str, float] = {}
    try:
        for c in items:
            t0 = time.perf_counter()
            with torch.no_grad():
                records += transform_of(c).run(target, list(calib) if calib else None, ctx)
            seconds[c.name] = time.perf_counter() - t0
            log.info("%s done in %.1fs", c.name, seconds[c.name])
    finally:
        target.train(was_training)
    notes = _use_kernels(target) if kernels else []
    report = CompressionReport(
        [c.to_dict() for c in items], records, before, state_bytes(target), seconds, len(calib) if calib else 0,
        notes=notes,
    )
    return CompressionResult(target, report)


def _use_kernels(model: nn.Module) -> list[str]:
    """Real CPU kernels for the quantized layers that have one; a note per reason a layer stays simulated."""
    from .quant.modules import QuantizedLinear

    n_real, why = 0, {}
    for name, m in model.named_modules():
        if isinstance(m, QuantizedLinear):
            reason = m.use_kernel()
            if reason is None:
                n_real += 1
            else:
                why.setdefault(reason, []).append(name)
    notes = [f"real CPU kernel: {n_real} quantized layer(s)"] if n_real else []
    notes += [f"simulated ({reason}): {len(names)} layer(s), e.g. {names[0]}" for reason, names in why.items()]
    return notes
