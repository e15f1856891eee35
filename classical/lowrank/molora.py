"""Mixtures of LoRA experts (MoLoRA, Zadouri et al. 2023, "Pushing Mixture of Experts to the Limit").

Each target linear layer gets ``E`` LoRA experts ``B_e A_e`` (rank ``r``) and a router ``W_g``; per token
``x`` (their eq. 2-4, soft merging)::

    s = softmax(W_g x)                         # (E,) router probabilities
    y = W0 x + (alpha / r) * sum_e s_e B_e A_e x

With ``top_k`` only the ``k`` largest router probabilities of each token are kept and renormalised to
sum to one (the others are exactly zero, so their experts do not contribute). ``B_e`` starts at zero, so
the adapted model starts as the base model. Like LoRA, the base is frozen and only the experts and the
routers train (:func:`~qlite.classical.distillation.train_student`, as :func:`~qlite.classical.lowrank.lora.lora_recover`).
No load-balancing loss: the paper's soft merging does not need one.

Experts need not be LoRA: ``expert=`` takes a factory ``(base_linear, generator) -> module`` whose
``delta(x)`` (or call) gives the expert's additive output, e.g. a ``qlite.lm`` quantum adapter::

    from qlite.lm import QuantumAdapterConfig
    cfg = QuantumAdapterConfig(n_qubits=2, spectrum_layers=1)
    molora_recover(model, batches, MoLoRA(n_experts=2, top_k=1), expert=lambda base, g: cfg.build(base, generator=g))
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from typing import Callable, ClassVar

import torch
from torch import nn

from ..config import CompressionConfig
from ..distillation import train_student
from ..transform import LayerRecord, Transform, state_bytes, transform_for
from .lora import lora_targets

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MoLoRA(CompressionConfig):
    """A mixture of ``n_experts`` LoRA experts of rank ``r`` per target layer (module docstring).

    Args:
        n_experts: experts per layer (``E``).
        r, alpha: each expert's rank and the LoRA scale numerator (``alpha / r``).
        top_k: ``None`` for soft merging over all experts (the paper's recipe), or the number of experts
            each token is routed to (renormalised top-k).
        steps, lr, loss, targets: as :class:`~qlite.classical.lowrank.configs.LoRARecover`.
    Raises:
        ValueError: non-positive sizes, ``top_k`` above ``n_experts``.
    """

    needs_calibration: ClassVar[bool] = True
    n_experts: int = 4
    r: int = 4
    top_k: int | None = None
    alpha: float = 16
    steps: int = 100
    lr: float = 1e-4
    loss: str = "lm"
    targets: tuple[str, ...] | None = None

    def __post_init__(self):
        super().__post_init__()
        for f in ("n_experts", "r", "steps"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"MoLoRA: {f} must be a positive integer, got {v!r}")
        if self.top_k is not None:
            if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 1:
                raise ValueError(f"MoLoRA: top_k must be a positive integer or None (soft routing), got {self.top_k!r}")
            if self.top_k > self.n_experts:
                raise ValueError(f"MoLoRA: top_k={self.top_k} is above n_experts={self.n_experts}; a token cannot be "
                                 f"routed to more experts than exist: use top_k <= {self.n_experts}, or None for soft routing")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise ValueError(f"MoLoRA: alpha must be a positive number, got {self.alpha!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"MoLoRA: lr must be a positive number, got {self.lr!r}")
        if self.loss not in ("lm", "forward", "reverse", "mixed"):
            raise ValueError(f"MoLoRA: loss must be 'lm', 'forward', 'reverse' or 'mixed', got {self.loss!r}")
        if self.targets is not None:
            if isinstance(self.targets, str) or not self.targets or not all(isinstance(t, str) for t in self.targets):
                raise TypeError(f"MoLoRA: targets must be a non-empty tuple of layer names or None, got {self.targets!r}")
            object.__setattr__(self, "targets", tuple(self.targets))

    @property
    def requires_teacher(self) -> bool:
        return self.loss != "lm"


def route(logits: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """Router weights ``(..., E)`` from router logits: softmax, or the renormalised top-``k`` of it
    (exact zeros elsewhere)."""
    p = torch.softmax(logits.float(), dim=-1)
    if top_k is None or top_k == p.shape[-1]:
        return p
    val, idx = torch.topk(p, top_k, dim=-1)
    return torch.zeros_like(p).scatter(-1, idx, val / val.sum(dim=-1, keepdim=True))


class MoLoRALinear(nn.Module):
    """``base(x) + scale * sum_e g_e(x) B_e A_e x`` (or ``sum_e g_e(x) expert_e(x)`` with a factory).

    Shapes: ``A`` ``(E, r, in)``, ``B`` ``(E, out, r)``, router ``in -> E``; input ``(..., in)``."""

    def __init__(self, base: nn.Module, config: MoLoRA, *, expert: Callable | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.base = base
        self.in_features, self.out_features = base.in_features, base.out_features
        E, r = config.n_experts, config.r
        self.top_k, self.scale = config.top_k, config.alpha / r
        w = base.weight
        dev = w.device
        self.router = nn.Linear(self.in_features, E, bias=False, device=dev)
        bound = 1 / math.sqrt(self.in_features)  # nn.Linear's default (kaiming uniform, a=sqrt(5)) bound
        with torch.no_grad():
            self.router.weight.copy_(torch.empty(E, self.in_features).uniform_(-bound, bound, generator=generator))
        if expert is None:
            self.lora_A = nn.Parameter(torch.empty(E, r, self.in_features).uniform_(-bound, bound, generator=generator).to(dev))
            self.lora_B = nn.Parameter(torch.zeros(E, self.out_features, r, device=dev))
            self.experts = None
        else:
            self.experts = nn.ModuleList(expert(base, generator) for _ in range(E))
            self.lora_A = self.lora_B = None

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., E)`` routing weights of each token."""
        return route(self.router(x.to(self.router.weight.dtype)), self.top_k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        g = self.gates(x)  # (..., E)
        if self.experts is None:
            h = torch.einsum("...i,eri->...er", x.to(self.lora_A.dtype), self.lora_A)  # (..., E, r)
            d = torch.einsum("...er,eor->...o", h * g[..., None], self.lora_B) * self.scale
        else:
            outs = torch.stack([e.delta(x) if hasattr(e, "delta") else e(x) for e in self.experts], dim=-2)  # (..., E, out)
            d = (outs * g[..., None].to(outs.dtype)).sum(dim=-2)
        return y + d.to(y.dtype)

    def adapter_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters: router and experts (not the base's)."""
        base = {id(p) for p in self.base.parameters()}
        return [p for p in self.parameters() if id(p) not in base]


def molora_recover(model: nn.Module, batches: list, config: MoLoRA = MoLoRA(), *, teacher: nn.Module | None = None,
                   expert: Callable | None = None, inplace: bool = False,
                   generator: torch.Generator | None = None) -> tuple[nn.Module, list[float]]:
    """Replace ``config.targets`` (default: :func:`~qlite.classical.lowrank.lora.lora_targets`) by
    :class:`MoLoRALinear` layers, freeze everything else and train the experts and routers on
    ``batches`` for ``config.steps`` AdamW steps. ``inplace=False`` (default) works on a copy.
    ``generator`` seeds the expert / router initialisation and the training.

    Returns:
        ``(adapted model, per-step losses)``.
    Raises:
        ValueError: no target layers, a target that is not a linear layer, a distillation loss without teacher.
    """
    if not isinstance(config, MoLoRA):
        raise TypeError(f"config must be a MoLoRA, got {type(config).__name__}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    m = model if inplace else copy.deepcopy(model)
    names = list(config.targets) if config.targets is not None else lora_targets(m, config.skip)
    if not names:
        raise ValueError("MoLoRA: no linear layers to attach experts to; pass targets=(qualified names, ...)")
    for p in m.parameters():
        p.requires_grad_(False)
    params = []
    for n in names:
        base = m.get_submodule(n)
        if not isinstance(getattr(base, "in_features", None), int) or not isinstance(getattr(base, "weight", None), torch.Tensor):
            raise ValueError(f"MoLoRA: target {n!r} is a {type(base).__name__}, not a linear layer; give linear layer names")
        layer = MoLoRALinear(base, config, expert=expert, generator=g)
        for p in layer.adapter_parameters():
            p.requires_grad_(True)
        params += layer.adapter_parameters()
        parent, _, child = n.rpartition(".")
        setattr(m.get_submodule(parent) if parent else m, child, layer)
    log.info("MoLoRA: %d layers x %d experts, %d trainable parameters", len(names), config.n_experts,
             sum(p.numel() for p in params))
    hist = train_student(m, batches, teacher=teacher, loss=config.loss, steps=config.steps, lr=config.lr, params=params,
                         generator=g)
    m.eval()
    return m, hist


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@transform_for(MoLoRA)
class _MoLoRA(Transform):
    def run(self, model, calib, ctx):
        c = self.config
        teacher = ctx.teacher if c.loss != "lm" else None
        if c.loss != "lm" and teacher is None:
            raise ValueError(f"MoLoRA: loss={c.loss!r} needs the uncompressed model as teacher; use loss='lm'")
        names = list(c.targets) if c.targets is not None else lora_targets(model, c.skip)
        before = {n: state_bytes(model.get_submodule(n)) for n in names}
        _, hist = molora_recover(model, calib, c, teacher=teacher, inplace=True,
                                 generator=torch.Generator().manual_seed(ctx.seed))
        return [LayerRecord(n, "MoLoRA", (model.get_submodule(n).out_features, model.get_submodule(n).in_features),
                            before[n], state_bytes(model.get_submodule(n)),
                            extra={"n_experts": c.n_experts, "r": c.r, "top_k": c.top_k,
                                   **({"loss_first": hist[0], "loss_last": hist[-1]} if i == 0 else {})})
                for i, n in enumerate(names)]
