""":func:`fit_many`: seeds and hyper-parameter settings of one architecture trained as one batched model.

A sweep of ``M`` runs of one small model spends most of its time in per-operation overhead:
``M`` separate :func:`qlite.fit` calls launch every kernel ``M`` times on tiny tensors. Here the
``M`` models' parameters and buffers are stacked and one skeleton runs them all under
``torch.func.vmap`` (see :mod:`.stacked`); one backward gives every model's gradient (the loss is
the sum of the models' losses, which are independent), and a stacked Adam step with per-model
``lr``, ``betas`` and ``weight_decay`` updates them. Every model sees exactly what its own
:func:`qlite.fit` would: its own shuffling generator (``seed``), learning-rate schedule and
divergence check, and at the end its own exact BatchNorm statistics and metrics, so the results
agree with separate fits to float rounding (tested in float64 to 1e-10).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ..data import Signal
from ..models import count_parameters
from . import distributed as ddp
from .batchnorm import recompute_batchnorm
from .common import DivergenceGuard, build_config, model_dtype, setup_device
from .config import FitConfig, FitResult
from .device import Progress, progress_enabled
from .loop import _as_signal, evaluate
from .stacked import adam_init, adam_step, check_same_architecture, skeleton, stack_state, unstack_state

log = logging.getLogger(__name__)

# FitConfig fields that may differ between the models of one call (each model keeps its own);
# every other field must agree, because the models step in lockstep.
PER_MODEL_FIELDS = frozenset({"lr", "schedule", "min_lr", "weight_decay", "betas", "seed", "divergence_factor",
                              "divergence_patience", "checkpoint_every", "checkpoint_seconds"})
_TEXT_ONLY = ("max_steps", "eval_every")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _runs(models, seeds, settings) -> tuple[list[nn.Module], list[dict]]:
    """The models and each one's FitConfig overrides, from the call's three forms."""
    if settings is not None:
        if isinstance(settings, (Mapping, FitConfig)) or not isinstance(settings, Sequence) or not settings:
            raise TypeError("settings must be a non-empty sequence of dicts of FitConfig overrides (one per setting), "
                            f"got {type(settings).__name__}")
        for s in settings:
            if not isinstance(s, Mapping):
                raise TypeError(f"each setting must be a dict of FitConfig overrides such as {{'lr': 0.01}}, got {s!r}")
    if seeds is not None:
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
            raise ValueError(f"seeds must be a non-empty sequence of ints, got {seeds!r}")
        for s in seeds:
            if not _is_int(s):
                raise ValueError(f"seed must be an int, got {s!r}")
    if callable(models) and not isinstance(models, nn.Module):
        if seeds is None:
            raise ValueError("with a model factory, pass seeds=[...]: the factory builds one model per seed")
        built, overrides = [], []
        for seed in seeds:
            for s in settings or [{}]:
                m = models(seed)
                if not isinstance(m, nn.Module):
                    raise TypeError(f"the model factory returned {type(m).__name__}, not an nn.Module")
                built.append(m)
                overrides.append({"seed": seed, **s})
        return built, overrides
    if isinstance(models, nn.Module) or not isinstance(models, Sequence) or not models:
        raise TypeError("models must be a non-empty sequence of nn.Module or a factory seed -> nn.Module, "
                        f"got {type(models).__name__}")
    for i, m in enumerate(models):
        if not isinstance(m, nn.Module):
            raise TypeError(f"models[{i}] must be a torch.nn.Module, got {type(m).__name__}")
    for name, given in (("seeds", seeds), ("settings", settings)):
        if given is not None and len(given) != len(models):
            raise ValueError(f"{name} has {len(given)} entries for {len(models)} models; give one per model")
    overrides = [dict(settings[i]) if settings is not None else {} for i in range(len(models))]
    if seeds is not None:
        for o, s in zip(overrides, seeds):
            o["seed"] = s
    return list(models), overrides


def _lockstep(configs: list[FitConfig]) -> None:
    first = configs[0]
    for name in FitConfig.__dataclass_fields__:
        if name in PER_MODEL_FIELDS:
            continue
        for i, c in enumerate(configs[1:], 1):
            if getattr(c, name) != getattr(first, name):
                raise ValueError(f"fit_many trains its models in lockstep, so {name} must be the same for every model; "
                                 f"got {getattr(first, name)!r} (models[0]) and {getattr(c, name)!r} (models[{i}]); "
                                 "fit them in separate calls")
    for name in _TEXT_ONLY:
        if getattr(first, name) not in (None, 0):
            raise ValueError(f"{name} applies to text runs only; fit_many trains signals")


def fit_many(models: Sequence[nn.Module] | Callable[[int], nn.Module], data, config: FitConfig | None = None, *,
             seeds: Sequence[int] | None = None, settings: Sequence[Mapping] | None = None, eval_data=None,
             device="auto", **overrides) -> list[FitResult]:
    """Train several models of one architecture at once, each as :func:`qlite.fit` would.

    The models (seeds, learning rates, ...) run as one batched model: parameters and buffers
    (BatchNorm statistics included) stacked on a leading model dimension, one skeleton under
    ``torch.func.vmap``, one backward, a stacked Adam step equal to ``torch.optim.Adam``'s per model
    (see :mod:`qlite.training.stacked`). Quantum layers run their simulator once per model inside
    that batch (its adjoint backward has no batching rule); everything classical is batched.

    Args:
        models: a sequence of modules of one architecture (trained in place), or a factory
            ``seed -> nn.Module`` (then ``seeds`` is required).
        data: a :class:`~qlite.data.Signal` (or a ``(coords, values)`` pair); text is not batched.
        config: a :class:`FitConfig` shared by all models; keyword ``overrides`` replace its fields
            for all of them.
        seeds: with a factory, the seeds to build (and shuffle) with; with a sequence of models,
            each model's ``FitConfig.seed`` (one per model).
        settings: per-run FitConfig overrides, e.g. ``[{"lr": 0.01}, {"lr": 0.03}]``. With a factory
            the runs are every seed with every setting, seed-major (``seeds x settings``); with a
            sequence of models, one setting per model. Fields that may differ between runs:
            ``lr``, ``schedule``, ``min_lr``, ``betas``, ``weight_decay``, ``seed`` and the
            divergence check; the others (``epochs``, ``batch_size``, ...) must agree.
        eval_data: another signal to report ``eval_metrics`` on.
        device: as in :func:`qlite.fit`.

    Returns:
        One :class:`FitResult` per run, in order, with the fields of :func:`qlite.fit`'s
        (``seconds`` and ``history['seconds']`` are the batched run's wall time, shared by all
        runs; ``info['batched_models']`` says how many shared it).

    Raises:
        TypeError: models, data or settings of the wrong type, unknown options.
        ValueError: models of different architectures (the message names the first difference:
            a layer shape, a qubit count, a module type, a dtype, an attribute such as
            ``omega_0``), settings that cannot run in lockstep, bad options (as :func:`qlite.fit`
            refuses them), a model whose output does not match the values.
        FloatingPointError: a run's loss became nan or inf or diverged (the message names it).

    Example:
        >>> from qlite import data
        >>> from qlite.models import MLP
        >>> runs = fit_many(lambda s: MLP(1, 1, 8, generator=torch.Generator().manual_seed(s)),
        ...                 data.function(lambda x: x[:, 0] ** 2, 32), seeds=[0, 1],
        ...                 settings=[{"lr": 0.01}, {"lr": 0.03}], epochs=5, progress=False)
        >>> [(r.config.seed, r.config.lr) for r in runs]
        [(0, 0.01), (0, 0.03), (1, 0.01), (1, 0.03)]
    """
    from ..data_text import TextData

    if isinstance(data, TextData):
        raise TypeError("fit_many trains signals; fit a TextData with qlite.fit, one model at a time")
    data = _as_signal(data)
    eval_data = None if eval_data is None else _as_signal(eval_data, "eval_data")
    if eval_data is not None and (eval_data.in_features, eval_data.out_features) != (data.in_features, data.out_features):
        raise ValueError(f"eval_data has {eval_data.in_features} coordinates and {eval_data.out_features} channels per "
                         f"point but data has {data.in_features} and {data.out_features}; pass a signal of the same kind")
    if ddp.launched_distributed():
        raise ValueError("fit_many runs in one process; under torchrun use qlite.fit (data parallel) per model")
    built, per_run = _runs(models, seeds, settings)
    configs = [build_config(config, {**overrides, **o}, None) for o in per_run]
    for name in ("batch_size", "eval_batch_size"):
        if getattr(configs[0], name) == 1:
            raise ValueError(f"{name} must be None (all points) or an int >= 2 (BatchNorm needs two points), got 1")
    _lockstep(configs)
    if configs[0].cuda_graph is True:
        raise ValueError("cuda_graph=True applies to qlite.fit; fit_many trains its batched model eagerly (pass "
                         "cuda_graph='auto' or False)")
    check_same_architecture(built)
    dev, _ = setup_device(device, configs[0])
    return _train_many(built, data, eval_data, configs, dev)


def _train_many(models: list[nn.Module], data: Signal, eval_data, configs: list[FitConfig], dev) -> list[FitResult]:
    M, cfg = len(models), configs[0]  # cfg: the lockstep fields
    for m in models:
        m.to(dev)
    net = skeleton(models[0])
    params, buffers = stack_state(models)
    names = [k for k, p in params.items() if p.requires_grad]
    trainable = [params[k] for k in names]
    opt = adam_init(trainable)
    betas = [c.betas for c in configs]
    decay = [c.weight_decay for c in configs]
    gens = [torch.Generator().manual_seed(c.seed) for c in configs]
    histories = [{"epoch": [], "loss": [], "lr": [], "seconds": []} for _ in configs]
    guards = [DivergenceGuard(c, c.epochs, "epoch", []) for c in configs]
    dtype = model_dtype(models[0])
    coords, values = data.coords.to(dev, dtype), data.values.to(dev, dtype)
    n, c = data.n_points, data.out_features
    full = cfg.batch_size is None or cfg.batch_size >= n

    def forward(p, b, x):
        return torch.func.functional_call(net, (p, b), (x,))

    shared = torch.func.vmap(forward, in_dims=(0, 0, None))  # full batch: one coordinate tensor for all
    own = torch.func.vmap(forward, in_dims=(0, 0, 0))  # mini-batches: each model's own permutation

    bar = Progress(cfg.epochs, 0, progress_enabled(cfg.progress), desc=f"fit_many x{M}")
    t0 = time.perf_counter()
    try:
        net.train()
        for epoch in range(cfg.epochs):
            lrs = [conf.lr_at(epoch) for conf in configs]
            if full:
                batches = [None]
            else:
                parts = [torch.tensor_split(torch.randperm(n, generator=g), max(1, n // cfg.batch_size)) for g in gens]
                batches = [torch.stack(b) for b in zip(*parts)]  # (M, batch) indices per step
            sse_epoch = torch.zeros(M, dtype=torch.float64, device=dev)
            for batch in batches:
                if batch is None:
                    x, y, size = coords, values, n
                    pred = shared(params, buffers, x)
                else:
                    idx = batch.to(dev)
                    x, y, size = coords[idx], values[idx], idx.shape[1]  # (M, batch, d), (M, batch, c)
                    pred = own(params, buffers, x)
                if pred.shape[1:] != y.shape[-2:]:
                    raise ValueError(f"the model outputs shape {tuple(pred.shape[1:])} for {x.shape[-2]} points but the "
                                     f"values have shape {tuple(y.shape[-2:])}; build it with out_features={c}")
                sse = ((pred - y) ** 2).sum(dim=(1, 2))  # (M,): the models are independent
                loss = sse.sum() * (1 / (size * c))  # the same factor as fit's (world = 1)
                grads = torch.autograd.grad(loss, trainable)
                adam_step(trainable, grads, opt, lr=lrs, betas=betas, weight_decay=decay)
                sse_epoch += sse.detach().double()
            losses = (sse_epoch / (n * c)).tolist()
            now = time.perf_counter() - t0
            for i, (loss_i, guard, hist) in enumerate(zip(losses, guards, histories)):
                try:
                    guard.check(loss_i, epoch + 1)
                except FloatingPointError as err:
                    raise FloatingPointError(f"run {i} of fit_many (seed={configs[i].seed}, lr={configs[i].lr}): {err}") from None
                hist["epoch"].append(epoch + 1)
                hist["loss"].append(loss_i)
                hist["lr"].append(lrs[i])
                hist["seconds"].append(now)
            bar.update(min(losses))
            log.debug("epoch %d losses %s", epoch + 1, losses)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    unstack_state(models, params, buffers)
    results = []
    for model, conf, hist in zip(models, configs, histories):
        # per model, exactly as fit ends: exact BatchNorm statistics, metrics, eval mode
        if conf.recompute_batchnorm:
            recompute_batchnorm(model, coords, batch_size=conf.eval_batch_size)
        metrics = evaluate(model, data, batch_size=conf.eval_batch_size)
        eval_metrics = None if eval_data is None else evaluate(model, eval_data, batch_size=conf.eval_batch_size)
        model.eval()
        results.append(FitResult(model=model, history=hist, metrics=metrics, eval_metrics=eval_metrics,
                                 params=count_parameters(model), seconds=seconds, epochs=conf.epochs, device=str(dev),
                                 world_size=1, config=conf, info={"batched_models": M}))
    return results
