"""Exact BatchNorm statistics on the training coordinates.

Why: QIREN normalises every hybrid layer's pre-activations with BatchNorm. Trained full batch, the
model the optimiser actually fits is the *train-mode* function, which normalises with the batch
statistics of all training points. PyTorch's running averages (momentum 0.1) lag those statistics
while the weights move, and they store the *unbiased* variance whereas training normalises with the
population variance. Measured on this project: a QIREN whose training loss reached 34 dB PSNR
after 150 epochs scored 24 dB in eval mode. Recomputing the statistics exactly on the training
coordinates makes eval mode reproduce the fitted function (to float rounding) and keeps
``predict`` on new coordinates (super-resolution) deterministic and batch independent.

The statistics of a BatchNorm layer depend on the layers before it, so they are computed one
layer at a time in execution order: each pass runs the model in eval mode, with the layers fixed so
far already exact, and accumulates the inputs of the first layer not yet fixed (float64 sums, in
chunks if asked). ``L`` BatchNorm layers cost ``L`` forward passes without gradients.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """BatchNorm modules that track running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, coords: torch.Tensor, *, batch_size: int | None = None) -> int:
    """Set every BatchNorm's running mean / variance to the exact statistics that train mode uses
    on ``coords`` (mean and population variance, per channel, over all points).

    After this, ``model.eval()(coords)`` equals the full-batch ``model.train()(coords)`` up to
    float rounding. The model's ``training`` flag is restored.

    Args:
        model: any module; layers without BatchNorm are untouched.
        coords: ``(N, d)`` training coordinates, on the model's device.
        batch_size: process ``coords`` in chunks of this many points (same result).

    Returns:
        The number of BatchNorm layers updated.
    """
    pending = batchnorm_layers(model)
    if not pending:
        return 0
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be positive or None, got {batch_size!r}")
    was_training = model.training
    model.eval()
    chunks = coords.split(batch_size) if batch_size else (coords,)
    updated = 0
    try:
        while pending:
            sums: dict[int, list] = {}
            order: list[_BatchNorm] = []

            def make_hook(bn, sums=sums, order=order):  # this pass's accumulators
                def hook(module, args):
                    (x,) = args[:1]
                    dims = [0] + list(range(2, x.dim()))  # all but the channel dimension
                    xd = x.detach().double()
                    acc = sums.setdefault(id(module), [0, 0.0, 0.0])
                    if not acc[0]:
                        order.append(module)
                    acc[0] += x.numel() // x.shape[1]
                    acc[1] = acc[1] + xd.sum(dims)
                    acc[2] = acc[2] + (xd * xd).sum(dims)
                return hook

            handles = [bn.register_forward_pre_hook(make_hook(bn)) for bn in pending]
            try:
                for chunk in chunks:
                    model(chunk)
            finally:
                for h in handles:
                    h.remove()
            if not order:
                raise ValueError("the model's BatchNorm layers are never called in its forward pass; "
                                 "cannot recompute their statistics")
            first = order[0]  # its inputs depend only on layers that are already exact
            n, s, ss = sums[id(first)]
            mean = s / n
            var = (ss / n - mean * mean).clamp_min(0)
            first.running_mean.copy_(mean.to(first.running_mean.dtype))
            first.running_var.copy_(var.to(first.running_var.dtype))
            pending = [bn for bn in pending if bn is not first]
            updated += 1
    finally:
        model.train(was_training)
    return updated
