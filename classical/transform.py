"""The transform behind each config, and the shared driver for methods that act on linear layers.

Every config class maps to one transform class (``@transform_for(Config)``). A transform's ``run``
mutates the (already copied) model and returns one :class:`LayerRecord` per layer it changed. Methods
that act group by group on linear layers (all of issue 5's except AngleQuant; Wanda, SparseGPT and
low-rank in issue 6) subclass :class:`LinearTransform` and only say what to observe and how to convert.
Whole-model methods (KV cache, GQA, distillation) subclass :class:`Transform` and implement ``run``.
"""

from __future__ import annotations

import abc
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .blocks import find_blocks, linear_layers
from .calibration import Group, run_blockwise
from .config import CompressionConfig
from .granularity import check_divides

log = logging.getLogger(__name__)

_TRANSFORMS: dict[type, type["Transform"]] = {}


def transform_for(config_cls: type[CompressionConfig]):
    """Class decorator mapping ``config_cls`` to the decorated transform."""

    def deco(cls):
        _TRANSFORMS[config_cls] = cls
        return cls

    return deco


def transform_of(config: CompressionConfig) -> "Transform":
    cls = _TRANSFORMS.get(type(config))
    if cls is None:
        raise TypeError(f"no transform is registered for {type(config).__name__}")
    return cls(config)


@dataclass
class Context:
    """Run settings shared by all transforms of one ``compress`` call."""

    device: Any = None
    offload: bool = False
    seed: int = 0
    teacher: Any = None  # the model as given to compress, for steps that distil from it (None: not kept)


@dataclass
class LayerRecord:
    """What one transform did to one layer."""

    name: str
    method: str
    shape: tuple
    bytes_before: int
    bytes_after: int
    weight_rel_error: float | None = None
    output_rel_error: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def _plain_tensors(t: torch.Tensor):
    """The plain tensors holding a tensor's data: itself, or the inner tensors of a wrapper subclass
    (torchao's quantized tensors, via ``__tensor_flatten__``)."""
    if type(t) in (torch.Tensor, nn.Parameter) or not hasattr(t, "__tensor_flatten__"):
        yield t
        return
    names, _ = t.__tensor_flatten__()
    for n in names:
        yield from _plain_tensors(getattr(t, n))


def state_bytes(module: nn.Module) -> int:
    """Bytes of a module's state_dict tensors, each storage counted once (tied weights); wrapper
    tensor subclasses (torchao) count the tensors they hold."""
    return tensors_bytes(module.state_dict().values())


def tensors_bytes(tensors) -> int:
    """Bytes of ``tensors`` as :func:`state_bytes` counts them (each storage once, wrappers unpacked)."""
    seen, total = set(), 0
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            continue
        for p in _plain_tensors(t):
            key = (p.untyped_storage().data_ptr(), p.storage_offset(), p.numel(), p.dtype)
            if key in seen:
                continue
            seen.add(key)
            total += p.numel() * p.element_size()
    return total


class Transform(abc.ABC):
    """The implementation behind one config."""

    def __init__(self, config: CompressionConfig):
        self.config = config

    @abc.abstractmethod
    def run(self, model: nn.Module, calib: list | None, ctx: Context) -> list[LayerRecord]:
        """Compress ``model`` in place and return what was done."""


class LinearTransform(Transform):
    """A method acting on linear layers, one group of layers sharing an input at a time."""

    def layer_check(self, name: str, weight: torch.Tensor) -> None:
        """Validate a target layer before anything changes (non-finite weights, group size)."""
        if not torch.isfinite(weight).all():
            raise ValueError(
                f"layer {name!r} has non-finite weights (NaN or Inf); repair or reload the checkpoint, "
                f"or leave the layer out with skip=({name!r},)"
            )
        g = getattr(self.config, "granularity", None)
        if g is not None:
            check_divides(g, weight.shape[1], name)

    def make_observer(self, group: Group, total_rows: int, ctx: Context):
        """Statistics to collect for ``group`` during calibration (``None``: none)."""
        return None

    @abc.abstractmethod
    def convert(self, name: str, module: nn.Module, group: Group, observer, ctx: Context) -> tuple[nn.Module, dict]:
        """The replacement of one layer and a dict of extra report fields (may include
        ``output_rel_error``)."""

    def prepare_group(self, group: Group, observer, ctx: Context) -> None:
        """Work shared by a group before its layers are converted (AWQ / SmoothQuant scales)."""

    def targets(self, model: nn.Module) -> dict[str, nn.Module]:
        from .layers import linear_weight

        found = dict(linear_layers(model, self.config.skip))
        if not found:
            raise ValueError(
                f"{self.config.name}: the model has no nn.Linear (or GPT-2 Conv1D) layers to compress "
                f"outside skip={self.config.skip!r}; check the model or the skip patterns"
            )
        for name, m in found.items():
            self.layer_check(name, linear_weight(m))
        return found

    def run(self, model, calib, ctx):
        from .layers import linear_weight

        targets = self.targets(model)
        records: list[LayerRecord] = []

        def do_group(group: Group, observer) -> None:
            t0 = time.perf_counter()
            self.prepare_group(group, observer, ctx)
            for name, mod in zip(group.names, group.modules):
                w = linear_weight(mod).detach()
                before = state_bytes(mod)
                new, extra = self.convert(name, mod, group, observer, ctx)
                eff = new.effective_weight().to(w.device) if hasattr(new, "effective_weight") else None
                rel = float((eff - w.float()).norm() / w.float().norm().clamp(min=1e-30)) if eff is not None else None
                out_err = extra.pop("output_rel_error", None)
                model.set_submodule(name, new)
                records.append(
                    LayerRecord(name, self.config.name, tuple(w.shape), before, state_bytes(new), rel, out_err, extra)
                )
            log.debug("%s: %s in %.2fs", self.config.name, group.names, time.perf_counter() - t0)

        if not self.config.requires_calibration:
            for name, mod in targets.items():
                do_group(Group([name], [mod]), None)
            return records

        blocks = find_blocks(model)
        run_blockwise(
            model,
            blocks,
            calib,
            targets,
            lambda g, total: self.make_observer(g, total, ctx),
            do_group,
            device=ctx.device,
            offload=ctx.offload,
            sequential=bool(getattr(self.config, "true_sequential", False)),
        )
        return records


def output_rel_error(W: torch.Tensor, Wq: torch.Tensor, H: torch.Tensor) -> float:
    """Relative output error ``tr(D H D^T) / tr(W H W^T)`` with ``D = Wq - W`` and ``H ~ X X^T``:
    the calibration-set ``||(Wq - W) X||^2 / ||W X||^2``."""
    D = (Wq.float() - W.float()).to(H.device)
    W = W.float().to(H.device)
    num = torch.einsum("oi,ij,oj->", D, H, D)
    den = torch.einsum("oi,ij,oj->", W, H, W)
    return float(num / den.clamp(min=1e-30))
