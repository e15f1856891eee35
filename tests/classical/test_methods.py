"""Method-level checks with exact or analytic ground truth: LLM.int8() outlier columns, SmoothQuant's
migration, AWQ's searches, and whole transforms by signal-to-noise floors."""

import math

import pytest
import torch
from torch import nn

from qlite.classical import AWQ, GPTQ, RTN, LLMInt8, QuantizedLinear, SmoothQuant, compress
from qlite.classical.quant.awq import search_clip, search_scale
from qlite.classical.quant.primitives import fake_quantize, quantize_per_token


def snr_db(ref, test):
    ref, test = ref.detach(), test.detach()
    return float(10 * torch.log10(ref.pow(2).sum() / (ref - test).pow(2).sum()))


def _outlier_inputs(rows=256, n=64, seed=0, channels=(3, 17), scale=50.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, n, generator=g)
    x[:, list(channels)] *= scale  # a few feature columns carry systematic outliers, as in LLMs
    return x


def test_llm_int8_outlier_columns_are_not_quantized():
    torch.manual_seed(0)
    lin = nn.Linear(32, 16)
    q = compress(nn.Sequential(lin), LLMInt8(threshold=6.0)).model[0]
    W = q.dequantized_weight()
    # Only outlier columns non-zero: the output is exactly x @ W_int8^T + b (no activation rounding).
    x = torch.zeros(5, 32)
    x[:, 4] = torch.tensor([7.0, -9.123, 6.5, 100.0, -6.0])
    torch.testing.assert_close(q(x), x @ W.t() + lin.bias, rtol=0, atol=1e-6)
    # Mixed input: outlier columns exact, the rest per-token int8 (Eq. 3 of the paper).
    x = torch.randn(5, 32)
    x[:, 4] += 20.0
    mask = torch.zeros(32, dtype=torch.bool)
    mask[4] = True
    expect = (x * mask) @ W.t() + quantize_per_token(x.masked_fill(mask, 0), 8) @ W.t() + lin.bias
    torch.testing.assert_close(q(x), expect, rtol=1e-5, atol=1e-5)


def test_llm_int8_decomposition_beats_plain_w8a8_on_outliers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64))
    x = _outlier_inputs()
    y = net(x)
    mixed = compress(net, LLMInt8(6.0)).model(x)
    plain = compress(net, LLMInt8(float("inf"))).model(x)
    assert snr_db(y, mixed) > snr_db(y, plain) + 10


def test_smoothquant_migration_leaves_float_output_unchanged():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 48))
    x = _outlier_inputs()
    res = compress(net, SmoothQuant(alpha=0.5), calib=[x])
    q = res.model[0]
    s = 1.0 / q.input_scale
    W = net[0].weight.detach()
    # (X diag(s)^-1) (diag(s) W^T) == X W^T in float (Eq. 3 of Xiao et al.).
    torch.testing.assert_close((x / s) @ (W * s).t(), x @ W.t(), rtol=1e-4, atol=1e-3)
    # Eq. 4 with alpha = 0.5
    expect = (x.abs().amax(0).pow(0.5) / W.abs().amax(0).pow(0.5))
    torch.testing.assert_close(s, expect, rtol=1e-5, atol=0)


def test_smoothquant_beats_naive_w8a8_on_outlier_activations():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64))
    x = _outlier_inputs(scale=80.0)
    y = net(x)
    sq = compress(net, SmoothQuant(alpha=0.5), calib=[x]).model(x)
    naive = compress(net, RTN(8, act_bits=8)).model(x)
    assert snr_db(y, sq) > snr_db(y, naive) + 6


def test_awq_scale_search_improves_output_error():
    g = torch.Generator().manual_seed(0)
    x = _outlier_inputs(scale=10.0)
    W = torch.randn(32, 64, generator=g)
    s, losses = search_scale(x, W, x.abs().mean(0), bits=3, group_size=16, symmetric=False, n_grid=20)
    # Grid point 0 is s = 1: plain RTN. The search must find a strictly better scale here.
    assert min(losses) < 0.8 * losses[0]
    Wq = fake_quantize(W * s, 3, False, 16) / s
    rtn = fake_quantize(W, 3, False, 16)
    assert (x @ (Wq - W).t()).pow(2).mean() < (x @ (rtn - W).t()).pow(2).mean()


def test_awq_clip_search_never_worse_than_no_clip():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 32, generator=g)
    W = torch.randn(8, 32, generator=g)
    W[0, 0] = 12.0  # one large weight stretches its group's range
    m = search_clip(x, W, bits=3, group_size=16, symmetric=False)
    amax = W.reshape(8, 2, 16).abs().amax(-1)
    assert (m <= amax + 1e-6).all() and (m >= 0.5 * amax - 1e-6).all()
    lim = m.repeat_interleave(16, dim=1)
    clipped = fake_quantize(torch.maximum(torch.minimum(W, lim), -lim), 3, False, 16)
    plain = fake_quantize(W, 3, False, 16)
    assert (x @ (clipped - W).t()).pow(2).sum() <= (x @ (plain - W).t()).pow(2).sum()


def _stack(seed=0, width=64, depth=3):
    torch.manual_seed(seed)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.GELU()]
    return nn.Sequential(*layers, nn.Linear(width, 16))


def _correlated(rows, width, seed):
    """Samples of one fixed correlated distribution (a rank-16 mixing plus noise); ``seed`` draws the samples."""
    mix = torch.randn(16, width, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 16, generator=g) @ mix + 0.1 * torch.randn(rows, width, generator=g)


@pytest.mark.parametrize(
    "cfg, floor_db",
    [
        (RTN(8), 38.0),
        (RTN(4, group_size=16, symmetric=False), 17.0),
        (LLMInt8(), 35.0),
        (SmoothQuant(), 30.0),
        (GPTQ(4, group_size=16), 20.0),
        (AWQ(4, group_size=16), 17.0),
    ],
    ids=lambda v: v.name if hasattr(v, "name") else str(v),
)
def test_whole_transform_signal_to_noise(cfg, floor_db):
    net = _stack()
    calib = [_correlated(64, 64, s) for s in range(4)]
    x = _correlated(256, 64, 99)
    out = compress(net, cfg, calib=calib).model(x)
    assert snr_db(net(x), out) > floor_db


def test_gptq_beats_rtn_on_a_stack_with_correlated_inputs():
    net = _stack(depth=2)
    calib = [_correlated(128, 64, s) for s in range(4)]
    x = _correlated(512, 64, 7)
    y = net(x)
    g = compress(net, GPTQ(3, group_size=16), calib=calib).model(x)
    r = compress(net, RTN(3, group_size=16, symmetric=False)).model(x)
    assert snr_db(y, g) > snr_db(y, r) + 3


def test_quantized_bytes_are_real():
    net = nn.Sequential(nn.Linear(256, 128, bias=False))
    q = compress(net, RTN(4, group_size=64, symmetric=False), kernels=False).model[0]
    assert isinstance(q, QuantizedLinear)
    assert q.packed.numel() == 256 * 128 // 2  # two 4-bit codes a byte
    assert q.scale.dtype == torch.float16 and q.scale.shape == (128, 4)
    assert q.zero_packed.numel() == 128 * 4 // 2
    k = compress(net, RTN(4, group_size=64, symmetric=False)).model[0]  # the int4 kernel's layout: 4 bits too
    assert k.layout == "int4_cpu" and k.packed is None and k.weight_int4.numel() == 256 * 128 // 2
    q3 = compress(net, RTN(3, group_size=64, symmetric=True)).model[0]
    assert q3.packed.numel() == math.ceil(256 * 128 * 3 / 8) and q3.zero_packed is None


def test_sequential_calibration_feeds_compressed_outputs_forward():
    """Block 2's GPTQ Hessian must come from block 1's *quantized* outputs (GPTQ Sec. 4)."""
    from qlite.classical.quant.gptq import gptq_quantize

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 32, bias=False), nn.Linear(32, 8, bias=False))
    calib = [_correlated(64, 32, s) for s in range(2)]
    res = compress(net, GPTQ(4, group_size=8, act_order=False), calib=calib)
    X = torch.cat(calib)
    H1 = 2 * X.t() @ X / X.shape[0]
    r1 = gptq_quantize(net[0].weight, H1, bits=4, group_size=8, symmetric=False, act_order=False)
    X2 = X @ r1["dequantized"].t()
    H2 = 2 * X2.t() @ X2 / X2.shape[0]
    r2 = gptq_quantize(net[1].weight, H2, bits=4, group_size=8, symmetric=False, act_order=False)
    torch.testing.assert_close(res.model[1].dequantized_weight(), r2["dequantized"], atol=1e-4, rtol=0)


def test_llm_int8_keeps_float_weights_for_calibrated_outlier_dimensions():
    torch.manual_seed(0)
    lin = nn.Linear(32, 16)
    x = torch.randn(64, 32)
    x[:, 4] *= 20  # dimension 4 is a systematic outlier on the calibration data
    q = compress(nn.Sequential(lin), LLMInt8(6.0, keep_outlier_weights=True), calib=[x]).model[0]
    assert q.outlier_idx.tolist() == [4] and q.outlier_weight.dtype == torch.float16
    only = torch.zeros(3, 32)
    only[:, 4] = torch.tensor([30.0, -7.0, 12.5])
    # The paper's X_f16 W_f16 term: the float16 weight column, not the int8 one.
    expect = only[:, 4:5] * lin.weight[:, 4].half().float() + lin.bias
    torch.testing.assert_close(q(only), expect, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="needs calibration data"):
        compress(nn.Sequential(lin), LLMInt8(keep_outlier_weights=True))


class _TwoLayerBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(32, 32, bias=False)
        self.b = nn.Linear(32, 32, bias=False)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def test_gptq_true_sequential_observes_later_layers_after_earlier_ones_are_quantized():
    from qlite.classical.quant.gptq import gptq_quantize

    torch.manual_seed(0)
    net = nn.Sequential(_TwoLayerBlock(), _TwoLayerBlock())
    calib = [_correlated(64, 32, s) for s in range(2)]
    X = torch.cat(calib)
    H = lambda Z: 2 * Z.t() @ Z / Z.shape[0]  # noqa: E731
    kw = dict(bits=4, group_size=8, symmetric=False, act_order=False)
    seq = compress(net, GPTQ(4, group_size=8, act_order=False, true_sequential=True), calib=calib).model
    one = compress(net, GPTQ(4, group_size=8, act_order=False), calib=calib).model
    qa = gptq_quantize(net[0].a.weight, H(X), **kw)["dequantized"]
    # b's Hessian: from the quantized a (true sequential) or the float a (one pass per block).
    b_seq = gptq_quantize(net[0].b.weight, H(torch.tanh(X @ qa.t())), **kw)["dequantized"]
    b_one = gptq_quantize(net[0].b.weight, H(torch.tanh(X @ net[0].a.weight.t())), **kw)["dequantized"]
    torch.testing.assert_close(seq[0].b.dequantized_weight(), b_seq, atol=1e-4, rtol=0)
    torch.testing.assert_close(one[0].b.dequantized_weight(), b_one, atol=1e-4, rtol=0)
    assert not torch.allclose(b_seq, b_one, atol=1e-4)
