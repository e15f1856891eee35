"""hybrid_coefficients: the exact series reproduces the model anywhere and agrees with least squares."""

import pytest
import torch

from qlite import QIREN, HybridLayer, QuantumLayer
from qlite.simulators import Circuit, Gate, Param, PauliWord, strongly_entangling
from qlite.spectrum import hybrid_coefficients, least_squares_coefficients, model_spectrum
from tests.spectrum.test_model_spectrum import _gen, _with_bn_stats


def _series(w, c, x):
    return (torch.polar(torch.ones(len(x), len(w), dtype=torch.float64), x @ w.T) @ c).real


def test_series_reproduces_a_trained_like_qiren_far_from_the_data_window():
    model = _with_bn_stats(QIREN(2, 2, hidden_features=3, hidden_layers=0, spectrum_layers=2,
                                 entangler="cnot", generator=_gen(0)).double(), seed=1)
    w, c = hybrid_coefficients(model, chunk_size=17)  # chunks that do not divide the grid
    spec = model_spectrum(model)
    assert torch.equal(torch.round(w, decimals=8), torch.round(spec.frequencies, decimals=8))
    assert c.shape == (125, 2)
    x = (torch.rand(200, 2, dtype=torch.float64, generator=_gen(2)) * 2 - 1) * 50
    assert torch.allclose(_series(w, c, x), model(x).detach(), atol=1e-12)
    # hermitian: c_{-w} = conj(c_w)
    index = {tuple(torch.round(v, decimals=8).tolist()): k for k, v in enumerate(w)}
    neg = torch.tensor([index[tuple((torch.round(-v, decimals=8) + 0.0).tolist())] for v in w])
    assert torch.allclose(c[neg], c.conj(), atol=1e-14)
    # least squares on a wide window finds the same coefficients (one of each +-w pair)
    wide = (torch.rand(3000, 2, dtype=torch.float64, generator=_gen(3)) * 2 - 1) * 30
    fit = least_squares_coefficients(model, w, wide)
    for wk, ck in zip(fit.frequencies[:5], fit.coefficients[:5]):
        k = ((w - wk).norm(dim=1) < 1e-9).nonzero()[0, 0]
        assert (c[k] - ck).abs().max() < 1e-8


def test_coinciding_frequencies_add_their_coefficients():
    layer = HybridLayer(1, 2, 1, entangler="cnot", generator=_gen(4)).double().eval()
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor([[1.0], [1.0]], dtype=torch.float64))
    w, c = hybrid_coefficients(layer)
    assert w[:, 0].tolist() == pytest.approx([-2, -1, 0, 1, 2], abs=1e-4)
    x = torch.linspace(-9, 9, 50, dtype=torch.float64)[:, None]
    assert torch.allclose(_series(w, c, x), layer(x).detach(), atol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="2 hybrid layers: its output is not a finite Fourier series"):
        hybrid_coefficients(QIREN(1, 1, hidden_features=2, hidden_layers=1))
    with pytest.raises(TypeError, match="takes a HybridLayer"):
        hybrid_coefficients(QuantumLayer(2))
    gates = (*strongly_entangling(2, 1), Gate("RZ", (0,), (Param.input(0, 0.5),)), Gate("RZ", (1,), (Param.input(1),)))
    layer = HybridLayer(1, 2, 1)
    layer.quantum = QuantumLayer(circuit=Circuit(2, gates, (PauliWord.z(0),)))
    with pytest.raises(ValueError, match="non-integer frequencies"):
        hybrid_coefficients(layer.eval())
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        hybrid_coefficients(HybridLayer(1, 2, 1), chunk_size=0)
