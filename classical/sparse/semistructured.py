"""PyTorch's 2:4 semi-structured sparse kernels (cuSPARSELt / CUTLASS, NVIDIA Ampere and later).

:func:`to_semi_structured` turns the 2:4 :class:`SparseLinear` layers of a model into ``nn.Linear``
layers whose weight is a ``SparseSemiStructuredTensor`` (the compressed values plus metadata), so the
forward runs the real sparse matmul. :func:`benchmark_semi_structured_mlp` times a SwiGLU MLP
(``gate``/``up``: hidden -> intermediate, ``down``: intermediate -> hidden; SmolLM2-135M's shapes by
default) dense against 2:4, with random weights, so it needs no model file. Both need CUDA and
float16 / bfloat16 (the kernels' types); on a CPU they raise with the reason.
"""

from __future__ import annotations

import copy
import statistics

import torch
import torch.nn.functional as F
from torch import nn

from .masks import NMPattern, nm_mask
from .modules import SparseLinear


def _check_cuda(device) -> torch.device:
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        raise RuntimeError(f"2:4 semi-structured kernels need a CUDA device (got {device}); run on a GPU")
    major, _ = torch.cuda.get_device_capability(device)
    if major < 8:
        raise RuntimeError(f"2:4 semi-structured kernels need compute capability >= 8.0, got {major}.x")
    return device


def to_semi_structured(model: nn.Module, *, dtype: torch.dtype = torch.float16, device="cuda", inplace: bool = False) -> nn.Module:
    """Replace every 2:4 :class:`SparseLinear` of ``model`` by an ``nn.Linear`` holding a
    ``SparseSemiStructuredTensor`` weight on ``device`` in ``dtype`` (the rest of the model is moved
    there too). ``model`` is copied unless ``inplace``."""
    from torch.sparse import to_sparse_semi_structured

    device = _check_cuda(device)
    m = model if inplace else copy.deepcopy(model)
    m.to(device=device, dtype=dtype)
    todo = [(n, mod) for n, mod in m.named_modules() if isinstance(mod, SparseLinear) and mod.pattern == "2:4"]
    if not todo:
        raise ValueError("the model has no 2:4 SparseLinear layers; prune it with a pattern='2:4' config first")
    for name, mod in todo:
        lin = nn.Linear(mod.in_features, mod.out_features, bias=mod.bias is not None, device=device, dtype=dtype)
        with torch.no_grad():
            if mod.bias is not None:
                lin.bias.copy_(mod.bias)
        lin.weight = nn.Parameter(to_sparse_semi_structured(mod.effective_weight().to(device, dtype)), requires_grad=False)
        m.set_submodule(name, lin)
    return m


def _time_ms(fn, repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


@torch.no_grad()
def benchmark_semi_structured_mlp(
    *,
    hidden: int = 576,
    intermediate: int = 1536,
    tokens: tuple[int, ...] = (1, 16, 128, 512, 2048, 8192),
    dtype: torch.dtype = torch.float16,
    device="cuda",
    repeats: int = 50,
    seed: int = 0,
) -> list[dict]:
    """Median time of the three MLP matmuls (and of the whole SwiGLU MLP) dense vs 2:4 sparse.

    Weights are random (``torch.randn / sqrt(fan_in)``, generator seeded by ``seed``) and pruned to 2:4
    by magnitude; inputs are ``(tokens, hidden)``. Returns one dict per token count with
    ``dense_ms``, ``sparse_ms``, ``speedup`` for ``mlp`` and for each projection, and the max abs
    difference between the sparse kernel and a dense matmul of the same pruned weights.
    """
    from torch.sparse import to_sparse_semi_structured

    device = _check_cuda(device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    shapes = {"gate": (intermediate, hidden), "up": (intermediate, hidden), "down": (hidden, intermediate)}
    dense, sparse = {}, {}
    for k, (o, i) in shapes.items():
        w = torch.randn(o, i, generator=g) / i**0.5
        w = w * nm_mask(w.abs(), NMPattern(2, 4))
        dense[k] = w.to(device, dtype)
        sparse[k] = to_sparse_semi_structured(dense[k])

    def mlp(W, x):
        return F.linear(F.silu(F.linear(x, W["gate"])) * F.linear(x, W["up"]), W["down"])

    rows = []
    for t in tokens:
        x = torch.randn(t, hidden, generator=g).to(device, dtype)
        h = torch.randn(t, intermediate, generator=g).to(device, dtype)
        row = {"hidden": hidden, "intermediate": intermediate, "tokens": t, "dtype": str(dtype).replace("torch.", "")}
        for k in shapes:
            inp = h if k == "down" else x
            d = _time_ms(lambda: F.linear(inp, dense[k]), repeats)
            s = _time_ms(lambda: F.linear(inp, sparse[k]), repeats)
            row[k] = {"dense_ms": d, "sparse_ms": s, "speedup": d / s}
        d = _time_ms(lambda: mlp(dense, x), repeats)
        s = _time_ms(lambda: mlp(sparse, x), repeats)
        row["mlp"] = {"dense_ms": d, "sparse_ms": s, "speedup": d / s}
        row["max_abs_diff"] = float((mlp(dense, x).float() - mlp(sparse, x).float()).abs().max())
        rows.append(row)
    return rows
