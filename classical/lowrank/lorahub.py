"""LoraHub (Huang et al. 2023, "LoraHub: Efficient Cross-Task Generalization via Dynamic LoRA
Composition"): gradient-free weights for combining existing LoRA modules on a few examples of an
unseen task.

For modules ``m_i = {layer: (A_i, B_i)}`` of the same targets and ranks, the composed module is
(their eq. 2) ``A = sum_i w_i A_i``, ``B = sum_i w_i B_i`` per layer (the factors are summed, not the
products). The weights minimise ``loss(examples) + l1 * sum_i |w_i|`` (eq. 3) with a derivative-free
optimiser: nevergrad's ``NGOpt``, from ``w = 0`` within ``[-1.5, 1.5]``, as the reference code does.
"""

from __future__ import annotations

import copy
import dataclasses
import logging

import torch
from torch import nn

from ..calibration import call_model, output_logits
from ..distillation import _ids, lm_loss

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LoRAModule:
    """One LoRA module: ``factors[layer] = (A (r, in), B (out, r))`` and the scale ``alpha / r``."""

    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    scale: float


def lora_module(peft_model: nn.Module, adapter: str = "default") -> LoRAModule:
    """The LoRA factors of a peft model (e.g. what :func:`~qlite.classical.lowrank.lora.lora_recover`
    returns), keyed by the base model's layer names."""
    factors, scales = {}, set()
    for n, m in peft_model.named_modules():
        if hasattr(m, "lora_A") and adapter in getattr(m, "lora_A", {}):
            name = n.removeprefix("base_model.model.")
            factors[name] = (m.lora_A[adapter].weight.detach().clone(), m.lora_B[adapter].weight.detach().clone())
            scales.add(float(m.scaling[adapter]))
    if not factors:
        raise ValueError(f"no LoRA layers with adapter {adapter!r} in {type(peft_model).__name__}")
    if len(scales) != 1:
        raise ValueError(f"the LoRA layers of this model use different scales {sorted(scales)}; LoraHub needs one")
    return LoRAModule(factors, scales.pop())


def _check(modules: list[LoRAModule]) -> None:
    if not isinstance(modules, (list, tuple)) or len(modules) < 2:
        raise ValueError(f"lorahub needs a list of at least two LoRA modules, got {modules!r:.80}")
    ref = modules[0]
    for i, m in enumerate(modules[1:], 1):
        if set(m.factors) != set(ref.factors):
            diff = sorted(set(m.factors) ^ set(ref.factors))
            raise ValueError(f"LoRA module {i} targets other layers than module 0 (differing: {diff[:3]}); LoraHub "
                             "combines modules trained on the same target layers: train them with the same targets")
        for n, (a, b) in m.factors.items():
            a0, b0 = ref.factors[n]
            if a.shape != a0.shape or b.shape != b0.shape:
                raise ValueError(f"LoRA module {i} has factors of shape A {tuple(a.shape)}, B {tuple(b.shape)} at {n!r} "
                                 f"but module 0 has A {tuple(a0.shape)}, B {tuple(b0.shape)}; LoraHub sums the factors, so "
                                 "every module needs the same rank: train them with the same r")
        if m.scale != ref.scale:
            raise ValueError(f"LoRA module {i} has scale {m.scale} but module 0 has {ref.scale}; use the same alpha / r")


def combine(modules: list[LoRAModule], weights) -> LoRAModule:
    """The composed module ``A = sum_i w_i A_i``, ``B = sum_i w_i B_i`` of every layer."""
    _check(modules)
    w = [float(x) for x in weights]
    if len(w) != len(modules):
        raise ValueError(f"{len(w)} weights for {len(modules)} modules; give one weight per module")
    out = {}
    for n in modules[0].factors:
        out[n] = (sum(wi * m.factors[n][0] for wi, m in zip(w, modules)), sum(wi * m.factors[n][1] for wi, m in zip(w, modules)))
    return LoRAModule(out, modules[0].scale)


def _peft_with(model: nn.Module, module: LoRAModule):
    from .lora import _require_peft

    peft = _require_peft()
    names = sorted(module.factors)
    r = module.factors[names[0]][0].shape[0]
    pm = peft.get_peft_model(model, peft.LoraConfig(r=r, lora_alpha=module.scale * r, target_modules=names, bias="none"))
    pm.eval()
    return pm


@torch.no_grad()
def _load(pm, module: LoRAModule) -> None:
    for n, (a, b) in module.factors.items():
        layer = pm.base_model.model.get_submodule(n)
        layer.lora_A["default"].weight.copy_(a)
        layer.lora_B["default"].weight.copy_(b)


def lorahub(model: nn.Module, modules: list, examples: list, *, budget: int = 40, l1: float = 0.05,
            bound: float = 1.5, seed: int = 0) -> tuple[nn.Module, list[float]]:
    """Find combination weights for ``modules`` (:class:`LoRAModule` or peft models) on ``examples``
    (token-id tensors, or dicts with ``input_ids``), gradient-free with nevergrad.

    Args:
        model: the base model the modules were trained on (not modified: a copy gets the adapter).
        budget: loss evaluations nevergrad may spend; l1: weight of the ``sum |w_i|`` regulariser.
        seed: nevergrad's random state.
    Returns:
        ``(copy of model with the composed LoRA (a peft model), weights)``.
    Raises:
        ValueError: fewer than two modules, modules of different targets, shapes or scales, no examples.
        ImportError: nevergrad is missing (``pip install 'qlite[llm]'``).
    """
    try:
        import nevergrad as ng
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("lorahub needs nevergrad: pip install 'qlite[llm]'") from e
    mods = [m if isinstance(m, LoRAModule) else lora_module(m) for m in modules]
    _check(mods)
    if not examples:
        raise ValueError("examples is empty: give a few (1, T) token-id tensors of the unseen task")
    pm = _peft_with(copy.deepcopy(model), mods[0])

    def loss(w) -> float:
        _load(pm, combine(mods, w))
        with torch.no_grad():
            total = sum(float(lm_loss(output_logits(call_model(pm, x)), _ids(x))) for x in examples) / len(examples)
        return total + l1 * float(sum(abs(x) for x in w))

    param = ng.p.Array(init=[0.0] * len(mods), lower=-bound, upper=bound)
    param.random_state.seed(seed)
    opt = ng.optimizers.NGOpt(parametrization=param, budget=budget)
    rec = opt.minimize(loss)
    w = [float(x) for x in rec.value]
    _load(pm, combine(mods, w))
    log.info("LoraHub: weights %s, objective %.4f", [round(x, 3) for x in w], loss(w))
    return pm, w
