"""The fused Triton path against the unfused native backend (Triton's interpreter on CPU)."""

import math
import os

import pytest
import torch

if not torch.cuda.is_available():  # Triton's interpreter on CPU; must be set before triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from qlite.simulators import NativeBackend, reuploading_circuit  # noqa: E402
from qlite.simulators import fused  # noqa: E402


def _device():
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("n,layers,sub,batch", [(8, 2, 2, 37), (9, 1, 3, 10), (10, 3, 1, 3)])
def test_fused_matches_unfused_values_and_gradients(n, layers, sub, batch):
    dev = _device()
    g = torch.Generator().manual_seed(n * 100 + layers)
    c = reuploading_circuit(n, layers, sub, "cz", "rz")
    w = (torch.rand(c.n_weights, generator=g) * 2 * math.pi).to(dev).requires_grad_()
    x = torch.randn(batch, n, generator=g).to(dev).requires_grad_()
    weights = torch.linspace(0.5, 1.5, n, device=dev)
    ref = NativeBackend(strategy="factored", fused=False)(c, w, x)
    gw_ref, gx_ref = torch.autograd.grad((ref * weights).sum() + (ref**2).sum(), (w, x))
    out = NativeBackend(fused=True, precision="ieee", fused_kernel="complex")(c, w, x)
    gw, gx = torch.autograd.grad((out * weights).sum() + (out**2).sum(), (w, x))
    assert (out - ref).abs().max() < 1e-5
    assert (gw - gw_ref).abs().max() < 1e-4
    assert (gx - gx_ref).abs().max() < 1e-4


def test_non_uniform_circuits_fall_back_or_refuse(monkeypatch):
    """Where the fused kernels could run (forced eligible here, as on a GPU), a circuit they cannot
    run takes the unfused path with the same values and gradients; a uniform one does reach the
    kernels (so the check is not vacuous); fused=True refuses with the reason."""
    c = reuploading_circuit(8, 1, 1, "cnot", "rz")  # a CNOT ring is a permutation: not fused
    uniform = reuploading_circuit(8, 1, 1, "cz", "rz")
    w = torch.rand(c.n_weights, generator=torch.Generator().manual_seed(0)).requires_grad_()
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    lay_ops = NativeBackend(strategy="factored")
    run = lay_ops._prepare(c, w, x, strategy="factored", fold_diagonals=False)[0]
    assert fused.plan(run.c, run.ops, 8, w.device) is None
    run_u = lay_ops._prepare(uniform, w, x, strategy="factored", fold_diagonals=False)[0]
    assert fused.plan(run_u.c, run_u.ops, 8, w.device) is not None

    calls = []
    real = fused.expvals
    monkeypatch.setattr(fused, "expvals", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(NativeBackend, "_fused_eligible", lambda self, circuit, weights: True)
    ref = NativeBackend(fused=False)(c, w, x)
    (g_ref,) = torch.autograd.grad((ref * torch.arange(8.0)).sum(), w)
    out = NativeBackend(fused="auto", fused_kernel="complex")(c, w, x)
    (g,) = torch.autograd.grad((out * torch.arange(8.0)).sum(), w)
    assert not calls  # fell back: the kernels were not asked to run it
    assert (out - ref).abs().max() < 1e-6 and (g - g_ref).abs().max() < 1e-5
    if os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available():
        with pytest.raises(ValueError, match="not a uniform re-uploading program"):
            NativeBackend(fused=True, fused_kernel="complex")(c.__class__(c.n_qubits, c.gates, c.observables), w, x)
        # the interpreter runs the kernels on CPU tensors; a GPU needs them on the device
        dev = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
        NativeBackend(fused="auto", fused_kernel="complex")(uniform, w.detach().to(dev), x.to(dev))
        assert calls  # the uniform circuit does reach the fused kernels


def test_bad_fused_options():
    with pytest.raises(ValueError, match="fused must be"):
        NativeBackend(fused="yes")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        NativeBackend(precision="fp8")
