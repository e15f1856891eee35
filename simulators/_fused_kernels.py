"""Triton kernels of the fused path (imported only when it runs; see ``fused.py``).

Each program holds the states of ``BS`` samples on chip as an ``(H, BS, L)`` tile (``H = 2**n_hi``
rows for the first half of the wires, ``L = 2**n_lo`` for the second), in separate real and
imaginary planes. A Kronecker layer ``K_hi (x) K_lo`` is two matrix products on that tile,
``K_hi @ S`` with S viewed as ``(H, BS*L)`` and ``S @ K_lo^T`` with S viewed as ``(H*BS, L)``; an
encoding is an elementwise phase built from ``n`` angles per sample; the CZ rings are +-1 patterns.
Nothing but the inputs' angles, the outputs and (for the backward) the final states touches
global memory.
"""

import triton
import triton.language as tl


@triton.jit
def _zsign(idx, bits: tl.constexpr, w: tl.constexpr):
    """Eigenvalue of Z on wire w (of a group of ``bits`` wires) for basis index ``idx``."""
    return 1.0 - 2.0 * ((idx >> (bits - 1 - w)) & 1).to(tl.float32)


@triton.jit
def _phase(A, s, b_idx, B, hh, ll, NH: tl.constexpr, NL: tl.constexpr, H: tl.constexpr, L: tl.constexpr,
           BS: tl.constexpr):
    """-1/2 * sum_w a[s, w, b] z_w(h, l) as an (H, BS, L) tile."""
    N: tl.constexpr = NH + NL
    ph_h = tl.zeros((H, BS), tl.float32)
    for w in tl.static_range(NH):
        a = tl.load(A + (s * N + w) * B + b_idx)
        ph_h += _zsign(hh, NH, w)[:, None] * a[None, :]
    ph_l = tl.zeros((BS, L), tl.float32)
    for w in tl.static_range(NL):
        a = tl.load(A + (s * N + NH + w) * B + b_idx)
        ph_l += a[:, None] * _zsign(ll, NL, w)[None, :]
    return -0.5 * (ph_h[:, :, None] + ph_l[None, :, :])


@triton.jit
def _cdot(ar, ai, br, bi, PREC: tl.constexpr):
    """Complex matrix product (ar + i ai) @ (br + i bi)."""
    rr = tl.dot(ar, br, input_precision=PREC)
    rr = tl.dot(-ai, bi, rr, input_precision=PREC)  # accumulate in place: fewer live buffers
    ri = tl.dot(ar, bi, input_precision=PREC)
    ri = tl.dot(ai, br, ri, input_precision=PREC)
    return rr, ri


@triton.jit
def fused_forward(A, P0R, P0I, KHR, KHI, KLR, KLI, DG, PRE, OUT, SR, SI, B,
                  NH: tl.constexpr, NL: tl.constexpr, BS: tl.constexpr, NSEG: tl.constexpr, SUB: tl.constexpr,
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
    for s in tl.static_range(NSEG):
        ph = _phase(A, s, b_idx, B, hh, ll, NH, NL, H, L, BS)
        pre = tl.load(PRE + s * H * L + hl)[:, None, :]
        dr = tl.cos(ph) * pre
        di = tl.sin(ph) * pre
        sr, si = sr * dr - si * di, sr * di + si * dr
        for j in tl.static_range(SUB):
            o = s * SUB + j
            kr = tl.load(KHR + o * H * H + hh[:, None] * H + hh[None, :])
            ki = tl.load(KHI + o * H * H + hh[:, None] * H + hh[None, :])
            nr, ni = _cdot(kr, ki, tl.reshape(sr, (H, BS * L)), tl.reshape(si, (H, BS * L)), PREC)
            # S @ K_lo^T: load K_lo transposed
            tr = tl.load(KLR + o * L * L + ll[None, :] * L + ll[:, None])
            ti = tl.load(KLI + o * L * L + ll[None, :] * L + ll[:, None])
            nr, ni = _cdot(tl.reshape(nr, (H * BS, L)), tl.reshape(ni, (H * BS, L)), tr, ti, PREC)
            dg = tl.load(DG + o * H * L + hl)[:, None, :]
            sr = tl.reshape(nr, (H, BS, L)) * dg
            si = tl.reshape(ni, (H, BS, L)) * dg
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
def fused_backward(A, G, KHR, KHI, KLR, KLI, DG, PRE, SR, SI, GA, GKHR, GKHI, GKLR, GKLI, GP0R, GP0I, B, NBLOCKS,
                   NH: tl.constexpr, NL: tl.constexpr, BS: tl.constexpr, NSEG: tl.constexpr, SUB: tl.constexpr,
                   PREC: tl.constexpr):
    """Adjoint method on chip: the final state and phi = dL/d conj(psi) go back through every
    operation; each program accumulates its share of the matrix gradients in its own slot."""
    H: tl.constexpr = 1 << NH
    L: tl.constexpr = 1 << NL
    N: tl.constexpr = NH + NL
    NOPS: tl.constexpr = NSEG * SUB
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
        for sr_ in tl.static_range(NSEG):
            s = NSEG - 1 - sr_
            for jr in tl.static_range(SUB):
                j = SUB - 1 - jr
                o = s * SUB + j
                dg = tl.load(DG + o * H * L + hl)[:, None, :]
                pr, pi, fr, fi = pr * dg, pi * dg, fr * dg, fi * dg
                # lo chunk: psi_in = psi_out @ conj(K);  dK += phi_out^T @ conj(psi_in)
                kr = tl.load(KLR + o * L * L + ll2)
                ki = tl.load(KLI + o * L * L + ll2)
                p2r = tl.reshape(pr, (H * BS, L))
                p2i = tl.reshape(pi, (H * BS, L))
                f2r = tl.reshape(fr, (H * BS, L))
                f2i = tl.reshape(fi, (H * BS, L))
                qr, qi = _cdot(p2r, p2i, kr, -ki, PREC)
                nfr, nfi = _cdot(f2r, f2i, kr, -ki, PREC)
                slot = (pid * NOPS + o) * L * L + ll2
                f2rt = tl.trans(f2r)
                f2it = tl.trans(f2i)
                gr = tl.dot(f2rt, qr, tl.load(GKLR + slot), input_precision=PREC)
                tl.store(GKLR + slot, tl.dot(f2it, qi, gr, input_precision=PREC))
                gi = tl.dot(f2it, qr, tl.load(GKLI + slot), input_precision=PREC)
                tl.store(GKLI + slot, tl.dot(-f2rt, qi, gi, input_precision=PREC))
                pr = tl.reshape(qr, (H, BS, L))
                pi = tl.reshape(qi, (H, BS, L))
                fr = tl.reshape(nfr, (H, BS, L))
                fi = tl.reshape(nfi, (H, BS, L))
                # hi chunk: psi_in = K^H @ psi_out;  dK += phi_out @ psi_in^H
                tr = tl.load(KHR + o * H * H + hh[None, :] * H + hh[:, None])  # K^T
                ti = tl.load(KHI + o * H * H + hh[None, :] * H + hh[:, None])
                p2r = tl.reshape(pr, (H, BS * L))
                p2i = tl.reshape(pi, (H, BS * L))
                f2r = tl.reshape(fr, (H, BS * L))
                f2i = tl.reshape(fi, (H, BS * L))
                qr, qi = _cdot(tr, -ti, p2r, p2i, PREC)
                nfr, nfi = _cdot(tr, -ti, f2r, f2i, PREC)
                slot = (pid * NOPS + o) * H * H + hh2
                qrt = tl.trans(qr)
                qit = tl.trans(qi)
                gr = tl.dot(f2r, qrt, tl.load(GKHR + slot), input_precision=PREC)
                tl.store(GKHR + slot, tl.dot(f2i, qit, gr, input_precision=PREC))
                gi = tl.dot(f2i, qrt, tl.load(GKHI + slot), input_precision=PREC)
                tl.store(GKHI + slot, tl.dot(-f2r, qit, gi, input_precision=PREC))
                pr = tl.reshape(qr, (H, BS, L))
                pi = tl.reshape(qi, (H, BS, L))
                fr = tl.reshape(nfr, (H, BS, L))
                fi = tl.reshape(nfi, (H, BS, L))
            # encoding s: dL/da_w = sum_k Im(conj(phi) psi) z_w; then undo the phases
            t = fr * pi - fi * pr
            t_h = tl.sum(t, axis=2)
            t_l = tl.sum(t, axis=0)
            for w in tl.static_range(NH):
                tl.store(GA + (s * N + w) * B + b_idx, tl.sum(t_h * _zsign(hh, NH, w)[:, None], axis=0))
            for w in tl.static_range(NL):
                tl.store(GA + (s * N + NH + w) * B + b_idx, tl.sum(t_l * _zsign(ll, NL, w)[None, :], axis=1))
            ph = _phase(A, s, b_idx, B, hh, ll, NH, NL, H, L, BS)
            pre = tl.load(PRE + s * H * L + hl)[:, None, :]
            dr = tl.cos(ph) * pre
            di = -tl.sin(ph) * pre  # conj(d)
            pr, pi = pr * dr - pi * di, pr * di + pi * dr
            fr, fi = fr * dr - fi * di, fr * di + fi * dr
        slot = pid * H * L + hl
        tl.store(GP0R + slot, tl.load(GP0R + slot) + tl.sum(fr, axis=1))
        tl.store(GP0I + slot, tl.load(GP0I + slot) + tl.sum(fi, axis=1))
