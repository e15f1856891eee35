"""Triton kernels of the fused real-RY path (imported only when it runs; see ``fused_realry.py``).

A program holds the states of ``BS`` samples as an ``(H, BS, L)`` tile in real and imaginary
planes (``H = 2**n_hi`` for the first half of the wires, ``L = 2**n_lo`` for the second), from
``psi0`` to the measurement. The circuit is a list of stages, each

    state <- D_o * E_o(x) * state        (a merged diagonal phase; E_o an encoding, or none)
    state <- (K_hi,o (x) K_lo,o) state    (real Kronecker factors: products of RY matrices)

so a stage costs two *real* matrix products per plane (``K_hi @ S`` with S viewed as ``(H, BS*L)``,
``S @ K_lo^T`` with S viewed as ``(H*BS, L)``): half the arithmetic of the complex chunks of
``_fused_kernels.py``. The stage loop is a runtime loop (one compiled body whatever the depth).
"""

import triton
import triton.language as tl

from ._fused_kernels import _phase, _zsign


@triton.jit
def realry_forward(A, P0R, P0I, KH, KL, DR, DI, ENC, OUT, SR, SI, B,
                   NH: tl.constexpr, NL: tl.constexpr, BS: tl.constexpr, NST: tl.constexpr,
                   STORE: tl.constexpr, PREC: tl.constexpr):
    H: tl.constexpr = 1 << NH
    L: tl.constexpr = 1 << NL
    N: tl.constexpr = NH + NL
    pid = tl.program_id(0)
    hh = tl.arange(0, H)
    ll = tl.arange(0, L)
    bb = tl.arange(0, BS)
    b_idx = pid * BS + bb
    hl = hh[:, None] * L + ll[None, :]
    sr = tl.broadcast_to(tl.load(P0R + hl)[:, None, :], (H, BS, L))
    si = tl.broadcast_to(tl.load(P0I + hl)[:, None, :], (H, BS, L))
    for o in range(NST):
        e = tl.load(ENC + o)
        dr = tl.broadcast_to(tl.load(DR + o * H * L + hl)[:, None, :], (H, BS, L))
        di = tl.broadcast_to(tl.load(DI + o * H * L + hl)[:, None, :], (H, BS, L))
        if e >= 0:
            ph = _phase(A, e, b_idx, B, hh, ll, NH, NL, H, L, BS)
            c = tl.cos(ph)
            s = tl.sin(ph)
            dr, di = dr * c - di * s, dr * s + di * c
        sr, si = sr * dr - si * di, sr * di + si * dr
        kh = tl.load(KH + o * H * H + hh[:, None] * H + hh[None, :])
        nr = tl.dot(kh, tl.reshape(sr, (H, BS * L)), input_precision=PREC)
        ni = tl.dot(kh, tl.reshape(si, (H, BS * L)), input_precision=PREC)
        klt = tl.load(KL + o * L * L + ll[None, :] * L + ll[:, None])  # K_lo^T
        sr = tl.reshape(tl.dot(tl.reshape(nr, (H * BS, L)), klt, input_precision=PREC), (H, BS, L))
        si = tl.reshape(tl.dot(tl.reshape(ni, (H * BS, L)), klt, input_precision=PREC), (H, BS, L))
    pr = sr * sr + si * si
    p_h = tl.sum(pr, axis=2)  # (H, BS)
    p_l = tl.sum(pr, axis=0)  # (BS, L)
    for w in tl.static_range(NH):
        tl.store(OUT + b_idx * N + w, tl.sum(p_h * _zsign(hh, NH, w)[:, None], axis=0))
    for w in tl.static_range(NL):
        tl.store(OUT + b_idx * N + NH + w, tl.sum(p_l * _zsign(ll, NL, w)[None, :], axis=1))
    if STORE:  # per sample contiguous (B, H, L): the backward may use another block size
        off = (b_idx[None, :, None] * H + hh[:, None, None]) * L + ll[None, None, :]
        tl.store(SR + off, sr)
        tl.store(SI + off, si)


@triton.jit
def realry_backward(A, G, KH, KL, DR, DI, ENC, SR, SI, GA, GKH, GKL, GDR, GDI, GP0R, GP0I, B, NBLOCKS,
                    NH: tl.constexpr, NL: tl.constexpr, BS: tl.constexpr, NST: tl.constexpr, PREC: tl.constexpr):
    """Adjoint method on chip: the final state and phi = dL/d conj(psi) go back through every stage
    (every operation is unitary, so the states entering them are recomputed, not stored); each
    program adds its share of the matrix and diagonal gradients to its own slot."""
    H: tl.constexpr = 1 << NH
    L: tl.constexpr = 1 << NL
    N: tl.constexpr = NH + NL
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    hh = tl.arange(0, H)
    ll = tl.arange(0, L)
    bb = tl.arange(0, BS)
    hl = hh[:, None] * L + ll[None, :]
    hh2 = hh[:, None] * H + hh[None, :]
    ll2 = ll[:, None] * L + ll[None, :]
    for blk in range(pid, NBLOCKS, nprog):
        b_idx = blk * BS + bb
        off = (b_idx[None, :, None] * H + hh[:, None, None]) * L + ll[None, None, :]
        pr = tl.load(SR + off)
        pi = tl.load(SI + off)
        # phi = psi * sum_w g_w z_w
        g_h = tl.zeros((H, BS), tl.float32)
        for w in tl.static_range(NH):
            g_h += _zsign(hh, NH, w)[:, None] * tl.load(G + b_idx * N + w)[None, :]
        g_l = tl.zeros((BS, L), tl.float32)
        for w in tl.static_range(NL):
            g_l += tl.load(G + b_idx * N + NH + w)[:, None] * _zsign(ll, NL, w)[None, :]
        gm = g_h[:, :, None] + g_l[None, :, :]
        fr = pr * gm
        fi = pi * gm
        for oo in range(NST):
            o = NST - 1 - oo
            # lo factor: out = in @ K^T, so in = out @ K;  dK += phi_out^T @ psi_in (both planes)
            kl = tl.load(KL + o * L * L + ll2)
            p2r = tl.reshape(pr, (H * BS, L))
            p2i = tl.reshape(pi, (H * BS, L))
            f2r = tl.reshape(fr, (H * BS, L))
            f2i = tl.reshape(fi, (H * BS, L))
            qr = tl.dot(p2r, kl, input_precision=PREC)
            qi = tl.dot(p2i, kl, input_precision=PREC)
            slot = (pid * NST + o) * L * L + ll2
            gk = tl.dot(tl.trans(f2r), qr, tl.load(GKL + slot), input_precision=PREC)
            tl.store(GKL + slot, tl.dot(tl.trans(f2i), qi, gk, input_precision=PREC))
            fr = tl.reshape(tl.dot(f2r, kl, input_precision=PREC), (H, BS, L))
            fi = tl.reshape(tl.dot(f2i, kl, input_precision=PREC), (H, BS, L))
            pr = tl.reshape(qr, (H, BS, L))
            pi = tl.reshape(qi, (H, BS, L))
            # hi factor: out = K @ in, so in = K^T @ out;  dK += phi_out @ psi_in^T
            kht = tl.load(KH + o * H * H + hh[None, :] * H + hh[:, None])
            p2r = tl.reshape(pr, (H, BS * L))
            p2i = tl.reshape(pi, (H, BS * L))
            f2r = tl.reshape(fr, (H, BS * L))
            f2i = tl.reshape(fi, (H, BS * L))
            qr = tl.dot(kht, p2r, input_precision=PREC)
            qi = tl.dot(kht, p2i, input_precision=PREC)
            slot = (pid * NST + o) * H * H + hh2
            gk = tl.dot(f2r, tl.trans(qr), tl.load(GKH + slot), input_precision=PREC)
            tl.store(GKH + slot, tl.dot(f2i, tl.trans(qi), gk, input_precision=PREC))
            fr = tl.reshape(tl.dot(kht, f2r, input_precision=PREC), (H, BS, L))
            fi = tl.reshape(tl.dot(kht, f2i, input_precision=PREC), (H, BS, L))
            pr = tl.reshape(qr, (H, BS, L))
            pi = tl.reshape(qi, (H, BS, L))
            # the phase D_o * E_o: E's angles get Im(conj(phi) z_w psi); D gets phi * conj(conj(D) psi)
            d0r = tl.load(DR + o * H * L + hl)[:, None, :]
            d0i = tl.load(DI + o * H * L + hl)[:, None, :]
            ur = d0r * pr + d0i * pi  # conj(D) psi
            ui = d0r * pi - d0i * pr
            slot = (pid * NST + o) * H * L + hl
            tl.store(GDR + slot, tl.load(GDR + slot) + tl.sum(fr * ur + fi * ui, axis=1))
            tl.store(GDI + slot, tl.load(GDI + slot) + tl.sum(fi * ur - fr * ui, axis=1))
            dr = tl.broadcast_to(d0r, (H, BS, L))
            di = tl.broadcast_to(d0i, (H, BS, L))
            e = tl.load(ENC + o)
            if e >= 0:
                t = fr * pi - fi * pr
                t_h = tl.sum(t, axis=2)
                t_l = tl.sum(t, axis=0)
                for w in tl.static_range(NH):
                    tl.store(GA + (e * N + w) * B + b_idx, tl.sum(t_h * _zsign(hh, NH, w)[:, None], axis=0))
                for w in tl.static_range(NL):
                    tl.store(GA + (e * N + NH + w) * B + b_idx, tl.sum(t_l * _zsign(ll, NL, w)[None, :], axis=1))
                ph = _phase(A, e, b_idx, B, hh, ll, NH, NL, H, L, BS)
                c = tl.cos(ph)
                s = tl.sin(ph)
                dr, di = dr * c - di * s, dr * s + di * c
            # undo the whole phase: multiply by its conjugate
            pr, pi = pr * dr + pi * di, pi * dr - pr * di
            fr, fi = fr * dr + fi * di, fi * dr - fr * di
        slot = pid * H * L + hl
        tl.store(GP0R + slot, tl.load(GP0R + slot) + tl.sum(fr, axis=1))
        tl.store(GP0I + slot, tl.load(GP0I + slot) + tl.sum(fi, axis=1))
