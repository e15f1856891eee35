"""Real CPU kernels for QuantizedLinear (issue 14, item 1): same codes, the kernel's rounding only."""

import pytest
import torch
from torch import nn

from qlite.classical import AWQ, GPTQ, RTN, PerGroup, compress
from qlite.classical.memory import tensor_bytes
from qlite.classical.quant import kernels as K

G128 = PerGroup(128, ragged=True)


@pytest.mark.parametrize("N,Kin", [(16, 32), (48, 64), (64, 64), (80, 128), (192, 576), (576, 96)])
def test_unpack_inverts_torch_int4_cpu_packing(N, Kin):
    g = torch.Generator().manual_seed(N * Kin)
    codes = torch.randint(0, 16, (N, Kin), generator=g, dtype=torch.uint8)
    assert torch.equal(K.unpack_int4_cpu(K.pack_int4_cpu(codes), N, Kin), codes)


def _layer(recipe, K_in=576, N=192, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(K_in, N, bias=bias))
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(N, K_in, generator=g) * 0.05)
    calib = [torch.randn(32, K_in, generator=g) * torch.linspace(0.1, 3, K_in) for _ in range(4)]
    return compress(net, recipe, calib, kernels=False).model[0], calib


def _ops(q, x):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        q(x)
    return {e.key for e in prof.key_averages()}


@pytest.mark.parametrize("recipe,layout,op", [
    ([RTN(4, granularity=G128, symmetric=False)], "int4_cpu", "aten::_weight_int4pack_mm_for_cpu"),
    ([RTN(4, group_size=64)], "int4_cpu", "aten::_weight_int4pack_mm_for_cpu"),
    ([GPTQ(4, granularity=G128)], "int4_cpu", "aten::_weight_int4pack_mm_for_cpu"),  # act_order: a permutation
    ([AWQ(4, granularity=G128)], "int4_cpu", "aten::_weight_int4pack_mm_for_cpu"),  # input scale
    ([RTN(4, group_size=None, symmetric=False)], "int4_cpu", "aten::_weight_int4pack_mm_for_cpu"),  # per channel
    ([RTN(8)], "int8_cpu", "aten::_weight_int8pack_mm"),
    ([GPTQ(8, group_size=None, symmetric=True)], "int8_cpu", "aten::_weight_int8pack_mm"),
])
def test_kernel_layer_keeps_the_codes_and_agrees_within_bf16(recipe, layout, op):
    q, calib = _layer(recipe)
    w_sim, codes = q.dequantized_weight().clone(), q.codes().clone()
    x = calib[0][:5]
    y_sim = q(x)
    assert q.use_kernel() is None
    assert q.layout == layout and q.kernel == "real-kernel" and q.packed is None
    assert torch.equal(q.codes(), codes) and torch.equal(q.dequantized_weight(), w_sim)  # no re-quantization
    if isinstance(recipe[0], GPTQ) and recipe[0].bits == 4:
        assert q.kernel_perm is not None  # act_order groups are stored in GPTQ's column order
    y = q(x)
    assert y.dtype == x.dtype and y.shape == y_sim.shape
    rel = float((y - y_sim).norm() / y_sim.norm())
    assert 0 < rel < 1e-2, rel  # bfloat16 activations and scales: ~2**-9
    assert op in _ops(q, x)
    y3 = q(x.reshape(1, 5, -1))  # (B, T, in) inputs
    torch.testing.assert_close(y3.reshape(5, -1), y)


def test_layers_without_a_kernel_say_why_and_stay_simulated():
    cases = [
        (RTN(3, granularity=G128, symmetric=False), "3-bit"),
        (RTN(8, act_bits=8), "activation quantization"),
        (RTN(8, symmetric=False), "asymmetric 8-bit"),
        (RTN(8, group_size=64), "grouped 8-bit"),
    ]
    for cfg, why in cases:
        q, _ = _layer([cfg])
        reason = q.use_kernel()
        assert reason is not None and why in reason, (cfg, reason)
        assert q.layout == "packed" and q.kernel == "simulated"
    q, _ = _layer([RTN(4, group_size=32)], K_in=64, N=24)
    assert "multiple of 16" in q.use_kernel()


def test_compress_uses_kernels_by_default_and_notes_the_rest():
    net = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 24))
    res = compress(net, RTN(4, group_size=32))
    assert res.model[0].kernel == "real-kernel" and res.model[2].kernel == "simulated"
    assert any("real CPU kernel: 1" in n for n in res.report.notes)
    assert any("multiple of 16" in n and "2" in n for n in res.report.notes)
    assert compress(net, RTN(4, group_size=32), kernels=False).model[0].kernel == "simulated"


def test_gradients_take_the_dequantizing_path():
    q, calib = _layer([RTN(4, group_size=64)])
    ref, _ = _layer([RTN(4, group_size=64)])
    q.use_kernel()
    x = calib[0][:3].clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    q(x).sum().backward()
    ref(x2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_kernel_model_logits_match_the_simulated_model(tiny_llm):
    model, windows = tiny_llm
    sim = compress(model, RTN(4, group_size=32, symmetric=False), kernels=False).model
    real = compress(model, RTN(4, group_size=32, symmetric=False)).model
    assert all(m.kernel == "real-kernel" for m in real.modules() if hasattr(m, "layout"))
    with torch.no_grad():
        a, b = sim(windows[0]).logits, real(windows[0]).logits
    assert float((a - b).norm() / a.norm()) < 2e-2
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9


def test_a_model_cast_to_half_or_bfloat16_still_runs_its_kernels():
    for recipe in (RTN(4, group_size=64), RTN(8)):
        q, calib = _layer([recipe])
        q.use_kernel()
        y = q(calib[0][:2])
        for dt in (torch.float16, torch.bfloat16):
            h = __import__("copy").deepcopy(q).to(dt)
            out = h(calib[0][:2].to(dt))
            assert out.dtype == dt and h.kernel == "real-kernel"
            assert float((out.float() - y).norm() / y.norm()) < 2e-2


@pytest.mark.parametrize("tokens,op", [(K.INT8_GEMM_MIN_TOKENS - 1, "aten::_weight_int8pack_mm"),
                                       (K.INT8_GEMM_MIN_TOKENS, "aten::mm"), (128, "aten::mm")])
def test_int8_layer_takes_the_bf16_gemm_from_the_crossover_and_agrees_within_bf16(tokens, op):
    q, calib = _layer([RTN(8)])
    x = torch.cat(calib)[:tokens]
    y_sim = q(x)
    assert q.use_kernel() is None
    held = tensor_bytes(q)
    ops = _ops(q, x)
    assert op in ops
    assert ("aten::_weight_int8pack_mm" in ops) == (tokens < K.INT8_GEMM_MIN_TOKENS)
    y = q(x)
    rel = float((y - y_sim).norm() / y_sim.norm())
    assert 0 < rel < 1e-2, rel  # bfloat16 activations, scales and (GEMM path) output: ~2**-8
    assert tensor_bytes(q) == held  # the bfloat16 copy lives for the call only


def test_int8_kernel_model_logits_match_the_simulated_model_in_prefill_and_decode(tiny_llm):
    model, windows = tiny_llm
    sim = compress(model, RTN(8), kernels=False).model
    real = compress(model, RTN(8)).model
    assert all(m.kernel == "real-kernel" for m in real.modules() if hasattr(m, "layout"))
    x = torch.cat(windows, dim=1)  # (1, 48): the GEMM path
    with torch.no_grad():
        a, b = sim(x).logits, real(x).logits
        step_a = sim(x[:, :1]).logits  # one token: the int8 kernel
        step_b = real(x[:, :1]).logits
    for u, v in ((a, b), (step_a, step_b)):
        assert float((u - v).norm() / u.norm()) < 1e-2
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.95
