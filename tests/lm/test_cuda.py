"""qlite.lm on a CUDA device (gpu marker: run on the GPU machine, see experiments/gpu_checks.sh)."""

import pytest
import torch

from qlite.lm import QuantumAdapterConfig, QuantumLoRAConfig, UnitaryAdapterConfig, inject, merge_and_unload

pytestmark = pytest.mark.gpu


@pytest.fixture
def cuda_llama(tiny_llama):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return tiny_llama.cuda()


@pytest.mark.parametrize("cfg", [QuantumAdapterConfig(n_qubits=8), QuantumLoRAConfig(r=2), UnitaryAdapterConfig(r=2)],
                         ids=lambda c: type(c).__name__)
def test_adapters_train_and_match_the_cpu_on_cuda(cuda_llama, tokens, cfg):
    x = tokens.cuda()
    hybrid = inject(cuda_llama, cfg, target_modules=["q_proj", "v_proj"])
    assert all(p.is_cuda for p in hybrid.parameters())
    with torch.no_grad():
        assert torch.equal(hybrid(x).logits, cuda_llama(x).logits)
        for p in hybrid.parameters():
            if p.requires_grad:
                p.add_(0.05)
        out = hybrid(x).logits
    cpu = hybrid.cpu()
    with torch.no_grad():
        torch.testing.assert_close(cpu(tokens).logits, out.cpu(), atol=1e-4, rtol=1e-4)
    hybrid = cpu.cuda().train()
    hybrid(x).logits.float().logsumexp(-1).mean().backward()
    grads = [p.grad for p in hybrid.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    if cfg.mergeable:
        with torch.no_grad():
            torch.testing.assert_close(merge_and_unload(hybrid.eval())(x).logits, hybrid(x).logits, atol=1e-4, rtol=0)
