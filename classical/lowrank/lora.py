"""LoRA / QLoRA recovery fine-tuning of a compressed model through peft.

LoRA (Hu et al. 2022) adds a trainable low-rank update ``B A`` (rank ``r``, scaled by ``alpha / r``)
beside each frozen target linear layer; QLoRA (Dettmers et al. 2023) does the same on a base model
quantized to 4-bit NF4 by bitsandbytes (:func:`qlite.classical.export.export_bitsandbytes` with
``"nf4"``). The frozen base keeps whatever compression it has: pruned weights stay pruned (a
:class:`~qlite.classical.sparse.SparseLinear` is an ``nn.Linear`` and applies its mask in the base
forward), low-rank factors stay factors (their two ``nn.Linear`` layers are the targets). Training uses
:func:`qlite.classical.distillation.train_student`: next-token loss, or distillation from the uncompressed
teacher (forward / reverse / mixed KL).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from ..blocks import skipped
from ..distillation import train_student
from ..layers import is_linear
from ..transform import LayerRecord, Transform, state_bytes, transform_for
from .configs import LoRARecover

log = logging.getLogger(__name__)


def _require_peft():
    try:
        import peft  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("LoRA recovery needs peft: pip install 'qlite[llm]'") from e
    import peft

    return peft


def lora_targets(model: nn.Module, skip: tuple[str, ...] = ("lm_head", "*.lm_head")) -> list[str]:
    """Qualified names of the linear layers LoRA can wrap (``nn.Linear`` and its subclasses, bitsandbytes'
    ``Linear4bit`` / ``Linear8bitLt``), minus ``skip``."""
    out = []
    for n, m in model.named_modules():
        if not n or skipped(n, skip):
            continue
        if is_linear(m) or type(m).__name__ in ("Linear4bit", "Linear8bitLt"):
            out.append(n)
    return out


def lora_recover(
    model: nn.Module,
    batches: list,
    *,
    teacher: nn.Module | None = None,
    loss: str = "lm",
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    targets: list[str] | None = None,
    steps: int = 100,
    lr: float = 1e-4,
    merge: bool = False,
    inplace: bool = False,
    generator=None,
) -> tuple[nn.Module, list[float]]:
    """Attach LoRA adapters to ``model``'s linear layers and train only them.

    Args:
        batches: model inputs (``(1, seqlen)`` token ids), cycled.
        teacher: the uncompressed model, for ``loss`` in ``"forward"``, ``"reverse"``, ``"mixed"``.
        loss: ``"lm"`` (next-token cross-entropy) or a distillation loss (see :mod:`qlite.classical.distillation`).
        targets: qualified names of the layers to adapt (default: :func:`lora_targets`).
        merge: fold the adapters into the base weights and return the plain model. Refused for
            sparse or quantized bases, where folding a dense update would undo the compression.
        inplace: adapt ``model`` itself; otherwise a copy (``model`` untouched).
        generator: a ``torch.Generator`` for the training's randomness (LoRA dropout); the global RNG
            is left as it was (see :func:`~qlite.classical.distillation.train_student`).
    Returns:
        ``(model with adapters (a peft ``PeftModel``) or merged model, per-step losses)``.
    Raises:
        ValueError: ``r`` < 1, no target layers, or ``merge`` on a sparse / quantized base.
    """
    peft = _require_peft()
    if not isinstance(r, int) or r < 1:
        raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}")
    m = model if inplace else copy.deepcopy(model)
    names = targets if targets is not None else lora_targets(m)
    if not names:
        raise ValueError("no linear layers to attach LoRA adapters to; pass targets=[qualified names]")
    if merge:
        from ..sparse.modules import SparseLinear

        bad = [n for n in names if isinstance(m.get_submodule(n), SparseLinear) or type(m.get_submodule(n)).__name__ == "Linear4bit"]
        if bad:
            raise ValueError(f"merge=True would fold dense LoRA updates into sparse / 4-bit base layers ({bad[0]!r}, ...); "
                             "keep the adapters separate (merge=False)")
    cfg = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=names, bias="none")
    pm = peft.get_peft_model(m, cfg)
    params = [p for n, p in pm.named_parameters() if p.requires_grad]
    log.info("LoRA: %d layers, %d trainable parameters", len(names), sum(p.numel() for p in params))
    hist = train_student(pm, batches, teacher=teacher, loss=loss, steps=steps, lr=lr, params=params, generator=generator)
    pm.eval()
    if merge:
        return pm.merge_and_unload(), hist
    return pm, hist


@transform_for(LoRARecover)
class _LoRARecover(Transform):
    """Adapters are injected into the model ``compress`` works on (peft replaces the target layers in
    place; the ``PeftModel`` wrapper is dropped), trained on ``calib``, and merged if asked."""

    def run(self, model, calib, ctx):
        c = self.config
        names = list(c.targets) if c.targets is not None else lora_targets(model, c.skip)
        if not names:
            raise ValueError(f"{c.name}: no linear layers to attach adapters to outside skip={c.skip!r}")
        before = {n: (state_bytes(model.get_submodule(n)), _shape(model.get_submodule(n))) for n in names}
        teacher = None
        if c.loss != "lm":
            teacher = ctx.teacher
            if teacher is None:
                raise ValueError(f"{c.name}: loss={c.loss!r} needs the uncompressed model as teacher, which compress "
                                 "keeps unless inplace=True; use loss='lm' or compress a copy")
        _, hist = lora_recover(model, calib, teacher=teacher, loss=c.loss, r=c.r, alpha=c.alpha, dropout=c.dropout,
                               targets=names, steps=c.steps, lr=c.lr, merge=c.merge, inplace=True,
                               generator=torch.Generator().manual_seed(ctx.seed))
        recs = []
        for i, n in enumerate(names):
            b, shape = before[n]
            extra = {"lora_r": c.r, "merged": c.merge}
            if i == 0:
                extra.update(loss_first=hist[0], loss_last=hist[-1])
            recs.append(LayerRecord(n, c.name, shape, b, state_bytes(model.get_submodule(n)), extra=extra))
        return recs


def _shape(m: nn.Module) -> tuple:
    w = getattr(m, "weight", None)
    if isinstance(w, torch.Tensor):
        return tuple(w.shape)
    return (getattr(m, "out_features", 0), getattr(m, "in_features", 0))
