"""LoraHub: the composed module is exactly the weighted sum of the factors, the search returns a
peft model on a copy, modules of other targets / shapes are refused."""

import copy

import pytest
import torch

from qlite.classical.lowrank import LoRAModule, lora_module, lorahub, lorahub_combine

pytest.importorskip("nevergrad")
peft = pytest.importorskip("peft")

NAMES = ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]


def _module(model, seed, r=2, names=NAMES):
    g = torch.Generator().manual_seed(seed)
    f = {}
    for n in names:
        lin = model.get_submodule(n)
        f[n] = (torch.randn(r, lin.in_features, generator=g) * 0.3, torch.randn(lin.out_features, r, generator=g) * 0.3)
    return LoRAModule(f, 2.0)


def test_combination_is_the_weighted_sum_of_factors_and_the_model_uses_it(tiny_llm):
    model, windows = tiny_llm
    mods = [_module(model, s) for s in (1, 2, 3)]
    w = [0.5, -1.0, 0.25]
    c = lorahub_combine(mods, w)
    for n in NAMES:
        assert torch.equal(c.factors[n][0], 0.5 * mods[0].factors[n][0] + -1.0 * mods[1].factors[n][0] + 0.25 * mods[2].factors[n][0])
        assert torch.equal(c.factors[n][1], 0.5 * mods[0].factors[n][1] + -1.0 * mods[1].factors[n][1] + 0.25 * mods[2].factors[n][1])
    # the model with the composed adapter computes W x + scale * B A x at the targets
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for n in NAMES:
            a, b = c.factors[n]
            ref.get_submodule(n).weight += 2.0 * b @ a
    before = copy.deepcopy(model.state_dict())
    pm, weights = lorahub(model, mods, windows[:2], budget=4)
    assert len(weights) == 3 and all(-1.5 <= x <= 1.5 for x in weights)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # caller's model untouched
    from qlite.classical.lowrank.lorahub import _load

    _load(pm, c)
    with torch.no_grad():
        torch.testing.assert_close(pm(windows[0]).logits, ref(windows[0]).logits, atol=1e-5, rtol=1e-5)
    # a peft model's factors read back as a module
    back = lora_module(pm)
    assert set(back.factors) == set(NAMES) and back.scale == 2.0 and torch.equal(back.factors[NAMES[0]][0], c.factors[NAMES[0]][0])


def test_lorahub_does_not_lose_to_the_base_on_its_examples(tiny_llm):
    model, windows = tiny_llm
    mods = [_module(model, s) for s in (1, 2)]
    pm, w = lorahub(model, mods, windows[:1], budget=8, l1=0.0)
    from qlite.classical.distillation import lm_loss

    with torch.no_grad():
        base = float(lm_loss(model(windows[0]).logits, windows[0]))
        got = float(lm_loss(pm(windows[0]).logits, windows[0]))
    assert got <= base + 1e-6  # w = 0 (the base) is the starting point nevergrad must beat or keep


def test_modules_of_other_targets_or_shapes_are_refused(tiny_llm):
    model, windows = tiny_llm
    a = _module(model, 1)
    with pytest.raises(ValueError, match=r"module 1 targets other layers than module 0 .*same targets"):
        lorahub(model, [a, _module(model, 2, names=NAMES[:1])], windows)
    with pytest.raises(ValueError, match=r"module 1 has factors of shape A \(3, 32\).*same r"):
        lorahub(model, [a, _module(model, 2, r=3)], windows)
    with pytest.raises(ValueError, match="at least two LoRA modules"):
        lorahub(model, [a], windows)
    with pytest.raises(ValueError, match="2 weights for 3 modules"):
        lorahub_combine([a, a, a], [1.0, 2.0])
