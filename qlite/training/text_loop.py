"""Causal language-model training on :class:`~qlite.data.TextData`: what ``qlite.fit(model, text)`` runs.

The loss is the next-token cross-entropy inside each window (``seqlen - 1`` predictions per window,
no padding anywhere: every window is full), averaged over the tokens of the global batch. The
reported figures use the same formula as :func:`qlite.classical.evaluation.perplexity`:
``ppl = exp(sum NLL / n_tokens)`` over every next-token prediction of the validation (``metrics``)
and test (``eval_metrics``) windows, ``bits_per_token = mean NLL / ln 2``.

Steps: each epoch visits the training windows in a permutation drawn from a generator seeded with
``(seed, epoch)``, ``batch_size`` windows per optimiser step (AdamW on the parameters that require
gradients; a frozen base stays frozen). Because the permutation of any epoch can be recomputed, a
checkpoint after any step resumes exactly (CPU: bit for bit).

Checkpoints: when some parameters are frozen (an adapter on a base model), only the trainable
parameters and the buffers are stored, with a SHA-256 fingerprint of the frozen parameters; a resume
onto another base is refused.

Under ``torchrun`` the windows of each step are sharded over the ranks (``DistributedDataParallel``);
each rank's loss is ``W * (its NLL sum) / (tokens in the global batch)``, so DDP's gradient average
is the gradient of the global mean.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data_text import CharTokenizer, TextData
from ..models import count_parameters
from ..runtime import tune_cpu_allocator
from . import checkpoint as ckpt_io
from . import distributed as ddp
from .common import (
    DivergenceGuard,
    SaveClock,
    build_config,
    check_schedule_extension,
    check_writable,
    check_info,
    frozen_fingerprint,
    has_frozen_parameters,
    open_checkpoint,
    restore_rng,
    rng_state,
    setup_device,
    trainable_state,
)
from .config import FitConfig, FitResult
from .device import Progress, progress_enabled

log = logging.getLogger(__name__)


def _logits(model: nn.Module, x: torch.Tensor, kwargs: dict) -> torch.Tensor:
    from ..classical.calibration import output_logits

    return output_logits(model(x, **kwargs))


def _forward_kwargs(model: nn.Module) -> dict:
    """Hugging Face models: no KV cache while training or scoring (it would only cost memory)."""
    cfg = getattr(model, "config", None)
    return {"use_cache": False} if cfg is not None and hasattr(cfg, "use_cache") else {}


def _nll_sum(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum of next-token NLLs of windows ``x (B, T)`` given ``logits (B, T, V)``: positions
    ``0..T-2`` predict tokens ``1..T-1`` (float32 for the softmax)."""
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, v), x[:, 1:].reshape(-1), reduction="sum")


def model_vocab_size(model: nn.Module, data: TextData, kwargs: dict | None = None) -> int:
    """The model's vocabulary, checked against the data's tokenizer before any training.

    Reads the input embedding (Hugging Face ``get_input_embeddings``) and the logits of one short
    forward (eval mode, no gradients). Raises ``ValueError`` when they cannot hold the tokenizer's
    ids, or when a model for a character tokenizer has another vocabulary size (a Hugging Face
    model may pad its vocabulary beyond the tokenizer's).
    """
    kwargs = _forward_kwargs(model) if kwargs is None else kwargs
    fix = (f"build the model with vocab_size={data.vocab_size} (the tokenizer's)" if isinstance(data.tokenizer, CharTokenizer)
           else "use the tokenizer that belongs to the model")
    get_emb = getattr(model, "get_input_embeddings", None)
    emb = get_emb() if callable(get_emb) else None
    if isinstance(emb, nn.Embedding) and emb.num_embeddings < data.vocab_size:
        raise ValueError(f"the model embeds {emb.num_embeddings} tokens but the tokenizer ({data.meta.get('tokenizer')}) "
                         f"has {data.vocab_size}; {fix}")
    sample = next((getattr(data, s) for s in ("train", "val", "test") if getattr(data, s).shape[0]), None)
    x = sample[:1, : min(data.seqlen, 8)]
    dev = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = _logits(model, x.to(dev), kwargs)
    except (IndexError, RuntimeError) as err:
        raise ValueError(f"the model failed on token ids {tuple(x.shape)} (a language model maps int64 ids (B, T) to "
                         f"logits (B, T, V), V >= the tokenizer's {data.vocab_size}): {err}; {fix}") from err
    finally:
        model.train(was_training)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(x.shape):
        raise ValueError(f"a language model must return logits (batch, tokens, vocabulary) = ({x.shape[0]}, {x.shape[1]}, V) "
                         f"for windows {tuple(x.shape)}, got {tuple(getattr(logits, 'shape', ()))}")
    v = logits.shape[-1]
    if v < data.vocab_size or (v != data.vocab_size and isinstance(data.tokenizer, CharTokenizer)):
        raise ValueError(f"the model's vocabulary ({v} logits) does not match the tokenizer's {data.vocab_size} ids "
                         f"({data.meta.get('tokenizer')}); {fix}")
    if v != data.vocab_size:
        log.info("the model's %d logits pad the tokenizer's %d ids", v, data.vocab_size)
    return v


@torch.no_grad()
def score_windows(model: nn.Module, windows: torch.Tensor, *, batch_size: int = 8, ctx=None,
                  kwargs: dict | None = None) -> dict | None:
    """Perplexity of ``windows (N, T)``: ``perplexity``, ``nll`` (nats per token),
    ``bits_per_token``, ``n_tokens`` scored (``N (T - 1)``) and ``n_windows``; ``None`` for no
    windows. The same formula as :func:`qlite.classical.evaluation.perplexity` on the flattened
    windows. Under ``torchrun`` the windows are sharded over the ranks and the sums all-reduced.
    The model's ``training`` flag is restored."""
    if windows.shape[0] == 0:
        return None
    kwargs = _forward_kwargs(model) if kwargs is None else kwargs
    dev = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    local = windows if ctx is None else torch.tensor_split(windows, ctx.world_size)[ctx.rank]
    total = torch.zeros(2, dtype=torch.float64, device=dev)  # (NLL sum, tokens)
    was_training = model.training
    model.eval()
    try:
        for chunk in local.split(batch_size):
            x = chunk.to(dev)
            total[0] += _nll_sum(_logits(model, x, kwargs), x).double()
            total[1] += x[:, 1:].numel()
    finally:
        model.train(was_training)
    ddp.all_reduce_sum(total, ctx)
    nll = float(total[0] / total[1])
    return {"perplexity": math.exp(nll), "nll": nll, "bits_per_token": nll / math.log(2), "n_tokens": int(total[1]),
            "n_windows": int(windows.shape[0])}


def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of the training windows in ``epoch``: recomputable from (seed, epoch) alone."""
    return torch.randperm(n, generator=torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (1 << 63)))


def fit_text(model: nn.Module, data: TextData, config: FitConfig | None = None, *, device="auto", checkpoint_dir=None,
             resume: bool = False, info: dict | None = None, tune_allocator: bool = False, **overrides) -> FitResult:
    """Train ``model`` as a causal language model on ``data`` (what ``qlite.fit(model, text)`` calls).

    Args:
        model: a Hugging Face causal LM (its output has ``.logits``) or any module mapping token ids
            ``(B, T)`` to logits ``(B, T, V)``; trained in place.
        data: a :class:`~qlite.data.TextData`.
        config, overrides: a :class:`FitConfig`; ``batch_size`` (windows per step) is required;
            ``max_steps`` (total steps) or ``epochs`` (passes over the training windows);
            ``eval_every`` (steps between validation scores); ``checkpoint_every`` (steps);
            ``eval_batch_size`` (windows per scoring forward, default ``batch_size``).
        device, checkpoint_dir, resume, info, tune_allocator: as for :func:`qlite.fit`.

    Returns:
        A :class:`FitResult`: ``metrics`` on the validation windows, ``eval_metrics`` on the test
        windows (see :func:`score_windows`), ``history`` per step (``step``, ``loss``, ``lr``,
        ``seconds``) and per evaluation (``eval_step``, ``val_nll``, ``val_perplexity``), ``steps``.

    Raises:
        ValueError: no training windows, no ``batch_size``, a model whose vocabulary does not
            match the tokenizer or that does not return ``(B, T, V)`` logits, a checkpoint of
            another model, base or text, fewer windows per step than processes.
        FloatingPointError: the loss became nan or inf (the message gives the step; the last
            checkpoint written stays as it was).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(data, TextData):
        raise TypeError(f"data must be a qlite.data.TextData (from qlite.data.text), got {type(data).__name__}")
    check_info(info)
    if data.train.shape[0] == 0:
        raise ValueError(f"the text has no training windows ({data.describe()['windows']}); give its split a "
                         "training fraction, e.g. qlite.data.text(..., split=(0.81, 0.09, 0.1))")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("no parameter of the model requires a gradient: nothing to train")
    frozen = has_frozen_parameters(model)
    state = trainable_state(model) if frozen else None
    checkpoint = open_checkpoint(model, checkpoint_dir, resume, fingerprint=data.fingerprint(),
                                 described=data.describe(), state=state)
    cfg = build_config(config, overrides, checkpoint.info["config"] if checkpoint else None)
    if cfg.batch_size is None:
        raise ValueError("text training needs batch_size= (windows per optimiser step), e.g. batch_size=8")
    if cfg.cuda_graph is True:
        raise ValueError("cuda_graph=True applies to signal fits; text runs train eagerly (pass cuda_graph='auto' "
                         "or False)")
    n = data.train.shape[0]
    per_epoch = max(1, n // cfg.batch_size)
    total = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * per_epoch
    base_fp = frozen_fingerprint(model) if frozen else None
    if checkpoint is not None:
        done = int(checkpoint.info["step"])
        if done > total:
            raise ValueError(f"the checkpoint is already at step {done}, beyond the {total} steps asked for; "
                             f"ask for at least max_steps={done}")
        check_schedule_extension(checkpoint.info["config"], cfg, int(checkpoint.info.get("total_steps", total)), total,
                                 "step")
        if checkpoint.info.get("base_fingerprint") != base_fp:
            raise ValueError(f"the checkpoint in {str(checkpoint_dir)!r} was trained on another frozen base model "
                             f"(fingerprint {str(checkpoint.info.get('base_fingerprint'))[:12]}, this model's "
                             f"{str(base_fp)[:12]}); load the same base weights to resume")
    check_writable(checkpoint_dir)
    dev, ctx = setup_device(device, cfg)
    if tune_allocator and dev.type == "cpu":
        tune_cpu_allocator()
    world = 1 if ctx is None else ctx.world_size
    if min(cfg.batch_size, n) < world:
        raise ValueError(f"{world} processes need at least {world} windows per step; got {min(cfg.batch_size, n)}")
    model.to(dev)
    kwargs = _forward_kwargs(model)
    model_vocab_size(model, data, kwargs)
    return _train(model, data, cfg, dev, ctx, checkpoint, checkpoint_dir, info or {}, total, per_epoch, state is not None,
                  base_fp, kwargs)


def _train(model, data: TextData, cfg: FitConfig, dev, ctx, checkpoint, checkpoint_dir, info, total, per_epoch,
           partial: bool, base_fp, kwargs) -> FitResult:
    main = ctx is None or ctx.is_main
    world = 1 if ctx is None else ctx.world_size
    history: dict[str, list] = {"step": [], "loss": [], "lr": [], "seconds": [], "eval_step": [], "val_nll": [],
                                "val_perplexity": []}
    start, elapsed = 0, 0.0
    if checkpoint is not None:
        # strict=False only for the frozen parameters a partial checkpoint leaves out (checked above)
        model.load_state_dict(checkpoint.model_state, strict=not partial)
        restore_rng(checkpoint.rng, None, dev)
        history = {k: list(v) for k, v in checkpoint.info["history"].items()}
        start, elapsed = int(checkpoint.info["step"]), float(checkpoint.info["seconds"])
    net = ddp.wrap(model, ctx, dev) if ctx is not None else model
    inner = net.module if ctx is not None else model
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=cfg.lr, betas=cfg.betas,
                            weight_decay=cfg.weight_decay)
    if checkpoint is not None and checkpoint.optimizer_state is not None:
        opt.load_state_dict(checkpoint.optimizer_state)
    n, seqlen = data.train.shape
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    n_params = count_parameters(model)
    record = {"data": data.describe(), "data_fingerprint": data.fingerprint(), "params": n_params,
              "model_repr": ckpt_io.model_signature(model), "device": str(dev), "world_size": world, "info": info,
              "base_fingerprint": base_fp, "adapter_only": partial, "total_steps": total}

    def save(step_done: int, seconds: float, final_metrics=None):
        if checkpoint_dir is None or not main:
            return
        ckpt_io.save_checkpoint(checkpoint_dir, epoch=step_done, model=inner, optimizer=opt, rng=rng_state(None, dev),
                                state=trainable_state(inner) if partial else None,
                                info={"config": cfg.to_dict(), "history": history, "seconds": seconds, "step": step_done,
                                      "metrics": final_metrics, **record})

    def validate(step_done: int):
        scored = score_windows(inner, data.val, batch_size=eval_bs, ctx=ctx, kwargs=kwargs)
        if scored is not None and history["eval_step"][-1:] != [step_done]:
            history["eval_step"].append(step_done)
            history["val_nll"].append(scored["nll"])
            history["val_perplexity"].append(scored["perplexity"])
        return scored

    bar = Progress(total, start, main and progress_enabled(cfg.progress), unit="step")
    guard = DivergenceGuard(cfg, total, "step", history["loss"])
    clock = SaveClock(cfg, ctx, dev, elapsed)
    t0 = time.perf_counter()
    order, order_epoch = None, -1
    try:
        for step in range(start, total):
            epoch, i = divmod(step, per_epoch)
            if epoch != order_epoch:
                order, order_epoch = _epoch_order(n, cfg.seed, epoch), epoch
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x = data.train[ddp.shard(idx, ctx)].to(dev)  # (b, seqlen) windows of this rank
            lr = cfg.lr_at(step, total)
            for group in opt.param_groups:
                group["lr"] = lr
            net.train()
            nll = _nll_sum(_logits(net, x, kwargs), x)
            count = idx.numel() * (seqlen - 1)  # next-token predictions in the global batch
            step_nll = nll.detach().double().reshape(1)
            ddp.all_reduce_sum(step_nll, ctx)
            step_loss = float(step_nll) / count
            guard.check(step_loss, step + 1)  # before the update: the weights and the last checkpoint stay as they were
            opt.zero_grad(set_to_none=True)
            (nll * (world / count)).backward()
            opt.step()
            now = elapsed + time.perf_counter() - t0
            history["step"].append(step + 1)
            history["loss"].append(step_loss)
            history["lr"].append(lr)
            history["seconds"].append(now)
            bar.update(step_loss)
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < total:
                validate(step + 1)
            if clock.due(step + 1, total, now):
                save(step + 1, now)
                ddp.barrier(ctx)
            log.debug("step %d loss %.6g lr %.3g", step + 1, step_loss, lr)
    finally:
        bar.close()
    seconds = elapsed + time.perf_counter() - t0
    if ctx is not None:  # the caller's model gets the weights trained in the synchronised copy
        model.load_state_dict(inner.state_dict())
    metrics = validate(total)
    eval_metrics = score_windows(inner, data.test, batch_size=eval_bs, ctx=ctx, kwargs=kwargs)
    save(total, seconds, {"val": metrics, "test": eval_metrics})
    ddp.barrier(ctx)
    model.eval()
    where = None if checkpoint_dir is None else str(Path(checkpoint_dir) / ckpt_io.INDEX)
    return FitResult(model=model, history=history, metrics=metrics, eval_metrics=eval_metrics, params=n_params,
                     seconds=seconds, epochs=math.ceil(total / per_epoch), device=str(dev), world_size=world,
                     config=cfg, checkpoint=where, info=dict(info), steps=total)
