"""compress(): the caller's model, bad inputs, and models of several families (no registry)."""

import copy

import pytest
import torch
from torch import nn

from qlite.classical import AWQ, GPTQ, RTN, LLMInt8, PerGroup, QuantizedLinear, SmoothQuant, compress, find_blocks


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))


def _calib(n=3, width=32):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(16, width, generator=g) for _ in range(n)]


@pytest.mark.parametrize("cfg", [RTN(4, group_size=16), GPTQ(4, group_size=16), AWQ(4, group_size=16), SmoothQuant(), LLMInt8()],
                         ids=lambda c: c.name)
def test_callers_model_untouched_unless_inplace(cfg):
    net = _net()
    before = copy.deepcopy(net.state_dict())
    res = compress(net, cfg, calib=_calib())
    assert res.model is not net
    assert all(isinstance(m, (nn.Linear, nn.ReLU)) for m in net)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    res2 = compress(net, cfg, calib=_calib(), inplace=True)
    assert res2.model is net and isinstance(net[0], QuantizedLinear)


def test_report_records_layers_and_sizes():
    res = compress(_net(), [RTN(8)])
    r = res.report
    assert [x.name for x in r.layers] == ["0", "2"]
    assert r.bytes_before == (32 * 64 + 64 + 64 * 8 + 8) * 4
    assert r.ratio > 2.5
    assert "| 0 | RTN(bits=8) | 64x32 |" in r.to_markdown()
    assert r.to_dict()["recipe"] == [RTN(8).to_dict()]


def test_recipe_applies_in_order_and_skip_patterns():
    net = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 32))
    res = compress(net, [RTN(8, skip=("1",)), RTN(4, group_size=16, skip=("0",))])
    assert res.model[0].bits == 8 and res.model[1].bits == 4


# ---- bad input -------------------------------------------------------------------------------------


def test_group_size_must_divide_the_layer_input():
    net = nn.Sequential(nn.Linear(48, 8))
    with pytest.raises(ValueError, match=r"layer '0': group_size 32 does not divide its input dimension 48"):
        compress(net, RTN(4, group_size=32))
    with pytest.raises(ValueError, match="ragged=True"):
        compress(net, GPTQ(4, group_size=32), calib=[torch.randn(4, 48)])
    # Opting in to a shorter last group works.
    assert compress(net, RTN(4, granularity=PerGroup(32, ragged=True))).model[0].scale.shape == (8, 2)


def test_model_without_linear_layers():
    with pytest.raises(ValueError, match=r"the model has no nn.Linear \(or GPT-2 Conv1D\) layers"):
        compress(nn.Sequential(nn.ReLU(), nn.Tanh()), RTN(8))
    with pytest.raises(ValueError, match="no nn.Linear"):
        compress(nn.Sequential(nn.Linear(4, 4)), RTN(8, skip=("*",)))


@pytest.mark.parametrize("cfg", [GPTQ(4, group_size=16), AWQ(4, group_size=16), SmoothQuant()], ids=lambda c: c.name)
def test_calibrated_methods_need_calibration_data(cfg):
    with pytest.raises(ValueError, match=r"needs calibration data: pass calib="):
        compress(_net(), cfg)
    with pytest.raises(ValueError, match="needs calibration data"):
        compress(_net(), cfg, calib=[])


def test_non_finite_weights_name_the_layer():
    net = _net()
    with torch.no_grad():
        net[2].weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"layer '2' has non-finite weights"):
        compress(net, RTN(8))


def test_non_finite_activations_name_the_layer():
    net = _net()
    calib = _calib()
    calib[1][3, 5] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite activations entering layer '0'"):
        compress(net, GPTQ(4, group_size=16), calib=calib)


def test_recipe_items_must_be_configs():
    with pytest.raises(TypeError, match="recipe items must be compression configs"):
        compress(_net(), ["RTN4"])
    with pytest.raises(ValueError, match="recipe is empty"):
        compress(_net(), [])
    with pytest.raises(TypeError, match="calib must be a list"):
        compress(_net(), GPTQ(4, group_size=16), calib=torch.randn(4, 32))


# ---- architectures: found generically ---------------------------------------------------------------


def _tiny(kind):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "llama":
        cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        return transformers.LlamaForCausalLM(cfg).eval(), "model.layers"
    if kind == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=128, n_embd=64, n_layer=3, n_head=4, n_positions=64)
        return transformers.GPT2LMHeadModel(cfg).eval(), "transformer.h"
    cfg = transformers.BertConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                  num_attention_heads=4, max_position_embeddings=64)
    return transformers.BertModel(cfg).eval(), "encoder.layer"


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert"])
def test_gptq_on_transformer_families(kind):
    model, prefix = _tiny(kind)
    assert find_blocks(model).prefix == prefix
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 128, (1, 32), generator=g) for _ in range(4)]
    calib = ids if kind != "bert" else [{"input_ids": x, "attention_mask": torch.ones_like(x)} for x in ids]
    res = compress(model, GPTQ(4, group_size=32), calib=calib)
    n_lin = sum(1 for m in res.model.modules() if isinstance(m, QuantizedLinear))
    expected = {"llama": 3 * 7, "gpt2": 3 * 4, "bert": 3 * 6 + 1}[kind]  # BERT's pooler is outside the blocks
    assert n_lin == expected
    assert all(r.output_rel_error is not None and r.output_rel_error < 0.05 for r in res.report.layers)
    x = ids[0]
    with torch.no_grad():
        ref = model(x)[0]
        out = res.model(x)[0]
    assert float((out - ref).norm() / ref.norm()) < 0.1


def test_offload_gives_the_same_result():
    model, _ = _tiny("llama")
    g = torch.Generator().manual_seed(1)
    calib = [torch.randint(0, 128, (1, 16), generator=g) for _ in range(2)]
    a = compress(model, GPTQ(4, group_size=32), calib=calib).model
    b = compress(model, GPTQ(4, group_size=32), calib=calib, device="cpu", offload=True).model
    for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), n


# -- bad input refused before any work (issue 15) ------------------------------------------------------
def test_a_string_or_a_non_module_is_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"recipe must be a config or a list of configs such as \[RTN\(bits=4\)\], got 'RTN'"):
        compress(_net(), "RTN")
    with pytest.raises(TypeError, match="compress takes a torch.nn.Module, got str"):
        compress("model", [RTN(8)])
    with pytest.raises(TypeError, match="recipe must be a config"):
        compress(_net(), {"type": "RTN"})


def test_inplace_is_keyword_only():
    with pytest.raises(TypeError):
        compress(_net(), [RTN(8)], None, True)


def test_calibration_data_of_the_wrong_width_is_refused_before_any_work(monkeypatch):
    from qlite.classical import transform

    ran = []
    monkeypatch.setattr(transform.LinearTransform, "run", lambda self, *a, **k: ran.append(1) or [])
    with pytest.raises(ValueError, match=r"cannot take calib\[0\] \(tensor of shape \(16, 48\), float32\)"):
        compress(_net(), GPTQ(4, group_size=16), calib=_calib(width=48))
    assert not ran  # refused before the first transform started
    with pytest.raises(TypeError, match="calibration items must be model inputs"):
        compress(_net(), GPTQ(4, group_size=16), calib=["some text"])


def test_float_calibration_for_a_language_model_is_refused(tiny_llm):
    model, _ = tiny_llm
    with pytest.raises(ValueError, match=r"cannot take calib\[0\] \(tensor of shape \(1, 16, 5\), float32\)"):
        compress(model, GPTQ(4, group_size=16), calib=[torch.randn(1, 16, 5)])
