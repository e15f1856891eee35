"""Putting quantum modules into any ``nn.Module`` by name, in the spirit of peft's ``get_peft_model``.

``inject(model, config, target_modules=["q_proj", "v_proj"])`` returns a copy of ``model`` whose
matching layers are wrapped (Linear adapters) or replaced (``QuantumFFN``), with every base
parameter frozen. Names match by ``fnmatch`` on the qualified module name, and a pattern without a
dot also matches the last component(s), as peft does (``"q_proj"`` matches
``model.layers.3.self_attn.q_proj``). What was injected is recorded on the model
(``model.qlite_adapters``), which :func:`qlite.lm.save_adapters` writes beside the weights.
"""

from __future__ import annotations

import copy
import fnmatch
import logging

import torch
from torch import nn

from ..simulators import estimate_bytes
from .base import LinearAdapter, linear_dims, module_device
from .configs import AdapterConfig, QuantumLoRAConfig, UnitaryAdapterConfig
from .ffn import QuantumFFN
from .generated import QuantumLoRA, WeightGenerator
from .unitary import ColumnBank, UnitaryAdapter, qubits_for

log = logging.getLogger(__name__)

ADAPTER_TYPES = (LinearAdapter, QuantumFFN)
SHARED_TYPES = (WeightGenerator, ColumnBank)  # registered on the root, read by many adapters
GENERATOR_NAME = "qlite_generator"
BANK_NAME = "qlite_unitary"


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, "*." + p) for p in patterns)


def _patterns(target_modules) -> tuple[str, ...]:
    if isinstance(target_modules, str):
        target_modules = (target_modules,)
    try:
        pats = tuple(target_modules)
    except TypeError:
        raise TypeError(f"target_modules must be a name pattern or a list of them, got {target_modules!r}") from None
    if not pats or not all(isinstance(p, str) and p for p in pats):
        raise ValueError(f"target_modules must be non-empty name patterns such as ['q_proj', 'v_proj'], got {target_modules!r}")
    return pats


def _inside_adapter(name: str, adapter_names: list[str]) -> bool:
    return any(name == a or name.startswith(a + ".") for a in adapter_names)


def _candidates(model: nn.Module, kind: str) -> list[str]:
    """Names a user could target, for the error message: linear layers, or modules holding them."""
    names = []
    for n, m in model.named_modules():
        if not n:
            continue
        if kind == "linear" and linear_dims(m) is not None:
            names.append(n)
        elif kind == "mlp" and linear_dims(m) is None and any(linear_dims(c) is not None for c in m.children()):
            names.append(n)
    short = sorted({n.rsplit(".", 1)[-1] for n in names})
    return short[:30] + (["..."] if len(short) > 30 else [])


def find_targets(model: nn.Module, config: AdapterConfig, target_modules) -> list[str]:
    """Qualified names of the modules ``config`` will wrap; raises naming the candidates when none match."""
    pats = _patterns(target_modules)
    existing = [n for n, m in model.named_modules() if isinstance(m, ADAPTER_TYPES)]
    found = [n for n, m in model.named_modules() if n and _matches(n, pats) and not _inside_adapter(n, existing)]
    # a pattern matching a module and its children (e.g. "*mlp*") wraps the outermost one only
    found = [n for n in found if not any(n.startswith(o + ".") for o in found if o != n)]
    if not found:
        raise ValueError(f"target_modules={list(pats)} match no module of this {type(model).__name__}; "
                         f"candidate names for {type(config).__name__}: {_candidates(model, config.wraps)}")
    for n in found:
        m = model.get_submodule(n)
        if config.wraps == "linear" and linear_dims(m) is None:
            raise TypeError(f"{type(config).__name__} wraps Linear-like layers, but {n!r} is a {type(m).__name__}; "
                            f"target its linear layers instead (candidates: {_candidates(model, 'linear')})")
        if config.wraps == "mlp" and not any(linear_dims(c) is not None for c in m.modules()):
            raise TypeError(f"QuantumFFNConfig replaces MLP blocks, but {n!r} ({type(m).__name__}) holds no linear layer")
    return found


def _check_memory(model: nn.Module, config: AdapterConfig, n_targets: int, tokens: int | None) -> None:
    """Per-token circuits hold a few states of ``2**n`` amplitudes per token: estimate before building."""
    if tokens is None or not hasattr(config, "n_qubits") or isinstance(config, QuantumLoRAConfig):
        return
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
        raise ValueError(f"tokens must be a positive int (tokens per forward, batch x seqlen), got {tokens!r}")
    from ..simulators.native import _available_bytes

    heads = getattr(config, "heads", 1)
    need = estimate_bytes(config.n_qubits, tokens * heads, torch.float32, training=True)
    have = _available_bytes(module_device(model))
    if need > have:
        raise ValueError(f"{type(config).__name__}(n_qubits={config.n_qubits}) on {tokens} tokens needs about "
                         f"{need / 2**30:.1f} GiB per adapted layer, but {have / 2**30:.1f} GiB is available; use fewer "
                         f"qubits or fewer tokens per batch")


def inject(model: nn.Module, config: AdapterConfig, *, target_modules, inplace: bool = False, seed: int = 0,
           tokens: int | None = None) -> nn.Module:
    """Wrap or replace the modules of ``model`` named by ``target_modules`` with ``config``'s module.

    Args:
        model: any ``nn.Module`` (Hugging Face Llama / GPT-2 / BERT, a plain ``nn.Sequential``).
        config: a :class:`~qlite.lm.QuantumAdapterConfig`, :class:`~qlite.lm.QuantumFFNConfig`,
            :class:`~qlite.lm.QuantumLoRAConfig` or :class:`~qlite.lm.UnitaryAdapterConfig`.
        target_modules: ``fnmatch`` patterns of qualified module names (a pattern without a dot also
            matches the trailing components: ``"q_proj"``, ``"mlp"``).
        inplace: modify ``model`` itself; otherwise a deep copy is returned and ``model`` is untouched.
        seed: seeds the adapters' initial weights (a private generator; the global RNG is untouched).
        tokens: tokens per forward (batch x seqlen), to estimate the memory of per-token circuits
            before anything is built.

    Returns:
        The model with adapters; every parameter outside the new modules has ``requires_grad=False``.

    Raises:
        ValueError: no module matches (the message lists candidate names), ``n_qubits`` above the layer
            width, a rank out of range, or too little memory for the circuits at ``tokens``.
        TypeError: a matched module the config cannot wrap (e.g. a whole attention block for a Linear adapter).

    Example:
        >>> from torch import nn
        >>> from qlite.lm import inject, QuantumAdapterConfig
        >>> net = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
        >>> hybrid = inject(net, QuantumAdapterConfig(n_qubits=4), target_modules=["0"])
        >>> type(hybrid[0]).__name__, net[0].weight.requires_grad
        ('QuantumAdapter', True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, AdapterConfig):
        raise TypeError(f"config must be a qlite.lm config such as QuantumAdapterConfig(n_qubits=8), got {config!r}")
    names = find_targets(model, config, target_modules)
    _check_memory(model, config, len(names), tokens)
    from .io import base_fingerprint

    fingerprint = getattr(model, "qlite_base_fingerprint", None) or base_fingerprint(model)
    out = model if inplace else copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    for p in out.parameters():
        p.requires_grad_(False)
    built = _build_all(out, config, names, gen)
    for n, m in zip(names, built):
        out.set_submodule(n, m)
    records = list(getattr(out, "qlite_adapters", []))
    records.append({"config": config.to_dict(), "targets": names, "seed": seed})
    out.qlite_adapters = records
    out.qlite_base_fingerprint = fingerprint
    log.info("injected %s into %d modules", type(config).__name__, len(names))
    return out


def _register_shared(model: nn.Module, stem: str, module: nn.Module) -> None:
    """Register ``module`` on the root under a free name, with the hooks that refresh its cache."""
    k = 0
    while hasattr(model, f"{stem}{k or ''}"):
        k += 1
    model.add_module(f"{stem}{k or ''}", module)
    # The whole model's forward with gradients computes the shared tensors once (each layer reads its part).
    model.register_forward_pre_hook(_Invalidate(module))
    model.register_forward_hook(_Invalidate(module))


def _build_all(model: nn.Module, config: AdapterConfig, names: list[str], gen: torch.Generator) -> list[nn.Module]:
    bases = [model.get_submodule(n) for n in names]
    if isinstance(config, UnitaryAdapterConfig):
        return _build_unitary(model, config, bases, gen)
    if not isinstance(config, QuantumLoRAConfig):
        return [config.build(b, generator=gen) for b in bases]
    shapes = [linear_dims(b) for b in bases]
    dev = module_device(bases[0])
    if config.scope == "layer":
        return [QuantumLoRA(b, config, WeightGenerator([s], config, generator=gen, device=dev), 0, owned=True)
                for b, s in zip(bases, shapes)]
    shared = WeightGenerator(shapes, config, generator=gen, device=dev)
    _register_shared(model, GENERATOR_NAME, shared)
    return [QuantumLoRA(b, config, shared, i, owned=False) for i, b in enumerate(bases)]


def _build_unitary(model: nn.Module, config: UnitaryAdapterConfig, bases: list[nn.Module],
                   gen: torch.Generator) -> list[nn.Module]:
    """One :class:`ColumnBank` per qubit count holds the U and V circuits of every target."""
    for b in bases:  # the rank is checked before any bank is built
        d_in, d_out = linear_dims(b)
        if not 1 <= config.r <= min(d_in, d_out):
            raise ValueError(f"r={config.r} must lie in [1, {min(d_in, d_out)}] for a {d_in} -> {d_out} layer")
    slots: dict[int, int] = {}  # qubits -> circuits so far
    where = []
    for b in bases:
        d_in, d_out = linear_dims(b)
        pair = []
        for d in (d_out, d_in):
            n = qubits_for(d)
            pair.append((n, slots.get(n, 0)))
            slots[n] = slots.get(n, 0) + 1
        where.append(pair)
    dev = module_device(bases[0])
    banks = {n: ColumnBank(n, count, config.r, config.depth, config.entangler, generator=gen, device=dev)
             for n, count in sorted(slots.items())}
    for n, bank in banks.items():
        _register_shared(model, f"{BANK_NAME}_{n}q", bank)
    return [UnitaryAdapter(b, config, (banks[nu], iu), (banks[nv], iv)) for b, ((nu, iu), (nv, iv)) in zip(bases, where)]


class _Invalidate:
    """Root-model hook, before and after its forward: with gradients on, the shared factors are
    generated once per forward and the cached graph is not kept after it. Without gradients the cache
    lives until a parameter changes (decoding does not regenerate the factors at every token)."""

    def __init__(self, generator: nn.Module):
        self.generator = generator

    def __call__(self, *_):
        if torch.is_grad_enabled():
            self.generator.invalidate()


def adapter_modules(model: nn.Module) -> dict[str, nn.Module]:
    """``{qualified name: module}`` of every qlite.lm module in ``model`` (adapters, QuantumFFNs, shared generators)."""
    out = {}
    for n, m in model.named_modules():
        shared = isinstance(m, SHARED_TYPES) and n.rsplit(".", 1)[-1].startswith((GENERATOR_NAME, BANK_NAME))
        if isinstance(m, ADAPTER_TYPES) or shared:
            if not any(n.startswith(o + ".") for o in out):
                out[n] = m
    return out


def adapter_patterns(model: nn.Module) -> tuple[str, ...]:
    """``fnmatch`` patterns of every adapter's own layers (not its wrapped base), for the ``skip=`` of a
    :func:`qlite.classical.compress` config that should leave adapters in float."""
    pats = []
    for n, m in adapter_modules(model).items():
        if isinstance(m, LinearAdapter):
            pats += [f"{n}.{c}" for c, _ in m.named_children() if c != "base"]
            pats += [f"{n}.{c}.*" for c, _ in m.named_children() if c != "base"]
        else:
            pats += [n, f"{n}.*"]
    return tuple(pats)


def merge_and_unload(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold every mergeable adapter (QuantumLoRA, UnitaryAdapter) into its base layer and remove the
    adapters: the result is the base architecture with updated weights, as fast as the base.

    Raises:
        ValueError: the model holds per-token adapters (QuantumAdapter, QuantumFFN), which cannot merge,
            or a compressed base layer (quantized, sparse, low rank) a dense update would undo.
    """
    found = adapter_modules(model)
    if not found:
        raise ValueError("the model holds no qlite.lm adapters to merge")
    bad = [n for n, m in found.items() if isinstance(m, ADAPTER_TYPES) and not m.mergeable]
    if bad:
        raise ValueError(f"{bad[:3]} run circuits on every token and cannot be merged into weights; only "
                         "QuantumLoRA and UnitaryAdapter merge (keep per-token adapters as modules)")
    out = model if inplace else copy.deepcopy(model)
    for n, m in adapter_modules(out).items():
        if isinstance(m, LinearAdapter):
            out.set_submodule(n, m.merge())
    for n in [n for n, m in out.named_children() if isinstance(m, SHARED_TYPES)]:
        delattr(out, n)
    for hooks in (out._forward_pre_hooks, out._forward_hooks):
        for k in [k for k, h in hooks.items() if isinstance(h, _Invalidate)]:
            del hooks[k]
    for attr in ("qlite_adapters",):
        if hasattr(out, attr):
            delattr(out, attr)
    return out
