"""Data parallelism with ``torch.distributed`` when :func:`qlite.fit` runs under ``torchrun``.

Every process loads the whole signal; each trains on its shard of every (full or mini-) batch. The
model is wrapped in ``DistributedDataParallel`` and its BatchNorm layers synchronised, so the
forward pass normalises with the statistics of the *global* batch and the run follows the same
trajectory as one process (up to float reduction order):

* CUDA (NCCL): ``torch.nn.SyncBatchNorm``.
* CPU (gloo): PyTorch's SyncBatchNorm refuses CPU tensors, so :class:`CPUSyncBatchNorm` computes the
  global mean and population variance with a differentiable all-reduce (:class:`_AllReduceSum`:
  the sum over ranks in the forward pass, the sum of the ranks' gradients in the backward pass).

When ``fit`` finds ``WORLD_SIZE > 1`` but no process group, it creates one from torchrun's
environment and leaves it up for later fits in the same process (it is destroyed at exit):
destroying and re-creating a group through torchrun's rendezvous store within one process can
deadlock (seen here: the second ``init_process_group`` of a process hung about one run in three).

Each rank's loss is ``W * (sum of its squared errors) / (points in the global batch * channels)``;
DDP averages gradients over the ``W`` ranks, which gives exactly the gradient of the global mean
squared error even when shards differ in size.
"""

from __future__ import annotations

import atexit
import copy
import inspect
import logging
import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the data-parallel group."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    created_group: bool  # fit initialised the process group (it stays up until the process exits)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_distributed() -> bool:
    """True under ``torchrun`` with more than one process (or inside an initialised group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_type: str) -> DistContext | None:
    """Join (or create, from torchrun's environment) the process group; ``None`` when single process."""
    import torch.distributed as dist

    if not launched_distributed():
        return None
    if not dist.is_available():  # pragma: no cover - builds without distributed support
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    created = False
    if not dist.is_initialized():
        for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise RuntimeError(f"WORLD_SIZE > 1 but {var} is not set; launch with torchrun")
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        atexit.register(_destroy_at_exit)
        created = True
    ctx = DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())),
                      str(dist.get_backend()), created)
    log.info("data parallel: rank %d of %d (%s)", ctx.rank, ctx.world_size, ctx.backend)
    return ctx


def _destroy_at_exit() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """``y = sum over ranks of x``; every rank's ``y`` depends on every ``x``, so the gradient of
    ``x`` is the sum over ranks of the gradients of ``y``."""

    @staticmethod
    def forward(ctx, x):
        import torch.distributed as dist

        y = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist

        g = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(g)
        return g


class CPUSyncBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the global batch across all ranks (works
    with gloo on CPU). Eval mode uses the running statistics like ``BatchNorm1d``."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        all_reduce = _AllReduceSum.apply
        self._check_input_dim(x)
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64, device=x.device)
        dist.all_reduce(count)
        n = count.to(x.dtype)
        mean = all_reduce(x.sum(dims)) / n  # (C,)
        centred = x - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / n  # population variance, as BatchNorm trains
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1)) if count.item() > 1 else var
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * unbiased.detach())
        return y


def convert_sync_batchnorm(model: nn.Module, device_type: str) -> nn.Module:
    """A deep copy of ``model`` with every BatchNorm replaced by its synchronised version (the
    caller's model is left as it is; state-dict keys are unchanged)."""
    model = copy.deepcopy(model)
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, _BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
            new = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats)
            with torch.no_grad():
                if module.affine:
                    new.weight, new.bias = module.weight, module.bias
            if module.track_running_stats:
                new.running_mean, new.running_var = module.running_mean, module.running_var
                new.num_batches_tracked = module.num_batches_tracked
            new.train(module.training)
            return new
        for name, child in module.named_children():
            module.add_module(name, convert(child))
        return module

    return convert(model)


def wrap(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """Synchronised-BatchNorm copy of ``model`` inside ``DistributedDataParallel``."""
    from torch.nn.parallel import DistributedDataParallel

    synced = convert_sync_batchnorm(model, device.type).to(device)
    ids = [device.index] if device.type == "cuda" else None
    # Buffers are identical on every rank (synchronised statistics), so no per-forward broadcast
    # (newer PyTorch spells this forward_sync_buffers, older ones broadcast_buffers).
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    return DistributedDataParallel(synced, device_ids=ids, **no_sync)


def all_reduce_sum(t: torch.Tensor, ctx: DistContext | None) -> torch.Tensor:
    if ctx is not None:
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


def barrier(ctx: DistContext | None) -> None:
    if ctx is not None:
        import torch.distributed as dist

        dist.barrier()


def shard(indices: torch.Tensor, ctx: DistContext | None) -> torch.Tensor:
    """This rank's contiguous part of ``indices`` (all of them when single process)."""
    if ctx is None:
        return indices
    return torch.tensor_split(indices, ctx.world_size)[ctx.rank]

