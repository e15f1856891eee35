"""The Hessian preparation GPTQ and SparseGPT share: exact against closed forms, and used by both."""

import pytest
import torch

from qlite.classical import hessian
from qlite.classical.quant.gptq import gptq_quantize
from qlite.classical.sparse.sparsegpt import sparsegpt_prune


def _H(n=12, dead=(3,)):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 40, generator=g, dtype=torch.float64)
    X[list(dead)] = 0
    return 2 * X @ X.T / 40


def test_dead_inputs_and_the_inverse_cholesky_factor():
    H = _H()
    W = torch.randn(5, 12, dtype=torch.float64)
    W2, H2 = hessian.drop_dead_inputs(W, H)
    assert torch.equal(W2[:, 3], torch.zeros(5)) and H2[3, 3] == 1 and torch.equal(W2[:, :3], W[:, :3])
    assert W[:, 3].abs().sum() > 0 and H[3, 3] == 0  # inputs untouched
    U = hessian.inverse_cholesky(H2, 0.01)
    damped = H2 + 0.01 * torch.diag(H2).mean() * torch.eye(12, dtype=torch.float64)
    torch.testing.assert_close(U.T @ U, torch.linalg.inv(damped), rtol=1e-9, atol=1e-10)
    assert torch.equal(U, torch.triu(U))
    with pytest.raises(torch.linalg.LinAlgError):
        hessian.inverse_cholesky(-torch.eye(3, dtype=torch.float64), 0.0)


def test_gptq_and_sparsegpt_both_prepare_through_it(monkeypatch):
    calls = []
    real = hessian.inverse_cholesky

    def spy(H, damp):
        calls.append(damp)
        return real(H, damp)

    import qlite.classical.quant.gptq as gq
    import qlite.classical.sparse.sparsegpt as sg

    monkeypatch.setattr(gq, "inverse_cholesky", spy)
    monkeypatch.setattr(sg, "inverse_cholesky", spy)
    W = torch.randn(6, 12)
    gptq_quantize(W, _H().float(), bits=4, group_size=None, symmetric=True, damp=0.02)
    r = sparsegpt_prune(W, _H().float(), sparsity=0.5, damp=0.03)
    assert calls == [0.02, 0.03]
    assert not r["mask"][:, 3].any() or torch.equal(r["weight"][:, 3], torch.zeros(6))  # dead input zeroed
