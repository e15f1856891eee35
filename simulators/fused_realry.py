"""The fused GPU path on the real-RY algebra: a whole re-uploading circuit per sample in one kernel.

``realry.py`` rewrites a circuit as merged diagonal phases (RZ parts of the rotations, CZ rings,
CRZ gates, encodings) between layers of real RY factors. Split in the two halves of the wires, that
is a list of *stages* ``(K_hi (x) K_lo) D E(x)`` with real ``K`` and a unit-modulus diagonal; the
kernels of ``_fused_realry_kernels.py`` keep each sample's state on chip from ``psi0`` to the
measurement, and in the backward the state and the adjoint, through every stage: two real matrix
products per plane and stage, half the arithmetic of the complex Kronecker chunks of ``fused.py``.

It runs the programs whose realry operations are such stages (any depth, encodings anywhere, any
RZ / RY / Rot / H / X placement, CZ rings and CRZ gates: all diagonals merge), measured as every
wire's ``Z`` in order, float32, 8 to 12 qubits (halves of 4 to 6 wires; ``tl.dot`` needs sides of
16 or more, and beyond 12 qubits a sample's state and adjoint no longer fit on chip). Anything else
(CNOT / SWAP permutations, other observables) returns None from :func:`plan` and takes another path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .fused import default_back_block, default_block
from .runops import Diagonal, Encode, Env, Permute, RealChunk, check_ops

MIN_QUBITS, MAX_QUBITS = 8, 12


@dataclass
class _Stage:
    phase: list  # factors of D: ("t", run tensor index) or ("c", constant complex (2**n,))
    enc: Encode | None = None
    hi: tuple | None = None  # (t, i) of the real chunk on the first half, None = identity
    lo: tuple | None = None


@dataclass
class RealPlan:
    nh: int
    nl: int
    stages: list
    enc_ops: list  # the Encode operations in stage order (the kernels' encoding index)
    enc: torch.Tensor  # (NST,) int32, index into enc_ops or -1
    block: int
    warps: int
    back_block: int

    @property
    def n_stages(self) -> int:
        return len(self.stages)


# one H200, 8 qubits, 65,536 points (tune_fused, 2026-12-04): 4 warps 6.6-6.8 ms forward + backward
# for most tiles, 8 warps 7.0-9.4 ms
DEFAULT_WARPS = 4


def plan(lay, run_ops, n_qubits: int, device, block: int | None = None, warps: int | None = None,
         back_block: int | None = None) -> RealPlan | None:
    """The stage structure of realry ``run_ops`` (built without sign folding), or None where these
    kernels do not apply."""
    if not MIN_QUBITS <= n_qubits <= MAX_QUBITS or len(lay.chunks) != 2:
        return None
    (s0, nh), (s1, nl) = lay.chunks
    if s0 != 0 or s1 != nh or not (4 <= nh <= 6 and 4 <= nl <= 6):
        return None
    if len(lay.groups) != 1:
        return None
    rot, _, cols = lay.groups[0]
    if rot or cols.tolist() != list(range(n_qubits)):
        return None
    check_ops(run_ops)
    stages: list[_Stage] = []
    seen_enc = set()

    def fresh() -> _Stage:
        stages.append(_Stage([]))
        return stages[-1]

    for op in run_ops:
        cur = stages[-1] if stages else None
        if isinstance(op, (Encode, Diagonal)) or (isinstance(op, Permute) and op.is_diagonal):
            if cur is None or cur.hi is not None or cur.lo is not None or (isinstance(op, Encode) and cur.enc is not None):
                cur = fresh()
            if isinstance(op, Encode):
                if op.l in seen_enc:
                    return None
                seen_enc.add(op.l)
                cur.enc = op
                if op.pre is not None:
                    cur.phase.append(("c", op.pre))
            elif isinstance(op, Diagonal):
                cur.phase.append(("t", op.t))
            else:
                cur.phase.append(("c", op.sign))
        elif isinstance(op, RealChunk):
            half = "hi" if (op.before, op.width) == (0, nh) else "lo" if (op.before, op.width) == (nh, nl) else None
            if half is None:
                return None
            if cur is None or getattr(cur, half) is not None or (half == "hi" and cur.lo is not None):
                cur = fresh()
            setattr(cur, half, (op.t, op.i))
        else:
            return None  # a permutation, folded or complex chunk, dense matrix: not this kernel's
    if not stages:
        return None
    enc_ops = [s.enc for s in stages if s.enc is not None]
    order = {id(e): k for k, e in enumerate(enc_ops)}
    enc = torch.tensor([order[id(s.enc)] if s.enc is not None else -1 for s in stages], dtype=torch.int32,
                       device=device)
    return RealPlan(nh, nl, stages, enc_ops, enc, block or default_block(n_qubits), warps or DEFAULT_WARPS,
                    back_block or min(block or default_block(n_qubits), default_back_block(n_qubits)))


def _factors(p: RealPlan, tensors, half: str, k: int, dtype, device) -> torch.Tensor:
    """``(NST, k, k)`` real factors of one half per stage (identity where the stage has none)."""
    eye = torch.eye(k, dtype=dtype, device=device)
    return torch.stack([eye if getattr(s, half) is None else tensors[getattr(s, half)[0]][getattr(s, half)[1]]
                        for s in p.stages])


def _phases(p: RealPlan, tensors, dim: int, cdtype, device) -> torch.Tensor:
    out = []
    for s in p.stages:
        d = None
        for kind, v in s.phase:
            f = tensors[v] if kind == "t" else v
            d = f if d is None else d * f
        out.append(torch.ones(dim, dtype=cdtype, device=device) if d is None else d.to(cdtype))
    return torch.stack(out)


class _FusedRealRY(torch.autograd.Function):
    @staticmethod
    def forward(ctx, angles, psi0, kh, kl, d, p: RealPlan, precision: str):
        from . import _fused_realry_kernels as K

        nenc, n, b = angles.shape
        bs = p.block
        nblocks = -(-b // bs)
        bp = nblocks * bs
        a = torch.nn.functional.pad(angles, (0, bp - b)).contiguous()
        h, l_ = 1 << p.nh, 1 << p.nl
        p0 = psi0.reshape(h, l_)
        p0r, p0i = p0.real.contiguous(), p0.imag.contiguous()
        dr, di = d.real.contiguous(), d.imag.contiguous()
        kh, kl = kh.contiguous(), kl.contiguous()
        out = torch.empty((bp, n), device=a.device, dtype=torch.float32)
        store = any(ctx.needs_input_grad[:5])
        sr = torch.empty((bp, h, l_), device=a.device) if store else out
        si = torch.empty_like(sr) if store else out
        K.realry_forward[(nblocks,)](a, p0r, p0i, kh, kl, dr, di, p.enc, out, sr, si, bp,
                                     NH=p.nh, NL=p.nl, BS=bs, NST=p.n_stages, STORE=store, PREC=precision,
                                     num_warps=p.warps)
        if store:
            ctx.save_for_backward(a, kh, kl, dr, di, sr, si)
        ctx.meta = (p, precision, b)
        return out[:b]

    @staticmethod
    def backward(ctx, g):
        if torch.is_grad_enabled():
            raise RuntimeError("the fused kernels give first derivatives only; for losses on gradients build the "
                               "layer with fused=False, strategy='autograd'")
        from . import _fused_realry_kernels as K

        a, kh, kl, dr, di, sr, si = ctx.saved_tensors
        p, precision, b = ctx.meta
        nenc, n, bp = a.shape
        if bp % p.back_block:
            raise ValueError(f"fused_back_block={p.back_block} must divide fused_block={p.block}")
        nblocks = bp // p.back_block
        h, l_, nst = 1 << p.nh, 1 << p.nl, p.n_stages
        dev = a.device
        if dev.type == "cuda":
            nprog = min(nblocks, 2 * torch.cuda.get_device_properties(dev).multi_processor_count)
        else:
            nprog = min(nblocks, 4)
        gp = torch.nn.functional.pad(g, (0, 0, 0, bp - b)).contiguous().float()
        ga = torch.empty_like(a)
        gkh = torch.zeros((nprog, nst, h, h), device=dev)
        gkl = torch.zeros((nprog, nst, l_, l_), device=dev)
        gdr = torch.zeros((nprog, nst, h, l_), device=dev)
        gdi = torch.zeros_like(gdr)
        gp0r = torch.zeros((nprog, h, l_), device=dev)
        gp0i = torch.zeros_like(gp0r)
        K.realry_backward[(nprog,)](a, gp, kh, kl, dr, di, p.enc, sr, si, ga, gkh, gkl, gdr, gdi, gp0r, gp0i, bp,
                                    nblocks, NH=p.nh, NL=p.nl, BS=p.back_block, NST=nst, PREC=precision,
                                    num_warps=p.warps)
        # gradients of real tensors: 2 Re(phi psi^H); of complex ones: torch's 2 * dL/d conj(z)
        g_psi0 = 2 * torch.complex(gp0r.sum(0), gp0i.sum(0)).reshape(-1)
        g_d = 2 * torch.complex(gdr.sum(0), gdi.sum(0)).reshape(nst, -1)
        return ga[..., :b], g_psi0, 2 * gkh.sum(0), 2 * gkl.sum(0), g_d, None, None


def expvals(p: RealPlan, run, x: torch.Tensor, psi0: torch.Tensor, tensors, precision: str) -> torch.Tensor:
    """``(B, n)`` expectation values through the fused real-RY kernels (differentiable)."""
    lay, n = run.c, run.n
    env = Env(x, lay.encodings, n, run.cdtype)
    if p.enc_ops:
        angles = torch.stack([op.angles(env, tensors) for op in p.enc_ops])
    else:
        angles = x.new_zeros((1, n, x.shape[0]))
    dtype, dev = psi0.real.dtype, psi0.device
    kh = _factors(p, tensors, "hi", 1 << p.nh, dtype, dev)
    kl = _factors(p, tensors, "lo", 1 << p.nl, dtype, dev)
    d = _phases(p, tensors, 1 << n, psi0.dtype, dev)
    return _FusedRealRY.apply(angles, psi0, kh, kl, d, p, precision)
