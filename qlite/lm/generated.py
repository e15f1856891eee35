"""``QuantumLoRA``: LoRA factors generated from one circuit's basis-state probabilities.

Quantum-Train (Liu et al., arXiv 2405.11304) and QPA (Liu et al., ICLR 2025): a circuit on ``n``
qubits has ``2**n`` basis-state probabilities ``p_c``; a small mapping network turns ``(bits(c), f(p_c))``
into ``chunk_size`` values, and the chunks, laid end to end, are the parameters of a classical model --
here the LoRA factors ``A`` (``r x d_in``) and ``B`` (``d_out x r``) of every adapted layer. Trainable:
the circuit's angles and the mapping network; the factors are outputs. ``n = ceil(log2(chunks))``, so
the circuit grows with the logarithm of the parameters it generates.

Choices, and where they differ from QPA's public code:

* Circuit: ``depth`` blocks of RY on every wire then a CNOT chain (QPA's ``QLayer``).
* ``f(p) = (beta * tanh(gamma * 2**(n-1) * p))**alpha - mean`` with QPA's ``gamma=0.1, beta=0.6,
  alpha=0.15``: probabilities are ~``2**-n``, too small to feed a network as they are.
* Chunk ``c`` always pairs with basis state ``|c>`` (QPA's code draws the bit-strings at random on
  every forward, so its bit-string inputs are noise).
* ``A`` and ``B`` chunks leave the shared mapping trunk through two heads; the ``B`` head starts at
  zero, so the model starts unchanged (as LoRA's ``B = 0``). ``A`` is divided by ``sqrt(d_in)``,
  the scale of LoRA's Kaiming-uniform ``A``.
* The mapping network has nonlinear activations by default (``activation="none"`` gives QPA's linear one).

Ablation controls (``features=``): ``"free"`` replaces ``f(p)`` by free trainable parameters started at
the initial circuit's values; ``"random"`` by fixed values of a random circuit. With ``scope="model"``
one generator serves every target layer and runs once per forward of the whole model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..simulators import Circuit, Gate, NativeBackend, Param, PauliWord
from .base import LinearAdapter, new_linear
from .configs import QuantumLoRAConfig

TWO_PI = 2 * math.pi
# QPA's post-processing constants (qpa_lora.py, QLayer.forward).
_GAMMA, _BETA, _ALPHA = 0.1, 0.60, 0.15


def ry_chain_circuit(n_qubits: int, depth: int) -> Circuit:
    """``depth`` blocks of ``RY(w)`` on every wire then ``CNOT(i, i+1)`` for ``i < n - 1`` (no inputs)."""
    gates = []
    for d in range(depth):
        gates += [Gate("RY", (i,), (Param.weight(d * n_qubits + i),)) for i in range(n_qubits)]
        gates += [Gate("CNOT", (i, i + 1)) for i in range(n_qubits - 1)]
    return Circuit(n_qubits, tuple(gates), (PauliWord.z(0),), n_weights=depth * n_qubits, n_inputs=0)


def qpa_features(p: torch.Tensor, n_qubits: int) -> torch.Tensor:
    """QPA's rescaling of basis-state probabilities ``p`` (``2**n``) into network inputs (module docstring)."""
    x = (_BETA * torch.tanh(_GAMMA * 2 ** (n_qubits - 1) * p)).clamp_min(1e-12) ** _ALPHA
    return x - x.mean()


class CircuitProbabilities(nn.Module):
    """The ``2**n`` basis-state probabilities of :func:`ry_chain_circuit`, as QPA features.

    Declares its angles through ``periodic_parameters`` (so ``qlite.classical.AngleQuant`` quantizes them)."""

    def __init__(self, n_qubits: int, depth: int, *, generator: torch.Generator | None = None):
        super().__init__()
        self.n_qubits = n_qubits
        self.circuit = ry_chain_circuit(n_qubits, depth)
        self.backend = NativeBackend()
        self.weights = nn.Parameter(torch.rand(depth * n_qubits, generator=generator) * TWO_PI)

    def periodic_parameters(self):
        return {"weights": (self.weights, TWO_PI)}

    def forward(self) -> torch.Tensor:
        x = self.weights.new_zeros((1, 0))
        p = self.backend.probabilities(self.circuit, self.weights, x)[0]  # (2**n,)
        return qpa_features(p, self.n_qubits)


class WeightGenerator(nn.Module):
    """Generates the LoRA factors of a list of ``(d_in, d_out)`` layers (see the module docstring).

    ``factors(slot)`` returns ``(A, B)`` of one layer; all layers' factors come from one run, cached
    until a parameter changes or the model's next forward with gradients (:func:`qlite.lm.inject`
    registers the hooks that say so).
    """

    def __init__(self, shapes: list[tuple[int, int]], config: QuantumLoRAConfig, *,
                 generator: torch.Generator | None = None, device=None):
        super().__init__()
        r, k = config.r, config.chunk_size
        self.config = config
        self.shapes = [tuple(s) for s in shapes]
        self.a_sizes = [r * d_in for d_in, _ in self.shapes]
        self.b_sizes = [d_out * r for _, d_out in self.shapes]
        self.n_a, self.n_b = math.ceil(sum(self.a_sizes) / k), math.ceil(sum(self.b_sizes) / k)
        chunks = self.n_a + self.n_b
        need = max(1, math.ceil(math.log2(chunks)))
        n = config.n_qubits or need
        if n < need:
            raise ValueError(f"n_qubits={n} gives {2 ** n} basis states but {chunks} chunks of {k} values are needed; "
                             f"use n_qubits >= {need} or a larger chunk_size")
        self.n_qubits = n
        # Inputs of the mapping network: bits of |c> as +-1 (wire 0 = most significant bit).
        c = torch.arange(chunks)[:, None]
        bits = ((c >> torch.arange(n - 1, -1, -1)) & 1).float() * 2 - 1  # (chunks, n)
        self.register_buffer("bits", bits, persistent=False)
        if config.features == "circuit":
            self.source = CircuitProbabilities(n, config.depth, generator=generator)
        else:
            with torch.no_grad():
                initial = CircuitProbabilities(n, config.depth, generator=generator)()[:chunks].clone()
            if config.features == "free":
                self.free = nn.Parameter(initial)
            else:
                self.register_buffer("fixed", initial)
        widths = [n + 1, *config.hidden]
        self.trunk = nn.ModuleList(new_linear(a, b, bias=True, generator=generator) for a, b in zip(widths, widths[1:]))
        self.head_a = new_linear(widths[-1], k, bias=True, generator=generator)
        self.head_b = new_linear(widths[-1], k, bias=True, generator=None, zero=True)
        self.act = {"gelu": nn.GELU(), "tanh": nn.Tanh(), "none": nn.Identity()}[config.activation]
        self._cache = None
        if device is not None:
            self.to(device)

    def __getstate__(self):  # copies (deepcopy, pickle) never carry another model's cached graph
        state = self.__dict__.copy()
        state["_cache"] = None
        return state

    def features(self) -> torch.Tensor:
        chunks = self.n_a + self.n_b
        if self.config.features == "circuit":
            return self.source()[:chunks]
        return self.free if self.config.features == "free" else self.fixed

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat ``A`` and ``B`` values of every layer (lengths ``sum(r * d_in)``, ``sum(d_out * r)``)."""
        h = torch.cat([self.bits, self.features()[:, None]], dim=1)  # (chunks, n + 1)
        for layer in self.trunk:
            h = self.act(layer(h))
        a = self.head_a(h[: self.n_a]).reshape(-1)[: sum(self.a_sizes)]
        b = self.head_b(h[self.n_a:]).reshape(-1)[: sum(self.b_sizes)]
        return a, b

    def _key(self):
        ts = (*self.parameters(), *self.buffers())
        return (torch.is_grad_enabled(), tuple((t.data_ptr(), t._version) for t in ts))

    def invalidate(self) -> None:
        self._cache = None

    def factors(self, slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``A (r, d_in)`` and ``B (d_out, r)`` of layer ``slot``."""
        key = self._key()
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self())
        a, b = self._cache[1]
        r = self.config.r
        d_in, d_out = self.shapes[slot]
        oa, ob = sum(self.a_sizes[:slot]), sum(self.b_sizes[:slot])
        A = a[oa: oa + r * d_in].reshape(r, d_in) / math.sqrt(d_in)
        B = b[ob: ob + d_out * r].reshape(d_out, r)
        return A, B


class QuantumLoRA(LinearAdapter):
    """``y = base(x) + (alpha / r) * B (A x)`` with ``A``, ``B`` from a :class:`WeightGenerator`.

    With ``scope="model"`` the generator is shared and registered on the model's root (under
    ``qlite_generator``); this module keeps a reference to it and its slot.
    """

    mergeable = True

    def __init__(self, base: nn.Module, config: QuantumLoRAConfig, generator_module: WeightGenerator, slot: int,
                 *, owned: bool):
        super().__init__(base)
        if not 1 <= config.r <= min(self.in_features, self.out_features):
            raise ValueError(f"r={config.r} must lie in [1, {min(self.in_features, self.out_features)}] for a "
                             f"{self.in_features} -> {self.out_features} layer")
        self.config = config
        self.scale = config.scale
        self.slot = slot
        if owned:
            self.generator = generator_module
        else:  # a plain reference: the root module owns (and moves, saves, copies) the shared generator
            self._shared = [generator_module]

    @property
    def weight_generator(self) -> WeightGenerator:
        return self.generator if "generator" in self._modules else self._shared[0]

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen = self.weight_generator
        if "generator" in self._modules and torch.is_grad_enabled():
            gen.invalidate()  # a generator of its own: each forward with gradients builds a fresh graph
        return gen.factors(self.slot)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        A, B = self.factors()
        h = x.to(A.dtype)
        return (h @ A.t()) @ B.t() * self.scale  # (..., r) then (..., d_out)

    @torch.no_grad()
    def delta_weight(self) -> torch.Tensor:
        A, B = self.factors()
        return self.scale * (B @ A)

    def extra_repr(self) -> str:
        c = self.config
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={c.r}, "
                f"features={c.features!r}, scope={c.scope!r}, slot={self.slot}")
