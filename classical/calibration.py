"""Block-by-block calibration through forward hooks (the *prepare -> feed data -> convert* loop).

1. The inputs of the first block are captured with a forward pre-hook while the container temporarily
   holds only that block, so the rest of the stack is not run (no exception is raised to stop it).
2. For each block in turn: group its target linears by the input tensor they share (q/k/v, gate/up),
   hang one observer per group on a forward hook, feed every calibration sample through the block,
   let the method replace the layers, then feed the samples again so that the *compressed* outputs
   become the next block's inputs (GPTQ, Frantar et al. 2022, Sec. 4 "sequential" calibration).
3. Target layers outside the blocks (e.g. a classifier head) are calibrated last, on a whole-model
   pass with every block already compressed.

With ``offload=True`` only the block being processed lives on ``device``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .blocks import Blocks

log = logging.getLogger(__name__)

# Keyword arguments that carry a KV cache: calibration feeds each block many times, so none is kept.
_CACHE_KWARGS = ("past_key_values", "past_key_value", "layer_past", "cache")


def call_model(model: nn.Module, x: Any):
    """Feed one calibration item: ``model(x)`` for a tensor, ``model(**x)`` for a dict."""
    if isinstance(x, dict):
        return model(**x)
    if isinstance(x, (tuple, list)):
        return model(*x)
    return model(x)


def output_logits(out) -> torch.Tensor:
    """The logits of a model's output: a tensor, an object with ``.logits`` (transformers), or the
    first element of a tuple."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    return out[0]


def move(obj: Any, device: torch.device | str | None):
    """Move the tensors of a (nested) argument structure to ``device``."""
    if device is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(move(o, device) for o in obj)
    if isinstance(obj, list):
        return [move(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: move(v, device) for k, v in obj.items()}
    return obj


def first_tensor(out: Any) -> torch.Tensor:
    """The hidden states in a block's output (a tensor, or the first element of a tuple / ModelOutput)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return out[0]
    if isinstance(out, dict):
        return next(iter(out.values()))
    raise TypeError(f"cannot find the hidden states in a block output of type {type(out).__name__}")


@contextlib.contextmanager
def _only_first_block(model: nn.Module, blocks: Blocks):
    """Temporarily make the container hold only its first block."""
    parent_name, _, attr = blocks.prefix.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    original = getattr(parent, attr)
    stub = type(original)(blocks.blocks[0]) if isinstance(original, nn.Sequential) else nn.ModuleList(blocks.blocks[:1])
    setattr(parent, attr, stub)
    try:
        yield
    finally:
        setattr(parent, attr, original)


@torch.no_grad()
def capture_first_inputs(model, blocks: Blocks, calib: list, device) -> list[tuple[tuple, dict]]:
    """``(args, kwargs)`` of the first block for every calibration item, on ``device``."""
    if blocks.container is None or blocks.prefix == "":
        # The model is the container (or the only block): its inputs are the calibration items.
        return [as_call(x, device) for x in calib]
    records: list[tuple[tuple, dict]] = []

    def grab(_m, args, kwargs):
        kw = {k: (None if k in _CACHE_KWARGS else v) for k, v in kwargs.items()}
        if "use_cache" in kw:
            kw["use_cache"] = False
        records.append((tuple(args), kw))

    first = blocks.blocks[0]
    with _only_first_block(model, blocks):
        home = _device_of(model)
        if device is not None:
            model.to(device)
        handle = first.register_forward_pre_hook(grab, with_kwargs=True)
        try:
            for x in calib:
                call_model(model, move(x, device))
        finally:
            handle.remove()
            if device is not None and home is not None:
                model.to(home)
    return [(move(a, device), move(k, device)) for a, k in records]


def _device_of(m: nn.Module):
    for t in m.parameters():
        return t.device
    for t in m.buffers():
        return t.device
    return None


class ActivationObserver:
    """Running statistics of the ``(..., in)`` inputs of one group of linear layers.

    Only what is asked for is kept: the Hessian proxy ``H = 2/n sum x x^T`` (GPTQ Eq. 1, SparseGPT),
    per-channel ``max|x|`` (SmoothQuant Eq. 4), per-channel ``mean|x|`` (AWQ Sec. 3.2), per-channel
    ``sum x^2`` (Wanda), and a random subset of at most ``max_rows`` token rows (AWQ's searches).
    """

    def __init__(
        self,
        layer: str,
        in_features: int,
        *,
        hessian=False,
        absmax=False,
        absmean=False,
        sqsum=False,
        max_rows: int = 0,
        total_rows: int = 0,
        seed: int = 0,
    ):
        self.layer = layer
        self.n = 0
        self.H = torch.zeros(in_features, in_features) if hessian else None
        self.absmax = torch.zeros(in_features) if absmax else None
        self.abssum = torch.zeros(in_features) if absmean else None
        self.sqsum = torch.zeros(in_features) if sqsum else None
        self.max_rows, self.total_rows = max_rows, total_rows
        self.rows: list[torch.Tensor] = []
        self._gen = torch.Generator().manual_seed(seed)

    @property
    def absmean(self) -> torch.Tensor:
        return self.abssum / max(self.n, 1)

    def samples(self) -> torch.Tensor:
        return torch.cat(self.rows) if self.rows else torch.empty(0)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()  # (tokens, in)
        if not torch.isfinite(x).all():
            raise ValueError(
                f"non-finite activations entering layer {self.layer!r} during calibration; "
                "check the calibration inputs and the layers before it (NaN/Inf weights upstream?)"
            )
        t = x.shape[0]
        dev = x.device
        for name in ("H", "absmax", "abssum", "sqsum"):
            v = getattr(self, name)
            if v is not None and v.device != dev:
                setattr(self, name, v.to(dev))
        if self.H is not None:
            # Running mean of 2 x x^T, rescaled as in GPTQ's add_batch so H never holds a huge sum.
            self.H.mul_(self.n / (self.n + t))
            xs = x * math.sqrt(2.0 / (self.n + t))
            self.H.addmm_(xs.t(), xs)
        if self.absmax is not None:
            torch.maximum(self.absmax, x.abs().amax(dim=0), out=self.absmax)
        if self.abssum is not None:
            self.abssum.add_(x.abs().sum(dim=0))
        if self.sqsum is not None:
            self.sqsum.add_((x * x).sum(dim=0))
        if self.max_rows:
            p = min(1.0, self.max_rows / max(self.total_rows, 1))
            keep = torch.rand(t, generator=self._gen) < p
            self.rows.append(x[keep.to(dev)])
        self.n += t


@dataclass
class Group:
    """Linear layers of one block that read the same input tensor, in call order."""

    names: list[str]
    modules: list[nn.Module]

    def observer(self, **stats) -> ActivationObserver:
        """An :class:`ActivationObserver` of the group's shared input keeping ``stats``."""
        from .layers import linear_weight

        return ActivationObserver(self.names[0], linear_weight(self.modules[0]).shape[1], **stats)


@torch.no_grad()
def observe_inputs(model: nn.Module, calib: Iterable, names: Iterable[str], **stats) -> dict[str, ActivationObserver]:
    """Whole-model forwards over ``calib`` with an :class:`ActivationObserver` (keeping ``stats``) on the
    input of each named linear layer; returns them by name."""
    from .layers import linear_weight

    names = list(names)
    obs = {n: ActivationObserver(n, linear_weight(model.get_submodule(n)).shape[1], **stats) for n in names}
    handles = [model.get_submodule(n).register_forward_pre_hook(lambda _m, a, o=obs[n]: o.update(a[0])) for n in names]
    try:
        for x in calib:
            call_model(model, x)
    finally:
        for h in handles:
            h.remove()
    return obs


@torch.no_grad()
def input_groups(block: nn.Module, targets: dict[str, nn.Module], args, kwargs) -> list[Group]:
    """Group ``targets`` (qualified name -> module inside ``block``) by the identity of their input
    tensor during one forward of ``block``. Layers never called form singleton groups at the end."""
    seen: dict[int, Group] = {}
    order: list[Group] = []
    called: set[str] = set()
    alive: list[torch.Tensor] = []  # keeps inputs alive so that id() values are not reused
    handles = []
    for name, mod in targets.items():

        def hook(_m, a, name=name, mod=mod):
            if name in called:
                return
            called.add(name)
            alive.append(a[0])
            key = id(a[0])
            if key not in seen:
                seen[key] = Group([], [])
                order.append(seen[key])
            seen[key].names.append(name)
            seen[key].modules.append(mod)

        handles.append(mod.register_forward_pre_hook(hook))
    try:
        block(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    order += [Group([n], [m]) for n, m in targets.items() if n not in called]
    return order


@torch.no_grad()
def observe(block: nn.Module, groups: list[Group], observers: list, inputs: Iterable[tuple[tuple, dict]]) -> None:
    """Feed ``inputs`` through ``block`` with each group's observer hooked on its first layer."""
    handles = []
    for g, obs in zip(groups, observers):
        if obs is not None:
            handles.append(g.modules[0].register_forward_pre_hook(lambda _m, a, obs=obs: obs.update(a[0])))
    try:
        for args, kwargs in inputs:
            block(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def propagate(block: nn.Module, inputs: list[tuple[tuple, dict]]) -> list[tuple[tuple, dict]]:
    """The next block's inputs: this block's outputs in place of the first positional argument (or of
    the first keyword argument when the block was called with keywords only)."""
    out = []
    for args, kwargs in inputs:
        h = first_tensor(block(*args, **kwargs))
        if args:
            out.append(((h, *args[1:]), kwargs))
        else:
            k0 = next(iter(kwargs))
            out.append(((), {**kwargs, k0: h}))
    return out


def rows_of(inputs: list[tuple[tuple, dict]]) -> int:
    """Number of token rows the first block input carries over all calibration items."""
    n = 0
    for args, kwargs in inputs:
        x = args[0] if args else next(iter(kwargs.values()))
        n += x.shape[:-1].numel() if x.dim() > 1 else x.numel()
    return n


def run_blockwise(
    model: nn.Module,
    blocks: Blocks,
    calib: list,
    targets: dict[str, nn.Module],
    make_observer: Callable[[Group, int], Any],
    convert: Callable[[Group, Any], None],
    *,
    device=None,
    offload: bool = False,
    sequential: bool = False,
) -> None:
    """Drive the prepare -> feed -> convert loop over ``blocks`` (see the module docstring).

    With ``sequential`` each group inside a block is observed only after the groups called before it
    were converted (GPTQ's "true sequential" option: one block pass per group instead of one per block).

    Args:
        targets: qualified name -> linear layer of every layer to compress.
        make_observer: ``(group, total_rows) -> observer`` with an ``update(x)`` method, or ``None``.
        convert: ``(group, observer) -> None``; replaces the group's layers in the model.
    """
    home = _device_of(model)
    if device is not None and not offload:
        model.to(device)
    inputs = capture_first_inputs(model, blocks, calib, device)
    total = rows_of(inputs)
    done: set[str] = set()
    for i, block in enumerate(blocks.blocks):
        prefix = blocks.name(i)
        inside = {
            n: m for n, m in targets.items() if n == prefix or prefix == "" or n.startswith(prefix + ".")
        }
        if offload and device is not None:
            block.to(device)
        if inside:
            groups = input_groups(block, inside, *inputs[0])
            if sequential:
                for g in groups:
                    obs = make_observer(g, total)
                    if obs is not None:
                        observe(block, [g], [obs], inputs)
                    convert(g, obs)
            else:
                observers = [make_observer(g, total) for g in groups]
                if any(o is not None for o in observers):
                    observe(block, groups, observers, inputs)
                for g, obs in zip(groups, observers):
                    convert(g, obs)
            done.update(inside)
            if blocks.container is not None:
                block = blocks.container[i]  # the block itself may have been a target and been replaced
            log.info("block %s: compressed %d layers", prefix or "<model>", len(inside))
        if i + 1 < len(blocks.blocks):
            inputs = propagate(block, inputs)
        if offload and device is not None and home is not None:
            block.to(home)
    rest = {n: m for n, m in targets.items() if n not in done}
    if rest:
        # Layers outside the blocks: one whole-model pass, blocks already compressed.
        run_model_pass(model, calib, rest, make_observer, convert, device=device if not offload else None)


def as_call(x: Any, device=None) -> tuple[tuple, dict]:
    """``(args, kwargs)`` feeding one calibration item to a model (see :func:`call_model`)."""
    x = move(x, device)
    if isinstance(x, dict):
        return (), x
    return (tuple(x) if isinstance(x, (tuple, list)) else (x,)), {}


@torch.no_grad()
def run_model_pass(model, calib, targets, make_observer, convert, *, device=None):
    """Calibrate ``targets`` on whole-model forwards (used for layers outside the blocks)."""
    calls = [as_call(x, device) for x in calib]
    groups = input_groups(model, targets, *calls[0])
    total = 0
    for args, kwargs in calls:
        t = args[0] if args else next(v for v in kwargs.values() if isinstance(v, torch.Tensor))
        total += t.numel()
    observers = [make_observer(g, total) for g in groups]
    observe(model, groups, observers, calls)
    for g, o in zip(groups, observers):
        convert(g, o)
