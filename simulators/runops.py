"""Typed operations of a compiled run: each knows how to apply, invert, differentiate and cost itself.

A run is a list of these operations on a batch-last state ``X`` of shape ``(2**n, B)`` (see
``ops.py``). Operations that carry trainable data name it by ``t``, an index into the run's tensor
list (the tensors handed to the autograd Function, so their gradients flow back to the weights);
the tensors are built from the weights by ordinary autograd before the batch pass.

Every consumer reads the same objects: the native backend's forward, its adjoint backward and
its batch-independent build (``native.py``), the fused planner (``fused.py``) and the cost model
(``cost.py``). An operation a consumer does not know is refused there, never guessed at.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from . import ops
from .cost import Cost


@dataclass(frozen=True)
class Env:
    """What the batch pass gives the operations: the inputs and the layout's encodings."""

    x: torch.Tensor  # (B, n_inputs)
    encodings: list  # layout.encodings
    n: int
    cdtype: torch.dtype


@dataclass
class Grads:
    """Gradient accumulators of a backward pass: one slot per run tensor, and the inputs'."""

    tensors: list  # None until an operation writes it
    need: list  # bool per run tensor
    x: torch.Tensor | None  # (B, n_inputs), or None where the inputs need no gradient


class RunOp(ABC):
    """One operation of a run. ``apply`` maps the state entering it to the state leaving it,
    ``adjoint`` applies its inverse (all operations are unitary), ``backward`` moves the state and
    the adjoint ``phi = dL/d conj(psi)`` back through it while adding its gradient contributions,
    ``cost`` gives its (forward, backward) FLOPs and bytes for a batch."""

    kind: ClassVar[str]
    batch_dependent: ClassVar[bool] = False  # needs the inputs (cannot run in the batch-independent build)

    @abstractmethod
    def apply(self, state: torch.Tensor, tensors, env: Env | None = None) -> torch.Tensor:
        ...

    @abstractmethod
    def adjoint(self, state: torch.Tensor, tensors, env: Env | None = None) -> torch.Tensor:
        ...

    @abstractmethod
    def backward(self, psi, phi, tensors, env: Env, grads: Grads, psi_in=None):
        """``(psi_in, phi_in)`` from the state and adjoint leaving the operation; ``psi_in``, where
        given, is the stored state entering it (saves recomputing it)."""

    @abstractmethod
    def cost(self, n_qubits: int, batch: int, item_bytes: int) -> tuple[Cost, Cost]:
        ...


def _state_bytes(n_qubits, batch, item_bytes):
    return (1 << n_qubits) * batch * item_bytes


def _gemm_cost(flops: float, n_qubits: int, batch: int, item_bytes: int) -> tuple[Cost, Cost]:
    state = _state_bytes(n_qubits, batch, item_bytes)
    # backward: state and adjoint back, plus the gradient contraction
    return Cost(flops, 2 * state), Cost(3 * flops, 6 * state)


def _diag_cost(n_qubits: int, batch: int, item_bytes: int) -> tuple[Cost, Cost]:
    dim, state = 1 << n_qubits, _state_bytes(n_qubits, batch, item_bytes)
    return Cost(6.0 * dim * batch, 2 * state), Cost(12.0 * dim * batch, 4 * state)


@dataclass(frozen=True, eq=False)
class Chunk(RunOp):
    """The gate matrix ``tensors[t][i]`` (``2**width`` square) on wires ``before .. before+width-1``."""

    before: int
    width: int
    t: int
    i: int
    kind: ClassVar[str] = "chunk"

    def apply(self, state, tensors, env=None):
        return ops.apply_chunk(state, tensors[self.t][self.i], self.before, self.width)

    def adjoint(self, state, tensors, env=None):
        return ops.apply_chunk(state, tensors[self.t][self.i].mH, self.before, self.width)

    def backward(self, psi, phi, tensors, env, grads, psi_in=None):
        adj = tensors[self.t][self.i].mH
        if psi_in is None:
            psi_in = ops.apply_chunk(psi, adj, self.before, self.width)
        if grads.need[self.t]:
            if grads.tensors[self.t] is None:  # the chunks of all layers share one tensor
                grads.tensors[self.t] = torch.zeros_like(tensors[self.t])
            grads.tensors[self.t][self.i] += 2 * ops.chunk_grad(phi, psi_in, self.before, self.width)
        return psi_in, ops.apply_chunk(phi, adj, self.before, self.width)

    def cost(self, n_qubits, batch, item_bytes):
        return _gemm_cost(8.0 * (1 << n_qubits) * batch * (1 << self.width), n_qubits, batch, item_bytes)


@dataclass(frozen=True, eq=False)
class RealChunk(RunOp):
    """A *real* matrix ``tensors[t][i]`` (a Kronecker product of RY factors) on wires
    ``before .. before+width-1``; its inverse is its transpose."""

    before: int
    width: int
    t: int
    i: int
    kind: ClassVar[str] = "rchunk"

    def apply(self, state, tensors, env=None):
        return ops.apply_real_chunk(state, tensors[self.t][self.i], self.before, self.width)

    def adjoint(self, state, tensors, env=None):
        return ops.apply_real_chunk(state, tensors[self.t][self.i].T, self.before, self.width)

    def backward(self, psi, phi, tensors, env, grads, psi_in=None):
        adj = tensors[self.t][self.i].T
        if psi_in is None:
            psi_in = ops.apply_real_chunk(psi, adj, self.before, self.width)
        if grads.need[self.t]:
            if grads.tensors[self.t] is None:
                grads.tensors[self.t] = torch.zeros_like(tensors[self.t])
            # a real matrix: dL/dK = 2 Re(phi psi_in^H)
            grads.tensors[self.t][self.i] += 2 * ops.real_chunk_grad(phi, psi_in, self.before, self.width)
        return psi_in, ops.apply_real_chunk(phi, adj, self.before, self.width)

    def cost(self, n_qubits, batch, item_bytes):
        # a real multiply-add on each of the two parts: 4 real FLOPs per complex amplitude and row
        return _gemm_cost(4.0 * (1 << n_qubits) * batch * (1 << self.width), n_qubits, batch, item_bytes)


@dataclass(frozen=True, eq=False)
class RealChunkBlocks(RunOp):
    """One *real* matrix ``tensors[t][h]`` per leading block ``h`` (a real chunk with a real
    diagonal, e.g. a CZ ring's signs, folded in)."""

    before: int
    width: int
    t: int
    kind: ClassVar[str] = "rchunkb"

    def apply(self, state, tensors, env=None):
        return ops.apply_real_chunk_blocks(state, tensors[self.t], self.before, self.width)

    def adjoint(self, state, tensors, env=None):
        return ops.apply_real_chunk_blocks(state, tensors[self.t].transpose(1, 2), self.before, self.width)

    def backward(self, psi, phi, tensors, env, grads, psi_in=None):
        adj = tensors[self.t].transpose(1, 2)
        if psi_in is None:
            psi_in = ops.apply_real_chunk_blocks(psi, adj, self.before, self.width)
        if grads.need[self.t]:
            grads.tensors[self.t] = 2 * ops.real_chunk_grad_blocks(phi, psi_in, self.before, self.width)
        return psi_in, ops.apply_real_chunk_blocks(phi, adj, self.before, self.width)

    def cost(self, n_qubits, batch, item_bytes):
        return _gemm_cost(4.0 * (1 << n_qubits) * batch * (1 << self.width), n_qubits, batch, item_bytes)


@dataclass(frozen=True, eq=False)
class ChunkBlocks(RunOp):
    """One matrix ``tensors[t][h]`` per leading block ``h`` of the wires before the chunk (a chunk
    with a diagonal folded in)."""

    before: int
    width: int
    t: int
    kind: ClassVar[str] = "chunkb"

    def apply(self, state, tensors, env=None):
        return ops.apply_chunk_blocks(state, tensors[self.t], self.before, self.width)

    def adjoint(self, state, tensors, env=None):
        return ops.apply_chunk_blocks(state, tensors[self.t].mH, self.before, self.width)

    def backward(self, psi, phi, tensors, env, grads, psi_in=None):
        adj = tensors[self.t].mH
        if psi_in is None:
            psi_in = ops.apply_chunk_blocks(psi, adj, self.before, self.width)
        if grads.need[self.t]:
            grads.tensors[self.t] = 2 * ops.chunk_grad_blocks(phi, psi_in, self.before, self.width)
        return psi_in, ops.apply_chunk_blocks(phi, adj, self.before, self.width)

    def cost(self, n_qubits, batch, item_bytes):
        return _gemm_cost(8.0 * (1 << n_qubits) * batch * (1 << self.width), n_qubits, batch, item_bytes)


@dataclass(frozen=True, eq=False)
class Dense(RunOp):
    """``X <- tensors[t] @ X``: a whole static segment as one ``2**n`` square matrix."""

    t: int
    kind: ClassVar[str] = "dense"

    def apply(self, state, tensors, env=None):
        return tensors[self.t] @ state

    def adjoint(self, state, tensors, env=None):
        return tensors[self.t].mH @ state

    def backward(self, psi, phi, tensors, env, grads, psi_in=None):
        adj = tensors[self.t].mH
        if psi_in is None:
            psi_in = adj @ psi
        if grads.need[self.t]:
            grads.tensors[self.t] = 2 * (phi @ psi_in.mH)
        return psi_in, adj @ phi

    def cost(self, n_qubits, batch, item_bytes):
        dim = 1 << n_qubits
        return _gemm_cost(8.0 * dim * dim * batch, n_qubits, batch, item_bytes)


@dataclass(frozen=True, eq=False)
class Permute(RunOp):
    """A signed permutation ``out[k] = sign[k] * in[perm[k]]`` (CZ / CNOT / SWAP products);
    ``perm`` None is the identity (the operation is then a constant diagonal, e.g. a CZ ring)."""

    perm: torch.Tensor | None
    inv: torch.Tensor | None
    sign: torch.Tensor  # (2**n,) complex
    kind: ClassVar[str] = "mono"

    @property
    def is_diagonal(self) -> bool:
        return self.perm is None

    def apply(self, state, tensors, env=None):
        return ops.apply_monomial(state, self.perm, self.sign)

    def adjoint(self, state, tensors, env=None):
        return ops.apply_monomial_inverse(state, self.inv, self.sign)

    def backward(self, psi, phi, tensors, env, grads, psi_in=None):
        if psi_in is None:
            psi_in = self.adjoint(psi, tensors)
        return psi_in, self.adjoint(phi, tensors)

    def cost(self, n_qubits, batch, item_bytes):
        return _diag_cost(n_qubits, batch, item_bytes)


@dataclass(frozen=True, eq=False)
class Diagonal(RunOp):
    """A trainable diagonal ``tensors[t]`` of shape ``(2**n,)`` (a CRZ, or merged phases)."""

    t: int
    kind: ClassVar[str] = "pdiag"

    def apply(self, state, tensors, env=None):
        return state * tensors[self.t][:, None]

    def adjoint(self, state, tensors, env=None):
        return state * tensors[self.t].conj()[:, None]

    def backward(self, psi, phi, tensors, env, grads, psi_in=None):
        d = tensors[self.t].conj()[:, None]
        if psi_in is None:
            psi_in = psi * d
        if grads.need[self.t]:
            grads.tensors[self.t] = 2 * (phi * psi_in.conj()).sum(1)
        return psi_in, phi * d

    def cost(self, n_qubits, batch, item_bytes):
        return _diag_cost(n_qubits, batch, item_bytes)


@dataclass(frozen=True, eq=False)
class Encode(RunOp):
    """The ``l``-th encoding's phases ``exp(-i/2 * sum_w a[w, b] Z_w)`` with ``a`` the encoded
    angles per wire, times a constant diagonal ``pre`` folded in from a CZ ring (or None).
    ``offset``, where set, indexes a run tensor ``(n,)`` of per-wire angles added to every sample's
    (RZ rotations of the neighbouring layers merged in; their gradient is the angles' summed over
    the batch)."""

    l: int
    pre: torch.Tensor | None = None
    offset: int | None = None
    kind: ClassVar[str] = "enc"
    batch_dependent: ClassVar[bool] = True

    def angles(self, env: Env, tensors) -> torch.Tensor:
        wires, index, scale = env.encodings[self.l][:3]
        a = ops.wire_angles(env.x, wires, index, scale, env.n)
        return a if self.offset is None else a + tensors[self.offset][:, None]

    def diagonal(self, env: Env, tensors, conj: bool = False) -> torch.Tensor:
        """The phases (D, B); ``conj`` builds their conjugate directly from the negated angles
        (multiplying by a lazily conjugated (D, B) tensor would copy it first)."""
        if env is None:
            raise RuntimeError("an encoding needs the inputs: it cannot run in the batch-independent build")
        z_hi, z_lo = env.encodings[self.l][4:6]
        a = self.angles(env, tensors)
        d = ops.encoding_diagonal(-a if conj else a, z_hi, z_lo, env.cdtype)
        if self.pre is None:
            return d
        return d * (self.pre.conj().resolve_conj() if conj else self.pre)[:, None]

    def apply(self, state, tensors, env=None):
        return state * self.diagonal(env, tensors)

    def adjoint(self, state, tensors, env=None):
        return state * self.diagonal(env, tensors, conj=True)

    def backward(self, psi, phi, tensors, env, grads, psi_in=None):
        d = self.diagonal(env, tensors, conj=True)
        need_offset = self.offset is not None and grads.need[self.offset]
        if grads.x is not None or need_offset:
            wires, index, scale, zsign = env.encodings[self.l][:4]
            t = phi.real * psi.imag - phi.imag * psi.real  # Im(conj(phi) psi), (D, B)
            ga = zsign @ t  # dL/d(angle on wire w), (n, B)
            if grads.x is not None:
                grads.x.index_add_(1, index, (ga[wires] * scale[:, None]).transpose(0, 1))
            if need_offset:
                grads.tensors[self.offset] = ga.sum(1)
        return (psi * d if psi_in is None else psi_in), phi * d

    def cost(self, n_qubits, batch, item_bytes):
        dim, state = 1 << n_qubits, _state_bytes(n_qubits, batch, item_bytes)
        # per-wire phases, Kronecker build (~2 products per amplitude), then one product
        f = 18.0 * dim * batch
        return Cost(f, 3 * state), Cost(2 * f + (4 + 2 * n_qubits) * dim * batch, 7 * state)


def apply_all(run_ops, state: torch.Tensor, tensors, env: Env | None = None) -> torch.Tensor:
    """Apply operations in order (ordinary autograd; the batch-independent build uses it)."""
    for op in run_ops:
        state = op.apply(state, tensors, env)
    return state


def check_ops(run_ops) -> None:
    """Refuse anything that is not a run operation (a consumer must never guess at one)."""
    for op in run_ops:
        if not isinstance(op, RunOp):
            raise TypeError(f"not a run operation: {op!r} ({type(op).__name__}); "
                            f"run operations are the classes of qlite.simulators.runops")


__all__ = ["Chunk", "ChunkBlocks", "RealChunk", "RealChunkBlocks", "Dense", "Diagonal", "Encode", "Env", "Grads", "Permute", "RunOp", "apply_all",
           "check_ops"]
