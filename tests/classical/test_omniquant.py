"""OmniQuant's learnable weight clipping primitive (the block training is not built yet)."""

import pytest
import torch

from qlite.classical.quant import fake_quantize, lwc_fake_quantize


@pytest.mark.parametrize("bits,gs,n", [(3, 8, 32), (4, 16, 40), (2, 32, 32)])
def test_clipping_strength_one_reproduces_rtn(bits, gs, n):
    w = torch.randn(6, n, generator=torch.Generator().manual_seed(bits))
    one = torch.ones(6, -(-n // gs))
    assert torch.equal(lwc_fake_quantize(w, one, one, bits, gs), fake_quantize(w, bits, False, gs))


def test_strengths_get_gradients_and_clipping_shrinks_the_range():
    w = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    logit = torch.full((4, 2), 1.0, requires_grad=True)
    s = torch.sigmoid(logit)
    q = lwc_fake_quantize(w, s, s, 3, 8)
    assert float(q.abs().max()) < float(w.abs().max())
    ((q - w) ** 2).sum().backward()
    assert logit.grad is not None and torch.isfinite(logit.grad).all() and logit.grad.abs().sum() > 0


def test_bad_strengths_and_bits_are_refused():
    w = torch.randn(2, 8)
    with pytest.raises(ValueError, match=r"gamma must lie in \(0, 1\]"):
        lwc_fake_quantize(w, torch.full((2, 1), 1.5), torch.ones(2, 1), 3, 8)
    with pytest.raises(ValueError, match="bits must be an integer in \\[2, 8\\], got 1"):
        lwc_fake_quantize(w, torch.ones(2, 1), torch.ones(2, 1), 1, 8)
