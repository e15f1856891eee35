"""OmniQuant: the learnable weight clipping primitive, and the block-wise config (LWC + LET, folded)."""

import copy

import pytest
import torch
from torch import nn

from qlite.classical import RTN, OmniQuant, PerGroup, PerTensor, QuantizedLinear, compress
from qlite.classical.quant import dequantize_weight, fake_quantize, lwc_fake_quantize, lwc_quantize


@pytest.mark.parametrize("bits,gs,n", [(3, 8, 32), (4, 16, 40), (2, 32, 32)])
def test_clipping_strength_one_reproduces_rtn(bits, gs, n):
    w = torch.randn(6, n, generator=torch.Generator().manual_seed(bits))
    one = torch.ones(6, -(-n // gs))
    assert torch.equal(lwc_fake_quantize(w, one, one, bits, gs), fake_quantize(w, bits, False, gs))


def test_strengths_get_gradients_and_clipping_shrinks_the_range():
    w = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    logit = torch.full((4, 2), 1.0, requires_grad=True)
    s = torch.sigmoid(logit)
    q = lwc_fake_quantize(w, s, s, 3, 8)
    assert float(q.abs().max()) < float(w.abs().max())
    ((q - w) ** 2).sum().backward()
    assert logit.grad is not None and torch.isfinite(logit.grad).all() and logit.grad.abs().sum() > 0


def test_bad_strengths_and_bits_are_refused():
    w = torch.randn(2, 8)
    with pytest.raises(ValueError, match=r"gamma must lie in \(0, 1\]"):
        lwc_fake_quantize(w, torch.full((2, 1), 1.5), torch.ones(2, 1), 3, 8)
    with pytest.raises(ValueError, match="bits must be an integer in \\[2, 8\\], got 1"):
        lwc_fake_quantize(w, torch.ones(2, 1), torch.ones(2, 1), 1, 8)


@pytest.mark.parametrize("bits,gs,n", [(3, 8, 36), (4, 16, 48)])
def test_stored_form_dequantizes_to_the_fake_quantized_weight(bits, gs, n):
    # The fold's primitive: codes / float16 steps / zero points reproduce lwc_fake_quantize bit for bit,
    # also with a shorter last group.
    g = torch.Generator().manual_seed(n)
    w = torch.randn(5, n, generator=g)
    ng = -(-n // gs)
    gamma, beta = torch.rand(5, ng, generator=g) * 0.5 + 0.5, torch.rand(5, ng, generator=g) * 0.5 + 0.5
    codes, scale, zero = lwc_quantize(w, gamma, beta, bits, gs)
    assert codes.dtype == torch.uint8 and int(codes.max()) <= 2**bits - 1
    assert torch.equal(scale, scale.to(torch.float16).float())
    assert torch.equal(dequantize_weight(codes, scale, zero, gs), lwc_fake_quantize(w, gamma, beta, bits, gs))


# --- the config -------------------------------------------------------------------------------------

def _logits(model, x):
    with torch.no_grad():
        return model(x).logits


def _extras(report):
    return {r.extra["block"]: r.extra for r in report.layers if "block" in r.extra}


@pytest.mark.parametrize("act_bits", [None, 8])
def test_untrained_strength_one_equals_rtn(tiny_llm, act_bits):
    model, calib = tiny_llm
    omni = compress(model, [OmniQuant(3, group_size=16, act_bits=act_bits, epochs=0, lwc_init=float("inf"), let=False)],
                    calib, kernels=False).model
    rtn = compress(model, [RTN(3, group_size=16, symmetric=False, act_bits=act_bits)], kernels=False).model
    assert all(type(m) is not nn.Linear or n == "lm_head" for n, m in omni.named_modules())
    assert torch.equal(_logits(omni, calib[0]), _logits(rtn, calib[0]))


def test_training_lowers_block_error_below_rtn_and_the_fold_is_exact(tiny_llm):
    model, calib = tiny_llm
    res = compress(model, [OmniQuant(3, group_size=16, epochs=10, lwc_lr=0.1)], calib, kernels=False)
    blocks = _extras(res.report)
    assert set(blocks) == {"model.layers.0", "model.layers.1"}
    for e in blocks.values():
        assert e["block_mse"] < 0.99 * e["block_mse_rtn"], e
        # the folded QuantizedLinear block computes exactly what the trained fake-quantized block did
        assert e["fold_max_abs_diff"] == 0.0
        assert e["clip_strength_mean"] < 1.0
    q = [m for m in res.model.modules() if isinstance(m, QuantizedLinear)]
    assert len(q) == 14 and all(m.bits == 3 and m.group_size == 16 for m in q)


def test_let_folds_into_the_rmsnorms(tiny_llm):
    model, calib = tiny_llm
    res = compress(model, [OmniQuant(4, group_size=16, act_bits=4, epochs=3, let_lr=0.05)], calib, kernels=False)
    lets = {r.name: r.extra["let"] for r in res.report.layers}
    assert lets["model.layers.0.self_attn.q_proj"] == "model.layers.0.input_layernorm"
    assert lets["model.layers.1.mlp.up_proj"] == "model.layers.1.post_attention_layernorm"
    assert lets["model.layers.0.self_attn.o_proj"] is None and lets["model.layers.0.mlp.down_proj"] is None
    for e in _extras(res.report).values():
        assert e["fold_rel_diff"] < 1e-5
    layer = res.model.model.layers[0]
    assert not torch.equal(layer.input_layernorm.weight, model.model.layers[0].input_layernorm.weight)
    assert not layer.input_layernorm._forward_hooks  # folded: nothing left hanging on the norm
    assert all(m.act_bits == 4 for m in res.model.modules() if isinstance(m, QuantizedLinear))


class _Block(nn.Module):
    """``x + fc2(relu(fc1(norm(x))))`` (pre-norm), or with ``post`` the norm output also as the residual."""

    def __init__(self, d, norm, post=False):
        super().__init__()
        self.norm, self.fc1, self.fc2, self.post = norm, nn.Linear(d, 2 * d), nn.Linear(2 * d, d), post

    def forward(self, x):
        h = self.norm(x)
        return (h if self.post else x) + self.fc2(torch.relu(self.fc1(h)))


class _OnePlusNorm(nn.Module):
    """A Gemma-style RMSNorm: ``x / rms(x) * (1 + weight)``; dividing the weight by s does not divide the output."""

    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * (1 + self.weight)


class _Net(nn.Module):
    def __init__(self, d, make_norm, post):
        super().__init__()
        self.blocks = nn.ModuleList([_Block(d, make_norm(d), post) for _ in range(2)])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


def _stack(make_norm, post=False, d=16):
    torch.manual_seed(0)
    return _Net(d, make_norm, post)


def _calib(d=16):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, 8, d, generator=g) for _ in range(3)]


def test_let_on_layernorm_learns_a_shift_and_folds_it():
    net = _stack(nn.LayerNorm)
    res = compress(net, [OmniQuant(4, group_size=8, act_bits=4, epochs=3, let_lr=0.05)], _calib(), kernels=False)
    for e in _extras(res.report).values():
        assert e["fold_rel_diff"] < 1e-5
    assert not torch.equal(res.model.blocks[0].norm.bias, net.blocks[0].norm.bias)  # the shift went into the bias
    assert isinstance(res.model.blocks[0].fc1, QuantizedLinear) and res.model.blocks[0].fc1.bias is not None


def test_bad_config_values_are_refused():
    with pytest.raises(ValueError, match=r"OmniQuant: bits must be an integer in \[2, 8\], got 9"):
        OmniQuant(9)
    with pytest.raises(ValueError, match="act_bits"):
        OmniQuant(4, act_bits=1)
    with pytest.raises(ValueError, match="per-tensor granularity is not supported"):
        OmniQuant(4, granularity=PerTensor())
    with pytest.raises(ValueError, match="epochs must be a non-negative integer, got -1"):
        OmniQuant(4, epochs=-1)
    with pytest.raises(ValueError, match=r"lwc_lr must be in \(0, 1\), got 0"):
        OmniQuant(4, lwc_lr=0)
    c = OmniQuant(3, granularity=PerGroup(128, ragged=True), act_bits=8)
    assert type(c).from_json(c.to_json()) == c and c.uses_let and not OmniQuant(3).uses_let


def test_let_where_it_cannot_be_folded_is_refused_naming_the_layer(tiny_llm):
    x = _calib()
    bare = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))
    with pytest.raises(ValueError, match="none does: 0 reads a tensor no submodule returns"):
        compress(bare, [OmniQuant(4, group_size=8, act_bits=8, epochs=1)], x)
    with pytest.raises(ValueError, match=r"cannot be folded into 'blocks.0.norm' \(_OnePlusNorm\)"):
        compress(_stack(_OnePlusNorm), [OmniQuant(4, group_size=8, act_bits=8, epochs=1)], x)
    with pytest.raises(ValueError, match="cannot be folded into 'blocks.0.norm'.*used elsewhere too"):
        compress(_stack(nn.LayerNorm, post=True), [OmniQuant(4, group_size=8, act_bits=8, epochs=1)], x)
    model, calib = tiny_llm
    with pytest.raises(ValueError, match="'model.layers.0.self_attn.k_proj' reads the output of "
                                         "'model.layers.0.input_layernorm' but is not quantized"):
        compress(model, [OmniQuant(4, group_size=16, act_bits=8, epochs=1, skip=("lm_head", "*.k_proj"))], calib)
    compress(bare, [OmniQuant(4, group_size=8, act_bits=8, epochs=1, let=False)], x)  # weight clipping only: fine


@pytest.mark.parametrize("inplace", [False, True])
def test_non_finite_loss_stops_naming_the_block_and_leaves_the_model(tiny_llm, inplace):
    model, calib = tiny_llm
    with torch.no_grad():
        model.model.layers[1].post_attention_layernorm.weight.fill_(3e38)  # the MLP overflows in block 1
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="non-finite block reconstruction loss .* in block 'model.layers.1'"):
        compress(model, [OmniQuant(3, group_size=16, epochs=1)], calib, inplace=inplace)
    assert not any(isinstance(m, QuantizedLinear) for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_smollm2_first_blocks_beat_rtn(smollm2):
    # On the real model (first two blocks trained, the rest left float): each block's reconstruction error
    # after one epoch is below RTN's, and the fold is bitwise exact for weight-only.
    from qlite.classical.evaluation import calibration_segments, corpus_tokens, split_halves
    from qlite.paths import data_file

    model, tok = smollm2
    first, _ = split_halves(data_file("wikitext2_test.txt").read_text())
    calib = calibration_segments(corpus_tokens(first, tok), 4, 256, 0)
    skip = ("lm_head", "*.lm_head") + tuple(f"model.layers.{i}.*" for i in range(2, 30))
    res = compress(model, [OmniQuant(3, granularity=PerGroup(128, ragged=True), epochs=1, lwc_lr=5e-2, skip=skip)],
                   calib, kernels=False)
    blocks = _extras(res.report)
    assert set(blocks) == {"model.layers.0", "model.layers.1"}
    for e in blocks.values():
        assert e["block_mse"] < e["block_mse_rtn"] and e["fold_max_abs_diff"] == 0.0
