"""The fused GPU path: a whole re-uploading circuit per sample in one Triton kernel.

The unfused backend moves every state through device memory once per operation (a few dozen passes
per layer); here each program keeps its samples' states on chip from the first encoding to the
measurement, and the backward keeps the state and the adjoint on chip through every operation.

It applies to the programs the QIREN layers compile to ("uniform" programs): after ``S_0 |0>``,
each encoding is followed by the same number of sub-layers, each a Kronecker layer split into the
two halves of the wires, then an optional +-1 diagonal (a CZ ring); all observables are the single
wires' ``Z`` in order; float32; 8 to 10 qubits (beyond, one sample's state and adjoint need more
shared memory than the backward kernel can have on an H100 / H200). Anything else runs on the
unfused path. ``precision`` picks Triton's ``tl.dot`` mode: ``"ieee"`` (full float32 products),
``"tf32x3"`` (three TF32 products, close to float32) or ``"tf32"`` (one TF32 product, ~1e-3).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from . import ops
from .runops import Chunk, ChunkBlocks, Dense, Diagonal, Encode, Permute, RealChunk, RealChunkBlocks, check_ops

PRECISIONS = ("ieee", "tf32x3", "tf32")


def available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


@dataclass
class FusedPlan:
    nh: int
    nl: int
    nseg: int
    sub: int
    kh_ids: list  # layer index per (segment, sub-layer), -1 for identity
    kl_ids: list
    diag: torch.Tensor  # (NOPS, H, L) float32, +-1 or 1
    pre: torch.Tensor  # (NSEG, H, L) float32
    kh_index: torch.Tensor  # kh_ids on the device, identity mapped past the layers
    kl_index: torch.Tensor
    block: int = 0  # samples per program, forward
    warps: int = 8
    back_block: int = 0  # samples per program, backward (holds state and adjoint: smaller)


def default_block(n_qubits: int) -> int:
    """Samples per program in the forward: 2048 amplitudes on chip per plane."""
    return max(1, 2048 >> n_qubits)


def default_back_block(n_qubits: int) -> int:
    """Samples per program in the backward: 1024 amplitudes per plane. It holds state and adjoint,
    and larger tiles spill registers or overflow the 227 KB of shared memory of an H100 / H200
    (on an H200, 2026-11-26, halving the tile from 2048 amplitudes made the step 1.8x faster:
    experiments/results/bench_simulator_cuda.md and tune_fused.md)."""
    return max(1, 1024 >> n_qubits)


def plan(lay, run_ops, n_qubits: int, device, block: int | None = None, warps: int | None = None,
         back_block: int | None = None) -> FusedPlan | None:
    """The uniform structure of ``run_ops``, or None where the fused kernel does not apply."""
    if len(lay.chunks) != 2:
        return None
    (s0, nh), (s1, nl) = lay.chunks
    if s0 != 0 or s1 != nh or not (4 <= nh <= 5 and 4 <= nl <= 5):
        return None
    if len(lay.groups) != 1:
        return None
    rot, _, cols = lay.groups[0]
    if rot or cols.tolist() != list(range(n_qubits)):
        return None
    check_ops(run_ops)
    segs = []
    for op in run_ops:
        if isinstance(op, Encode):
            if op.offset is not None or (op.pre is not None and bool(op.pre.imag.abs().max() > 0)):
                return None
            segs.append((op.pre, []))
            continue
        if not segs:
            return None
        subs = segs[-1][1]
        if isinstance(op, Chunk):
            c, li = op.t, op.i
            if not subs or (c == 0 and any(v is not None for v in subs[-1])) or (c == 1 and subs[-1][1:] != [None, None]):
                subs.append([None, None, None])
            subs[-1][c] = li
        elif isinstance(op, Permute) and op.is_diagonal and not bool(op.sign.imag.abs().max() > 0):
            if not subs or subs[-1][2] is not None:
                subs.append([None, None, None])
            subs[-1][2] = op.sign.real
        elif isinstance(op, (Permute, ChunkBlocks, Dense, Diagonal, RealChunk, RealChunkBlocks)):
            return None  # a permutation, folded chunk, dense matrix, trainable diagonal, real chunk: not this kernel's
        else:
            raise TypeError(f"the fused planner does not know the run operation {type(op).__name__}")
    if not segs:
        return None
    sub = max(1, max(len(s) for _, s in segs))
    h, l_ = 1 << nh, 1 << nl
    ones = torch.ones((h, l_), device=device)
    kh, kl, diag, pre = [], [], [], []
    for p, subs in segs:
        pre.append(ones if p is None else p.real.float().reshape(h, l_))
        subs = subs + [[None, None, None]] * (sub - len(subs))
        for hi, lo, dg in subs:
            kh.append(-1 if hi is None else hi)
            kl.append(-1 if lo is None else lo)
            diag.append(ones if dg is None else dg.float().reshape(h, l_))
    n_layers = max(1, len(lay.wire_index))
    index = [torch.tensor([n_layers if i < 0 else i for i in ids], device=device) for ids in (kh, kl)]
    return FusedPlan(nh, nl, len(segs), sub, kh, kl, torch.stack(diag).contiguous(), torch.stack(pre).contiguous(),
                     index[0], index[1], block or default_block(n_qubits), warps or 8,
                     back_block or min(block or default_block(n_qubits), default_back_block(n_qubits)))


def _stack(mats: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of ``mats`` (NL, k, k) in run order; an index past the end picks the identity."""
    k = mats.shape[-1]
    bank = torch.cat((mats, torch.eye(k, dtype=mats.dtype, device=mats.device)[None]))
    return bank[index]


def _planes(z: torch.Tensor):
    return z.real.contiguous(), z.imag.contiguous()


class _Fused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, angles, psi0, kh, kl, p: FusedPlan, precision: str):
        from . import _fused_kernels as K

        nseg, n, b = angles.shape
        bs = p.block
        nblocks = -(-b // bs)
        bp = nblocks * bs
        a = torch.nn.functional.pad(angles, (0, bp - b)).contiguous()
        h, l_ = 1 << p.nh, 1 << p.nl
        p0r, p0i = _planes(psi0.reshape(h, l_))
        khr, khi = _planes(kh)
        klr, kli = _planes(kl)
        out = torch.empty((bp, n), device=a.device, dtype=torch.float32)
        store = any(ctx.needs_input_grad[:4])
        sr = torch.empty((bp, h, l_), device=a.device) if store else out
        si = torch.empty_like(sr) if store else out
        K.fused_forward[(nblocks,)](a, p0r, p0i, khr, khi, klr, kli, p.diag, p.pre, out, sr, si, bp,
                                    NH=p.nh, NL=p.nl, BS=bs, NSEG=p.nseg, SUB=p.sub, STORE=store,
                                    PREC=precision, num_warps=p.warps)
        if store:
            ctx.save_for_backward(a, khr, khi, klr, kli, sr, si)
        ctx.meta = (p, precision, b, nblocks)
        return out[:b]

    @staticmethod
    def backward(ctx, g):
        if torch.is_grad_enabled():  # create_graph=True: the kernels give first derivatives only
            raise RuntimeError("the fused kernels give first derivatives only; for losses on gradients build the "
                               "layer with fused=False, strategy='autograd'")
        from . import _fused_kernels as K

        a, khr, khi, klr, kli, sr, si = ctx.saved_tensors
        p, precision, b, _ = ctx.meta
        nseg, n, bp = a.shape
        if bp % p.back_block:
            raise ValueError(f"fused_back_block={p.back_block} must divide fused_block={p.block}")
        nblocks = bp // p.back_block
        h, l_ = 1 << p.nh, 1 << p.nl
        nops = p.nseg * p.sub
        dev = a.device
        if dev.type == "cuda":
            nprog = min(nblocks, 2 * torch.cuda.get_device_properties(dev).multi_processor_count)
        else:
            nprog = min(nblocks, 4)
        gp = torch.nn.functional.pad(g, (0, 0, 0, bp - b)).contiguous().float()
        ga = torch.empty_like(a)
        gkhr = torch.zeros((nprog, nops, h, h), device=dev)
        gkhi = torch.zeros_like(gkhr)
        gklr = torch.zeros((nprog, nops, l_, l_), device=dev)
        gkli = torch.zeros_like(gklr)
        gp0r = torch.zeros((nprog, h, l_), device=dev)
        gp0i = torch.zeros_like(gp0r)
        K.fused_backward[(nprog,)](a, gp, khr, khi, klr, kli, p.diag, p.pre, sr, si, ga, gkhr, gkhi, gklr, gkli,
                                   gp0r, gp0i, bp, nblocks, NH=p.nh, NL=p.nl, BS=p.back_block, NSEG=p.nseg,
                                   SUB=p.sub, PREC=precision, num_warps=p.warps)
        # torch's gradient of a complex tensor is 2 * dL/d conj(z)
        g_psi0 = 2 * torch.complex(gp0r.sum(0), gp0i.sum(0)).reshape(-1)
        g_kh = 2 * torch.complex(gkhr.sum(0), gkhi.sum(0))
        g_kl = 2 * torch.complex(gklr.sum(0), gkli.sum(0))
        return ga[..., :b], g_psi0, g_kh, g_kl, None, None


def expvals(p: FusedPlan, lay, x: torch.Tensor, psi0: torch.Tensor, chunk_mats, precision: str) -> torch.Tensor:
    """``(B, n)`` expectation values through the fused kernels (differentiable)."""
    n = lay.n
    angles = torch.stack([ops.wire_angles(x, *enc[:3], n) for enc in lay.encodings])
    kh = _stack(chunk_mats[0], p.kh_index)
    kl = _stack(chunk_mats[1], p.kl_index)
    return _Fused.apply(angles, psi0, kh, kl, p, precision)
