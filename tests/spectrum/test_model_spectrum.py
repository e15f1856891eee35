"""model_spectrum: folding of Linear + BatchNorm, exactness (least squares explains the model),
coincidences against spectrum_size, sampling when too large, deeper QIREN truncations."""

import itertools
import logging
import math

import pytest
import torch

from qlite import QIREN, HybridLayer, QuantumLayer
from qlite.spectrum import least_squares_coefficients, model_spectrum, spectrum_size


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _with_bn_stats(model, seed=0):
    """Give every BatchNorm non-trivial running statistics and affine parameters, and the Linears
    weights of order 1 (as after training; the default init gives frequencies ~0.05 that any smooth
    basis fits on [-1, 1]), then eval()."""
    g = _gen(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


def test_folded_affine_reproduces_linear_then_eval_batchnorm():
    layer = _with_bn_stats(HybridLayer(3, 4, 1, generator=_gen(0)).double())
    spec = model_spectrum(layer)
    x = torch.randn(50, 3, dtype=torch.float64, generator=_gen(1))
    h = layer.norm(layer.linear(x))
    assert torch.allclose(x @ spec.directions.T + spec.offsets, h, atol=1e-12)
    assert layer.training is False  # not switched by the analysis


@pytest.mark.parametrize("in_features,n,L", [(1, 2, 1), (1, 3, 2), (2, 2, 2)])
def test_one_hybrid_layer_is_exactly_explained_by_its_set(in_features, n, L):
    """Least squares on the enumerated set reproduces the layer to round-off; dropping the largest
    frequency does not (the set is exact and each frequency is used)."""
    layer = _with_bn_stats(HybridLayer(in_features, n, L, entangler="cnot", generator=_gen(2)).double())
    spec = model_spectrum(layer)
    assert spec.enumerated and spec.size == len(spec.frequencies) == (2 * L + 1) ** n  # generic directions
    assert spec.note.startswith("exact")
    # a window wide enough to resolve the closest frequencies, so that the fit is identifiable
    width = 100.0 if in_features == 1 else 20.0
    x = (torch.rand(3000, in_features, dtype=torch.float64, generator=_gen(3)) * 2 - 1) * width
    fit = least_squares_coefficients(layer, spec.frequencies, x)
    assert fit.rank == 2 * len(fit.frequencies) - 1  # full rank: every coefficient is determined
    assert fit.residual_rms.max() < 1e-9
    # drop the pair +-w carrying the largest non-constant coefficient: the rest cannot make up for it
    mag = fit.coefficients.abs().sum(1)
    mag[fit.frequencies.abs().sum(1) == 0] = 0
    w = fit.frequencies[mag.argmax()]
    keep = ((spec.frequencies - w).norm(dim=1) > 1e-9) & ((spec.frequencies + w).norm(dim=1) > 1e-9)
    partial = least_squares_coefficients(layer, spec.frequencies[keep], x)
    assert partial.residual_rms.max() > 1e-3


def test_qiren_with_one_hybrid_layer_is_exact_through_the_final_linear():
    model = _with_bn_stats(QIREN(2, 3, hidden_features=2, hidden_layers=0, spectrum_layers=2,
                                 entangler="cnot", generator=_gen(4)).double())
    spec = model_spectrum(model)
    assert spec.hybrid_layers == 1 and spec.enumerated and spec.size == 25
    x = torch.rand(400, 2, dtype=torch.float64, generator=_gen(5)) * 2 - 1
    fit = least_squares_coefficients(model, spec.frequencies, x)
    assert fit.coefficients.shape == (13, 3)  # 0 and one of each +-w pair, 3 outputs
    assert fit.residual_rms.max() < 1e-9
    assert torch.allclose(fit(x), model(x), atol=1e-9)


@pytest.mark.parametrize("weights", [[1.0, 0.5, 0.25], [2.0, -1.0, 3.0], [1.0, 1.0, 1.0], [0.3, 0.7, 1.1]])
def test_coincidences_are_counted_like_spectrum_size(weights):
    layer = HybridLayer(1, 3, 2).double().eval()
    with torch.no_grad():  # identity BatchNorm: running stats 0 / 1, eps 0
        layer.linear.weight.copy_(torch.tensor(weights, dtype=torch.float64)[:, None])
        layer.norm.eps = 0.0
    spec = model_spectrum(layer)
    assert spec.size == spectrum_size(3, 2, weights)
    brute = {round(sum(w * k for w, k in zip(weights, ks)), 8) + 0.0
             for ks in itertools.product(range(-2, 3), repeat=3)}
    assert sorted(brute) == [round(v, 8) + 0.0 for v in spec.frequencies[:, 0].tolist()]
    assert torch.allclose(spec.frequencies, spec.multi_indices @ spec.directions)
    assert spec.bandwidth.item() == pytest.approx(2 * sum(abs(w) for w in weights))


def test_two_dimensional_set_equals_the_image_of_the_integer_box():
    layer = _with_bn_stats(HybridLayer(2, 3, 1, generator=_gen(6)).double())
    spec = model_spectrum(layer)
    box = torch.tensor(list(itertools.product((-1.0, 0.0, 1.0), repeat=3)), dtype=torch.float64)
    ref = torch.unique(torch.round(box @ spec.directions, decimals=8), dim=0)
    assert torch.equal(torch.round(spec.frequencies, decimals=8), ref)
    assert torch.allclose(spec.bandwidth, spec.frequencies.abs().amax(0))


def test_too_large_warns_and_samples_members_of_the_set():
    model = QIREN(2, 1, hidden_features=8, hidden_layers=0, spectrum_layers=2, generator=_gen(7)).eval()
    with pytest.warns(UserWarning, match="more than max_size=1,000: not enumerated"):
        spec = model_spectrum(model, max_size=1000, n_samples=500, generator=_gen(8))
    assert not spec.enumerated and spec.size == spec.bound == 5**8
    assert 0 < len(spec.frequencies) <= 500
    assert torch.allclose(spec.frequencies, spec.multi_indices @ spec.directions)
    assert set(spec.multi_indices.unique().tolist()) <= {-2.0, -1.0, 0.0, 1.0, 2.0}
    assert "upper bound" in spec.note
    exact = model_spectrum(model)  # 390,625 vectors fit the default max_size
    assert exact.enumerated and exact.size == 5**8  # generic directions: no coincidences
    assert torch.allclose(exact.bandwidth, spec.bandwidth)


def test_deeper_qiren_truncations_grow_and_explain_more():
    """A two-hybrid-layer model is not a finite Fourier series: the order-M sets grow and explain
    more of it as M grows, without being exact."""
    model = _with_bn_stats(QIREN(1, 1, hidden_features=2, hidden_layers=1, spectrum_layers=1,
                                 entangler="cnot", generator=_gen(9)).double(), seed=3)
    x = torch.linspace(-20, 20, 3000, dtype=torch.float64)[:, None]  # wide: resolves close frequencies
    explained, sizes = [], []
    for order in (1, 2, 4):
        spec = model_spectrum(model, order=order)
        assert spec.hybrid_layers == 2 and "infinite" in spec.note and "neither exact nor an upper bound" in spec.note
        sizes.append(spec.size)
        explained.append(least_squares_coefficients(model, spec.frequencies, x).explained.item())
    assert sizes == [9, 25, 81]  # (2 * M * L + 1)^n for n = 2 generic directions, L = 1
    assert explained[0] < explained[1] < explained[2]
    assert explained[0] < 1 - 1e-6  # order 1 does not carry a deep model


def test_quantum_layer_alone_uses_identity_preprocessing():
    spec = model_spectrum(QuantumLayer(2, spectrum_layers=1))
    assert torch.equal(spec.directions, torch.eye(2, dtype=torch.float64)) and spec.size == 9


def test_training_mode_batchnorm_uses_running_stats_and_says_so(caplog):
    layer = HybridLayer(2, 2, 1)
    with caplog.at_level(logging.WARNING, logger="qlite.spectrum"):
        spec = model_spectrum(layer)
    assert "training mode" in caplog.text and layer.training
    assert torch.allclose(spec.directions, layer.linear.weight.double() / math.sqrt(1 + 1e-5))


def test_bad_input():
    with pytest.raises(TypeError, match="holds no HybridLayer or QuantumLayer.*classical_spectrum"):
        model_spectrum(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="expects a torch module"):
        model_spectrum(lambda x: x)
    with pytest.raises(ValueError, match="order=2 .* one hybrid layer"):
        model_spectrum(HybridLayer(1, 2, 1).eval(), order=2)
    with pytest.raises(ValueError, match="order must be an integer >= 1, got 0"):
        model_spectrum(HybridLayer(1, 2, 1).eval(), order=0)
    layer = HybridLayer(1, 2, 1)
    layer.norm = torch.nn.BatchNorm1d(2, track_running_stats=False)
    with pytest.raises(ValueError, match="track_running_stats=False"):
        model_spectrum(layer)
    with pytest.raises(ValueError, match="no encoding gate"):
        model_spectrum(HybridLayer(1, 2, spectrum_layers=0).eval())
    with pytest.raises(TypeError, match="reaches another layer before the first HybridLayer"):
        model_spectrum(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh(), HybridLayer(2, 2)).eval())
    deep = model_spectrum(torch.nn.Sequential(HybridLayer(1, 2, 1), torch.nn.ReLU(), torch.nn.Linear(2, 1)).eval())
    assert "not exact" in deep.note or "neither exact" in deep.note


@pytest.mark.parametrize("in_features", [1, 2])
def test_matches_pennylane_qnode_spectrum_through_linear_and_batchnorm(in_features):
    """PennyLane's qnode_spectrum with the folded Linear + BatchNorm as classical preprocessing gives,
    per input coordinate, the set of that coordinate over our frequency vectors."""
    pytest.importorskip("pennylane")
    from tests.spectrum.pl_spectrum import pl_model_spectrum

    layer = _with_bn_stats(HybridLayer(in_features, 3, 1, entangler="cnot", generator=_gen(11)).double(), seed=5)
    spec = model_spectrum(layer)
    ref = pl_model_spectrum(layer)
    for i in range(in_features):
        ours = torch.unique(torch.round(spec.frequencies[:, i], decimals=7))
        theirs = torch.tensor(sorted(set(round(v, 7) for v in ref[i])), dtype=torch.float64)
        assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=2e-7)
