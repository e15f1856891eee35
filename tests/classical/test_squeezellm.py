"""SqueezeLLM: primitives against analytic ground truth, the whole method on a tiny Llama, bad input."""

import copy

import pytest
import torch

from qlite.classical import RTN, SqueezeLLM, compress
from qlite.classical.quant import LUTQuantizedLinear, dense_sparse_split, squeezellm_quantize, weighted_kmeans


def _clusters(seed=0, rows=5, per=40, centres=(-3.0, -1.0, 0.5, 2.0)):
    g = torch.Generator().manual_seed(seed)
    vals = torch.cat([c + 0.05 * torch.randn(rows, per, generator=g) for c in centres], dim=1)
    return vals[:, torch.randperm(vals.shape[1], generator=g)]


def test_kmeans_with_uniform_weights_finds_the_cluster_means():
    w = _clusters()
    c, a = weighted_kmeans(w, torch.ones_like(w), 4)
    for r in range(w.shape[0]):
        truth = torch.sort(torch.stack([w[r][a[r] == j].mean() for j in range(4)])).values
        assert torch.allclose(c[r], truth, atol=1e-6)  # each centroid is its cluster's mean (k-means fixpoint)
        assert torch.allclose(c[r], torch.tensor([-3.0, -1.0, 0.5, 2.0]), atol=0.05)
    assert torch.equal(a, (w[:, :, None] - c[:, None, :]).abs().argmin(dim=2))  # nearest-centroid codes


def test_kmeans_weights_pull_centroids_and_constant_weights_change_nothing():
    w = torch.tensor([[0.0, 1.0, 10.0, 11.0]])
    c1, _ = weighted_kmeans(w, torch.ones_like(w), 2)
    c7, _ = weighted_kmeans(w, 7 * torch.ones_like(w), 2)
    assert torch.allclose(c1, torch.tensor([[0.5, 10.5]])) and torch.allclose(c1, c7)
    cw, _ = weighted_kmeans(w, torch.tensor([[3.0, 1.0, 1.0, 0.0]]), 2)
    assert torch.allclose(cw, torch.tensor([[0.25, 10.0]]))  # (3*0 + 1)/4 and the weight-0 value ignored


def test_squeezellm_with_uniform_fisher_and_no_outliers_is_kmeans():
    w = _clusters(1)
    r = squeezellm_quantize(w, torch.ones_like(w), 2, 0.0)
    c, a = weighted_kmeans(w, torch.ones_like(w), 4)
    assert torch.equal(r["codebook"], c.half().float()) and torch.equal(r["codes"].long(), a)
    assert r["sparse_idx"].numel() == 0


def test_dense_sparse_split_reconstructs_the_weight_exactly():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(16, 32, generator=g)
    s = torch.rand(16, 32, generator=g)
    dense, idx, vals = dense_sparse_split(w, s, 0.05)
    assert idx.numel() == round(0.05 * w.numel())
    assert torch.equal(dense.flatten().index_put((idx,), vals), w.flatten())
    n_mag = round(idx.numel() * 0.9)
    assert set(w.abs().flatten().topk(n_mag).indices.tolist()) <= set(idx.tolist())  # largest magnitudes kept


def test_lut_module_stores_and_reproduces_the_quantized_weight():
    g = torch.Generator().manual_seed(4)
    w, f = torch.randn(8, 24, generator=g), torch.rand(8, 24, generator=g)
    r = squeezellm_quantize(w, f, 3, 0.02)
    m = LUTQuantizedLinear(r["codes"], r["codebook"], r["sparse_idx"], r["sparse_values"], bits=3)
    assert torch.equal(m.dequantized_weight(), r["dequantized"])
    x = torch.randn(2, 24, generator=g)
    assert torch.allclose(m(x), x @ r["dequantized"].t(), atol=1e-6)
    n = w.numel()
    # 3-bit codes + float16 codebooks (8 per row) + int32 index and float16 value per sparse entry
    assert sum(b.numel() * b.element_size() for b in m.buffers()) == 3 * n // 8 + 8 * 8 * 2 + r["sparse_idx"].numel() * 6


def _logit_err(ref, model, calib):
    with torch.no_grad():
        num = sum((model(x).logits - ref(x).logits).pow(2).sum() for x in calib)
        den = sum(ref(x).logits.pow(2).sum() for x in calib)
    return float(num / den)


def test_squeezellm_on_a_tiny_llama_beats_rtn_and_leaves_the_model_alone(tiny_llm):
    model, calib = tiny_llm
    before = copy.deepcopy(model.state_dict())
    res = compress(model, [SqueezeLLM(3, outlier_fraction=0.01)], calib=calib)
    rtn = compress(model, [RTN(3, symmetric=False)]).model
    e_sq, e_rtn = _logit_err(model, res.model, calib), _logit_err(model, rtn, calib)
    assert e_sq < 0.05 and e_sq < e_rtn, (e_sq, e_rtn)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    n_lut = sum(isinstance(m, LUTQuantizedLinear) for m in res.model.modules())
    assert n_lut == 14 and res.report.bytes_after < res.report.bytes_before
    assert all(r.extra["sparse_entries"] > 0 for r in res.report.layers)


def test_bad_input_is_refused_with_the_value_and_the_fix(tiny_llm):
    model, calib = tiny_llm
    with pytest.raises(ValueError, match=r"outlier_fraction must be in \[0, 1\).*1.0"):
        SqueezeLLM(3, outlier_fraction=1.0)
    with pytest.raises(ValueError, match=r"outlier_fraction.*-0.1"):
        SqueezeLLM(3, outlier_fraction=-0.1)
    with pytest.raises(ValueError, match=r"bits must be an integer in \[2, 8\], got 9"):
        SqueezeLLM(9)
    with pytest.raises(ValueError, match="needs calibration data"):
        compress(model, [SqueezeLLM(3)])
    with pytest.raises(ValueError, match="fewer than the 256 centroids.*lower bits"):
        compress(model, [SqueezeLLM(8)], calib=calib)  # rows of 32 inputs cannot hold 256 centroids
    before = copy.deepcopy(model.state_dict())
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.model.embed_tokens.weight[3] = float("nan")
    with pytest.raises(ValueError, match="non-finite calibration loss"):
        compress(bad, [SqueezeLLM(3)], calib=[torch.full((1, 8), 3)])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_config_round_trips_through_json():
    from qlite.classical import CompressionConfig

    c = SqueezeLLM(3, outlier_fraction=0.0)
    assert CompressionConfig.from_json(c.to_json()) == c
