"""Sparsity transforms through compress(): masks fixed under training, stored size, caller's model,
bad input, Llama models, and structured pruning that shrinks matrices."""

import copy

import pytest
import torch
from torch import nn

from qlite.classical import compress
from qlite.classical.sparse import Magnitude, SparseGPT, SparseLinear, StructuredPrune, Wanda


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))


def _calib(n=3, width=32, scales=None):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        x = torch.randn(64, width, generator=g)
        out.append(x * scales if scales is not None else x)
    return out


@pytest.mark.parametrize("cfg", [Magnitude(0.5), Wanda(pattern="2:4"), SparseGPT(0.5), SparseGPT(pattern="4:8")],
                         ids=lambda c: c.name)
def test_callers_model_untouched_unless_inplace(cfg):
    net = _net()
    before = copy.deepcopy(net.state_dict())
    res = compress(net, cfg, calib=_calib())
    assert all(type(m) in (nn.Linear, nn.ReLU) for m in net)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert isinstance(res.model[0], SparseLinear) and res.model[0].sparsity == pytest.approx(cfg.removed)
    assert compress(net, cfg, calib=_calib(), inplace=True).model is net and isinstance(net[0], SparseLinear)


def test_sparse_linear_stored_size_round_trip_and_fixed_mask_under_training():
    res = compress(_net(), SparseGPT(0.5), calib=_calib())
    m = res.model
    lin = m[0]
    # values (50% of 64x32 floats) + bitmask (1 bit per weight) + bias.
    assert res.report.layers[0].bytes_after == 1024 * 4 + 2048 // 8 + 64 * 4
    fresh = compress(_net(), Magnitude(0.5)).model  # different mask and values
    fresh.load_state_dict(m.state_dict())
    x = torch.randn(5, 32)
    torch.testing.assert_close(fresh(x), m(x), rtol=0, atol=0)
    # Fine-tuning cannot revive pruned weights: their gradient is zero and the forward masks them.
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(5):
        opt.zero_grad()
        m(torch.randn(8, 32)).pow(2).mean().backward()
        opt.step()
    assert (lin.effective_weight()[~lin.mask] == 0).all() and lin.sparsity == pytest.approx(0.5)


def test_wanda_beats_magnitude_when_input_channels_differ_in_scale():
    net = _net()
    scales = torch.logspace(-1, 1, 32)  # input channel norms over two decades
    calib = _calib(scales=scales)
    x = torch.cat(calib)
    errs = {}
    with torch.no_grad():
        ref = net[0](x)
    for cfg in (Magnitude(0.5), Wanda(0.5)):
        with torch.no_grad():
            errs[cfg.name] = float((compress(net, cfg, calib=calib).model[0](x) - ref).norm())
    assert errs["Wanda(0.5)"] < 0.7 * errs["Magnitude(0.5)"]


def test_pattern_that_does_not_divide_the_input_is_refused_with_the_layer_name():
    net = nn.Sequential(nn.Linear(30, 8))
    with pytest.raises(ValueError, match=r"layer '0': pattern 2:4 needs its input dimension 30 to be a multiple of M=4"):
        compress(net, Magnitude(pattern="2:4"))


def test_calibrated_methods_need_calibration_data():
    for cfg in (Wanda(0.5), SparseGPT(0.5), StructuredPrune()):
        with pytest.raises(ValueError, match="needs calibration data"):
            compress(_net(), cfg)


def test_sparsegpt_on_a_llama_prunes_every_block_linear(tiny_llama, token_calib):
    res = compress(tiny_llama, SparseGPT(pattern="2:4", block_size=16), calib=token_calib)
    sparse = [n for n, m in res.model.named_modules() if isinstance(m, SparseLinear)]
    assert len(sparse) == 2 * 7 and "lm_head" not in sparse
    for n, m in res.model.named_modules():
        if isinstance(m, SparseLinear):
            assert (m.mask.reshape(m.out_features, -1, 4).sum(-1) == 2).all(), n
    assert torch.isfinite(res.model(token_calib[0]).logits).all()


@pytest.mark.parametrize("importance", ["taylor", "activation"])
def test_structured_pruning_removes_dead_channels_first_and_shrinks_matrices(tiny_llama, token_calib, importance):
    model = tiny_llama
    # Kill 16 of the 80 intermediate channels of each MLP (20%): their down_proj columns are zero, so
    # their importance is exactly 0 under both estimates and removing them changes nothing.
    dead = torch.arange(0, 80, 5)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.down_proj.weight[:, dead] = 0
    before = copy.deepcopy(model.state_dict())
    res = compress(model, StructuredPrune(0.2, importance=importance), calib=token_calib)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for layer in res.model.model.layers:
        assert layer.mlp.gate_proj.weight.shape == (64, 48) and layer.mlp.down_proj.weight.shape == (48, 64)
    assert res.model.config.intermediate_size == 64
    x = token_calib[0]
    torch.testing.assert_close(res.model(x).logits, model(x).logits, rtol=1e-5, atol=1e-5)
    assert res.report.bytes_after < res.report.bytes_before


@pytest.mark.parametrize("importance", ["taylor", "activation"])
def test_structured_head_pruning_keeps_gqa_valid(tiny_llama, token_calib, importance):
    model = tiny_llama  # 6 query heads in 2 groups of 3
    # Silence query head 1 (group 0) and head 4 (group 1) in every layer: zero o_proj columns.
    with torch.no_grad():
        for layer in model.model.layers:
            for h in (1, 4):
                layer.self_attn.o_proj.weight[:, h * 8:(h + 1) * 8] = 0
    res = compress(model, StructuredPrune(0.34, targets=("heads",), importance=importance), calib=token_calib)
    keep = torch.cat([torch.arange(h * 8, (h + 1) * 8) for h in (0, 2, 3, 5)])  # heads 0, 2 | 3, 5 survive
    for layer, orig in zip(res.model.model.layers, model.model.layers):
        att = layer.self_attn
        assert att.q_proj.weight.shape == (32, 48) and att.o_proj.weight.shape == (48, 32)
        assert att.num_key_value_groups == 2
        torch.testing.assert_close(att.q_proj.weight, orig.self_attn.q_proj.weight[keep])
    x = token_calib[1]
    torch.testing.assert_close(res.model(x).logits, model(x).logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="would remove all 3 query heads"):
        compress(model, StructuredPrune(0.9, targets=("heads",)), calib=token_calib)
    with pytest.raises(ValueError, match=r"removes none of the 3 .* smallest fraction that removes one is 0.167"):
        compress(model, StructuredPrune(0.1, targets=("heads",)), calib=token_calib)


def test_structured_head_pruning_of_multi_head_attention_removes_whole_heads(token_calib):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=4, head_dim=8, max_position_embeddings=128)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # silence heads 1 and 3: pruning them must not change the output
        for layer in model.model.layers:
            for h in (1, 3):
                layer.self_attn.o_proj.weight[:, h * 8:(h + 1) * 8] = 0
    res = compress(model, StructuredPrune(0.5, targets=("heads",)), calib=token_calib)
    keep = torch.cat([torch.arange(h * 8, (h + 1) * 8) for h in (0, 2)])
    for layer, orig in zip(res.model.model.layers, model.model.layers):
        att = layer.self_attn
        assert att.q_proj.weight.shape == att.k_proj.weight.shape == att.v_proj.weight.shape == (16, 32)
        torch.testing.assert_close(att.k_proj.weight, orig.self_attn.k_proj.weight[keep])
    assert res.model.config.num_key_value_heads == res.model.config.num_attention_heads == 2
    x = token_calib[1]
    torch.testing.assert_close(res.model(x).logits, model(x).logits, rtol=1e-5, atol=1e-5)
    assert model.model.layers[0].self_attn.q_proj.weight.shape == (32, 32)  # the caller's model is untouched


def test_structured_pruning_refuses_factorised_layers(tiny_llama, token_calib):
    from qlite.classical import LowRank

    low = compress(tiny_llama, LowRank(0.3)).model
    with pytest.raises(ValueError, match="is a LowRankLinear, not a plain linear layer"):
        compress(low, StructuredPrune(0.2), calib=token_calib)
    with pytest.raises(ValueError, match="is a LowRankLinear, not a plain linear layer"):
        compress(low, StructuredPrune(0.34, targets=("heads",)), calib=token_calib)
    with pytest.raises(ValueError, match="multiple_of=512 exceeds the 80 channels"):
        compress(tiny_llama, StructuredPrune(0.2, multiple_of=512), calib=token_calib)


def test_structured_pruning_needs_mlp_or_attention():
    net = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    with pytest.raises(ValueError, match="no attention modules"):
        compress(net, StructuredPrune(targets=("heads",)), calib=[torch.randn(2, 8)])
