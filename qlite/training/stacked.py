"""Several models of one architecture as one batched model, and the stacked Adam step.

:func:`qlite.fit_many` trains seeds and hyper-parameter settings of one architecture together.
The models' parameters and buffers are stacked along a leading model dimension ``M`` and one copy
of the module (the *skeleton*) runs under ``torch.func.vmap(functional_call)``: every classical
operation (Linear, BatchNorm with its running statistics, activations, Fourier features) runs once
for all ``M`` models, as a batched kernel, instead of ``M`` times.

The simulator's batch pass is a custom ``torch.autograd.Function`` (the adjoint backward of
``simulators/native.py``), which has no batching rule. Quantum layers of the skeleton therefore
call their backend through :class:`_PerModel`, whose ``vmap`` rule runs the backend once per model
on that model's weights and inputs -- the same call, strategy and adjoint backward as a separate
fit, so the circuit part is exact and the classical part is batched. (A leading model dimension
inside the simulator would batch the circuit part too; not built.)

Pure pieces, tested against their references: :func:`architecture_difference` (which attribute,
parameter or buffer differs between two models) and :func:`adam_step` (``torch.optim.Adam``'s
update, the single-tensor formula, with per-model ``lr``, ``betas`` and ``weight_decay``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
from collections.abc import Sequence

import torch
from torch import nn

# attributes of nn.Module bookkeeping (underscored) and the train / eval flag are not architecture
_SKIP_ATTRS = frozenset({"training"})
_FUNCTIONS = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


# -- architecture check ------------------------------------------------------------------------
def _describe(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"a tensor of shape {tuple(v.shape)}, {v.dtype}"
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _value_difference(a, b, where: str, depth: int = 0) -> str | None:
    """Where two attribute values differ (``None`` when equal)."""
    if type(a) is not type(b):
        return f"{where} is {type(a).__name__} {_describe(a)} vs {type(b).__name__} {_describe(b)}"
    if isinstance(a, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device or not torch.equal(a, b):
            return f"{where} (a plain tensor attribute, shared by the batched run) differs: {_describe(a)} vs {_describe(b)}"
        return None
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{where} has keys {list(a)} vs {list(b)}"
        for k in a:
            d = _value_difference(a[k], b[k], f"{where}[{k!r}]", depth)
            if d:
                return d
        return None
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return f"{where} has {len(a)} entries vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = _value_difference(x, y, f"{where}[{i}]", depth)
            if d:
                return d
        return None
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return None
    if (isinstance(a, (int, float, complex, str, bytes, bool, type(None), torch.dtype, torch.device))
            or dataclasses.is_dataclass(a) or isinstance(a, _FUNCTIONS) or type(a).__eq__ is not object.__eq__):
        # numbers, strings, frozen descriptions (a Circuit), functions: by value (identity for functions)
        try:
            same = bool(a == b)
        except Exception:  # noqa: BLE001 - an __eq__ that cannot answer counts as different
            same = False
        return None if same else f"{where} is {_describe(a)} vs {_describe(b)}"
    if depth >= 3:
        return None
    # an arbitrary object (a simulator backend): its type and public settings; private caches are not architecture
    da = {k: v for k, v in vars(a).items() if not k.startswith("_")} if hasattr(a, "__dict__") else {}
    db = {k: v for k, v in vars(b).items() if not k.startswith("_")} if hasattr(b, "__dict__") else {}
    return _value_difference(da, db, where, depth + 1) if (da or db) else None


def architecture_difference(model: nn.Module, reference: nn.Module) -> str | None:
    """The first way in which ``model`` is not the same architecture as ``reference``, in words, or
    ``None`` when one skeleton can run both (only parameter and buffer *values* differ).

    Compared: the module tree (names and types), every public attribute of every module (sizes,
    ``omega_0``, a quantum layer's circuit and backend settings, plain tensor attributes by value),
    parameter and buffer names, shapes, dtypes, devices and ``requires_grad``, and hooks (refused:
    a skeleton would run only the reference's).
    """
    if type(model) is not type(reference):
        return f"the model is a {type(model).__name__} vs a {type(reference).__name__}"
    mods, refs = dict(model.named_modules()), dict(reference.named_modules())
    if list(mods) != list(refs):
        extra = [n for n in mods if n not in refs]
        missing = [n for n in refs if n not in mods]
        if extra or missing:
            return f"the module tree differs: modules {extra} only in this model, {missing} only in the reference"
        return f"the module order differs: {list(mods)} vs {list(refs)}"
    for name, mod in mods.items():
        label = name or "the root module"
        if type(mod) is not type(refs[name]):
            return f"module {label!r} is a {type(mod).__name__} vs a {type(refs[name]).__name__}"
        for hooks in _HOOKS:
            if getattr(mod, hooks, None) or getattr(refs[name], hooks, None):
                return f"module {label!r} has {hooks.strip('_').replace('_', ' ')}: a batched run would call only one model's"
        a = {k: v for k, v in vars(mod).items() if not k.startswith("_") and k not in _SKIP_ATTRS}
        b = {k: v for k, v in vars(refs[name]).items() if not k.startswith("_") and k not in _SKIP_ATTRS}
        prefix = f"{name}." if name else ""
        if list(a) != list(b):
            return f"module {label!r} has attributes {sorted(a)} vs {sorted(b)}"
        for k in a:
            d = _value_difference(a[k], b[k], f"attribute {prefix}{k}")
            if d:
                return d
    for kind, these, those in (("parameter", model.named_parameters(), reference.named_parameters()),
                               ("buffer", model.named_buffers(), reference.named_buffers())):
        these, those = dict(these), dict(those)
        if list(these) != list(those):
            return f"{kind}s differ: {list(these)} vs {list(those)}"
        for k, t in these.items():
            r = those[k]
            for what, x, y in (("shape", tuple(t.shape), tuple(r.shape)), ("dtype", t.dtype, r.dtype),
                               ("device", t.device, r.device), ("requires_grad", t.requires_grad, r.requires_grad)):
                if x != y:
                    return f"{kind} {k!r} has {what} {x} vs {y}"
    return None


def check_same_architecture(models: Sequence[nn.Module]) -> None:
    """Raise ``ValueError`` naming the first difference between ``models[i]`` and ``models[0]``."""
    for i, m in enumerate(models[1:], 1):
        d = architecture_difference(m, models[0])
        if d:
            raise ValueError(f"fit_many trains models of one architecture, but models[{i}] differs from models[0]: {d}; "
                             "fit them in separate calls (or with qlite.fit)")
    if len({id(p) for m in models for p in (*m.parameters(), *m.buffers())}) != sum(
            len(list(m.parameters())) + len(list(m.buffers())) for m in models):
        raise ValueError("fit_many got models that share parameters or buffers (the same module twice?); "
                         "build one model per run")


# -- the skeleton ------------------------------------------------------------------------------
class _PerModel(torch.autograd.Function):
    """``fn(weights, x)`` whose batching rule calls ``fn`` once per model (the simulator has no
    batching rule of its own). Under ``vmap`` the rule runs on plain tensors, so autograd records
    the backend's own differentiable call per model; outside ``vmap`` it is never used."""

    @staticmethod
    def forward(fn, weights, x):
        return fn(weights, x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - only the vmap rule is used
        raise RuntimeError("_PerModel is meant to run under torch.func.vmap only")

    @staticmethod
    def vmap(info, in_dims, fn, weights, x):
        _, wd, xd = in_dims
        # contiguous slices: the simulator reshapes its inputs, and strided ones would be copied at every use
        outs = [fn(weights if wd is None else weights.select(wd, m).contiguous(),
                   x if xd is None else x.select(xd, m).contiguous())
                for m in range(info.batch_size)]
        return torch.stack(outs), 0


class _PerModelBackend:
    """A quantum layer's backend, called once per model of the batch (see :class:`_PerModel`)."""

    def __init__(self, backend):
        self.inner = backend
        self.name = getattr(backend, "name", type(backend).__name__)

    def __call__(self, circuit, weights, x):
        return _PerModel.apply(lambda w, xx: self.inner(circuit, w, xx), weights, x)


def skeleton(model: nn.Module) -> nn.Module:
    """A private copy of ``model`` that runs under ``vmap(functional_call)``: its quantum layers call
    their backend per model and skip their per-call finiteness check (a data-dependent branch that
    ``vmap`` cannot take; :func:`qlite.fit_many` checks the data where it enters)."""
    from ..layers import QuantumLayer

    base = copy.deepcopy(model)
    for m in base.modules():
        if isinstance(m, QuantumLayer):
            m.backend = _PerModelBackend(m.backend)
            if hasattr(m, "check_finite"):
                m.check_finite = False
    return base


def stack_state(models: Sequence[nn.Module]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Parameters and buffers of ``models`` stacked on a new leading dimension (copies, not views:
    the models are untouched until :func:`unstack_state`). Stacked parameters are leaves that
    require grad where the models' do."""
    params = {k: torch.stack([m.get_parameter(k).detach() for m in models]).requires_grad_(p.requires_grad)
              for k, p in models[0].named_parameters()}
    buffers = {k: torch.stack([m.get_buffer(k).detach() for m in models]) for k, _ in models[0].named_buffers()}
    return params, buffers


@torch.no_grad()
def unstack_state(models: Sequence[nn.Module], params: dict, buffers: dict) -> None:
    """Copy model ``i``'s slice of the stacked parameters and buffers into ``models[i]``."""
    for i, m in enumerate(models):
        for k, t in params.items():
            m.get_parameter(k).copy_(t[i])
        for k, t in buffers.items():
            m.get_buffer(k).copy_(t[i])


# -- stacked Adam ------------------------------------------------------------------------------
@dataclasses.dataclass
class AdamState:
    """Per parameter: the step count (one for all models: they step in lockstep) and the moments."""

    step: int
    exp_avg: list[torch.Tensor]
    exp_avg_sq: list[torch.Tensor]


def adam_init(params: Sequence[torch.Tensor]) -> AdamState:
    return AdamState(0, [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
                     [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params])


@torch.no_grad()
def adam_step(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], state: AdamState, *,
              lr: Sequence[float], betas: Sequence[tuple[float, float]], weight_decay: Sequence[float],
              eps: float = 1e-8) -> None:
    """One ``torch.optim.Adam`` step (defaults: no amsgrad, not decoupled) of every model at once.

    ``params[j]`` and ``grads[j]`` have a leading model dimension ``M``; ``lr``, ``betas`` and
    ``weight_decay`` give one value per model. The update is torch's single-tensor formula
    (``torch/optim/adam.py``, ``_single_tensor_adam``) with each scalar turned into a per-model
    column, bias corrections computed in Python floats as torch does::

        g = grad + wd * p;  m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g^2
        p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """
    state.step += 1
    t = state.step
    for j, (p, g) in enumerate(zip(params, grads)):
        shape = (-1,) + (1,) * (p.dim() - 1)

        def col(values):
            return torch.tensor(list(values), dtype=p.dtype, device=p.device).reshape(shape)

        if any(w != 0 for w in weight_decay):
            g = g + col(weight_decay) * p
        b1 = [b[0] for b in betas]
        b2 = [b[1] for b in betas]
        m, v = state.exp_avg[j], state.exp_avg_sq[j]
        m.lerp_(g, col(1 - b for b in b1))
        v.mul_(col(b2)).addcmul_(g, g * col(1 - b for b in b2))
        step_size = col(-(a / (1 - b ** t)) for a, b in zip(lr, b1))
        denom = (v.sqrt() / col((1 - b ** t) ** 0.5 for b in b2)).add_(eps)
        p.add_(step_size * m / denom)
