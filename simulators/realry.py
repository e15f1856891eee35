"""The "realry" plan: merged diagonal phases and real RY factors (``strategy="realry"``).

Every single-qubit gate is a global phase times ``RZ(b) RY(t) RZ(a)`` (PennyLane's ``Rot`` is
exactly that; ``H = RY(pi/2) Z``, ``X = RY(pi) Z``, ``RX(t) = RZ(-pi/2) RY(t) RZ(pi/2)``, the
diagonal gates are RZ up to a phase). So a static segment is an alternation of diagonals and layers
of real 2x2 RY factors. All the diagonals between two RY layers (the RZ parts of the rotations, a
CZ ring, CRZ gates and an input encoding) merge into one phase per sub-layer:

* without an encoding it is one batch-independent vector ``(2**n,)`` (a :class:`~.runops.Diagonal`),
  built by autograd from the per-wire RZ angles and the ring's signs;
* with an encoding the per-wire RZ angles are added to the encoded angles (an
  :class:`~.runops.Encode` with an ``offset``), so merging costs nothing per amplitude.

What is left are real Kronecker chunks (:class:`~.runops.RealChunk`): a real ``2**w`` square
matrix applied to the complex state viewed as real numbers, half the real arithmetic of the complex
chunks of ``strategy="factored"``. Global phases are kept (in ``psi0``), so states match the other
strategies exactly; permutations (CNOT, SWAP) stay as they are and end a merged diagonal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from . import ops
from .compile import KronLayer, Monomial, ParamDiag, Program
from .layout import Layout, _kron_stack
from .runops import Diagonal, Encode, Permute, RealChunk, RealChunkBlocks

_PI = math.pi

# Per gate: factors in time order, ("z" | "y", angle) with angle = (param position or None, coefficient,
# constant), and the global phase as (param position or None, coefficient, constant).
_FACTORS = {
    "RZ": ([("z", (0, 1.0, 0.0))], None),
    "RY": ([("y", (0, 1.0, 0.0))], None),
    "RX": ([("z", (None, 0.0, _PI / 2)), ("y", (0, 1.0, 0.0)), ("z", (None, 0.0, -_PI / 2))], None),
    "Rot": ([("z", (0, 1.0, 0.0)), ("y", (1, 1.0, 0.0)), ("z", (2, 1.0, 0.0))], None),
    "PhaseShift": ([("z", (0, 1.0, 0.0))], (0, 0.5, 0.0)),
    "Z": ([("z", (None, 0.0, _PI))], (None, 0.0, _PI / 2)),
    "S": ([("z", (None, 0.0, _PI / 2))], (None, 0.0, _PI / 4)),
    "Sdg": ([("z", (None, 0.0, -_PI / 2))], (None, 0.0, -_PI / 4)),
    "T": ([("z", (None, 0.0, _PI / 4))], (None, 0.0, _PI / 8)),
    "H": ([("z", (None, 0.0, _PI)), ("y", (None, 0.0, _PI / 2))], (None, 0.0, _PI / 2)),
    "X": ([("z", (None, 0.0, _PI)), ("y", (None, 0.0, _PI))], (None, 0.0, _PI / 2)),
    "Y": ([("y", (None, 0.0, _PI))], (None, 0.0, _PI / 2)),
}


def supports(prog: Program) -> bool:
    """Every static single-qubit gate of ``prog`` has a phase / RY decomposition here."""
    return all(g.name in _FACTORS for seg in prog.segments for op in seg.ops if isinstance(op, KronLayer)
               for gates in op.wire_gates.values() for g in gates)


@dataclass
class _Slot:
    """One merged diagonal: per-wire RZ angle terms, constant signs, CRZ gates, an encoding."""

    z: dict = field(default_factory=dict)  # wire -> [(source, coefficient, constant)]
    sign: torch.Tensor | None = None  # complex128 (2**n,)
    crz: list = field(default_factory=list)
    enc: int | None = None
    sign_real: bool = True  # the signs are +-1 (CZ rings), so they fold into a real chunk


@dataclass
class RealLayout:
    """The realry plan of one program on one device: the items in time order and the linear map
    from the weights to every RY and RZ angle (and the global phase)."""

    items: list  # ("ry", layer) | ("slot", _Slot) | ("perm", Permute)
    slots: list  # the _Slot objects, index = row of the slot angles
    n_ry: int
    target: torch.Tensor  # (T,) positions in the flat angle vector
    source: torch.Tensor  # (T,) weight indices
    coeff: torch.Tensor  # (T,)
    const: torch.Tensor  # (n_ry * n + n_slots * n + 1,) constant parts
    ry_active: list  # [[bool per chunk] per RY layer]
    crz_signs: dict  # id(gate) -> (2**n,) sign pattern of a CRZ (control * Z_target)
    n: int
    fixed: list  # rows of the batch-independent slots with phases (their diagonals are built in one call)
    fixed_index: torch.Tensor  # the same rows on the device: indexing with a list copies from the host,
    # which a CUDA graph capture refuses


def _gate_terms(g, angle):
    """``angle`` = (param position or None, coefficient, constant) -> [(weight index, coeff)], constant."""
    pos, coef, const = angle
    if pos is None:
        return [], const
    p = g.params[pos]
    if p.source == "weight":
        return [(p.index, coef)], const
    if p.source == "const":
        return [], const + coef * p.value
    raise ValueError(f"gate {g.name}: an input angle in a static segment")  # compile.py prevents it


def make_real_layout(prog: Program, lay: Layout, device, rdtype) -> RealLayout:
    n = prog.n_qubits
    items: list = []
    slots: list[_Slot] = []
    ry_layers: list[dict] = []  # per RY layer: wire -> [angle terms]
    gphase: list = []

    def new_slot():
        s = _Slot()
        slots.append(s)
        items.append(("slot", s))
        return s

    cur = new_slot()
    for l, seg in enumerate(prog.segments):
        if l > 0:  # the (l-1)-th encoding comes before segment l
            if cur.enc is not None:
                cur = new_slot()
            cur.enc = l - 1
        for op in seg.ops:
            if isinstance(op, KronLayer):
                per_wire = {}
                for wire, gates in op.wire_gates.items():
                    groups: list = [("z", [])]  # alternating z / y groups, starting with z
                    for g in gates:
                        factors, phase = _FACTORS[g.name]
                        if phase is not None:
                            gphase.append(_gate_terms(g, phase))
                        for kind, angle in factors:
                            if groups[-1][0] != kind:
                                groups.append((kind, []))
                            groups[-1][1].append(_gate_terms(g, angle))
                    per_wire[wire] = groups
                m = max(sum(k == "y" for k, _ in gr) for gr in per_wire.values())
                new = [cur] + [None] * m
                for j in range(m):
                    ry_layers.append({})
                    items.append(("ry", len(ry_layers) - 1))
                    new[j + 1] = new_slot()
                for wire, groups in per_wire.items():
                    n_y = sum(k == "y" for k, _ in groups)
                    j = 0  # RY groups of this wire seen so far: its j-th lands in RY layer j
                    for kind, terms in groups:
                        if kind == "y":
                            ry_layers[len(ry_layers) - m + j].setdefault(wire, []).extend(terms)
                            j += 1
                        elif terms:  # before the wire's j-th RY group, or after its last one
                            (new[j] if j < n_y else new[m]).z.setdefault(wire, []).extend(terms)
                cur = new[m]
            elif isinstance(op, Monomial):
                if op.perm is None:
                    cur.sign = op.sign if cur.sign is None else cur.sign * op.sign
                else:
                    inv = torch.argsort(op.perm)
                    items.append(("perm", Permute(op.perm.to(device), inv.to(device),
                                                  op.sign.to(device=device, dtype=lay.cdtype))))
                    cur = new_slot()
            elif isinstance(op, ParamDiag):
                cur.crz.append(op.gate)
            else:
                raise TypeError(f"unknown static operation {type(op).__name__} in a compiled segment")

    for slot in slots:
        if slot.sign is not None:
            slot.sign_real = bool((slot.sign.imag == 0).all())  # decided once, on the host copy
            slot.sign = slot.sign.to(device=device, dtype=lay.cdtype)
    # the flat angle vector: RY angles (n_ry, n), slot RZ angles (n_slots, n), the global phase
    n_ry, n_slots = len(ry_layers), len(slots)
    const = torch.zeros(n_ry * n + n_slots * n + 1, dtype=torch.float64)
    target, source, coeff = [], [], []

    def add(pos, terms_list):
        for terms, c in terms_list:
            const[pos] += c
            for idx, cf in terms:
                target.append(pos)
                source.append(idx)
                coeff.append(cf)

    for r, layer in enumerate(ry_layers):
        for wire, terms in layer.items():
            add(r * n + wire, terms)
    for s, slot in enumerate(slots):
        for wire, terms in slot.z.items():
            add(n_ry * n + s * n + wire, terms)
    add(n_ry * n + n_slots * n, gphase)
    ry_active = [[any(w in layer for w in range(s0, s0 + w_)) for s0, w_ in lay.chunks] for layer in ry_layers]
    k = torch.arange(1 << n)
    crz_signs = {}
    for slot in slots:
        for g in slot.crz:
            ctrl = ((k >> (n - 1 - g.wires[0])) & 1).double()
            zt = 1.0 - 2.0 * ((k >> (n - 1 - g.wires[1])) & 1).double()
            crz_signs[id(g)] = (ctrl * zt).to(device=device, dtype=rdtype)
    fixed = [i for i, sl in enumerate(slots) if sl.enc is None and (sl.z or sl.crz)]
    return RealLayout(items, slots, n_ry, torch.tensor(target, dtype=torch.long, device=device),
                      torch.tensor(source, dtype=torch.long, device=device),
                      torch.tensor(coeff, dtype=rdtype, device=device), const.to(device=device, dtype=rdtype),
                      ry_active, crz_signs, n, fixed, torch.tensor(fixed, dtype=torch.long, device=device))


def _ry_matrices(angles: torch.Tensor) -> torch.Tensor:
    """``(..., n) -> (..., n, 2, 2)`` real ``RY = [[c, -s], [s, c]]`` of half the angles."""
    c, s = torch.cos(angles / 2), torch.sin(angles / 2)
    return torch.stack((c, -s, s, c), -1).reshape(*angles.shape, 2, 2)


def build_run(real: RealLayout, lay: Layout, weights: torch.Tensor, keep_trailing: bool, batch: int):
    """``(psi0, run operations, tensors)`` of one forward (batch-independent work by autograd)."""
    n, rdtype, cdtype = real.n, weights.dtype, lay.cdtype
    angles = real.const
    if real.target.numel():
        angles = angles.index_add(0, real.target, weights[real.source] * real.coeff)
    nr = real.n_ry * n
    ry = _ry_matrices(angles[:nr].reshape(real.n_ry, n))  # (n_ry, n, 2, 2); identity where no factor
    slot_angles = angles[nr:-1].reshape(len(real.slots), n)
    tensors = [_kron_stack(ry[:, s:s + w]) if real.n_ry else ry.new_zeros((0, 1 << w, 1 << w))
               for s, w in lay.chunks]
    z_hi, z_lo = lay.encodings[0][4:6] if lay.encodings else _half_signs(lay)

    def crz_vector(gates):
        d = None
        for g in gates:
            v = torch.polar(torch.ones_like(real.crz_signs[id(g)]), -0.5 * _angle(g, weights) * real.crz_signs[id(g)])
            d = v if d is None else d * v
        return d.to(cdtype)

    run_ops = []
    rows = {id(s): i for i, s in enumerate(real.slots)}
    # the phases of every batch-independent slot in one call: columns of a (2**n, slots) diagonal
    fixed_col = {i: c for c, i in enumerate(real.fixed)}
    diags = (ops.encoding_diagonal(slot_angles.index_select(0, real.fixed_index).T, z_hi, z_lo, cdtype)
             if real.fixed else None)
    for kind, item in real.items:
        if kind == "ry":
            run_ops += [RealChunk(s, w, c, item) for c, (s, w) in enumerate(lay.chunks) if real.ry_active[item][c]]
        elif kind == "perm":
            run_ops.append(item)
        else:
            slot, row = item, rows[id(item)]
            if slot.enc is None:
                if not slot.z and not slot.crz:
                    if slot.sign is not None:
                        run_ops.append(Permute(None, None, slot.sign))
                    continue
                d = diags[:, fixed_col[row]]
                if slot.sign is not None:
                    d = d * slot.sign
                if slot.crz:
                    d = d * crz_vector(slot.crz)
                tensors.append(d)
                run_ops.append(Diagonal(len(tensors) - 1))
            else:
                if slot.crz:
                    tensors.append(crz_vector(slot.crz))
                    run_ops.append(Diagonal(len(tensors) - 1))
                offset = None
                if slot.z:
                    tensors.append(slot_angles[row])
                    offset = len(tensors) - 1
                pre, prev = slot.sign, run_ops[-1] if run_ops else None
                if pre is not None and slot.sign_real and _foldable(prev, n, batch):
                    # the ring's real signs fold into the real chunk before: one pass less each way
                    k = 1 << prev.width
                    tensors.append(pre.real.reshape(1 << prev.before, k, 1) * tensors[prev.t][prev.i])
                    run_ops[-1] = RealChunkBlocks(prev.before, prev.width, len(tensors) - 1)
                    pre = None
                run_ops.append(Encode(slot.enc, pre, offset))
    if not keep_trailing and all(not rot for rot, _, _ in lay.groups):
        # unit-modulus diagonals right before a Z measurement change nothing
        while run_ops and (isinstance(run_ops[-1], (Diagonal, Encode))
                           or (isinstance(run_ops[-1], Permute) and run_ops[-1].is_diagonal)):
            run_ops.pop()
    # the batch-independent prefix runs on |0...0> (by autograd), with the global phase
    first = next((i for i, op in enumerate(run_ops) if op.batch_dependent), len(run_ops))
    psi0 = lay.e0
    for op in run_ops[:first]:
        psi0 = op.apply(psi0, tensors)
    psi0 = psi0[:, 0] * torch.polar(torch.ones_like(angles[-1]), angles[-1]).to(cdtype)
    return psi0, run_ops[first:], tensors


def _foldable(prev, n: int, batch: int) -> bool:
    """A real chunk on the last wires whose per-block matrices (``2**(before + 2 * width)``
    entries) are no larger than the state."""
    return (isinstance(prev, RealChunk) and prev.before > 0 and prev.before + prev.width == n
            and (1 << (prev.before + 2 * prev.width)) <= (1 << n) * batch)


def _angle(g, weights):
    p = g.params[0]
    return weights[p.index] if p.source == "weight" else weights.new_full((), p.value)  # no host copy


def _half_signs(lay: Layout):
    from .gates import z_signs

    n = lay.n
    nh = n // 2 if n > 1 else n
    dev, dt = lay.e0.device, lay.consts.dtype
    return (z_signs(nh, range(nh)).T.contiguous().to(device=dev, dtype=dt),
            z_signs(n - nh, range(n - nh)).T.contiguous().to(device=dev, dtype=dt))
