"""What the signal loop (:mod:`.loop`) and the language-model loop (:mod:`.text_loop`) share:
configuration, checkpoint opening and checks, RNG state, device and process-group set-up, and the
parameter subset a checkpoint stores when the base of a model is frozen."""

from __future__ import annotations

import hashlib
import json
import os

import torch
from torch import nn

from . import checkpoint as ckpt_io
from . import distributed as ddp
from .config import FitConfig
from .device import resolve_device


def model_device(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype the model computes in (data are cast to it: a float64 signal fits a float32 model)."""
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def build_config(config, overrides, stored: dict | None) -> FitConfig:
    if config is None:
        config = FitConfig.from_dict(stored) if stored is not None else FitConfig()
    if not isinstance(config, FitConfig):
        raise TypeError(f"config must be a FitConfig, got {type(config).__name__}")
    known = set(FitConfig.__dataclass_fields__)
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"fit() got unknown options {sorted(unknown)}; FitConfig fields are {sorted(known)}")
    return config.replace(**overrides) if overrides else config


def check_info(info) -> None:
    """``info`` goes into the checkpoint's JSON: refuse what JSON cannot hold before any training."""
    if info is None:
        return
    try:
        json.dumps(info)
    except (TypeError, ValueError) as e:
        raise TypeError(f"info must be JSON-serialisable (it is stored in the checkpoint's index): {e}") from None


def open_checkpoint(model: nn.Module, checkpoint_dir, resume: bool, *, fingerprint: str, described,
                    state: dict | None = None):
    """The checkpoint to resume (checked against ``model`` and the data's ``fingerprint``), or
    ``None`` for a new run (refusing a directory that already holds one)."""
    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir (the directory of the run to continue)")
        checkpoint = ckpt_io.load_checkpoint(checkpoint_dir)
        ckpt_io.check_compatible(model, checkpoint, checkpoint_dir, state=state)
        if checkpoint.info.get("data_fingerprint") != fingerprint:
            raise ValueError(f"the checkpoint in {str(checkpoint_dir)!r} was fitted to different data "
                             f"({checkpoint.info.get('data')}; now {described}); pass the same data to resume")
        return checkpoint
    if checkpoint_dir is not None and ckpt_io.has_checkpoint(checkpoint_dir):
        raise ValueError(f"{str(checkpoint_dir)!r} already holds a checkpoint; pass resume=True to continue it "
                         f"or choose another checkpoint_dir (nothing was overwritten)")
    return None


def setup_device(device, cfg: FitConfig):
    """``(device, distributed context or None)``; sets the current CUDA device (NCCL and barriers
    use it: one GPU per rank)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if ddp.launched_distributed() else None
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev, ddp.setup(dev.type)


def rng_state(gen: torch.Generator | None, dev: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if gen is not None:
        state["shuffle"] = gen.get_state()
    if dev.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(dev)
    return state


def restore_rng(rng: dict[str, torch.Tensor], gen: torch.Generator | None, dev: torch.device) -> None:
    """Put back the RNG states of a checkpoint (dropout draws from the global generator, so an
    exact resume needs it)."""
    if gen is not None and "shuffle" in rng:
        gen.set_state(rng["shuffle"])
    torch.set_rng_state(rng["torch"])
    if dev.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], dev)


# -- frozen bases -----------------------------------------------------------------------------
def has_frozen_parameters(model: nn.Module) -> bool:
    return any(not p.requires_grad for p in model.parameters())


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint stores of a model with a frozen base: the trainable parameters (adapter
    weights) and every buffer (small, and some adapters keep state there); the frozen parameters
    are represented by :func:`frozen_fingerprint` only."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    state = model.state_dict(keep_vars=True)
    keep = names | {n for n, _ in model.named_buffers()}
    return {k: v.detach() for k, v in state.items() if k in keep}


def frozen_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the names, shapes, dtypes and values of the frozen parameters (the base): a resume
    onto another base is refused."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if p.requires_grad:
            continue
        t = p.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
