"""The fused real-RY Triton kernels against the unfused native backend in float64 (Triton's
interpreter on CPU, the real kernels on a GPU)."""

import math
import os

import pytest
import torch

if not torch.cuda.is_available():  # Triton's interpreter on CPU; must be set before triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from qlite.simulators import NativeBackend, reuploading_circuit  # noqa: E402
from qlite.simulators import fused_realry  # noqa: E402
from qlite.simulators.native import default_fused_kernel  # noqa: E402

_RUNS = os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available()


def _device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def _loss(out, n):
    # weights per wire and a square: every output and the chain rule through it matter
    return (out * torch.linspace(0.5, 1.5, n, dtype=out.dtype, device=out.device)).sum() + (out**2).sum()


@pytest.mark.skipif(not _RUNS, reason="needs a GPU or Triton's interpreter")
@pytest.mark.parametrize("n,layers,sub,batch,enc", [(8, 2, 2, 5, "rz"), (9, 1, 3, 3, "rx"), (10, 1, 2, 2, "ry"),
                                                    (12, 1, 1, 2, "rz")])
def test_realry_kernels_match_float64(n, layers, sub, batch, enc):
    dev = _device()
    g = torch.Generator().manual_seed(n * 10 + layers)
    c = reuploading_circuit(n, layers, sub, "cz", enc)
    w = (torch.rand(c.n_weights, generator=g, dtype=torch.float64) * 2 * math.pi).to(dev).requires_grad_()
    x = torch.randn(batch, n, generator=g, dtype=torch.float64).to(dev).requires_grad_()
    ref = NativeBackend(strategy="factored", fused=False)(c, w, x)
    gw_ref, gx_ref = torch.autograd.grad(_loss(ref, n), (w, x))

    calls = []
    real = fused_realry.expvals
    fused_realry.expvals = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        w32, x32 = w.detach().float().requires_grad_(), x.detach().float().requires_grad_()
        out = NativeBackend(fused=True, fused_kernel="realry", precision="ieee")(c, w32, x32)
    finally:
        fused_realry.expvals = real
    assert calls, "the real-RY kernels did not run"
    gw, gx = torch.autograd.grad(_loss(out, n), (w32, x32))
    assert (out.double() - ref).abs().max() < 2e-6
    assert (gw.double() - gw_ref).abs().max() < 2e-5 * max(1.0, gw_ref.abs().max().item())
    assert (gx.double() - gx_ref).abs().max() < 2e-5 * max(1.0, gx_ref.abs().max().item())


def test_realry_plan_refuses_what_it_cannot_run():
    """A CNOT ring is a permutation, not a phase: no stage plan (another path runs it)."""
    be = NativeBackend(strategy="realry")
    w = torch.rand(reuploading_circuit(8, 1, 1, "cnot", "rz").n_weights)
    x = torch.randn(2, 8)
    for ent, expect in (("cnot", None), ("cz", "plan")):
        c = reuploading_circuit(8, 1, 1, ent, "rz")
        run = be._prepare(c, w, x, strategy="realry", fold_diagonals=False)[0]
        p = fused_realry.plan(run.c, run.ops, 8, w.device)
        assert (p is None) == (expect is None)
    c7 = reuploading_circuit(7, 1, 1, "cz", "rz")
    w7 = torch.rand(c7.n_weights)
    run = be._prepare(c7, w7, torch.randn(2, 7), strategy="realry", fold_diagonals=False)[0]
    assert fused_realry.plan(run.c, run.ops, 7, w7.device) is None  # halves of 3 wires: below tl.dot's 16


def test_realry_falls_back_or_refuses(monkeypatch):
    """Forced eligible (as on a GPU), a CNOT circuit takes another path with the same values under
    fused='auto'; fused=True with fused_kernel='realry' refuses naming the reason."""
    c = reuploading_circuit(8, 1, 1, "cnot", "rz")
    w = torch.rand(c.n_weights, generator=torch.Generator().manual_seed(0)).requires_grad_()
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    calls = []
    real = fused_realry.expvals
    monkeypatch.setattr(fused_realry, "expvals", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(NativeBackend, "_fused_realry_eligible", lambda self, circuit, weights: True)
    monkeypatch.setattr(NativeBackend, "_fused_eligible", lambda self, circuit, weights: False)
    ref = NativeBackend(fused=False)(c, w, x)
    out = NativeBackend(fused="auto")(c, w, x)
    assert not calls and (out - ref).abs().max() < 1e-6
    with pytest.raises(ValueError, match="not one the real-RY kernels run"):
        NativeBackend(fused=True, fused_kernel="realry")(c, w, x)


def test_fused_kernel_option():
    with pytest.raises(ValueError, match="unknown fused_kernel 'fast'"):
        NativeBackend(fused_kernel="fast")
    assert [default_fused_kernel(n) for n in (6, 8, 9, 10, 12)] == ["complex", "realry", "realry", "complex", "complex"]
    # an explicit strategy is honoured: factored means the complex kernels, autograd no kernels
    c = reuploading_circuit(8, 1, 1, "cz", "rz")
    w = torch.rand(c.n_weights)
    assert not NativeBackend(strategy="factored", fused=True)._fused_realry_eligible(c, w)
    assert not NativeBackend(strategy="autograd", fused=True)._fused_realry_eligible(c, w)
    assert not NativeBackend(fused=True, fused_kernel="complex")._fused_realry_eligible(c, w)
