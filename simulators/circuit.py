"""The circuit description every backend consumes.

A :class:`Circuit` is a flat, immutable list of :class:`Gate` s on wires ``0..n_qubits-1`` plus the
observables to measure. Each gate angle is a :class:`Param` drawn from one of three sources:

* ``Param.weight(i)``          the i-th entry of a flat trainable vector,
* ``Param.input(j, scale)``    ``scale * x[..., j]`` for the circuit's input features ``x``,
* ``Param.const(value)``       a fixed number.

Conventions follow PennyLane: wire 0 is the most significant bit of a basis-state index, ``RZ(t) =
exp(-i t Z / 2)``, ``Rot(phi, theta, omega) = RZ(omega) RY(theta) RZ(phi)``, and observables are
Pauli words (tensor products of I, X, Y, Z).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch

# name -> (number of wires, number of angles)
GATES: dict[str, tuple[int, int]] = {
    "RX": (1, 1),
    "RY": (1, 1),
    "RZ": (1, 1),
    "PhaseShift": (1, 1),
    "Rot": (1, 3),
    "H": (1, 0),
    "X": (1, 0),
    "Y": (1, 0),
    "Z": (1, 0),
    "S": (1, 0),
    "Sdg": (1, 0),
    "T": (1, 0),
    "CNOT": (2, 0),
    "CZ": (2, 0),
    "SWAP": (2, 0),
    "CRZ": (2, 1),
}

_SOURCES = ("weight", "input", "const")


@dataclass(frozen=True)
class Param:
    """Where one gate angle comes from (see the module docstring)."""

    source: str
    index: int = 0
    scale: float = 1.0
    value: float = 0.0

    def __post_init__(self):
        if self.source not in _SOURCES:
            raise ValueError(f"Param source must be one of {_SOURCES}, got {self.source!r}")
        if self.index < 0:
            raise ValueError(f"Param index must be >= 0, got {self.index}")

    @classmethod
    def weight(cls, index: int) -> "Param":
        return cls("weight", index=int(index))

    @classmethod
    def input(cls, index: int, scale: float = 1.0) -> "Param":
        return cls("input", index=int(index), scale=float(scale))

    @classmethod
    def const(cls, value: float) -> "Param":
        return cls("const", value=float(value))


@dataclass(frozen=True)
class Gate:
    """One gate: a name from :data:`GATES`, the wires it acts on, and its angles."""

    name: str
    wires: tuple[int, ...]
    params: tuple[Param, ...] = ()

    def __post_init__(self):
        if self.name not in GATES:
            raise ValueError(f"unknown gate {self.name!r}; supported gates: {sorted(GATES)}")
        n_wires, n_params = GATES[self.name]
        object.__setattr__(self, "wires", tuple(int(w) for w in self.wires))
        object.__setattr__(self, "params", tuple(self.params))
        if len(self.wires) != n_wires:
            raise ValueError(f"gate {self.name} acts on {n_wires} wire(s), got wires={self.wires}")
        if len(set(self.wires)) != len(self.wires):
            raise ValueError(f"gate {self.name} got repeated wires {self.wires}")
        if min(self.wires) < 0:
            raise ValueError(f"gate {self.name} got negative wires {self.wires}; wires count from 0")
        if len(self.params) != n_params:
            raise ValueError(f"gate {self.name} takes {n_params} angle(s), got {len(self.params)}")
        if not all(isinstance(p, Param) for p in self.params):
            raise TypeError(f"gate {self.name}: angles must be Param objects (Param.weight(i), Param.input(j, scale), "
                            f"Param.const(v)), got {self.params!r}")

    @property
    def depends_on_input(self) -> bool:
        return any(p.source == "input" for p in self.params)

    @property
    def is_trainable(self) -> bool:
        return any(p.source == "weight" for p in self.params)


@dataclass(frozen=True)
class PauliWord:
    """A tensor product of Pauli operators, stored as sorted ``(wire, "X"|"Y"|"Z")`` pairs.

    ``PauliWord.parse("Z0 Z3")`` is ``Z_0 Z_3``; the empty word is the identity.
    """

    ops: tuple[tuple[int, str], ...] = field(default=())

    def __post_init__(self):
        ops = tuple(sorted((int(w), str(p)) for w, p in self.ops))
        wires = [w for w, _ in ops]
        if len(set(wires)) != len(wires):
            raise ValueError(f"a Pauli word names each wire at most once, got {ops}")
        for w, p in ops:
            if p not in ("X", "Y", "Z"):
                raise ValueError(f"Pauli letters are X, Y or Z, got {p!r} on wire {w}")
            if w < 0:
                raise ValueError(f"wires are >= 0, got {w}")
        object.__setattr__(self, "ops", ops)

    @classmethod
    def parse(cls, text: str) -> "PauliWord":
        """``"Z0 X2"`` -> Z on wire 0 times X on wire 2; letters I are skipped."""
        ops = []
        for tok in text.split():
            if tok.upper() == "I":  # the identity word, as str(PauliWord(())) writes it
                continue
            letter, wire = tok[0].upper(), tok[1:]
            if not wire.isdigit():
                raise ValueError(f"cannot parse Pauli factor {tok!r}; write e.g. 'Z0 X2'")
            if letter != "I":
                ops.append((int(wire), letter))
        return cls(tuple(ops))

    @classmethod
    def z(cls, wire: int) -> "PauliWord":
        return cls(((wire, "Z"),))

    @property
    def wires(self) -> tuple[int, ...]:
        return tuple(w for w, _ in self.ops)

    def __str__(self) -> str:
        return " ".join(f"{p}{w}" for w, p in self.ops) or "I"


@dataclass(frozen=True)
class Circuit:
    """A parameterised circuit: gates in order of application, then Pauli-word expectation values.

    ``n_weights`` and ``n_inputs`` give the lengths of the trainable vector and of the input
    feature vector the angles index into; they are inferred from the gates when not given.
    """

    n_qubits: int
    gates: tuple[Gate, ...]
    observables: tuple[PauliWord, ...]
    n_weights: int = -1
    n_inputs: int = -1

    def __post_init__(self):
        if not isinstance(self.n_qubits, int) or isinstance(self.n_qubits, bool) or self.n_qubits < 1:
            raise ValueError(f"n_qubits must be an integer >= 1, got {self.n_qubits!r}")
        gates, obs = tuple(self.gates), tuple(self.observables)
        object.__setattr__(self, "gates", gates)
        object.__setattr__(self, "observables", obs)
        if not obs:
            raise ValueError("a circuit needs at least one observable")
        for g in gates:
            if not isinstance(g, Gate):
                raise TypeError(f"gates must be Gate objects, got {type(g).__name__}")
            if max(g.wires) >= self.n_qubits:
                raise ValueError(f"gate {g.name} on wires {g.wires} outside 0..{self.n_qubits - 1}")
        for o in obs:
            if not isinstance(o, PauliWord):
                raise TypeError(f"observables must be PauliWord objects, got {type(o).__name__}")
            if o.wires and max(o.wires) >= self.n_qubits:
                raise ValueError(f"observable {o} acts outside wires 0..{self.n_qubits - 1}")
        need_w = 1 + max((p.index for g in gates for p in g.params if p.source == "weight"), default=-1)
        need_x = 1 + max((p.index for g in gates for p in g.params if p.source == "input"), default=-1)
        for attr, need in (("n_weights", need_w), ("n_inputs", need_x)):
            have = getattr(self, attr)
            if have < 0:
                object.__setattr__(self, attr, need)
            elif have < need:
                raise ValueError(f"{attr}={have} but the gates index up to {need - 1}")

    def __hash__(self) -> int:
        # backends look circuits up in dicts on every forward: hash the gate tuple once, not per call
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.n_qubits, self.gates, self.observables, self.n_weights, self.n_inputs))
            object.__setattr__(self, "_hash", h)
        return h

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_hash", None)  # string hashes differ between processes: recomputed where it is used
        return state

    @property
    def n_observables(self) -> int:
        return len(self.observables)

    def with_observables(self, observables: Iterable[PauliWord]) -> "Circuit":
        return Circuit(self.n_qubits, self.gates, tuple(observables), self.n_weights, self.n_inputs)

    def bind_inputs(self, x: Iterable[float]) -> "Circuit":
        """The same circuit with every input angle replaced by a constant (``scale * x[j]``)."""
        x = [float(v) for v in x]
        if len(x) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} input values, got {len(x)}")
        gates = tuple(
            Gate(g.name, g.wires, tuple(Param.const(p.scale * x[p.index]) if p.source == "input" else p for p in g.params))
            for g in self.gates
        )
        return Circuit(self.n_qubits, gates, self.observables, self.n_weights, 0)


def validate_call(circuit, weights, x) -> None:
    """The checks every backend makes on ``backend(circuit, weights, x)``: a Circuit, a flat weight
    vector of ``circuit.n_weights`` and inputs of shape ``(batch, circuit.n_inputs)``."""
    if not isinstance(circuit, Circuit):
        raise TypeError(f"expected a qlite.simulators.Circuit, got {type(circuit).__name__}")
    if not isinstance(x, torch.Tensor) or not isinstance(weights, torch.Tensor):
        raise TypeError(f"weights and x must be torch tensors, got {type(weights).__name__} and {type(x).__name__}")
    if x.is_complex():
        raise TypeError("inputs are angles and must be real; got a complex tensor")
    if x.dim() != 2 or x.shape[1] != circuit.n_inputs:
        raise ValueError(f"expected inputs of shape (batch, {circuit.n_inputs}), got {tuple(x.shape)}")
    if tuple(weights.shape) != (circuit.n_weights,):
        raise ValueError(f"expected a flat weight vector of {circuit.n_weights}, got {tuple(weights.shape)}")
