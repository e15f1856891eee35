"""The one training entry point, :func:`fit`, and :func:`predict` / :func:`evaluate`."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch import nn

from ..data import Signal
from ..models import count_parameters
from ..runtime import tune_cpu_allocator
from . import checkpoint as ckpt_io
from . import distributed as ddp
from .batchnorm import recompute_batchnorm
from .common import (
    DivergenceGuard,
    SaveClock,
    build_config,
    check_info,
    check_schedule_extension,
    check_writable,
    model_device,
    model_dtype,
    open_checkpoint,
    restore_rng,
    rng_state,
    setup_device,
)
from .config import FitConfig, FitResult
from .cuda_graph import GraphedSteps, checkpoint_state, graph_blockers, make_capturable, set_lr
from .device import Progress, progress_enabled
from .metrics import signal_metrics

log = logging.getLogger(__name__)


def _as_signal(data, name: str = "data") -> Signal:
    if isinstance(data, Signal):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return Signal(torch.as_tensor(data[0]).float(), torch.as_tensor(data[1]).float())
    raise TypeError(f"{name} must be a qlite.data.Signal or a (coords, values) pair, got {type(data).__name__}")


@torch.no_grad()
def predict(model: nn.Module, coords, *, batch_size: int | None = None) -> torch.Tensor:
    """The model's output at ``coords`` (a tensor ``(N, d)`` or a :class:`~qlite.data.Signal`) in
    eval mode, without gradients, in chunks of ``batch_size`` points; returned on the coordinates'
    device. After :func:`fit`, BatchNorm uses the statistics of the training coordinates, so the
    result does not depend on which or how many points are asked for (super-resolution).
    The model's ``training`` flag is restored."""
    if isinstance(coords, Signal):
        coords = coords.coords
    if not isinstance(coords, torch.Tensor):
        raise TypeError(f"coords must be a tensor or a Signal, got {type(coords).__name__}")
    if coords.dim() == 1:
        coords = coords[:, None]
    if coords.shape[0] == 0:
        raise ValueError("predict got no coordinates")
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None (all points at once), got {batch_size!r}")
    dev = model_device(model)
    was_training = model.training
    model.eval()
    try:
        chunks = coords.split(batch_size) if batch_size else (coords,)
        dtype = model_dtype(model)
        out = torch.cat([model(c.to(dev, dtype)) for c in chunks])
    finally:
        model.train(was_training)
    return out.to(coords.device)


def evaluate(model: nn.Module, signal: Signal, *, batch_size: int | None = None) -> dict[str, float | None]:
    """``mse``, ``psnr`` and (images) ``ssim`` of the model's prediction on ``signal``."""
    signal = _as_signal(signal, "signal")
    return signal_metrics(predict(model, signal.coords, batch_size=batch_size).cpu().float(), signal)



def fit(model: nn.Module, data, config: FitConfig | None = None, *, eval_data=None, device="auto",
        checkpoint_dir=None, resume: bool = False, info: dict | None = None, tune_allocator: bool = False,
        **overrides) -> FitResult:
    """Train ``model`` to represent ``data`` (Adam on the mean squared error) and evaluate it.

    ``data`` may also be a :class:`~qlite.data.TextData` (from :func:`qlite.data.text`): ``model``
    is then trained as a causal language model (see :func:`qlite.training.text_loop.fit_text`).

    Full batch by default as in the QIREN paper (Zhao et al., ICML 2024: Adam, lr 0.03, ~300
    epochs). At the end BatchNorm statistics are recomputed exactly on the training coordinates, so
    the returned metrics and :func:`predict` use the model as fitted (see :mod:`.batchnorm`).

    Under ``torchrun`` with several processes the coordinates are sharded over the ranks
    (DistributedDataParallel, synchronised BatchNorm; gloo on CPU, NCCL on GPUs); rank 0 writes the
    checkpoints. See :mod:`.distributed`.

    Args:
        model: any module mapping ``(N, in_features)`` to ``(N, out_features)``; trained in place
            and moved to ``device``.
        data: a :class:`~qlite.data.Signal` (or a ``(coords, values)`` pair).
        config: a :class:`FitConfig`; keyword ``overrides`` (``epochs=``, ``lr=``,
            ``batch_size=``, ``schedule=``, ...) replace its fields.
        eval_data: another signal to report ``eval_metrics`` on (e.g. a finer grid).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        checkpoint_dir: write checkpoints here (at the end and every ``checkpoint_every`` epochs).
            A directory that already holds a checkpoint is refused unless ``resume=True``.
        resume: continue the run stored in ``checkpoint_dir`` up to ``epochs`` in total. On CPU
            with the same settings this reproduces the uninterrupted run exactly: weights,
            optimiser state, RNG states and history are restored. Without ``config`` the stored
            configuration is used (``overrides`` still apply).
        info: JSON-able extras stored in the checkpoint (e.g. how to rebuild model and data).
        tune_allocator: on CPU, raise glibc's mmap threshold first
            (:func:`qlite.runtime.tune_cpu_allocator`: ~25% faster QIREN steps, but it changes the
            allocator of the whole process, so only when asked).

    Returns:
        A :class:`FitResult`.

    Raises:
        TypeError: ``model`` / ``data`` of the wrong type, unknown options.
        ValueError: bad options (non-positive lr, negative epochs, ...), an existing checkpoint
            without ``resume``, a checkpoint of another model or other data, a model whose output
            does not match the values.
        FloatingPointError: the loss became nan or inf, or diverged (see
            ``FitConfig.divergence_factor``): lower the learning rate.

    Example:
        >>> from qlite import QIREN, data
        >>> result = fit(QIREN(2, 1), data.image("camera", size=16), epochs=5)
        >>> sorted(result.metrics)
        ['mse', 'psnr', 'ssim']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(tune_allocator, bool):
        raise TypeError(f"tune_allocator must be True or False, got {tune_allocator!r}")
    from ..data_text import TextData

    if isinstance(data, TextData):
        if eval_data is not None:
            raise ValueError("eval_data does not apply to text: the TextData's validation and test windows are scored")
        from .text_loop import fit_text

        return fit_text(model, data, config, device=device, checkpoint_dir=checkpoint_dir, resume=resume, info=info,
                        tune_allocator=tune_allocator, **overrides)
    data = _as_signal(data)
    eval_data = None if eval_data is None else _as_signal(eval_data, "eval_data")
    check_info(info)
    checkpoint = open_checkpoint(model, checkpoint_dir, resume, fingerprint=data.fingerprint(), described=data.describe())
    cfg = build_config(config, overrides, checkpoint.info["config"] if checkpoint else None)
    for name in ("batch_size", "eval_batch_size"):
        if getattr(cfg, name) == 1:
            raise ValueError(f"{name} must be None (all points) or an int >= 2 (BatchNorm needs two points), got 1")
    if checkpoint is not None:
        if checkpoint.info["epoch"] > cfg.epochs:
            raise ValueError(f"the checkpoint is already at epoch {checkpoint.info['epoch']}, beyond epochs={cfg.epochs}; "
                             f"ask for at least {checkpoint.info['epoch']} epochs in total")
        stored = checkpoint.info["config"]
        check_schedule_extension(stored, cfg, int(stored.get("epochs", cfg.epochs)), cfg.epochs, "epoch")
    if eval_data is not None and (eval_data.in_features, eval_data.out_features) != (data.in_features, data.out_features):
        raise ValueError(f"eval_data has {eval_data.in_features} coordinates and {eval_data.out_features} channels per "
                         f"point but data has {data.in_features} and {data.out_features}; pass a signal of the same kind")
    check_writable(checkpoint_dir)
    dev, ctx = setup_device(device, cfg)
    if tune_allocator and dev.type == "cpu":
        tune_cpu_allocator()  # state buffers reused instead of page-faulted each step (qlite.runtime)
    return _train(model, data, eval_data, cfg, dev, ctx, checkpoint, checkpoint_dir, info or {})


def _train(model, data: Signal, eval_data, cfg: FitConfig, dev, ctx, checkpoint, checkpoint_dir, info) -> FitResult:
    main = ctx is None or ctx.is_main
    world = 1 if ctx is None else ctx.world_size
    model.to(dev)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: dict[str, list] = {"epoch": [], "loss": [], "lr": [], "seconds": []}
    start, elapsed = 0, 0.0
    if checkpoint is not None:
        model.load_state_dict(checkpoint.model_state)
        restore_rng(checkpoint.rng, gen, dev)
        history = {k: list(v) for k, v in checkpoint.info["history"].items()}
        start, elapsed = int(checkpoint.info["epoch"]), float(checkpoint.info["seconds"])
    net = ddp.wrap(model, ctx, dev) if ctx is not None else model
    inner = net.module if ctx is not None else model
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=cfg.lr, betas=cfg.betas,
                           weight_decay=cfg.weight_decay)
    if checkpoint is not None and checkpoint.optimizer_state is not None:
        opt.load_state_dict(checkpoint.optimizer_state)
    dtype = model_dtype(model)
    coords, values = data.coords.to(dev, dtype), data.values.to(dev, dtype)
    n, c = data.n_points, data.out_features
    full = cfg.batch_size is None or cfg.batch_size >= n
    if ctx is not None and (n if full else cfg.batch_size) < world:
        raise ValueError(f"{world} processes need batches of at least {world} points; got {n if full else cfg.batch_size}")

    def step(x, y, size):
        """One optimiser step on the points ``x`` -> ``y`` (``size``: the batch's global count);
        returns the detached sum of squared errors of this rank's points."""
        pred = net(x)
        if pred.shape != y.shape:
            raise ValueError(f"the model outputs shape {tuple(pred.shape)} for {x.shape[0]} points but the "
                             f"values have shape {tuple(y.shape)}; build it with out_features={c}")
        sse = ((pred - y) ** 2).sum()
        # DDP averages gradients over ranks: W * local SSE / global count -> global MSE gradient.
        loss = sse * (world / (size * c))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return sse.detach()

    graphed, step_mode = _graphed_steps(cfg, model, dev, ctx, n, full, opt, coords, values, step)
    n_params = count_parameters(model)
    record = {"data": data.describe(), "data_fingerprint": data.fingerprint(), "params": n_params,
              "model_repr": ckpt_io.model_signature(model),  # the caller's model (not the DDP copy)
              "device": str(dev), "world_size": world, "info": info}

    def save(epoch_done: int, seconds: float, final_metrics=None):
        if checkpoint_dir is None or not main:
            return
        ckpt_io.save_checkpoint(checkpoint_dir, epoch=epoch_done, model=inner, optimizer=_Saved(opt),
                                rng=rng_state(gen, dev), info={"config": cfg.to_dict(), "history": history,
                                                                "seconds": seconds, "metrics": final_metrics, **record})

    bar = Progress(cfg.epochs, start, main and progress_enabled(cfg.progress))
    guard = DivergenceGuard(cfg, cfg.epochs, "epoch", history["loss"])
    clock = SaveClock(cfg, ctx, dev, elapsed)
    t0 = time.perf_counter()
    try:
        for epoch in range(start, cfg.epochs):
            lr = cfg.lr_at(epoch)
            set_lr(opt, lr)
            net.train()
            if full:
                batches = [None]
            else:
                perm = torch.randperm(n, generator=gen)
                batches = list(torch.tensor_split(perm, max(1, n // cfg.batch_size)))
            if graphed is not None:
                # One host-to-device copy of the permutation per epoch; each step copies its slice
                # into the graph's index buffer on the device.
                graphed.acc.zero_()
                for batch in (batches if full else perm.to(dev).tensor_split(len(batches))):
                    graphed(batch)
                sse_epoch = graphed.acc
            else:
                sse_epoch = torch.zeros((), dtype=torch.float64, device=dev)
                for batch in batches:
                    if batch is None and ctx is None:
                        x, y, size = coords, values, n
                    else:
                        idx = torch.arange(n) if batch is None else batch
                        size = idx.numel()
                        local = ddp.shard(idx, ctx).to(dev)
                        x, y = coords[local], values[local]
                    sse_epoch += step(x, y, size).double()
            ddp.all_reduce_sum(sse_epoch, ctx)
            epoch_loss = float(sse_epoch) / (n * c)
            guard.check(epoch_loss, epoch + 1)
            now = elapsed + time.perf_counter() - t0
            history["epoch"].append(epoch + 1)
            history["loss"].append(epoch_loss)
            history["lr"].append(lr)
            history["seconds"].append(now)
            bar.update(epoch_loss)
            if clock.due(epoch + 1, cfg.epochs, now):
                save(epoch + 1, now)
                ddp.barrier(ctx)
            log.debug("epoch %d loss %.6g lr %.3g", epoch + 1, epoch_loss, lr)
    finally:
        bar.close()
    if graphed is not None:
        step_mode = graphed.mode
        opt.zero_grad(set_to_none=True)  # the gradients live in the graph's memory pool: release both
        del graphed
    seconds = elapsed + time.perf_counter() - t0
    if ctx is not None:  # the caller's model gets the weights trained in the synchronised copy
        model.load_state_dict(inner.state_dict())
    if cfg.recompute_batchnorm:
        # Every rank holds all coordinates, so each computes the same exact statistics locally.
        recompute_batchnorm(model, coords, batch_size=cfg.eval_batch_size)
    metrics = evaluate(model, data, batch_size=cfg.eval_batch_size)
    eval_metrics = None if eval_data is None else evaluate(model, eval_data, batch_size=cfg.eval_batch_size)
    if ctx is not None:
        inner.load_state_dict(model.state_dict())  # the checkpoint holds the recomputed statistics too
    save(cfg.epochs, seconds, {"train": metrics, "eval": eval_metrics})
    ddp.barrier(ctx)
    # The fitted model leaves in eval mode: a later plain forward in train mode would move the
    # BatchNorm running statistics away from the exact ones just computed.
    model.eval()
    where = None if checkpoint_dir is None else str(Path(checkpoint_dir) / ckpt_io.INDEX)
    return FitResult(model=model, history=history, metrics=metrics, eval_metrics=eval_metrics, params=n_params,
                     seconds=seconds, epochs=cfg.epochs, device=str(dev), world_size=world, config=cfg,
                     checkpoint=where, info=dict(info), step_mode=step_mode)


class _Saved:
    """What a checkpoint stores of the optimiser: its state in the eager form (see
    :func:`.cuda_graph.checkpoint_state`)."""

    def __init__(self, opt):
        self.opt = opt

    def state_dict(self):
        return checkpoint_state(self.opt)


def _graphed_steps(cfg: FitConfig, model, dev, ctx, n: int, full: bool, opt, coords, values, step):
    """``(GraphedSteps or None, step mode)``: ``None`` trains eagerly (the reason logged on CUDA,
    raised for ``cuda_graph=True``)."""
    if cfg.cuda_graph is False:
        return None, "eager (cuda_graph=False)"
    blockers = graph_blockers(model, dev, ctx, n, None if full else cfg.batch_size)
    if blockers:
        if cfg.cuda_graph is True:
            raise ValueError(f"cuda_graph=True, but this training step cannot be replayed from a CUDA graph: "
                             f"{'; '.join(blockers)}. Pass cuda_graph='auto' (graph where it can, eager elsewhere) "
                             f"or cuda_graph=False")
        if dev.type == "cuda":  # on the CPU eager is simply the path, nothing to report
            log.info("qlite.fit: training eagerly: %s", "; ".join(blockers))
        return None, f"eager ({'; '.join(blockers)})"
    make_capturable(opt, dev)
    batch = None if full else n // max(1, n // cfg.batch_size)

    def step_on(idx):
        if idx is None:
            return step(coords, values, n)
        return step(coords[idx], values[idx], batch)

    graphed = GraphedSteps(step_on, opt, dev, batch=batch, strict=cfg.cuda_graph is True)
    return graphed, graphed.mode
