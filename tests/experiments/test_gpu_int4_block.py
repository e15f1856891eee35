"""experiments/gpu_int4_block.py (issue 14, the H200 row) checked on the CPU: qlite's codes go into the
tinygemm scale / offset layout unchanged (the CPU int4 kernel reads the same layout as CUDA's), the nibble
packing is the one torchao feeds _convert_weight_to_int4pack, and the script runs end to end at tiny shapes."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mod():
    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location("gpu_int4_block", ROOT / "experiments" / "gpu_int4_block.py")
    m = importlib.util.module_from_spec(spec)
    sys.modules["gpu_int4_block"] = m
    spec.loader.exec_module(m)
    return m


def test_kernel_weight_is_qlites_dequantized_weight(mod):
    g = torch.Generator().manual_seed(0)
    weights = {"a": torch.randn(48, 256, generator=g), "b": torch.randn(256, 384, generator=g)}
    codes = mod.qlite_codes(weights, 128)
    for n, q in codes.items():
        w = mod.Int4Weight(q, torch.device("cpu"), 128).dense()
        ref = q.dequantized_weight()
        # bfloat16 scales / offsets and output: the kernel's rounding, nothing more
        assert float((w - ref).abs().max() / ref.abs().max()) < 1e-2
        # the offset form m = s (8 - z) is qlite's grid exactly in float32
        sz = mod.tinygemm_scales(q, 128)  # (G, N, 2)
        c = q.codes().float().reshape(q.out_features, -1, 128)
        exact = ((c - 8) * sz[..., 0].t().unsqueeze(-1) + sz[..., 1].t().unsqueeze(-1)).reshape(q.out_features, -1)
        torch.testing.assert_close(exact, ref, rtol=1e-5, atol=1e-6)


def test_nibble_packing_orders(mod):
    codes = torch.arange(16, dtype=torch.uint8).repeat(2, 1)  # (2, 16)
    hi = mod.pack_nibbles(codes, high_first=True)
    lo = mod.pack_nibbles(codes, high_first=False)
    assert hi.shape == (2, 8) and int(hi[0, 0]) == 0x01 and int(hi[0, 7]) == 0xEF
    assert int(lo[0, 0]) == 0x10 and int(lo[0, 7]) == 0xFE


def test_script_runs_small_on_cpu(mod, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["gpu_int4_block.py", "--device", "cpu", "--small", "--batches", "1,4",
                                      "--out", str(tmp_path)])
    mod.main()
    res = json.loads((tmp_path / "int4_block.json").read_text())
    assert [r["batch"] for r in res["rows"]] == [1, 4]
    assert all(r["w4_vs_dequantized_rel"] < 2e-2 for r in res["rows"])
    assert all(v < 1e-2 for v in res["checks"].values())
    assert "| 4 |" in (tmp_path / "int4_block.md").read_text()
