"""Compile a :class:`Circuit` into alternating static segments and input encodings.

The native simulator runs ``psi = S_L E_L ... S_1 E_1 S_0 |0>`` where each ``S_l`` is a run of gates
whose angles do not depend on the input (it becomes one batch-independent unitary, or a short list
of factored operations) and each ``E_l`` is a run of input-dependent Pauli rotations. A rotation
about X or Y is a Z rotation conjugated by a fixed basis change (``RX(t) = H RZ(t) H``,
``RY(t) = (S H) RZ(t) (S H)^dagger``); the basis changes are moved into the neighbouring static
segments, so every encoding becomes a diagonal phase ``exp(-i/2 * sum_g s_g x[idx_g] Z_{w_g})``.

Static segments are reduced to three kinds of operation:

* :class:`KronLayer`: single-qubit gates, accumulated per wire (a tensor product of 2x2 matrices),
* :class:`Monomial`: products of CZ / CNOT / SWAP (a signed permutation of basis states),
* :class:`ParamDiag`: a parameterised diagonal two-qubit gate (CRZ).

Measurement: Pauli words are grouped into qubit-wise commuting sets; each set is measured in the Z
basis after a fixed single-qubit rotation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import measure
from .circuit import Circuit, Gate, PauliWord
from .measure import BASIS_CHANGE
from .gates import two_qubit_index_map

_ENCODABLE = {"RX": "X", "RY": "Y", "RZ": "Z", "PhaseShift": "Z"}
_BEFORE = {"X": ("H",), "Y": ("Sdg", "H"), "Z": ()}  # V^dagger, in time order
_AFTER = {"X": ("H",), "Y": ("H", "S"), "Z": ()}  # V, in time order


@dataclass
class KronLayer:
    """Single-qubit gates per wire, in time order: ``{wire: [Gate, ...]}``."""

    wire_gates: dict[int, list[Gate]] = field(default_factory=dict)


@dataclass
class Monomial:
    """``out[k] = sign[k] * in[perm[k]]`` (perm None means identity)."""

    perm: torch.Tensor | None
    sign: torch.Tensor  # complex128, (2**n,)


@dataclass
class ParamDiag:
    gate: Gate


@dataclass
class Segment:
    ops: list = field(default_factory=list)

    @property
    def is_identity(self) -> bool:
        return not self.ops


@dataclass
class Encoding:
    """``exp(-i/2 * sum_g scale[g] * x[index[g]] * Z_{wire[g]})``."""

    wires: tuple[int, ...]
    index: tuple[int, ...]
    scale: tuple[float, ...]


@dataclass
class MeasureGroup:
    rotation: dict[int, tuple[str, ...]]  # per wire, fixed gates in time order
    words: list[PauliWord]
    columns: list[int]  # positions of these words in the circuit's observable list


@dataclass
class Program:
    circuit: Circuit
    segments: list[Segment]  # len(encodings) + 1
    encodings: list[Encoding]
    groups: list[MeasureGroup]

    @property
    def n_qubits(self) -> int:
        return self.circuit.n_qubits


def _split(circuit: Circuit):
    """Alternate static gate lists and encoding blocks: [s0, e1, s1, ..., eL, sL]."""
    statics: list[list[Gate]] = [[]]
    encs: list[list[tuple[Gate, str]]] = []
    open_enc = False
    for g in circuit.gates:
        if g.depends_on_input:
            if g.name not in _ENCODABLE or any(p.source != "input" for p in g.params):
                raise ValueError(
                    f"the native backend encodes inputs only through RX/RY/RZ/PhaseShift whose angle is an input; "
                    f"gate {g.name} on wires {g.wires} mixes inputs differently: use backend='pennylane' for it"
                )
            axis = _ENCODABLE[g.name]
            w = g.wires[0]
            if open_enc and all(a == axis for gg, a in encs[-1] if gg.wires[0] == w):
                encs[-1].append((g, axis))
            else:
                if open_enc:  # an axis conflict on one wire: an empty static segment between
                    statics.append([])
                encs.append([(g, axis)])
                open_enc = True
        else:
            if open_enc:
                statics.append([])
                open_enc = False
            statics[-1].append(g)
    if open_enc:
        statics.append([])
    return statics, encs


def _fixed(name: str, wire: int) -> Gate:
    return Gate(name, (wire,))


def _monomial(name: str, n: int, wires) -> Monomial:
    perm, sign = two_qubit_index_map(name, n, wires)
    identity = bool((perm == torch.arange(perm.numel())).all())
    return Monomial(None if identity else perm, sign.to(torch.complex128))


def _compose(first: Monomial, second: Monomial) -> Monomial:
    """Apply ``first`` then ``second``: out[k] = s2[k] s1[p2[k]] in[p1[p2[k]]]."""
    p2 = second.perm
    s1 = first.sign if p2 is None else first.sign[p2]
    if first.perm is None:
        perm = p2
    else:
        perm = first.perm if p2 is None else first.perm[p2]
    return Monomial(perm, second.sign * s1)


def _segment(gates: list[Gate], n: int) -> Segment:
    ops: list = []
    pending = KronLayer()
    for g in gates:
        if len(g.wires) == 1:
            pending.wire_gates.setdefault(g.wires[0], []).append(g)
            continue
        if pending.wire_gates:
            ops.append(pending)
            pending = KronLayer()
        if g.name == "CRZ":
            ops.append(ParamDiag(g))
            continue
        mono = _monomial(g.name, n, g.wires)
        if ops and isinstance(ops[-1], Monomial):
            ops[-1] = _compose(ops[-1], mono)
        else:
            ops.append(mono)
    if pending.wire_gates:
        ops.append(pending)
    return Segment(ops)


def _group_observables(observables: tuple[PauliWord, ...]) -> list[MeasureGroup]:
    """The qubit-wise commuting groups of :func:`.measure.measurement_groups` (the one grouping
    every consumer uses), with each group's basis change per wire."""
    out = []
    for g in measure.measurement_groups(observables):
        rotation = {w: BASIS_CHANGE[p] for w, p in g.basis if BASIS_CHANGE[p]}
        out.append(MeasureGroup(rotation, list(g.words), list(g.columns)))
    return out


def compile_circuit(circuit: Circuit) -> Program:
    """Compile ``circuit`` for the native backend (pure; cached by the backend)."""
    n = circuit.n_qubits
    statics, encs = _split(circuit)
    encodings = []
    for l, block in enumerate(encs):
        axes = {g.wires[0]: a for g, a in block}
        # fold the basis changes into the neighbouring static segments
        statics[l] = statics[l] + [_fixed(name, w) for w, a in axes.items() for name in _BEFORE[a]]
        statics[l + 1] = [_fixed(name, w) for w, a in axes.items() for name in _AFTER[a]] + statics[l + 1]
        encodings.append(Encoding(
            wires=tuple(g.wires[0] for g, _ in block),
            index=tuple(g.params[0].index for g, _ in block),
            scale=tuple(g.params[0].scale for g, _ in block),
        ))
    groups = _group_observables(circuit.observables)
    if len(groups) == 1 and groups[0].rotation:  # one basis: rotate inside the last segment
        statics[-1] = statics[-1] + [_fixed(name, w) for w, names in groups[0].rotation.items() for name in names]
        groups[0].rotation = {}
    segments = [_segment(s, n) for s in statics]
    return Program(circuit, segments, encodings, groups)

