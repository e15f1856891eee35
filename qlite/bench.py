"""Benchmark helpers: timing a training step, the machine's ceilings, and the floor of a model.

Timing follows the usual method: warm up, synchronise the device around the timed region, repeat
and report the median (and the spread), so that run-time compilation and allocator growth stay out
of the figures.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from qlite.simulators.cost import Cost, run_cost


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device, repeats: int = 10, warmup: int = 2,
              max_seconds: float | None = None) -> dict:
    """Median / min / max milliseconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs.

    ``max_seconds`` stops early (after at least one timed run) when a case is slow.
    """
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1 (the median of no runs is undefined), got {repeats!r}")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(1e3 * (time.perf_counter() - t0))
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    return {"ms": statistics.median(times), "ms_min": min(times), "ms_max": max(times), "runs": len(times)}


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


def machine_info(device) -> dict:
    device = torch.device(device)
    info = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": _cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["card"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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


def write_results(out, stem: str, markdown: str, data: dict) -> Path:
    """Write ``<out>/<stem>.md`` and ``<out>/<stem>.json``; returns the Markdown path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(data, indent=1))
    path = out / f"{stem}.md"
    path.write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    return path
