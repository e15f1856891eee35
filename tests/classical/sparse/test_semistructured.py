"""The 2:4 semi-structured kernel path: a clear refusal without CUDA, and on a GPU (marker ``gpu``) the
kernel agrees with the dense matmul of the same pruned weights."""

import pytest
import torch
from torch import nn

from qlite.classical import compress
from qlite.classical.sparse import Magnitude, benchmark_semi_structured_mlp, to_semi_structured


def test_refuses_without_cuda_and_without_2_4_layers():
    net = compress(nn.Sequential(nn.Linear(64, 64)), Magnitude(pattern="2:4")).model
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="need a CUDA device"):
            to_semi_structured(net)
        with pytest.raises(RuntimeError, match="need a CUDA device"):
            benchmark_semi_structured_mlp(device="cpu")


@pytest.mark.gpu
def test_semi_structured_linear_matches_dense_on_gpu():
    torch.manual_seed(0)
    net = compress(nn.Sequential(nn.Linear(576, 1536), nn.SiLU(), nn.Linear(1536, 576)), Magnitude(pattern="2:4")).model
    fast = to_semi_structured(net, dtype=torch.float16)
    x = torch.randn(128, 576, device="cuda", dtype=torch.float16)
    ref = net.to("cuda", torch.float16)(x)
    torch.testing.assert_close(fast(x), ref, rtol=1e-2, atol=1e-2)
    with pytest.raises(ValueError, match="no 2:4 SparseLinear"):
        to_semi_structured(nn.Sequential(nn.Linear(64, 64)))
    rows = benchmark_semi_structured_mlp(tokens=(128,), repeats=5)
    ok = [r for r in rows if "error" not in r]
    assert ok, rows
    for r in ok:
        assert r["mlp"]["speedup"] > 0 and r["mlp_graph"]["speedup"] > 0 and r["max_abs_diff"] < 0.1
