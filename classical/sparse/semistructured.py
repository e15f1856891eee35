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


def _graphed(fn):
    """``fn`` captured once as a CUDA graph; returns the replay. Replaying removes the host-side cost of
    each call (PyTorch's cuSPARSELt path builds its matmul plan and descriptors on every call), so a
    graphed timing is the kernels' own."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g.replay


_KERNELS = ("cusparselt", "cutlass")


@torch.no_grad()
def benchmark_semi_structured_mlp(
    *,
    hidden: int = 576,
    intermediate: int = 1536,
    tokens: tuple[int, ...] = (1, 16, 128, 512, 2048, 8192),
    dtype: torch.dtype = torch.float16,
    device="cuda",
    kernels: tuple[str, ...] = _KERNELS,
    repeats: int = 50,
    seed: int = 0,
) -> list[dict]:
    """Median time of the three MLP matmuls (and of the whole SwiGLU MLP) dense vs 2:4 sparse, per
    sparse kernel family (``"cusparselt"``, ``"cutlass"``: PyTorch's two 2:4 backends).

    Weights are random (``torch.randn / sqrt(fan_in)``, generator seeded by ``seed``) and pruned to 2:4
    by magnitude; inputs are ``(tokens, hidden)``. Returns one dict per (token count, kernel) with
    ``dense_ms``, ``sparse_ms``, ``speedup`` for each projection and for ``mlp`` (eager calls, host
    overhead included, as a model would run them) and ``mlp_graph`` (the MLP replayed as a CUDA graph:
    kernel time only), and the max abs difference between the sparse MLP and the dense MLP of the same
    pruned weights. A kernel family that fails on this GPU gives a row with ``error``.
    """
    from torch.sparse import SparseSemiStructuredTensorCUSPARSELT, SparseSemiStructuredTensorCUTLASS

    device = _check_cuda(device)
    unknown = set(kernels) - set(_KERNELS)
    if unknown:
        raise ValueError(f"kernels must be among {_KERNELS}, got {sorted(unknown)}")
    make = {"cusparselt": SparseSemiStructuredTensorCUSPARSELT.from_dense,
            "cutlass": SparseSemiStructuredTensorCUTLASS.from_dense}
    g = torch.Generator(device="cpu").manual_seed(seed)
    shapes = {"gate": (intermediate, hidden), "up": (intermediate, hidden), "down": (hidden, intermediate)}
    dense = {}
    for k, (o, i) in shapes.items():
        w = torch.randn(o, i, generator=g) / i**0.5
        dense[k] = (w * nm_mask(w.abs(), NMPattern(2, 4))).to(device, dtype)

    def mlp(W, x):
        return F.linear(F.silu(F.linear(x, W["gate"])) * F.linear(x, W["up"]), W["down"])

    rows = []
    for t in tokens:
        x = torch.randn(t, hidden, generator=g).to(device, dtype)
        h = torch.randn(t, intermediate, generator=g).to(device, dtype)
        base = {"hidden": hidden, "intermediate": intermediate, "tokens": t, "dtype": str(dtype).replace("torch.", "")}
        dense_ms = {k: _time_ms(lambda k=k: F.linear(h if k == "down" else x, dense[k]), repeats) for k in shapes}
        dense_ms["mlp"] = _time_ms(lambda: mlp(dense, x), repeats)
        dense_ms["mlp_graph"] = _time_ms(_graphed(lambda: mlp(dense, x)), repeats)
        for kern in kernels:
            row = {**base, "kernel": kern}
            try:
                sparse = {k: make[kern](w) for k, w in dense.items()}
                sparse_ms = {k: _time_ms(lambda k=k: F.linear(h if k == "down" else x, sparse[k]), repeats) for k in shapes}
                sparse_ms["mlp"] = _time_ms(lambda: mlp(sparse, x), repeats)
                sparse_ms["mlp_graph"] = _time_ms(_graphed(lambda: mlp(sparse, x)), repeats)
                row["max_abs_diff"] = float((mlp(dense, x).float() - mlp(sparse, x).float()).abs().max())
            except Exception as err:  # a kernel family this GPU / build lacks: say so in the table
                rows.append({**row, "error": f"{type(err).__name__}: {str(err)[:120]}"})
                continue
            for k in sparse_ms:
                row[k] = {"dense_ms": dense_ms[k], "sparse_ms": sparse_ms[k], "speedup": dense_ms[k] / sparse_ms[k]}
            rows.append(row)
    return rows
