"""Pure tensor primitives on batches of state vectors, batch last.

A batch of states is a complex tensor ``X`` of shape ``(2**n, B)``: column ``b`` is sample ``b``'s
state, wire 0 the most significant bit of the row index. With the batch last, applying a gate
matrix to a contiguous group of wires is one GEMM (or one batched GEMM) with no copy of the state,
and diagonal operations broadcast along the batch.

Every function is an ordinary differentiable torch expression; the native backend's custom
backward (``native.py``) calls the same functions on the way back.
"""

from __future__ import annotations

import torch


def apply_chunk(x: torch.Tensor, mat: torch.Tensor, before: int, width: int) -> torch.Tensor:
    """Apply ``mat`` (``2**width`` square) to wires ``before .. before+width-1`` of ``x`` (D, B).

    ``x`` is viewed as ``(2**before, 2**width, rest)``: for ``before == 0`` the product is one GEMM
    ``mat @ x.view(2**width, rest)``, otherwise one batched GEMM over the ``2**before`` leading
    blocks.
    """
    dim, batch = x.shape
    k = 1 << width
    if before == 0:
        return (mat @ x.reshape(k, -1)).reshape(dim, batch)
    lead = 1 << before
    # bmm with a stride-0 batch of the matrix: torch.matmul's broadcasting would transpose and copy
    return torch.bmm(mat.expand(lead, k, k), x.reshape(lead, k, -1)).reshape(dim, batch)


def chunk_grad(phi_out: torch.Tensor, psi_in: torch.Tensor, before: int, width: int) -> torch.Tensor:
    """``G[i, j] = sum phi_out[.., i, ..] * conj(psi_in[.., j, ..])`` over all other axes and the batch."""
    k = 1 << width
    if before == 0:
        return phi_out.reshape(k, -1) @ psi_in.reshape(k, -1).mH
    lead = 1 << before
    phi3, psi3 = phi_out.reshape(lead, k, -1), psi_in.reshape(lead, k, -1)
    if lead > 64:
        return (phi3 @ psi3.mH).sum(0)
    # one accumulating GEMM per leading block: mm takes the conjugate transpose as a BLAS flag,
    # where bmm would first copy the conjugated state
    out = phi3[0] @ psi3[0].mH
    for h in range(1, lead):
        out.addmm_(phi3[h], psi3[h].mH)
    return out


def apply_chunk_blocks(x: torch.Tensor, mats: torch.Tensor, before: int, width: int) -> torch.Tensor:
    """Like :func:`apply_chunk` with one matrix per leading block: ``mats`` is
    ``(2**before, 2**width, 2**width)``."""
    dim, batch = x.shape
    return torch.bmm(mats, x.reshape(1 << before, 1 << width, -1)).reshape(dim, batch)


def chunk_grad_blocks(phi_out: torch.Tensor, psi_in: torch.Tensor, before: int, width: int) -> torch.Tensor:
    """Per leading block h: ``G[h] = phi_out[h] @ psi_in[h]^H``, ``(2**before, 2**w, 2**w)``."""
    lead, k = 1 << before, 1 << width
    phi3, psi3 = phi_out.reshape(lead, k, -1), psi_in.reshape(lead, k, -1)
    return torch.stack([phi3[h] @ psi3[h].mH for h in range(lead)]) if lead <= 64 else phi3 @ psi3.mH


def apply_real_chunk(x: torch.Tensor, mat: torch.Tensor, before: int, width: int) -> torch.Tensor:
    """Like :func:`apply_chunk` for a *real* matrix: the complex state is viewed as real numbers
    ``(2**n, B, 2)``, so the product is a real GEMM with twice the columns (half the real
    arithmetic of a complex GEMM)."""
    dim, batch = x.shape
    k = 1 << width
    xr = torch.view_as_real(x)
    if before == 0:
        out = mat @ xr.reshape(k, -1)
    else:
        lead = 1 << before
        out = torch.bmm(mat.expand(lead, k, k), xr.reshape(lead, k, -1))
    return torch.view_as_complex(out.reshape(dim, batch, 2))


def real_chunk_grad(phi_out: torch.Tensor, psi_in: torch.Tensor, before: int, width: int) -> torch.Tensor:
    """``G[i, j] = Re sum phi_out[.., i, ..] * conj(psi_in[.., j, ..])`` (real), as one real GEMM of
    the real views (``re * re + im * im``)."""
    k = 1 << width
    phi_r, psi_r = torch.view_as_real(phi_out), torch.view_as_real(psi_in)
    if before == 0:
        return phi_r.reshape(k, -1) @ psi_r.reshape(k, -1).T
    lead = 1 << before
    # one batched GEMM (the transpose of a real operand is a BLAS flag, not a copy), then the sum
    return torch.bmm(phi_r.reshape(lead, k, -1), psi_r.reshape(lead, k, -1).transpose(1, 2)).sum(0)


def apply_real_chunk_blocks(x: torch.Tensor, mats: torch.Tensor, before: int, width: int) -> torch.Tensor:
    """:func:`apply_real_chunk` with one real matrix per leading block, ``(2**before, 2**w, 2**w)``."""
    dim, batch = x.shape
    out = torch.bmm(mats, torch.view_as_real(x).reshape(1 << before, 1 << width, -1))
    return torch.view_as_complex(out.reshape(dim, batch, 2))


def real_chunk_grad_blocks(phi_out: torch.Tensor, psi_in: torch.Tensor, before: int, width: int) -> torch.Tensor:
    """Per leading block h: ``G[h] = Re(phi_out[h] @ psi_in[h]^H)``, ``(2**before, 2**w, 2**w)`` real."""
    lead, k = 1 << before, 1 << width
    phi3 = torch.view_as_real(phi_out).reshape(lead, k, -1)
    psi3 = torch.view_as_real(psi_in).reshape(lead, k, -1)
    return torch.bmm(phi3, psi3.transpose(1, 2))


def apply_monomial(x: torch.Tensor, perm: torch.Tensor | None, sign: torch.Tensor) -> torch.Tensor:
    """``out[k] = sign[k] * x[perm[k]]`` for every column."""
    if perm is not None:
        x = x[perm]
    return x * sign[:, None]


def apply_monomial_inverse(x: torch.Tensor, inv_perm: torch.Tensor | None, sign: torch.Tensor) -> torch.Tensor:
    out = x * sign.conj()[:, None]
    return out if inv_perm is None else out[inv_perm]


def wire_angles(x: torch.Tensor, wires: torch.Tensor, index: torch.Tensor, scale: torch.Tensor,
                n_qubits: int) -> torch.Tensor:
    """Total encoded angle per wire: ``a[w, b] = sum_{g: wire_g = w} scale_g * x[b, index_g]``, (n, B)."""
    a = x.new_zeros((n_qubits, x.shape[0]))
    return a.index_add_(0, wires, (x[:, index] * scale).transpose(0, 1))


def encoding_diagonal(angles: torch.Tensor, zsign_hi: torch.Tensor, zsign_lo: torch.Tensor,
                      cdtype: torch.dtype) -> torch.Tensor:
    """``d[k, b] = prod_w exp(-i/2 * a[w, b] * z_w(k))`` for per-wire angles ``a`` of shape (n, B).

    Built as the outer product of the two halves' diagonals, each from one small GEMM
    (``(2**n_hi + 2**n_lo) * B`` sines and cosines instead of ``2**n * B``). ``zsign_hi`` is
    ``(2**n_hi, n_hi)``, the eigenvalues of Z on the first half's wires; ``zsign_lo`` likewise.
    Returns ``(2**n, B)`` complex.
    """
    nh = zsign_hi.shape[1]
    d_hi = phases(zsign_hi @ (-0.5 * angles[:nh])).to(cdtype)
    if zsign_lo.shape[1] == 0:
        return d_hi
    d_lo = phases(zsign_lo @ (-0.5 * angles[nh:])).to(cdtype)
    return (d_hi[:, None, :] * d_lo[None, :, :]).reshape(-1, angles.shape[1])


def probabilities(x: torch.Tensor) -> torch.Tensor:
    """``|x|^2`` computed as re^2 + im^2 (no square root, no abs)."""
    re, im = x.real, x.imag
    return re * re + im * im


def scale_real(z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``z * r`` for complex ``z`` and real ``r`` of the same shape, without first copying ``r`` to a
    complex tensor (torch's type promotion would)."""
    return torch.view_as_complex(torch.view_as_real(z) * r.unsqueeze(-1))


def kron_all(mats: list[torch.Tensor]) -> torch.Tensor:
    out = mats[0]
    for m in mats[1:]:
        out = torch.kron(out, m)
    return out


def phases(theta: torch.Tensor) -> torch.Tensor:
    """``exp(i * theta)`` as a complex tensor."""
    return torch.polar(torch.ones_like(theta), theta)
