"""Device-specific layout of a compiled program, and the vectorised build of its static parts.

Building the static segments must cost a handful of kernels however many gates there are (on a GPU
each small kernel costs ~10 microseconds of launch, and the build runs every forward). So:

1. every parameterised single-qubit gate of the whole circuit is turned into its 2x2 matrix in one
   vectorised call per gate type; fixed gates come from a constant bank;
2. one gather arranges them as ``W[layer, wire]`` (identity where a wire has no gate) for all
   Kronecker layers at once (wires carrying several gates get their product first);
3. each chunk of wires becomes a stack of ``2**w x 2**w`` matrices ``kron(W[:, s], ..., W[:, s+w-1])``
   by ``w - 1`` batched outer products.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .compile import KronLayer, Monomial, ParamDiag, Program
from .gates import complex_dtype, fixed_matrix, rotation_matrices, z_signs
from .runops import Chunk, Diagonal, Permute

_FIXED = ("H", "X", "Y", "Z", "S", "Sdg", "T")


@dataclass
class Layout:
    n: int
    cdtype: torch.dtype
    consts: torch.Tensor  # constant angles, appended to the weights as the angle source
    fixed_bank: torch.Tensor  # (1 + len(_FIXED), 2, 2): identity first
    param_groups: list  # [(gate name, index tensor into the angle source)]
    products: list  # [[bank index, ...]] wires with several gates, in time order
    wire_index: torch.Tensor  # (NL, n) bank index of each Kronecker layer's wire matrix
    chunks: list  # [(first wire, width)]
    chunk_active: list  # [[bool per chunk] per layer]: False where the chunk carries no gate
    segments: list  # per segment: run operations (Chunk, Permute, Diagonal); tensor ids: chunk c is
    # tensor c, CRZ k is tensor len(chunks) + k (the order of ``build``'s results)
    crz: list  # [(sign vector (D,), angle-source index)]
    encodings: list  # per encoding: (wires, index, scale, zsign (n, D), zsign of each half (2**h, h))
    groups: list  # per measurement group: (rotation [(wire, 2x2)], M (D, n_g), columns)
    e0: torch.Tensor  # |0...0> as a (D, 1) column (made here: no host-to-device copy per forward)


def default_chunks(n: int, chunk: int | None):
    """Wire groups of the Kronecker chunks: two halves by default (two GEMMs per layer)."""
    if chunk is not None:
        return [(s, min(chunk, n - s)) for s in range(0, n, chunk)]
    hi = n // 2
    return [(0, hi), (hi, n - hi)] if hi else [(0, n)]


def make_layout(prog: Program, device, rdtype, chunk: int | None) -> Layout:
    cdtype = complex_dtype(rdtype)
    n = prog.n_qubits
    n_weights = prog.circuit.n_weights
    const_values: list[float] = []
    const_pos: dict[float, int] = {}

    def src_index(p):
        if p.source == "weight":
            return p.index
        if p.value not in const_pos:
            const_pos[p.value] = len(const_values)
            const_values.append(p.value)
        return n_weights + const_pos[p.value]

    by_name: dict[str, list] = {}
    gate_slot: dict[int, tuple[str, int]] = {}  # id(gate) -> (name, position within its group)
    layers: list[KronLayer] = []
    segments, crz = [], []
    for seg in prog.segments:
        out = []
        for op in seg.ops:
            if isinstance(op, KronLayer):
                for gates in op.wire_gates.values():
                    for g in gates:
                        if g.params and id(g) not in gate_slot:
                            idx = [src_index(p) for p in g.params]
                            group = by_name.setdefault(g.name, [])
                            gate_slot[id(g)] = (g.name, len(group))
                            group.append(idx if g.name == "Rot" else idx[0])
                out.append(len(layers))  # a Kronecker layer: its chunks are known below
                layers.append(op)
            elif isinstance(op, ParamDiag):
                g = op.gate
                k = torch.arange(1 << n)
                ctrl = ((k >> (n - 1 - g.wires[0])) & 1).to(rdtype)
                zt = 1.0 - 2.0 * ((k >> (n - 1 - g.wires[1])) & 1).to(rdtype)
                out.append(Diagonal(len(crz)))  # shifted past the chunk tensors below
                crz.append(((ctrl * zt).to(device), src_index(g.params[0])))
            elif isinstance(op, Monomial):
                perm = None if op.perm is None else op.perm.to(device)
                inv = None if op.perm is None else torch.argsort(op.perm).to(device)
                out.append(Permute(perm, inv, op.sign.to(device=device, dtype=cdtype)))
            else:
                raise TypeError(f"unknown static operation {type(op).__name__} in a compiled segment")
        segments.append(out)

    # bank layout: [identity, fixed gates..., group 0 matrices..., group 1..., products...]
    offset = 1 + len(_FIXED)
    group_offset = {}
    param_groups = []
    for name, idx in by_name.items():
        group_offset[name] = offset
        param_groups.append((name, torch.tensor(idx, device=device)))
        offset += len(idx)

    def bank_index(g):
        if g.params:
            name, pos = gate_slot[id(g)]
            return group_offset[name] + pos
        return 1 + _FIXED.index(g.name)

    products: list[list[int]] = []
    wire_index = torch.zeros((max(len(layers), 1), n), dtype=torch.long)
    chunks = default_chunks(n, chunk)
    chunk_active = []
    for li, layer in enumerate(layers):
        for wire, gates in layer.wire_gates.items():
            if len(gates) == 1:
                wire_index[li, wire] = bank_index(gates[0])
            else:
                wire_index[li, wire] = offset + len(products)
                products.append([bank_index(g) for g in gates])
        chunk_active.append([any(w in layer.wire_gates for w in range(s, s + w_)) for s, w_ in chunks])
    typed = []
    for seg in segments:
        out = []
        for op in seg:
            if isinstance(op, int):
                out += [Chunk(start, width, c, op) for c, (start, width) in enumerate(chunks) if chunk_active[op][c]]
            elif isinstance(op, Diagonal):
                out.append(Diagonal(len(chunks) + op.t))
            else:
                out.append(op)
        typed.append(out)
    segments = typed

    zsign_all = z_signs(n, range(n)).to(device=device, dtype=rdtype)
    nh = n // 2 if n > 1 else n
    zsign_hi = z_signs(nh, range(nh)).T.contiguous().to(device=device, dtype=rdtype)
    zsign_lo = z_signs(n - nh, range(n - nh)).T.contiguous().to(device=device, dtype=rdtype)
    encodings = [
        (torch.tensor(e.wires, device=device), torch.tensor(e.index, device=device),
         torch.tensor(e.scale, dtype=rdtype, device=device), zsign_all, zsign_hi, zsign_lo)
        for e in prog.encodings
    ]
    groups = []
    for grp in prog.groups:
        rot = []
        for wire, names in grp.rotation.items():
            mat = torch.eye(2, dtype=cdtype, device=device)
            for nm in names:
                mat = fixed_matrix(nm, cdtype, device) @ mat
            rot.append((wire, mat))
        cols = [z_signs(n, w.wires).prod(0) if w.wires else torch.ones(1 << n, dtype=torch.float64) for w in grp.words]
        groups.append((rot, torch.stack(cols, 1).to(device=device, dtype=rdtype),
                       torch.tensor(grp.columns, device=device)))
    fixed_bank = torch.stack([torch.eye(2, dtype=cdtype, device=device)] +
                             [fixed_matrix(nm, cdtype, device) for nm in _FIXED])
    e0 = torch.zeros((1 << n, 1), dtype=cdtype)
    e0[0, 0] = 1
    return Layout(n, cdtype, torch.tensor(const_values, dtype=rdtype, device=device), fixed_bank, param_groups,
                  products, wire_index.to(device), chunks, chunk_active, segments, crz, encodings, groups,
                  e0.to(device))


def _kron_stack(w: torch.Tensor) -> torch.Tensor:
    """``(NL, k, 2, 2) -> (NL, 2**k, 2**k)``: Kronecker product over the wire axis, wire 0 first."""
    out = w[:, 0]
    for i in range(1, w.shape[1]):
        a = out.shape[-1]
        out = (out[:, :, None, :, None] * w[:, i, None, :, None, :]).reshape(-1, 2 * a, 2 * a)
    return out


def build(layout: Layout, weights: torch.Tensor):
    """Chunk matrices ``[(NL, 2**w, 2**w) per chunk]`` and CRZ diagonals ``[(D,)]`` from the weights."""
    src = torch.cat((weights, layout.consts))
    parts = [layout.fixed_bank] + [rotation_matrices(name, src[idx]) for name, idx in layout.param_groups]
    bank = torch.cat(parts) if len(parts) > 1 else parts[0]
    if layout.products:
        prods = []
        for chain in layout.products:
            m = bank[chain[0]]
            for i in chain[1:]:
                m = bank[i] @ m
            prods.append(m)
        bank = torch.cat((bank, torch.stack(prods)))
    w = bank[layout.wire_index]  # (NL, n, 2, 2)
    chunk_mats = [_kron_stack(w[:, s:s + width]) for s, width in layout.chunks]
    crz = [torch.polar(torch.ones_like(sign), -0.5 * src[i] * sign).to(layout.cdtype) for sign, i in layout.crz]
    return chunk_mats, crz
