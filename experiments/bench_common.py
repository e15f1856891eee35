"""Benchmark helpers of the simulator studies: a training step (eager or CUDA graph), the machine's
ceilings, and the FLOP / byte floor of a model. Timing is :func:`qlite.timing.time_call`; machine
records and result files come from :mod:`study_io`."""

from __future__ import annotations

from typing import Callable

import torch

from qlite.simulators.cost import Cost, run_cost
from qlite.timing import time_call


def training_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 1e-2) -> Callable[[], None]:
    """A closure doing one full-batch step: forward, MSE, backward, Adam."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()

    return step


def graphed_training_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 1e-2,
                          warmup: int = 3) -> Callable[[], None]:
    """The same step captured once as a CUDA graph and replayed: no Python or launch overhead per
    step (static input tensors; Adam with ``capturable=True``)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, capturable=True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return graph.replay


def ceilings(device, dtype=torch.complex64) -> dict:
    """Measured matrix-product rate (FLOP/s, complex GEMM counted as 8 FLOPs per multiply-add) and
    copy bandwidth (bytes read + written per second) of this device."""
    device = torch.device(device)
    n = 4096 if device.type == "cuda" else 1024
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    t = time_call(lambda: a @ b, device, repeats=5, warmup=2)
    rate = 8.0 * n**3 / (t["ms"] * 1e-3)
    m = (1 << 28) if device.type == "cuda" else (1 << 25)  # bytes per buffer: 256 MiB GPU, 32 MiB CPU
    src = torch.randn(m // 4, device=device)
    dst = torch.empty_like(src)
    t = time_call(lambda: dst.copy_(src), device, repeats=10, warmup=2)
    bw = 2.0 * m / (t["ms"] * 1e-3)
    return {"gemm_flops_per_s": rate, "copy_bytes_per_s": bw, "gemm_size": n}


def quantum_model_cost(model: torch.nn.Module, batch: int) -> tuple[Cost, Cost]:
    """(forward, backward) cost of every native ``QuantumLayer`` in ``model`` for ``batch`` points."""
    from qlite.layers import QuantumLayer
    from qlite.simulators import NativeBackend

    fwd = bwd = Cost(0.0, 0.0)
    for layer in model.modules():
        if isinstance(layer, QuantumLayer) and isinstance(layer.backend, NativeBackend):
            p = layer.weights
            ops_list = layer.backend.plan(layer.circuit, device=p.device, dtype=p.dtype, batch=batch)
            item = 16 if p.dtype == torch.float64 else 8
            f, b = run_cost(ops_list, layer.n_qubits, batch, layer.out_features, item)
            fwd, bwd = fwd + f, bwd + b
    return fwd, bwd
