"""The training configuration and the result of :func:`qlite.fit`."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from torch import nn

SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class FitConfig:
    """How :func:`qlite.fit` trains (Adam on the mean squared error; for text, AdamW on the
    next-token cross-entropy, see :mod:`qlite.training.text_loop`).

    Args:
        epochs: total number of epochs (a resumed run continues up to this many).
        lr: Adam learning rate (the QIREN paper: 0.03).
        batch_size: ``None`` trains full batch (the paper); otherwise each epoch visits a fresh
            permutation in ``max(1, N // batch_size)`` nearly equal batches (so no tiny tail batch
            reaches BatchNorm); signals need at least 2. Text: windows per optimiser step (required).
        schedule: ``"constant"`` or ``"cosine"`` (from ``lr`` at epoch 0 down to ``min_lr`` at the end).
        min_lr: floor of the cosine schedule.
        weight_decay: Adam's L2 penalty.
        betas: Adam's moment coefficients.
        seed: seeds the generator that shuffles mini-batches (model initialisation is the caller's).
        checkpoint_every: with a checkpoint directory, also save every this many epochs (0: only at
            the end).
        recompute_batchnorm: at the end, replace BatchNorm running statistics by the exact
            statistics of the training coordinates (see :func:`qlite.training.recompute_batchnorm`).
        eval_batch_size: chunk size for prediction and statistics (``None``: all points at once).
        progress: show a progress bar; ``None`` shows it only when stdout and stderr are terminals
            or in a Jupyter kernel (tqdm's notebook widget there).
        max_steps: text only: stop after this many optimiser steps in total (``None``: ``epochs``
            passes over the training windows). ``batch_size`` is then windows per step, and
            ``checkpoint_every`` counts steps.
        eval_every: text only: also report validation perplexity every this many steps (0: only
            at the end).
        checkpoint_seconds: with a checkpoint directory, also save when this many seconds of
            training have passed since the last save (``None``: only ``checkpoint_every``); resuming
            from any checkpoint gives the same run, so when the saves happen changes no result.
        divergence_factor, divergence_patience: stop (``FloatingPointError``) when the training loss
            stays above ``divergence_factor`` times the first epoch's (step's, for text) loss for
            ``divergence_patience`` epochs (steps) in a row, or for every epoch after the first
            when the run is shorter; ``divergence_factor=None`` turns the check off (nan and inf
            always stop a run).
        cuda_graph: ``"auto"`` (default): on CUDA, after a few eager warm-up steps, capture the whole
            training step (forward, loss, backward, Adam) as a CUDA graph and replay it, which removes
            the per-kernel launch cost that dominates small QIREN steps; steps that cannot be
            captured (CPU, ``torchrun``, mini-batches of unequal size, a host read in the model)
            train eagerly, with the reason logged. ``True`` (or ``"on"``) refuses instead of falling
            back; ``False`` (or ``"off"``) always trains eagerly. Losses equal the eager ones to
            float32 rounding (the capturable Adam computes its bias corrections on the device).
            Signal fits only (text runs train eagerly; ``True`` is refused there).
    """

    epochs: int = 300
    lr: float = 0.03
    batch_size: int | None = None
    schedule: str = "constant"
    min_lr: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 0
    checkpoint_every: int = 0
    recompute_batchnorm: bool = True
    eval_batch_size: int | None = None
    progress: bool | None = None
    max_steps: int | None = None
    eval_every: int = 0
    checkpoint_seconds: float | None = None
    divergence_factor: float | None = 100.0
    divergence_patience: int = 10
    cuda_graph: bool | str = "auto"

    def __post_init__(self):
        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        if not is_int(self.epochs) or self.epochs < 0:
            raise ValueError(f"epochs must be a non-negative int, got {self.epochs!r}")
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        for name in ("batch_size", "eval_batch_size"):
            v = getattr(self, name)
            # >= 2 for signals (BatchNorm needs two points) is checked where a signal is fitted;
            # a language model can take one window per step.
            if v is not None and (not is_int(v) or v < 1):
                raise ValueError(f"{name} must be None (all points) or a positive int, got {v!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not math.isfinite(self.min_lr) or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must lie in [0, lr={self.lr}], got {self.min_lr!r}")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        if not is_int(self.seed):
            raise ValueError(f"seed must be an int, got {self.seed!r}")
        if not is_int(self.checkpoint_every) or self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be a non-negative int, got {self.checkpoint_every!r}")
        if self.max_steps is not None and (not is_int(self.max_steps) or self.max_steps < 0):
            raise ValueError(f"max_steps must be None or a non-negative int, got {self.max_steps!r}")
        if not is_int(self.eval_every) or self.eval_every < 0:
            raise ValueError(f"eval_every must be a non-negative int (0: evaluate only at the end), got {self.eval_every!r}")
        for name in ("checkpoint_seconds", "divergence_factor"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0):
                raise ValueError(f"{name} must be None or a positive number, got {v!r}")
        if self.divergence_factor is not None and self.divergence_factor <= 1:
            raise ValueError(f"divergence_factor must exceed 1 (a loss this many times its start), got {self.divergence_factor!r}")
        if not is_int(self.divergence_patience) or self.divergence_patience < 1:
            raise ValueError(f"divergence_patience must be a positive int, got {self.divergence_patience!r}")
        graph = self.cuda_graph
        if isinstance(graph, str):
            graph = {"auto": "auto", "on": True, "off": False}.get(graph)
        if not isinstance(graph, bool) and graph != "auto":
            raise ValueError(f"cuda_graph must be 'auto' (graph the step on CUDA when it can), True / 'on' (graph or "
                             f"refuse) or False / 'off' (eager), got {self.cuda_graph!r}")
        object.__setattr__(self, "cuda_graph", graph)
        if self.progress is not None and not isinstance(self.progress, bool):
            raise ValueError(f"progress must be True, False or None (auto), got {self.progress!r}")

    def lr_at(self, epoch: int, total: int | None = None) -> float:
        """Learning rate of ``epoch`` (0-based; a step for text) of ``total`` (default ``epochs``):
        constant, or cosine from ``lr`` to ``min_lr``."""
        total = self.epochs if total is None else total
        if self.schedule == "constant" or total <= 1:
            return float(self.lr)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * epoch / (total - 1)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FitConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown FitConfig fields {sorted(unknown)}; known: {sorted(names)}")
        return cls(**dict(d))

    def replace(self, **changes) -> FitConfig:
        return replace(self, **changes)


@dataclass(frozen=True)
class FitResult:
    """What :func:`qlite.fit` returns.

    Attributes:
        model: the trained model (the one passed in, trained in place, BatchNorm statistics
            recomputed on the training coordinates).
        history: per-epoch lists ``epoch`` (1-based), ``loss`` (training MSE before that epoch's
            last step, full-batch mean over all points), ``lr`` and ``seconds`` (cumulative).
        metrics: on the training signal after the fit: ``mse``, ``psnr`` and, for images, ``ssim``.
            Text: on the validation windows, ``perplexity``, ``nll`` (nats per token),
            ``bits_per_token``, ``n_tokens`` scored and ``n_windows`` (``None`` without validation).
        eval_metrics: the same on ``eval_data`` (e.g. the fine grid of a super-resolution pair);
            text: on the test windows.
        params: trainable parameters.
        seconds: training time, including the epochs of an earlier run that was resumed.
        epochs: epochs trained in total.
        device: where it trained; world_size: number of data-parallel processes.
    """

    model: nn.Module
    history: dict[str, list]
    metrics: dict[str, float | None]
    eval_metrics: dict[str, float | None] | None
    params: int
    seconds: float
    epochs: int
    device: str
    world_size: int
    config: FitConfig
    checkpoint: str | None = None
    info: dict = field(default_factory=dict)
    steps: int | None = None  # optimiser steps (text runs)
    step_mode: str = "eager"  # "cuda-graph", or "eager (reason)": how the training steps ran

    @property
    def seconds_per_epoch(self) -> float | None:
        """Median wall time of one epoch (robust to a slow first epoch)."""
        t = self.history.get("seconds", [])
        steps = [b - a for a, b in zip([0.0] + t[:-1], t)]
        return statistics.median(steps) if steps else None

    def to_dict(self) -> dict:
        """JSON-able summary (no model weights)."""
        return {"params": self.params, "epochs": self.epochs, "seconds": self.seconds,
                "seconds_per_epoch": self.seconds_per_epoch, "device": self.device, "world_size": self.world_size,
                "metrics": self.metrics, "eval_metrics": self.eval_metrics, "config": self.config.to_dict(),
                "history": self.history, "checkpoint": self.checkpoint, "steps": self.steps,
                "step_mode": self.step_mode, **self.info}

    def __repr__(self) -> str:
        # one line: the dataclass default would print the whole model and history
        shown = ", ".join(f"{k}={v:.4g}" for k, v in self.metrics.items() if isinstance(v, float))
        length = f"steps={self.steps}" if self.steps is not None else f"epochs={self.epochs}"
        return (f"FitResult({type(self.model).__name__}, params={self.params:,}, {length}, {shown}, "
                f"seconds={self.seconds:.1f}, device={self.device})")

    def _repr_html_(self) -> str:
        """Notebook display: the metrics (training / validation and eval / test) and the loss curve."""
        from qlite.display import loss_svg, table

        names = list(self.metrics) + [k for k in (self.eval_metrics or {}) if k not in self.metrics]
        header = ["metric", "train" if self.steps is None else "validation"]
        if self.eval_metrics is not None:
            header.append("eval" if self.steps is None else "test")
        rows = [[k, self.metrics.get(k)] + ([self.eval_metrics.get(k)] if self.eval_metrics is not None else [])
                for k in names]
        length = f"{self.steps:,} steps" if self.steps is not None else f"{self.epochs:,} epochs"
        caption = (f"{type(self.model).__name__}: {self.params:,} trainable parameters, {length}, "
                   f"{self.seconds:.1f} s on {self.device}" + (f" x {self.world_size}" if self.world_size > 1 else ""))
        return (f"<div>{table(rows, header, caption=caption)}"
                f"{loss_svg(self.history.get('loss', []))}</div>")
