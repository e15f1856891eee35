"""SparseGPT against a straightforward float64 reference of the OBS update, and against magnitude."""

import pytest
import torch

from qlite.classical.sparse import NMPattern, nm_mask, sparsegpt_prune, unstructured_mask


def reference_sparsegpt(W, H, sparsity, pattern, block, damp):
    """Textbook SparseGPT in float64: no Cholesky, no lazy batches. Columns left to right; the inverse
    Hessian of the remaining columns is kept explicitly and shrunk by Gaussian elimination (OBS, Eq. 3 of
    Frantar & Alistarh 2023); a masked weight's error is spread over the remaining columns of its row by
    ``delta = -w_q / [H_F^-1]_qq * (H_F^-1)_{q, F}``. Masks: per block over all rows (unstructured) or per
    M-run and row (N:M), by the OBS saliency ``w_j^2 / [H_{F_j}^-1]_jj`` with ``F_j`` the columns from ``j``
    on (the inverse of the trailing block of H, computed directly here)."""
    W = W.double().clone()
    H = H.double().clone()
    n = W.shape[1]
    H += damp * torch.diag(H).mean() * torch.eye(n, dtype=torch.float64)
    d = torch.tensor([torch.linalg.inv(H[j:, j:])[0, 0] for j in range(n)], dtype=torch.float64)
    Hinv = torch.linalg.inv(H)
    mask = torch.ones_like(W, dtype=torch.bool)
    for q in range(n):
        if pattern is None and q % block == 0:
            cols = slice(q, min(q + block, n))
            sal = W[:, cols] ** 2 / d[cols]
            k = int(sal.numel() * sparsity)
            flat = torch.ones(sal.numel(), dtype=torch.bool)
            flat[torch.argsort(sal.reshape(-1))[:k]] = False
            mask[:, cols] = flat.reshape(sal.shape)
        if pattern is not None and q % pattern.m == 0:
            cols = slice(q, q + pattern.m)
            sal = W[:, cols] ** 2 / d[cols]
            mask[:, cols] = nm_mask(sal, pattern)
        w = W[:, q].clone()
        err = torch.where(mask[:, q], torch.zeros_like(w), w) / Hinv[q, q]
        for j in range(q + 1, n):
            W[:, j] -= err * Hinv[q, j]
        W[:, q] = torch.where(mask[:, q], w, torch.zeros_like(w))
        Hinv = Hinv - torch.outer(Hinv[:, q], Hinv[q, :]) / Hinv[q, q]
    return W, mask


def _layer(seed, out=12, n=32, rows=256):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, n, generator=g, dtype=torch.float64)
    # Correlated inputs: a random mixing of fewer latent factors plus noise.
    X = torch.randn(rows, 8, generator=g, dtype=torch.float64) @ torch.randn(8, n, generator=g, dtype=torch.float64)
    X += 0.1 * torch.randn(rows, n, generator=g, dtype=torch.float64)
    return W, X, 2 * X.t() @ X / rows


@pytest.mark.parametrize("pattern,block", [(None, 8), (None, 32), (NMPattern(2, 4), 16), (NMPattern(4, 8), 8)])
def test_sparsegpt_matches_the_reference_obs_update(pattern, block):
    W, _, H = _layer(0 if pattern is None else pattern.m + block)
    r = sparsegpt_prune(W, H, sparsity=0.5, pattern=pattern, block_size=block, damp=0.01)
    ref_w, ref_mask = reference_sparsegpt(W, H, 0.5, pattern, block, 0.01)
    assert torch.equal(r["mask"], ref_mask)
    torch.testing.assert_close(r["weight"], ref_w, rtol=0, atol=1e-9)
    assert (r["weight"][~r["mask"]] == 0).all()


def test_sparsegpt_loss_is_the_obs_output_error_estimate():
    W, X, H = _layer(3)
    r = sparsegpt_prune(W, H, sparsity=0.5, block_size=32, damp=1e-8)
    # With negligible dampening the accumulated err^2/2 equals (1/2) tr(D H D^T) with D = W' - W.
    D = r["weight"] - W
    assert r["loss"] == pytest.approx(0.5 * float(torch.einsum("oi,ij,oj->", D, H, D)), rel=1e-5)


@pytest.mark.parametrize("pattern", [None, NMPattern(2, 4)])
def test_sparsegpt_output_error_is_below_magnitude_on_correlated_inputs(pattern):
    for seed in range(3):
        W, X, H = _layer(10 + seed, out=32, n=64, rows=512)
        sg = sparsegpt_prune(W.float(), H.float(), sparsity=0.5, pattern=pattern)["weight"].double()
        mag = W * (nm_mask(W.abs(), pattern) if pattern else unstructured_mask(W.abs(), 0.5))
        err_sg = ((sg - W) @ X.t()).norm()
        err_mag = ((mag - W) @ X.t()).norm()
        assert err_sg < 0.8 * err_mag, (seed, float(err_sg), float(err_mag))


def test_sparsegpt_dead_inputs_and_zero_sparsity():
    W, X, H = _layer(5)
    H[3, :] = H[:, 3] = 0  # input 3 never fires
    r = sparsegpt_prune(W, H, sparsity=0.0)
    assert r["mask"][:, [i for i in range(32) if i != 3]].all()
    assert (r["weight"][:, 3] == 0).all()
    keep = [i for i in range(32) if i != 3]
    torch.testing.assert_close(r["weight"][:, keep], W[:, keep])
    with pytest.raises(ValueError, match="must divide"):
        sparsegpt_prune(W[:, :30], H[:30, :30], sparsity=0.5, pattern=NMPattern(2, 4))
