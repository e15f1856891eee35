"""The native backend: a batched statevector simulator in PyTorch (CPU and CUDA).

``psi = S_L E_L(x) ... S_1 E_1(x) S_0 |0>`` (see ``compile.py``). Per forward:

1. The static segments are built from the weights with ordinary autograd (batch independent):
   either as one dense matrix ``R_l = S_l^T`` (``strategy="dense"``) or as a few factored
   operations (Kronecker chunks of single-qubit layers, signed permutations for CZ/CNOT rings;
   ``strategy="factored"``). ``S_0 |0>`` is a single batch-independent state.
2. The batch part runs inside one ``torch.autograd.Function``: encodings are elementwise phases,
   dense segments one GEMM each, and all expectation values come from one GEMM on ``|psi|^2``.
3. Its backward is the adjoint method: the final state and the adjoint state
   ``phi = dL/d conj(psi)`` travel back together through ``S^dagger`` and ``E^dagger``
   (recomputing the states instead of storing one per gate), and each operation's gradient is one
   contraction of ``phi`` with the recomputed state. Memory stays at a few states.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from . import ops
from .circuit import Circuit, PauliWord
from .compile import KronLayer, Monomial, ParamDiag, Program, Segment, compile_circuit
from .gates import complex_dtype, fixed_matrix, rotation_matrices, z_signs

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "dense", "factored", "autograd")


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def estimate_bytes(n_qubits: int, batch: int, dtype: torch.dtype = torch.float32, training: bool = True,
                   dense_segments: int = 0) -> int:
    """Peak bytes the native backend needs: a few batch states plus the dense segment matrices.

    Forward holds about 4 state-sized buffers (state, phases, temporaries); backward about 7 (state
    and adjoint stacked, their updates, and the saved final state).
    """
    item = 16 if dtype == torch.float64 else 8
    state = batch * (1 << n_qubits) * item
    return state * (7 if training else 4) + dense_segments * (1 << (2 * n_qubits)) * item


def check_memory(n_qubits: int, batch: int, dtype: torch.dtype, device: torch.device, training: bool,
                 dense_segments: int = 0) -> None:
    need = estimate_bytes(n_qubits, batch, dtype, training, dense_segments)
    have = _available_bytes(device)
    if need > have:
        raise ValueError(
            f"simulating {n_qubits} qubits for a batch of {batch} needs about {need / 2**30:.2f} GiB "
            f"({need} bytes) on {device}, but only {have / 2**30:.2f} GiB is available; "
            f"use fewer points per batch (e.g. fit(..., batch_size=...)), fewer qubits, or float32"
        )


def default_strategy(n_qubits: int, device: torch.device) -> str:
    """Dense GEMMs while 2**n is small, factored operations above (crossover measured in
    experiments/bench_strategy.py)."""
    limit = 9 if device.type == "cuda" else 7
    return "dense" if n_qubits <= limit else "factored"


@dataclass
class _Constants:
    """Device/dtype-specific constants of a compiled program."""

    fixed: dict
    monomials: dict  # id(op) -> (perm, inv_perm, sign)
    crz: dict  # id(op) -> (control_bits * z_target) real (D,)
    encodings: list  # per encoding: (wires, index, scale, zsign of every wire (n, D))
    groups: list  # per group: (rotation [(wire, 2x2)], M (D, n_g) real, columns LongTensor)
    angle_index: dict  # id(segment) -> {gate name: index tensor into [weights, consts]}
    consts: torch.Tensor  # constant angles of the circuit
    eye2: torch.Tensor


class _Run:
    """The batch part of one forward: operations on a batch-last state ``X`` of shape (2**n, B).

    Operations (tuples): ``("dense", t)`` X <- U X; ``("chunk", before, width, t)`` a gate matrix
    on a contiguous group of wires; ``("mono", (perm, inv_perm, sign))`` a signed permutation;
    ``("pdiag", t)`` a trainable diagonal; ``("enc", l, pre)`` the l-th encoding's phases, times a
    constant diagonal ``pre`` folded in from a CZ ring (or None). ``t`` indexes the tensors given
    to the autograd Function, so their gradients flow back to the weights.
    """

    def __init__(self, ops_list, consts, n_qubits: int, n_obs: int, cdtype):
        self.ops = ops_list
        self.c = consts
        self.n = n_qubits
        self.n_obs = n_obs
        self.cdtype = cdtype

    def _diag(self, l, pre, x):
        wires, index, scale, _ = self.c.encodings[l]
        d = ops.encoding_diagonal(ops.wire_angles(x, wires, index, scale, self.n), self.cdtype)
        return d if pre is None else d * pre[:, None]

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x, psi0, tensors):
        state = psi0[:, None].expand(-1, x.shape[0])
        for op in self.ops:
            kind = op[0]
            if kind == "enc":
                state = state * self._diag(op[1], op[2], x)
            elif kind == "chunk":
                state = ops.apply_chunk(state, tensors[op[3]], op[1], op[2])
            elif kind == "dense":
                state = tensors[op[1]] @ state
            elif kind == "mono":
                state = ops.apply_monomial(state, op[1][0], op[1][2])
            else:  # pdiag
                state = state * tensors[op[1]][:, None]
        return state

    def measure(self, state):
        out = state.new_empty((state.shape[1], self.n_obs), dtype=state.real.dtype)
        for rotation, m, cols in self.c.groups:
            s = state
            for wire, mat in rotation:
                s = ops.apply_chunk(s, mat, wire, 1)
            out[:, cols] = (m.transpose(0, 1) @ ops.probabilities(s)).transpose(0, 1)
        return out

    # -- backward (adjoint method) ----------------------------------------------------------
    def backward(self, g, x, psi, tensors, need_x: bool, need_t: list[bool]):
        """``phi = dL/d conj(psi)`` and the state travel back together; torch's gradient of a
        complex tensor is ``2 * dL/d conj(z)``, hence the factors 2."""
        phi = torch.zeros_like(psi)
        for rotation, m, cols in self.c.groups:
            s = psi
            for wire, mat in rotation:
                s = ops.apply_chunk(s, mat, wire, 1)
            part = s * (m @ g[:, cols].transpose(0, 1))
            for wire, mat in reversed(rotation):
                part = ops.apply_chunk(part, mat.mH, wire, 1)
            phi = phi + part
        grads = [None] * len(tensors)
        gx = torch.zeros_like(x) if need_x else None
        for op in reversed(self.ops):
            kind = op[0]
            if kind == "chunk":
                _, before, width, ti = op
                adj = tensors[ti].mH
                psi_in = ops.apply_chunk(psi, adj, before, width)
                if need_t[ti]:
                    grads[ti] = 2 * ops.chunk_grad(phi, psi_in, before, width)
                psi, phi = psi_in, ops.apply_chunk(phi, adj, before, width)
            elif kind == "enc":
                d = self._diag(op[1], op[2], x).conj()
                if need_x:
                    wires, index, scale, zsign = self.c.encodings[op[1]]
                    t = phi.real * psi.imag - phi.imag * psi.real  # Im(conj(phi) psi), (D, B)
                    ga = zsign @ t  # dL/d(angle on wire w), (n, B)
                    gx.index_add_(1, index, (ga[wires] * scale[:, None]).transpose(0, 1))
                psi, phi = psi * d, phi * d
            elif kind == "dense":
                adj = tensors[op[1]].mH
                psi_in = adj @ psi
                if need_t[op[1]]:
                    grads[op[1]] = 2 * (phi @ psi_in.mH)
                psi, phi = psi_in, adj @ phi
            elif kind == "mono":
                _, inv, sign = op[1]
                psi = ops.apply_monomial_inverse(psi, inv, sign)
                phi = ops.apply_monomial_inverse(phi, inv, sign)
            else:  # pdiag
                d = tensors[op[1]].conj()[:, None]
                psi_in = psi * d
                if need_t[op[1]]:
                    grads[op[1]] = 2 * (phi * psi_in.conj()).sum(1)
                psi, phi = psi_in, phi * d
        return gx, 2 * phi.sum(1), grads


class _Simulate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run: _Run, x, psi0, *tensors):
        psi = run.forward(x, psi0, tensors)
        ctx.run = run
        ctx.save_for_backward(x, psi, *tensors)
        return run.measure(psi)

    @staticmethod
    def backward(ctx, g):
        x, psi, *tensors = ctx.saved_tensors
        need = ctx.needs_input_grad
        gx, gpsi0, grads = ctx.run.backward(g.contiguous(), x, psi, tensors, need[1], list(need[3:]))
        return (None, gx, gpsi0 if need[2] else None, *grads)


class NativeBackend:
    """``backend(circuit, weights, x) -> (B, n_obs)`` expectation values.

    Args:
        strategy: ``"auto"`` (by qubit count and device), ``"dense"`` (one GEMM per static
            segment), ``"factored"`` (Kronecker chunks and signed permutations) or
            ``"autograd"`` (plain autograd through the dense forward; a reference for tests).
        chunk: qubits per Kronecker chunk in the factored strategy (default: by qubit count).
        check_memory: estimate the bytes needed before allocating and raise if they exceed what
            the device has free.
    """

    name = "torch"

    def __init__(self, strategy: str = "auto", chunk: int | None = None, check_memory: bool = True):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
        if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        self.strategy = strategy
        self.chunk = chunk
        self.check_memory = check_memory
        self._programs: dict[Circuit, Program] = {}
        self._consts: dict = {}

    def program(self, circuit: Circuit) -> Program:
        prog = self._programs.get(circuit)
        if prog is None:
            prog = self._programs[circuit] = compile_circuit(circuit)
        return prog

    # -- constants ---------------------------------------------------------------------------
    def _constants(self, prog: Program, device, rdtype) -> _Constants:
        key = (id(prog), str(device), rdtype)
        c = self._consts.get(key)
        if c is not None:
            return c
        cdtype = complex_dtype(rdtype)
        n = prog.n_qubits
        circuit = prog.circuit
        const_values, const_pos = [], {}
        monomials, crz, angle_index = {}, {}, {}
        for seg in prog.segments:
            by_name: dict[str, list] = {}
            for op in seg.ops:
                if isinstance(op, Monomial):
                    perm = None if op.perm is None else op.perm.to(device)
                    inv = None if op.perm is None else torch.argsort(op.perm).to(device)
                    monomials[id(op)] = (perm, inv, op.sign.to(device=device, dtype=cdtype))
                    continue
                gates = [op.gate] if isinstance(op, ParamDiag) else [g for gs in op.wire_gates.values() for g in gs]
                for g in gates:
                    if not g.params:
                        continue
                    idx = []
                    for p in g.params:
                        if p.source == "weight":
                            idx.append(p.index)
                        else:
                            if p.value not in const_pos:
                                const_pos[p.value] = len(const_values)
                                const_values.append(p.value)
                            idx.append(circuit.n_weights + const_pos[p.value])
                    if isinstance(op, ParamDiag):
                        k = torch.arange(1 << n)
                        ctrl = ((k >> (n - 1 - g.wires[0])) & 1).to(rdtype)
                        zt = 1.0 - 2.0 * ((k >> (n - 1 - g.wires[1])) & 1).to(rdtype)
                        crz[id(op)] = ((ctrl * zt).to(device), idx[0])
                    else:
                        by_name.setdefault(g.name, []).append(idx if g.name == "Rot" else idx[0])
            angle_index[id(seg)] = {name: torch.tensor(v, device=device) for name, v in by_name.items()}
        zsign_all = z_signs(n, range(n)).to(device=device, dtype=rdtype)
        encodings = [
            (torch.tensor(e.wires, device=device), torch.tensor(e.index, device=device),
             torch.tensor(e.scale, dtype=rdtype, device=device), zsign_all)
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
            cols = []
            for word in grp.words:
                sign = torch.ones(1 << n, dtype=torch.float64)
                if word.wires:
                    sign = z_signs(n, word.wires).prod(0)
                cols.append(sign)
            groups.append((rot, torch.stack(cols, 1).to(device=device, dtype=rdtype),
                           torch.tensor(grp.columns, device=device)))
        fixed = {nm: fixed_matrix(nm, cdtype, device) for nm in ("H", "X", "Y", "Z", "S", "Sdg", "T")}
        c = _Constants(fixed, monomials, crz, encodings, groups, angle_index,
                       torch.tensor(const_values, dtype=rdtype, device=device),
                       torch.eye(2, dtype=cdtype, device=device))
        self._consts[key] = c
        return c

    # -- building the static segments from the weights ----------------------------------------
    def _wire_matrices(self, seg: Segment, src: torch.Tensor, c: _Constants):
        """Per KronLayer of the segment: {wire: 2x2 product of its gates}; CRZ diagonals."""
        mats = {name: rotation_matrices(name, src[idx]) for name, idx in c.angle_index[id(seg)].items()}
        used = dict.fromkeys(mats, 0)
        out = []
        for op in seg.ops:
            if isinstance(op, KronLayer):
                layer = {}
                for wire, gates in op.wire_gates.items():
                    m = None
                    for g in gates:
                        if g.params:
                            gm = mats[g.name][used[g.name]]
                            used[g.name] += 1
                        else:
                            gm = c.fixed[g.name]
                        m = gm if m is None else gm @ m
                    layer[wire] = m
                out.append(("kron", layer))
            elif isinstance(op, ParamDiag):
                out.append(("pdiag", op))
            else:
                out.append(("mono", c.monomials[id(op)]))
        return out

    @staticmethod
    def _crz_diag(op: ParamDiag, src, c: _Constants):
        """CRZ(t) = diag(1, 1, exp(-it/2), exp(it/2)) on (control, target), as a (D,) vector."""
        sign, idx = c.crz[id(op)]
        return ops.phases(-0.5 * src[idx] * sign)

    def _chunks(self, n: int):
        """Wire groups of the Kronecker chunks: two halves by default (two GEMMs per layer)."""
        if self.chunk is not None:
            return [(s, min(self.chunk, n - s)) for s in range(0, n, self.chunk)]
        hi = n // 2
        return [(0, hi), (hi, n - hi)] if hi else [(0, n)]

    def _factored(self, wire_ops, src, c, n):
        """Operations of one segment in factored form: ('chunk', before, width, K) / ('mono', ..) / ('pdiag', d)."""
        out = []
        for kind, payload in wire_ops:
            if kind == "kron":
                for start, w in self._chunks(n):
                    wires = range(start, start + w)
                    if not any(wire in payload for wire in wires):
                        continue
                    out.append(("chunk", start, w, ops.kron_all([payload.get(wire, c.eye2) for wire in wires])))
            elif kind == "pdiag":
                out.append(("pdiag", self._crz_diag(payload, src, c)))
            else:
                out.append(("mono", payload))
        return out

    @staticmethod
    def _apply_plain(seg_ops, state):
        """Apply one segment's factored operations with ordinary autograd (batch-independent work)."""
        for op in seg_ops:
            if op[0] == "chunk":
                state = ops.apply_chunk(state, op[3], op[1], op[2])
            elif op[0] == "mono":
                state = ops.apply_monomial(state, op[1][0], op[1][2])
            else:
                state = state * op[1][:, None]
        return state

    # -- the forward ---------------------------------------------------------------------------
    def __call__(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Expectation values ``(B, n_obs)`` for inputs ``x`` of shape ``(B, n_inputs)``."""
        run, x, psi0, tensors, strategy = self._prepare(circuit, weights, x)
        if strategy == "autograd":
            return run.measure(run.forward(x, psi0, tensors))
        return _Simulate.apply(run, x, psi0, *tensors)

    def state(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Final states ``(B, 2**n)`` of the circuit's gates (differentiable by autograd)."""
        plain = circuit.with_observables([PauliWord.z(0)])  # no measurement rotation folded in
        run, x, psi0, tensors, _ = self._prepare(plain, weights, x, keep_trailing=True)
        return run.forward(x, psi0, tensors).transpose(0, 1)

    def probabilities(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Computational-basis probabilities ``(B, 2**n)`` of the final state."""
        return ops.probabilities(self.state(circuit, weights, x))

    def plan(self, circuit: Circuit, device="cpu", dtype=torch.float32) -> list:
        """The batch operations a forward runs (strategy resolved), e.g. for cost counting."""
        w = torch.zeros(circuit.n_weights, dtype=dtype, device=device)
        x = torch.zeros((1, circuit.n_inputs), dtype=dtype, device=device)
        with torch.no_grad():
            return self._prepare(circuit, w, x)[0].ops

    def _prepare(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor, keep_trailing: bool = False):
        if not isinstance(circuit, Circuit):
            raise TypeError(f"expected a qlite.simulators.Circuit, got {type(circuit).__name__}")
        if x.dim() != 2 or x.shape[1] != circuit.n_inputs:
            raise ValueError(f"expected inputs of shape (batch, {circuit.n_inputs}), got {tuple(x.shape)}")
        if weights.shape != (circuit.n_weights,):
            raise ValueError(f"expected a flat weight vector of {circuit.n_weights}, got {tuple(weights.shape)}")
        n, dim = circuit.n_qubits, 1 << circuit.n_qubits
        device, rdtype = weights.device, weights.dtype
        cdtype = complex_dtype(rdtype)
        x = x.to(rdtype)
        strategy = self.strategy if self.strategy != "auto" else default_strategy(n, device)
        dense = strategy in ("dense", "autograd")
        training = torch.is_grad_enabled() and (weights.requires_grad or x.requires_grad)
        if self.check_memory:  # before compiling: the compiled program alone holds O(2**n) indices
            check_memory(n, x.shape[0], rdtype, device, training)
        prog = self.program(circuit)
        if self.check_memory and dense:
            check_memory(n, x.shape[0], rdtype, device, training, len(prog.encodings))
        c = self._constants(prog, device, rdtype)
        src = torch.cat((weights, c.consts))
        seg_ops = [self._factored(self._wire_matrices(s, src, c), src, c, n) for s in prog.segments]
        e0 = torch.zeros((dim, 1), dtype=cdtype, device=device)
        e0[0, 0] = 1
        psi0 = self._apply_plain(seg_ops[0], e0)[:, 0]
        run_ops, tensors = [], []
        for l in range(len(prog.encodings)):
            pre = None
            if run_ops and run_ops[-1][0] == "mono" and run_ops[-1][1][0] is None:
                pre = run_ops.pop()[1][2]  # a CZ ring just before: fold its signs into the phases
            run_ops.append(("enc", l, pre))
            if dense:
                eye = torch.eye(dim, dtype=cdtype, device=device)
                tensors.append(self._apply_plain(seg_ops[l + 1], eye))  # columns S e_k: the matrix S
                run_ops.append(("dense", len(tensors) - 1))
                continue
            for op in seg_ops[l + 1]:
                if op[0] == "chunk":
                    tensors.append(op[3])
                    run_ops.append(("chunk", op[1], op[2], len(tensors) - 1))
                elif op[0] == "pdiag":
                    tensors.append(op[1])
                    run_ops.append(("pdiag", len(tensors) - 1))
                else:
                    run_ops.append(op)
        if not keep_trailing and all(not rot for rot, _, _ in c.groups):
            while run_ops and run_ops[-1][0] == "mono" and run_ops[-1][1][0] is None:
                run_ops.pop()  # a diagonal of unit modulus right before a Z measurement changes nothing
        run = _Run(run_ops, c, n, circuit.n_observables, cdtype)
        return run, x, psi0, tensors, strategy
