"""coefficients: analytic series, PennyLane's qml.fourier.coefficients, one batched call, bad input."""

import math

import pytest
import torch

from qlite import QIREN, QuantumLayer
from qlite.simulators import Circuit, Gate, Param, PauliWord, reuploading_circuit
from qlite.spectrum import coefficients


def _series(a: torch.Tensor):
    """``f(x) = Re sum_n a_n e^{i n.x}`` for ``a`` in FFT order; returns f and its true coefficients
    ``c_n = (a_n + conj(a_{-n})) / 2``."""
    dims = tuple(range(a.dim()))
    a_neg = torch.flip(a, dims).roll(shifts=[1] * a.dim(), dims=dims)  # a_neg[i] = a[-i mod k]
    c = (a + a_neg.conj()) / 2
    degree = [(n - 1) // 2 for n in c.shape]
    ns = torch.meshgrid(*[torch.fft.fftfreq(2 * d + 1, 1 / (2 * d + 1), dtype=torch.float64) for d in degree],
                        indexing="ij")
    ns = torch.stack([m.reshape(-1) for m in ns], 1)  # (P, N)
    flat = a.reshape(-1)

    def f(x):
        phase = x.to(torch.float64) @ ns.T  # (B, P)
        return (torch.polar(torch.ones_like(phase), phase) @ flat).real

    return f, c


@pytest.mark.parametrize("degree", [(3,), (2, 1), (1, 2, 1)])
def test_recovers_analytic_coefficients(degree):
    g = torch.Generator().manual_seed(0)
    shape = tuple(2 * d + 1 for d in degree)
    f, c = _series(torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                                 torch.randn(shape, generator=g, dtype=torch.float64)))
    got = coefficients(f, len(degree), degree)
    assert got.shape == shape and got.dtype == torch.complex128
    assert (got - c).abs().max() < 1e-13
    # a higher degree pads with zeros
    pad = coefficients(f, len(degree), tuple(d + 1 for d in degree))
    assert pad.shape == tuple(n + 2 for n in shape)
    assert (torch.fft.fftshift(pad, dim=tuple(range(len(degree))))[(slice(1, -1),) * len(degree)]
            - torch.fft.fftshift(c, dim=tuple(range(len(degree))))).abs().max() < 1e-13


def test_lowpass_filter_removes_aliasing_pennylane_example():
    """PennyLane's docstring example: RX(x) on 0, RY(x) on 1, CNOT(1, 0), <Z_0>: c0 = 0.5, c2 = 0.25."""
    circuit = Circuit(2, (Gate("RX", (0,), (Param.input(0),)), Gate("RY", (1,), (Param.input(0),)),
                          Gate("CNOT", (1, 0))), (PauliWord.z(0),))
    layer = QuantumLayer(circuit=circuit).double()
    aliased = coefficients(layer, 1, 1)[:, 0]
    assert torch.allclose(aliased, torch.tensor([0.5, 0.25, 0.25], dtype=torch.complex128), atol=1e-12)
    filtered = coefficients(layer, 1, 1, lowpass_filter=True)[:, 0]
    assert torch.allclose(filtered, torch.tensor([0.5, 0, 0], dtype=torch.complex128), atol=1e-12)
    full = coefficients(layer, 1, 2)[:, 0]
    assert torch.allclose(full, torch.tensor([0.5, 0, 0.25, 0.25, 0], dtype=torch.complex128), atol=1e-12)


@pytest.mark.parametrize("lowpass", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.7])
def test_matches_pennylane_coefficients(lowpass, scale):
    """Same grid points and FFT order as qml.fourier.coefficients, also for a non-periodic circuit
    (scale 0.7: real frequencies, so the grid itself matters)."""
    pytest.importorskip("pennylane")
    from tests.spectrum.pl_spectrum import pl_coefficients

    base = reuploading_circuit(2, 2, 1, "cnot", "ry")
    gates = tuple(Gate(g.name, g.wires, tuple(Param.input(p.index, scale) if p.source == "input" else p
                                              for p in g.params)) for g in base.gates)
    circuit = Circuit(2, gates, (PauliWord.z(0),), base.n_weights, 2)
    w = torch.rand(circuit.n_weights, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 6
    layer = QuantumLayer(circuit=circuit).double()
    with torch.no_grad():
        layer.weights.copy_(w)
    ours = coefficients(layer, 2, (2, 1), lowpass_filter=lowpass)[..., 0]
    ref = torch.as_tensor(pl_coefficients(circuit, w.numpy(), (2, 1), lowpass_filter=lowpass))
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() < 1e-12


def test_one_batched_call_and_module_mode_restored():
    calls = []
    model = QIREN(2, 3, hidden_features=4, hidden_layers=1, generator=torch.Generator().manual_seed(2))
    model.train()
    model_forward = model.forward

    def counted(x):
        calls.append(x.shape)
        assert not model.training  # BatchNorm must use running statistics
        return model_forward(x)

    model.forward = counted  # instance attribute on a test-local model, removed below
    try:
        c = coefficients(model, 2, 3)
    finally:
        del model.forward
    assert calls == [torch.Size([49, 2])]
    assert model.training and model.forward == model_forward
    assert c.shape == (7, 7, 3)
    # eval-mode values: c[0, 0] is the grid mean of the eval-mode model
    model.eval()
    with torch.no_grad():
        from qlite.spectrum.coefficients import _grid
        mean = model(_grid((3, 3), torch.float32, "cpu")).double().mean(0)
    assert torch.allclose(c[0, 0].real, mean, atol=1e-6)


def test_unbatched_function_of_one_point():
    f = lambda x: math.cos(float(x[0])) + 0.5 * math.sin(2 * float(x[1]))  # noqa: E731
    c = coefficients(f, 2, 2, batched=False)
    assert abs(c[1, 0] - 0.5) < 1e-14 and abs(c[0, 2] - (-0.25j)) < 1e-14


def test_bad_input():
    with pytest.raises(TypeError, match="f must be callable"):
        coefficients([1, 2, 3], 1, 1)
    with pytest.raises(ValueError, match="degree must be an integer >= 0, got -1"):
        coefficients(torch.sin, 1, -1)
    with pytest.raises(ValueError, match="degree has 3 entries for n_inputs=2"):
        coefficients(torch.sin, 2, (1, 2, 3))
    with pytest.raises(ValueError, match="filter_threshold .* must be >= degree"):
        coefficients(torch.sin, 1, 3, lowpass_filter=True, filter_threshold=2)
    with pytest.raises(ValueError, match=r"f returned shape \(\) for 3 points"):
        coefficients(lambda x: x.sum(), 1, 1)
    with pytest.raises(ValueError, match="real-valued"):
        coefficients(lambda x: torch.exp(1j * x[:, 0]), 1, 1)
    with pytest.raises(ValueError, match="n_inputs must be an integer >= 1"):
        coefficients(torch.sin, 0, 1)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from qlite.spectrum import hybrid_coefficients

    model = QIREN(2, 1, generator=torch.Generator().manual_seed(5)).double().eval()
    cpu = coefficients(model, 2, 16)
    gpu = coefficients(model.to("cuda"), 2, 16)
    assert gpu.device.type == "cpu" and (gpu - cpu).abs().max() < 1e-10
    single = QIREN(2, 1, hidden_features=4, hidden_layers=0, generator=torch.Generator().manual_seed(6)).double().eval()
    w_cpu, c_cpu = hybrid_coefficients(single)
    w_gpu, c_gpu = hybrid_coefficients(single.to("cuda"))
    assert torch.equal(w_cpu, w_gpu) and (c_cpu - c_gpu).abs().max() < 1e-10


def test_eight_inputs_beyond_mkl_fft_dimension_limit():
    """torch's CPU FFT (MKL DFTI) rejects 8-dimensional transforms; the paper's 8-qubit circuit needs one."""
    f = lambda x: torch.cos(x.sum(1)) + 0.5 * torch.sin(x[:, 7])  # noqa: E731
    c = coefficients(f, 8, 1)
    assert c.shape == (3,) * 8
    assert abs(c[(1,) * 8] - 0.5) < 1e-13 and abs(c[(0,) * 7 + (1,)] - (-0.25j)) < 1e-13
    assert c.abs().sum() - 1.5 < 1e-12
