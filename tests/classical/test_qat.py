"""QAT (LLM-QAT): fake-quant distillation on a tiny Llama, export, self-generated data, bad input."""

import copy

import pytest
import torch

from qlite.classical import QAT, RTN, QuantizedLinear, compress
from qlite.classical.quant.qat import generate_self_data


def _logit_err(ref, model, data):
    with torch.no_grad():
        return float(sum((model(x).logits - ref(x).logits).pow(2).sum() for x in data)
                     / sum(ref(x).logits.pow(2).sum() for x in data))


def test_qat_lowers_the_output_error_of_its_rtn_start_and_exports_quantized_layers(tiny_llm):
    model, calib = tiny_llm
    before = copy.deepcopy(model.state_dict())
    cfg = QAT(3, group_size=16, steps=60, data="calib", lr=3e-3, max_epochs=20)
    res = compress(model, [cfg], calib=calib, kernels=False)
    rtn = compress(model, [RTN(3, group_size=16, symmetric=False)], kernels=False).model
    e_qat, e_rtn = _logit_err(model, res.model, calib), _logit_err(model, rtn, calib)
    assert e_qat < 0.85 * e_rtn, (e_qat, e_rtn)
    assert sum(isinstance(m, QuantizedLinear) for m in res.model.modules()) == 14
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    rec = res.report.layers[0].extra
    assert rec["kd_loss_last"] < rec["kd_loss_first"]


def test_self_generated_data_is_seeded_and_trains(tiny_llm):
    model, _ = tiny_llm
    a = generate_self_data(model, 2, 6, 64, generator=torch.Generator().manual_seed(0))
    b = generate_self_data(model, 2, 6, 64, generator=torch.Generator().manual_seed(0))
    assert [x.shape for x in a] == [(1, 6)] * 2 and all(torch.equal(x, y) for x, y in zip(a, b))
    res = compress(model, [QAT(4, group_size=16, steps=4, n_samples=2, seq_len=8, lr=1e-3, act_bits=8)])
    assert all(m.act_bits == 8 for m in res.model.modules() if isinstance(m, QuantizedLinear))


def test_bad_input_is_refused_with_the_value_and_the_fix(tiny_llm):
    model, calib = tiny_llm
    with pytest.raises(ValueError, match="60 steps need at least 8 training sequences.*got 3"):
        compress(model, [QAT(3, group_size=16, steps=60, data="calib", max_epochs=8)], calib=calib)
    with pytest.raises(ValueError, match="data must be 'self'.*'web'"):
        QAT(4, data="web")
    with pytest.raises(ValueError, match=r"bits must be an integer in \[2, 8\], got 1"):
        QAT(1)
    with pytest.raises(ValueError, match="needs calibration data"):
        compress(model, [QAT(4, group_size=16, data="calib")])
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.model.norm.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite distillation loss at step 0"):
        compress(bad, [QAT(4, group_size=16, steps=1, data="calib")], calib=[torch.tensor([[1, 2, 3, 4]])])
