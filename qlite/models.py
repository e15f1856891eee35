"""Classical implicit-neural-representation baselines and sizing to a parameter budget.

The baselines of the QIREN paper (Zhao et al., ICML 2024), configured as in its public code
(``qinr/modules.py``): each hidden layer of the ReLU / Tanh MLP is ``Linear -> BatchNorm1d ->
omega_0 * (.) -> activation``; the ReLU + random Fourier features network (Tancik et al., NeurIPS
2020) replaces the first layer by a fixed Gaussian Fourier feature map; SIREN (Sitzmann et al.,
NeurIPS 2020) uses ``sin(omega_0 (W x + b))`` with its own initialisation. All share the interface
of :class:`qlite.QIREN`: ``model(coords (N, in)) -> (N, out)``.

:class:`ModelSpec` describes any of them (and QIREN) as JSON-able data, builds it with a seed, and
sizes a baseline to the widest hidden layer whose parameter count stays within a budget
(:func:`widest_within_budget`), which is how the comparisons are kept fair.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; buffers such as BatchNorm statistics or fixed Fourier
    frequencies are not parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _init_linear_default(linear: nn.Linear, generator: torch.Generator | None) -> None:
    """PyTorch's default ``nn.Linear`` initialisation, drawn from ``generator``."""
    nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=generator)
    if linear.bias is not None:
        bound = 1 / math.sqrt(linear.in_features)
        nn.init.uniform_(linear.bias, -bound, bound, generator=generator)


def _check_sizes(**sizes):
    for name, (v, lo) in sizes.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


class _BNActLayer(nn.Module):
    """``act(omega_0 * BN(W x + b))`` (or without BN): the paper's ``SineLayer_bn``."""

    def __init__(self, in_features: int, out_features: int, activation: str, batch_norm: bool, omega_0: float):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.norm = nn.BatchNorm1d(out_features) if batch_norm else nn.Identity()
        self.omega_0 = float(omega_0)
        self.activation = activation
        self.act = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "sine": None}[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.omega_0 * self.norm(self.linear(x))
        return torch.sin(h) if self.act is None else self.act(h)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, omega_0={self.omega_0}"


class MLP(nn.Module):
    """ReLU / Tanh MLP: ``(1 + hidden_layers)`` x ``act(omega_0 * BN(Linear))`` then a ``Linear``.

    With ``batch_norm=True`` and ``omega_0=1`` this is the paper code's ``Siren_bn(activ='relu' |
    'tanh')``; ``batch_norm=False`` gives the plain MLP.

    Example:
        >>> sum(p.numel() for p in MLP(2, 1, 15).parameters())  # 2 h^2 + 12 h + 1 with BN
        631
    """

    def __init__(self, in_features: int, out_features: int, hidden_features: int = 16, hidden_layers: int = 2,
                 activation: str = "relu", batch_norm: bool = True, omega_0: float = 1.0, *,
                 generator: torch.Generator | None = None):
        super().__init__()
        _check_sizes(in_features=(in_features, 1), out_features=(out_features, 1),
                     hidden_features=(hidden_features, 1), hidden_layers=(hidden_layers, 0))
        if activation not in ("relu", "tanh", "sine"):
            raise ValueError(f"activation must be 'relu', 'tanh' or 'sine', got {activation!r}")
        if not math.isfinite(omega_0) or omega_0 <= 0:
            raise ValueError(f"omega_0 must be a positive number, got {omega_0!r}")
        widths = [in_features] + [hidden_features] * (hidden_layers + 1)
        layers: list[nn.Module] = [_BNActLayer(a, b, activation, batch_norm, omega_0) for a, b in zip(widths, widths[1:])]
        layers.append(nn.Linear(hidden_features, out_features))
        self.net = nn.Sequential(*layers)
        if generator is not None:
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    _init_linear_default(m, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SineLayer(nn.Module):
    """``sin(omega_0 (W x + b))`` with SIREN's initialisation (Sitzmann et al. 2020, Sec. 3.2):
    first layer ``W ~ U(-1/in, 1/in)``, later layers ``W ~ U(-sqrt(6/in)/omega_0, sqrt(6/in)/omega_0)``
    so that pre-activations stay standard-normal-like through depth; biases keep PyTorch's default."""

    def __init__(self, in_features: int, out_features: int, omega_0: float, is_first: bool, *,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.omega_0 = float(omega_0)
        self.is_first = is_first
        bound = 1 / in_features if is_first else math.sqrt(6 / in_features) / self.omega_0
        with torch.no_grad():
            nn.init.uniform_(self.linear.weight, -bound, bound, generator=generator)
            if generator is not None:
                b = 1 / math.sqrt(in_features)
                nn.init.uniform_(self.linear.bias, -b, b, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega_0 * self.linear(x))

    def extra_repr(self) -> str:
        return f"omega_0={self.omega_0}, is_first={self.is_first}"


class SIREN(nn.Module):
    """Sinusoidal representation network: ``(1 + hidden_layers)`` sine layers then a ``Linear``
    initialised like the hidden layers (the SIREN reference code's ``outermost_linear=True``).

    ``first_omega_0 = hidden_omega_0 = 30`` are SIREN's defaults for images on ``[-1, 1]``; tiny
    networks on 1,000 points often prefer smaller values (see the omega_0 sweep in the paper study).

    Example:
        >>> sum(p.numel() for p in SIREN(2, 1, 16).parameters())  # 2 h^2 + 6 h + 1
        609
    """

    def __init__(self, in_features: int, out_features: int, hidden_features: int = 16, hidden_layers: int = 2,
                 first_omega_0: float = 30.0, hidden_omega_0: float = 30.0, *,
                 generator: torch.Generator | None = None):
        super().__init__()
        _check_sizes(in_features=(in_features, 1), out_features=(out_features, 1),
                     hidden_features=(hidden_features, 1), hidden_layers=(hidden_layers, 0))
        for name, w in (("first_omega_0", first_omega_0), ("hidden_omega_0", hidden_omega_0)):
            if not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
                raise ValueError(f"{name} must be a positive number, got {w!r}")
        layers: list[nn.Module] = [SineLayer(in_features, hidden_features, first_omega_0, True, generator=generator)]
        layers += [SineLayer(hidden_features, hidden_features, hidden_omega_0, False, generator=generator)
                   for _ in range(hidden_layers)]
        final = nn.Linear(hidden_features, out_features)
        bound = math.sqrt(6 / hidden_features) / float(hidden_omega_0)
        with torch.no_grad():
            nn.init.uniform_(final.weight, -bound, bound, generator=generator)
            if generator is not None:
                b = 1 / math.sqrt(hidden_features)
                nn.init.uniform_(final.bias, -b, b, generator=generator)
        self.net = nn.Sequential(*layers, final)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FourierFeatures(nn.Module):
    """Random Fourier features (Tancik et al. 2020): ``[cos(2 pi x B^T), sin(2 pi x B^T)]`` with a
    fixed ``B ~ N(0, scale^2)`` of shape ``(n_frequencies, in_features)`` stored as a buffer (saved
    in checkpoints, not trained). The paper's code uses ``scale = 1``."""

    def __init__(self, in_features: int, n_frequencies: int, scale: float = 1.0, *,
                 generator: torch.Generator | None = None):
        super().__init__()
        _check_sizes(in_features=(in_features, 1), n_frequencies=(n_frequencies, 1))
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.scale = float(scale)
        self.register_buffer("frequencies", torch.randn(n_frequencies, in_features, generator=generator) * self.scale)

    @property
    def out_features(self) -> int:
        return 2 * self.frequencies.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * (x @ self.frequencies.transpose(0, 1))  # (N, n_frequencies)
        return torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1)

    def extra_repr(self) -> str:
        return f"n_frequencies={self.frequencies.shape[0]}, scale={self.scale}"


class RFFNet(nn.Module):
    """ReLU + random Fourier features: ``FourierFeatures(in, hidden // 2)``, ``hidden_layers`` x
    ``relu(BN(Linear))``, then a ``Linear`` (the paper code's ``Siren_bn(activ='relu', rff=True)``).

    Example:
        >>> sum(p.numel() for p in RFFNet(2, 1, 16).parameters())  # 2 h^2 + 7 h + 1 with BN
        625
    """

    def __init__(self, in_features: int, out_features: int, hidden_features: int = 16, hidden_layers: int = 2,
                 scale: float = 1.0, batch_norm: bool = True, *, generator: torch.Generator | None = None):
        super().__init__()
        _check_sizes(in_features=(in_features, 1), out_features=(out_features, 1),
                     hidden_features=(hidden_features, 2), hidden_layers=(hidden_layers, 1))
        ff = FourierFeatures(in_features, hidden_features // 2, scale, generator=generator)
        widths = [ff.out_features] + [hidden_features] * hidden_layers
        layers: list[nn.Module] = [ff] + [_BNActLayer(a, b, "relu", batch_norm, 1.0) for a, b in zip(widths, widths[1:])]
        layers.append(nn.Linear(hidden_features, out_features))
        self.net = nn.Sequential(*layers)
        if generator is not None:
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    _init_linear_default(m, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# -- specs and budgets ----------------------------------------------------------------------
def _build_qiren(i, o, h, layers, **opt):
    from .layers import QIREN

    return QIREN(i, o, hidden_features=h, hidden_layers=layers, **opt)


def _build_siren(i, o, h, layers, omega_0=None, **opt):
    if omega_0 is not None:
        opt = {"first_omega_0": omega_0, "hidden_omega_0": omega_0, **opt}
    return SIREN(i, o, h, layers, **opt)


# kind -> (builder(in, out, width, hidden_layers, **options), allowed options, default width)
MODEL_KINDS: dict[str, tuple[Callable[..., nn.Module], frozenset[str], int]] = {
    "qiren": (_build_qiren, frozenset({"spectrum_layers", "sublayers", "entangler", "encoding", "backend", "strategy"}), 8),
    "siren": (_build_siren, frozenset({"omega_0", "first_omega_0", "hidden_omega_0"}), 16),
    "relu": (lambda i, o, h, n, **k: MLP(i, o, h, n, "relu", **k), frozenset({"batch_norm", "omega_0"}), 16),
    "tanh": (lambda i, o, h, n, **k: MLP(i, o, h, n, "tanh", **k), frozenset({"batch_norm", "omega_0"}), 16),
    "rff": (lambda i, o, h, n, **k: RFFNet(i, o, h, n, **k), frozenset({"scale", "batch_norm"}), 16),
}


def widest_within_budget(build: Callable[[int], nn.Module], budget: int, *, min_width: int = 1,
                         max_width: int = 1 << 14) -> int:
    """Largest width ``w`` in ``[min_width, max_width]`` with ``count_parameters(build(w)) <= budget``.

    Assumes the count grows with the width (true for every model here): doubles the width until it
    exceeds the budget, then bisects, so only models near the budget are ever built.

    Raises:
        ValueError: even ``min_width`` exceeds the budget.
    """
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive int, got {budget!r}")

    def count(w):
        with torch.random.fork_rng(devices=[]):  # building must not advance the caller's RNG
            return count_parameters(build(w))

    if count(min_width) > budget:
        raise ValueError(f"even width {min_width} needs {count(min_width)} parameters, above the budget of {budget}")
    lo, hi = min_width, min_width  # invariant: count(lo) <= budget; grow hi geometrically (cheap models)
    while count(hi) <= budget:
        if hi >= max_width:
            return max_width
        lo, hi = hi, min(2 * hi, max_width)
    while hi - lo > 1:  # count(lo) <= budget < count(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= budget else (lo, mid)
    return lo


@dataclass(frozen=True)
class ModelSpec:
    """A model as data: ``kind`` in :data:`MODEL_KINDS`, width, depth and options; JSON-able.

    Args:
        kind: ``"qiren"``, ``"siren"``, ``"relu"``, ``"tanh"`` or ``"rff"``.
        hidden_features: width (qubits for QIREN); ``None`` uses the budget, else the kind's default.
        hidden_layers: hidden layers after the first (the paper's ``hidden_layers``, default 2).
        options: kind-specific keywords (``omega_0`` for SIREN, ``scale`` for RFF,
            ``batch_norm`` for MLPs, ``spectrum_layers`` for QIREN, ...).
        budget: with ``hidden_features=None``, the widest network with at most this many
            trainable parameters (classical kinds only).

    Example:
        >>> ModelSpec("siren", budget=657).width(2, 1)
        16
    """

    kind: str
    hidden_features: int | None = None
    hidden_layers: int = 2
    options: Mapping[str, Any] = field(default_factory=dict)
    budget: int | None = None

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; choose one of {sorted(MODEL_KINDS)}")
        object.__setattr__(self, "options", dict(self.options))
        allowed = MODEL_KINDS[self.kind][1]
        unknown = set(self.options) - allowed
        if unknown:
            raise ValueError(f"options {sorted(unknown)} do not apply to {self.kind!r}; allowed: {sorted(allowed)}")
        if self.hidden_features is not None:
            _check_sizes(hidden_features=(self.hidden_features, 1))
        _check_sizes(hidden_layers=(self.hidden_layers, 0))
        if self.budget is not None:
            if self.kind == "qiren":
                raise ValueError("budget sizing applies to the classical baselines; give QIREN hidden_features (qubits)")
            _check_sizes(budget=(self.budget, 1))

    def width(self, in_features: int, out_features: int) -> int:
        """The hidden width this spec builds for the given input / output sizes."""
        build, _, default = MODEL_KINDS[self.kind]
        if self.hidden_features is not None:
            return self.hidden_features
        if self.budget is None:
            return default
        lo = 2 if self.kind == "rff" else 1
        return widest_within_budget(lambda w: build(in_features, out_features, w, self.hidden_layers, **self.options),
                                    self.budget, min_width=lo)

    def build(self, in_features: int, out_features: int, *, seed: int | None = None) -> nn.Module:
        """Build the model; with ``seed``, every random initialisation comes from
        ``torch.manual_seed(seed)`` inside a forked RNG (the caller's RNG state is untouched)."""
        build = MODEL_KINDS[self.kind][0]
        width = self.width(in_features, out_features)
        if seed is None:
            return build(in_features, out_features, width, self.hidden_layers, **self.options)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build(in_features, out_features, width, self.hidden_layers, **self.options)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        return cls(**{k: d[k] for k in ("kind", "hidden_features", "hidden_layers", "options", "budget") if k in d})

    def label(self) -> str:
        """Short human label, e.g. ``siren(omega_0=10)``."""
        opts = ", ".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.kind}({opts})" if opts else self.kind


def build_model(kind: str | ModelSpec, in_features: int, out_features: int, *, seed: int | None = None,
                **spec) -> nn.Module:
    """``ModelSpec(kind, **spec).build(in_features, out_features, seed=seed)``.

    Example:
        >>> model = build_model("siren", 2, 1, budget=657, options={"omega_0": 10.0}, seed=0)
    """
    s = kind if isinstance(kind, ModelSpec) else ModelSpec(kind, **spec)
    return s.build(in_features, out_features, seed=seed)


# -- small language models ------------------------------------------------------------------
FFN_KINDS = ("classical", "quantum")


def small_llama(vocab_size: int, *, hidden_size: int = 256, n_layers: int = 4, n_heads: int = 4,
                n_kv_heads: int | None = None, intermediate_size: int | None = None, max_seq_len: int = 512,
                ffn: str = "classical", n_qubits: int = 8, dropout: float = 0.0, seed: int | None = 0) -> nn.Module:
    """A small from-scratch Llama (``transformers.LlamaForCausalLM``) for character- or token-level text.

    The defaults (hidden 256, 4 layers, 4 heads, SwiGLU MLP of 768) give 3.44 M parameters for a
    65-character vocabulary. ``ffn="quantum"`` replaces every block's MLP by a
    :class:`qlite.lm.QuantumFFN` on ``n_qubits`` qubits (``qlite.lm.inject(model,
    QuantumFFNConfig(n_qubits=...), target_modules=["*.mlp"])``); the returned model then has
    every other parameter trainable too (a from-scratch model has no frozen base).

    Args:
        vocab_size: the tokenizer's vocabulary (e.g. ``TextData.vocab_size``).
        hidden_size, n_layers, n_heads, n_kv_heads (default ``n_heads``; fewer gives grouped-query
            attention), intermediate_size (default ``3 * hidden_size``), max_seq_len: the Llama
            configuration.
        ffn: ``"classical"`` (Llama's SwiGLU MLP) or ``"quantum"``.
        n_qubits: qubits of each quantum FFN.
        dropout: attention dropout.
        seed: the initial weights come from ``torch.manual_seed(seed)`` inside a forked RNG (the
            caller's RNG is untouched); ``None`` draws from the global RNG.

    Raises:
        ValueError: non-positive sizes, ``hidden_size`` not a multiple of ``n_heads``, ``n_heads``
            not a multiple of ``n_kv_heads``, an unknown ``ffn``.
        ImportError: transformers (``pip install 'qlite[llm]'``), or ``qlite.lm`` for ``ffn="quantum"``.

    Example:
        >>> model = small_llama(65, hidden_size=64, n_layers=2)
    """
    n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
    intermediate_size = 3 * hidden_size if intermediate_size is None else intermediate_size
    _check_sizes(vocab_size=(vocab_size, 1), hidden_size=(hidden_size, 1), n_layers=(n_layers, 1), n_heads=(n_heads, 1),
                 n_kv_heads=(n_kv_heads, 1), intermediate_size=(intermediate_size, 1), max_seq_len=(max_seq_len, 2),
                 n_qubits=(n_qubits, 1))
    if hidden_size % n_heads:
        raise ValueError(f"hidden_size={hidden_size} must be a multiple of n_heads={n_heads}")
    if n_heads % n_kv_heads:
        raise ValueError(f"n_heads={n_heads} must be a multiple of n_kv_heads={n_kv_heads} (grouped-query attention)")
    if ffn not in FFN_KINDS:
        raise ValueError(f"ffn must be one of {FFN_KINDS}, got {ffn!r}")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("small_llama needs transformers: pip install 'qlite[llm]'") from err
    config = transformers.LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                                      num_hidden_layers=n_layers, num_attention_heads=n_heads,
                                      num_key_value_heads=n_kv_heads, max_position_embeddings=max_seq_len,
                                      attention_dropout=float(dropout), tie_word_embeddings=False)

    def build():
        model = transformers.LlamaForCausalLM(config)
        if ffn == "quantum":
            try:
                from .lm import QuantumFFNConfig, inject
            except ImportError as err:
                raise ImportError(f"ffn='quantum' needs qlite.lm ({err})") from err
            model = inject(model, QuantumFFNConfig(n_qubits=n_qubits), target_modules=["*.mlp"], inplace=True,
                           seed=0 if seed is None else seed)
            for p in model.parameters():  # from scratch: nothing is a frozen base
                p.requires_grad_(True)
        return model

    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
