"""Configs of the hybrid-LM modules: small frozen dataclasses, validated on construction, JSON round-trip.

Each config names the module it builds (:meth:`AdapterConfig.build`) and the kind of module it can
wrap (``"linear"``: a Linear-like layer with ``in_features`` / ``out_features``; ``"mlp"``: a block's
MLP). :func:`qlite.lm.inject` matches names, checks the kind and calls ``build``.

* :class:`QuantumAdapterConfig` -> :class:`~qlite.lm.adapter.QuantumAdapter` (a circuit per token
  beside a Linear).
* :class:`QuantumFFNConfig` -> :class:`~qlite.lm.ffn.QuantumFFN` (circuits per token replace an MLP).
* :class:`QuantumLoRAConfig` -> :class:`~qlite.lm.generated.QuantumLoRA` (LoRA factors generated from
  one circuit's basis-state probabilities; Quantum-Train / QPA).
* :class:`UnitaryAdapterConfig` -> :class:`~qlite.lm.unitary.UnitaryAdapter` (``dW = U diag(s) V^T``
  with circuit-generated orthonormal ``U``, ``V``; Quantum-PEFT).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, ClassVar

ENTANGLERS = ("cz", "cnot")
ENCODINGS = ("rz", "rx", "ry")
NORMS = ("layernorm", "none")
FEATURES = ("circuit", "free", "random")
SCOPES = ("model", "layer")
ACTIVATIONS = ("gelu", "tanh", "none")

# Per-token circuits are simulated as dense statevectors: 2**n amplitudes per token.
MAX_TOKEN_QUBITS = 16
# Weight generators and unitary adapters simulate a handful of states: larger circuits are fine.
MAX_GENERATOR_QUBITS = 22

_REGISTRY: dict[str, type["AdapterConfig"]] = {}


def _int(name: str, v, lo: int, hi: int | None = None) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {rng}, got {v!r}")


def _choice(name: str, v, allowed: tuple[str, ...]) -> None:
    if v not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {v!r}")


def _positive(name: str, v) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {v!r}")


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    """Base of the hybrid-LM configs (JSON round-trip through :meth:`to_dict` / :func:`config_from_dict`)."""

    wraps: ClassVar[str] = "linear"  # "linear" or "mlp"
    mergeable: ClassVar[bool] = False

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        _REGISTRY[cls.__name__] = cls

    def to_dict(self) -> dict[str, Any]:
        d = {"type": type(self).__name__}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def replace(self, **changes) -> "AdapterConfig":
        return dataclasses.replace(self, **changes)

    def build(self, module, *, generator=None):  # pragma: no cover - every subclass overrides
        raise NotImplementedError(f"{type(self).__name__} builds no module")


def config_from_dict(d: dict[str, Any]) -> AdapterConfig:
    """The config a :meth:`AdapterConfig.to_dict` wrote."""
    if not isinstance(d, dict) or d.get("type") not in _REGISTRY:
        raise ValueError(f"not a qlite.lm config: {d!r}; known types {sorted(_REGISTRY)}")
    cls = _REGISTRY[d["type"]]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names - {"type"}
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {sorted(unknown)}; fields are {sorted(names)}")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k != "type"}
    return cls(**kw)


def config_from_json(s: str) -> AdapterConfig:
    return config_from_dict(json.loads(s))


@dataclasses.dataclass(frozen=True)
class _CircuitOptions(AdapterConfig):
    """The re-uploading circuit of :class:`qlite.QuantumLayer` (shared by the per-token modules)."""

    n_qubits: int = 8
    spectrum_layers: int = 2
    sublayers: int = 2
    entangler: str = "cz"
    encoding: str = "rz"
    norm: str = "layernorm"
    backend: str = "torch"

    def __post_init__(self):
        _int("n_qubits", self.n_qubits, 1, MAX_TOKEN_QUBITS)
        _int("spectrum_layers", self.spectrum_layers, 1)
        _int("sublayers", self.sublayers, 1)
        _choice("entangler", self.entangler, ENTANGLERS)
        _choice("encoding", self.encoding, ENCODINGS)
        _choice("norm", self.norm, NORMS)
        if not isinstance(self.backend, str):
            raise TypeError(f"backend must be a backend name such as 'torch', got {type(self.backend).__name__}")

    def circuit_angles(self) -> int:
        return (self.spectrum_layers + 1) * self.sublayers * self.n_qubits * 3


@dataclasses.dataclass(frozen=True)
class QuantumAdapterConfig(_CircuitOptions):
    """A circuit per token beside a Linear: ``y = W x + scale * up(Q(norm(down(x))))``.

    ``down: d_in -> n_qubits`` (no bias; the norm supplies the shift), ``norm``: LayerNorm over the
    ``n_qubits`` angles (per token, so no statistics cross tokens or sequences), ``Q``: the
    re-uploading circuit of :class:`qlite.QuantumLayer` (``<Z_j>`` of every wire), ``up: n_qubits ->
    d_out`` initialised to zero, so the wrapped model starts exactly unchanged.

    Args:
        n_qubits: wires of the circuit (= its inputs and outputs); at most the layer's input width.
        spectrum_layers, sublayers, entangler, encoding: the circuit (see :class:`qlite.QuantumLayer`).
        norm: ``"layernorm"`` (default) or ``"none"``.
        scale: the constant ``s`` in front of the adapter's output.
        backend: simulator backend name (``"torch"``: the native simulator).
    """

    scale: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        _positive("scale", self.scale)

    def build(self, module, *, generator=None):
        from .adapter import QuantumAdapter

        return QuantumAdapter(module, self, generator=generator)


@dataclasses.dataclass(frozen=True)
class QuantumFFNConfig(_CircuitOptions):
    """Circuits per token in place of a block's MLP: ``up(concat_h Q_h(norm_h(down(x)_h)))``.

    ``down: d_in -> heads * n_qubits`` (with bias), per head a LayerNorm and a re-uploading circuit,
    ``up: heads * n_qubits -> d_out`` (with bias). ``heads`` circuits side by side reach a parameter
    target (see :meth:`for_budget`). The replaced MLP's own weights are dropped; heal the model by
    distillation (:func:`qlite.classical.distill`).
    """

    wraps: ClassVar[str] = "mlp"
    heads: int = 1

    def __post_init__(self):
        super().__post_init__()
        _int("heads", self.heads, 1)

    def parameters_for(self, d_in: int, d_out: int) -> int:
        """Trainable parameters of the module this config builds for a ``d_in -> d_out`` MLP."""
        width = self.heads * self.n_qubits
        norm = 2 * width if self.norm == "layernorm" else 0
        return d_in * width + width + norm + self.heads * self.circuit_angles() + width * d_out + d_out

    @classmethod
    def for_budget(cls, d_in: int, d_out: int, params: int, **options) -> "QuantumFFNConfig":
        """The config with the most heads whose module has at most ``params`` parameters."""
        one = cls(**options).replace(heads=1)
        per_head = one.parameters_for(d_in, d_out) - d_out  # everything but up's bias scales with heads
        heads = (params - d_out) // per_head
        if heads < 1:
            raise ValueError(f"even one head ({one.parameters_for(d_in, d_out)} parameters) exceeds params={params}; "
                             "use fewer qubits or re-uploads")
        return one.replace(heads=int(heads))

    def build(self, module, *, generator=None):
        from .ffn import QuantumFFN

        return QuantumFFN(module, self, generator=generator)


@dataclasses.dataclass(frozen=True)
class QuantumLoRAConfig(AdapterConfig):
    """LoRA factors generated by a circuit (Quantum-Train, Liu et al. 2024; QPA, Liu et al., ICLR 2025).

    ``W x + (alpha / r) B A x`` with ``A (r x d_in)`` and ``B (d_out x r)`` not stored but generated:
    the flattened factors are cut into chunks of ``chunk_size`` values; chunk ``c`` is produced by a
    mapping network from the bit-string of basis state ``|c>`` (entries +-1) and the circuit's
    probability ``p_c`` of measuring it. One circuit run per forward gives all chunks (and, with
    ``scope="model"``, the factors of every adapted layer at once). After training, :meth:`merge`
    folds ``B A`` into the base weight: inference costs nothing extra.

    Args:
        r: LoRA rank (>= 1, at most the smaller layer width).
        alpha: LoRA scaling numerator (``scale = alpha / r``; peft's default 8).
        chunk_size: values each basis state generates.
        depth: blocks of (RY on every wire, CNOT chain), as QPA's circuit; ``depth * n_qubits`` angles.
        n_qubits: ``None`` (default): the fewest with ``2**n >= chunks``.
        hidden: widths of the mapping network's hidden layers.
        activation: between mapping layers: ``"gelu"`` (default), ``"tanh"`` or ``"none"`` (QPA's
            public code: the mapping network is then linear).
        features: ``"circuit"`` (the method), or the ablation controls a reviewer asks for:
            ``"free"`` -- the ``2**n`` probability features are free trainable parameters (started at
            the initial circuit's values); ``"random"`` -- fixed features of a random circuit, not trained.
        scope: ``"model"``: one circuit and mapping network generate every target's factors (the
            Quantum-Train setting); ``"layer"``: one generator per target layer (QPA's code).
    """

    mergeable: ClassVar[bool] = True
    r: int = 4
    alpha: float = 8.0
    chunk_size: int = 64
    depth: int = 4
    n_qubits: int | None = None
    hidden: tuple[int, ...] = (32, 32)
    activation: str = "gelu"
    features: str = "circuit"
    scope: str = "model"

    def __post_init__(self):
        _int("r", self.r, 1)
        _positive("alpha", self.alpha)
        _int("chunk_size", self.chunk_size, 1)
        _int("depth", self.depth, 1)
        if self.n_qubits is not None:
            _int("n_qubits", self.n_qubits, 1, MAX_GENERATOR_QUBITS)
        hidden = tuple(self.hidden) if not isinstance(self.hidden, (str, bytes)) else None
        if not hidden or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty tuple of positive ints, got {self.hidden!r}")
        object.__setattr__(self, "hidden", hidden)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("features", self.features, FEATURES)
        _choice("scope", self.scope, SCOPES)

    @property
    def scale(self) -> float:
        return self.alpha / self.r

    def build(self, module, *, generator=None):
        raise TypeError("QuantumLoRA adapters share a weight generator; build them with qlite.lm.inject")


@dataclasses.dataclass(frozen=True)
class UnitaryAdapterConfig(AdapterConfig):
    """An orthogonal low-rank update ``dW = scale * U diag(s) V^T`` (Quantum-PEFT, Koike-Akino et al., ICLR 2025).

    ``U`` (``d_out x r``) and ``V`` (``d_in x r``) are the first ``r`` columns of real circuit
    unitaries on ``ceil(log2 d)`` qubits (``depth`` blocks of RY on every wire then an entangler
    ring): ``depth * ceil(log2 d)`` angles each instead of LoRA's ``r * d``. Where ``d`` is not a
    power of two the rows beyond ``d`` are dropped and the columns re-orthonormalised (a QR with a
    positive diagonal: the identity map when ``d`` is a power of two). ``s`` starts at zero, so the
    model starts unchanged; :meth:`merge` folds ``dW`` into the base weight.
    """

    mergeable: ClassVar[bool] = True
    r: int = 4
    depth: int = 4
    entangler: str = "cz"
    scale: float = 1.0

    def __post_init__(self):
        _int("r", self.r, 1)
        _int("depth", self.depth, 1)
        _choice("entangler", self.entangler, ENTANGLERS)
        _positive("scale", self.scale)

    def build(self, module, *, generator=None):
        raise TypeError("UnitaryAdapters share batched circuit banks; build them with qlite.lm.inject")
