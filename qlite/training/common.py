"""What the signal loop (:mod:`.loop`) and the language-model loop (:mod:`.text_loop`) share:
configuration, checkpoint opening and checks, RNG state, device and process-group set-up, and the
parameter subset a checkpoint stores when the base of a model is frozen."""

from __future__ import annotations

import hashlib
import json
import math
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


# -- guards shared by the loops ----------------------------------------------------------------
def check_schedule_extension(stored: dict, cfg: FitConfig, stored_total: int, total: int, unit: str) -> None:
    """A resumed run must keep the learning-rate schedule it started with: a cosine planned over
    ``stored_total`` epochs (steps) cannot be stretched to ``total`` without changing the rates
    already used, so that (and a change of schedule) is refused with the reason."""
    old = stored.get("schedule", "constant")
    if old != cfg.schedule:
        raise ValueError(f"this run was trained with schedule={old!r}; it cannot continue with schedule={cfg.schedule!r} "
                         "(start a new run for another schedule)")
    if cfg.schedule != "constant" and stored_total != total:
        raise ValueError(f"the {cfg.schedule} learning-rate schedule of this run was planned over {stored_total} {unit}s; "
                         f"continuing it to {total} would restart the decay (the rates already used belong to the "
                         f"{stored_total}-{unit} plan). Resume with the same total to finish it, or start a new run")


class DivergenceGuard:
    """Raises ``FloatingPointError`` when the loss is not finite, or when it has stayed above
    ``factor`` x the first loss for ``patience`` consecutive epochs / steps (or for every one after
    the first in a run shorter than that)."""

    def __init__(self, cfg: FitConfig, total: int, unit: str, history_loss: list[float]):
        self.factor, self.unit, self.lr = cfg.divergence_factor, unit, cfg.lr
        self.need = max(1, min(cfg.divergence_patience, total - 1))
        self.ref = history_loss[0] if history_loss else None
        self.count = 0
        if self.ref is not None and self.factor is not None:  # a resumed run keeps its streak
            for v in reversed(history_loss[1:]):
                if v <= self.factor * self.ref:
                    break
                self.count += 1

    def check(self, loss: float, index: int) -> None:
        """``index``: the 1-based epoch / step that produced ``loss``."""
        if not math.isfinite(loss):
            raise FloatingPointError(f"the training loss became {loss} at {self.unit} {index}; lower the learning rate "
                                     f"(lr={self.lr}); the last checkpoint written is kept")
        if self.ref is None:
            self.ref = loss
            return
        if self.factor is None or self.ref <= 0:
            return
        self.count = self.count + 1 if loss > self.factor * self.ref else 0
        if self.count >= self.need:
            raise FloatingPointError(
                f"training diverged: the loss ({loss:.4g} at {self.unit} {index}) has stayed above {self.factor:g}x the "
                f"first {self.unit}'s ({self.ref:.4g}) for {self.count} {self.unit}s; lower the learning rate "
                f"(lr={self.lr}); the last checkpoint written is kept (divergence_factor=None turns this check off)")


def check_writable(directory) -> None:
    """Create ``directory`` and prove a file can be written there, before any training (an
    unwritable checkpoint directory must not surface after the last epoch)."""
    import tempfile
    from pathlib import Path

    if directory is None:
        return
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".qlite-write-check-", suffix=".tmp"):
            pass
    except OSError as err:
        raise ValueError(f"cannot write checkpoints to {str(path)!r}: {err}; choose a writable directory") from None


class SaveClock:
    """When to write a periodic checkpoint: every ``checkpoint_every`` epochs / steps and, with
    ``checkpoint_seconds``, whenever that much training time has passed since the last save
    (``now``: training seconds so far, those of a resumed run included). Under ``torchrun`` the
    ranks agree through an all-reduce of the time test, since every rank meets the barrier after a save."""

    def __init__(self, cfg: FitConfig, ctx, device: torch.device, now: float):
        self.every, self.seconds, self.ctx, self.device, self.last = cfg.checkpoint_every, cfg.checkpoint_seconds, ctx, device, now

    def due(self, done: int, total: int, now: float) -> bool:
        if done >= total:  # the final save happens anyway
            return False
        due = bool(self.every) and done % self.every == 0
        if self.seconds:
            late = torch.tensor([1.0 if now - self.last >= self.seconds else 0.0], device=self.device)
            ddp.all_reduce_sum(late, self.ctx)
            due = due or bool(late.item() > 0)
        if due:
            self.last = now
        return due
