"""classical_spectrum on qlite.models' SIREN and RFFNet: the first-layer frequencies, checked against
analytic ground truth (omega_0 W, 2 pi B) and by least squares (a one-sine-layer network is exactly a
Fourier series on that set)."""

import math

import pytest
import torch
from torch import nn

from qlite.models import MLP, SIREN, FourierFeatures, RFFNet
from qlite.spectrum import classical_spectrum, least_squares_coefficients


def _sorted_rows(t):
    return t[torch.argsort(t[:, 0] * 1e3 + t[:, 1])] if t.shape[1] == 2 else torch.sort(t, 0).values


def test_siren_first_layer_is_omega_w_and_explains_a_one_layer_siren():
    g = torch.Generator().manual_seed(0)
    siren = SIREN(2, 1, hidden_features=6, hidden_layers=0, first_omega_0=3.0, generator=g).double()
    spec = classical_spectrum(siren)
    assert spec.size == spec.bound == 13 and spec.enumerated and spec.hybrid_layers == 0
    w = siren.net[0].linear.weight.detach()  # (6, 2)
    expect = torch.cat([torch.zeros(1, 2, dtype=torch.float64), 3 * w, -3 * w])
    assert torch.allclose(_sorted_rows(spec.frequencies), _sorted_rows(expect), atol=1e-12)
    x = torch.rand(400, 2, generator=g, dtype=torch.float64) * 40 - 20
    assert least_squares_coefficients(siren, spec.frequencies, x).residual_rms < 1e-10
    # dropping one unit's +-frequency leaves a residual: the set is not just "large enough"
    keep = ~torch.isclose(spec.frequencies.abs(), 3 * w[0].abs()).all(1)
    assert int((~keep).sum()) == 2
    assert least_squares_coefficients(siren, spec.frequencies[keep], x).residual_rms > 1e-3


def test_deep_siren_reads_only_the_first_layer():
    siren = SIREN(2, 1, hidden_features=16, hidden_layers=2, first_omega_0=30.0, hidden_omega_0=5.0)
    spec = classical_spectrum(siren)
    assert spec.size == 33
    assert torch.allclose(spec.directions, 30 * siren.net[0].linear.weight.double())
    assert "deeper layers not included" in spec.note


def test_sine_layer_with_batchnorm_is_folded_in_eval_mode():
    # qlite.models.MLP(activation="sine") is the paper code's SineLayer_bn: sin(omega_0 BN(W x + b)).
    g = torch.Generator().manual_seed(3)
    net = MLP(1, 1, hidden_features=5, hidden_layers=0, activation="sine", omega_0=2.0, generator=g).double()
    bn = net.net[0].norm
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1, generator=g)
        bn.running_var.uniform_(0.5, 2.0, generator=g)
        bn.weight.uniform_(0.5, 1.5, generator=g)
    net.eval()
    spec = classical_spectrum(net)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    expect = 2.0 * scale[:, None] * net.net[0].linear.weight
    assert torch.allclose(spec.directions, expect.detach())
    x = torch.linspace(-15, 15, 600, dtype=torch.float64)[:, None]
    assert least_squares_coefficients(net, spec.frequencies, x).residual_rms < 1e-10


def test_rff_frequencies_are_two_pi_b_and_explain_a_linear_readout():
    ff = FourierFeatures(1, 3)
    with torch.no_grad():
        ff.frequencies.copy_(torch.tensor([[0.5], [1.0], [-2.0]]))
    m = nn.Sequential(ff, nn.Linear(6, 2)).double()
    spec = classical_spectrum(m)
    assert spec.size == 7
    assert torch.allclose(torch.sort(spec.frequencies[:, 0]).values,
                          2 * math.pi * torch.tensor([-2.0, -1, -0.5, 0, 0.5, 1, 2], dtype=torch.float64))
    x = torch.linspace(-3, 3, 200, dtype=torch.float64)[:, None]
    assert least_squares_coefficients(m, spec.frequencies, x).residual_rms.max() < 1e-12
    net = RFFNet(2, 1, hidden_features=16, generator=torch.Generator().manual_seed(1))
    b = net.net[0].frequencies.double()  # (8, 2): hidden_features // 2 frequencies
    assert classical_spectrum(net).size == 17
    assert torch.allclose(classical_spectrum(net).directions, 2 * math.pi * b)
    assert torch.allclose(classical_spectrum(net, angular=True).directions, b)


def test_any_module_with_the_same_structure():
    class Features(nn.Module):  # B transposed (in_features, m), 2 pi applied in the forward
        def __init__(self):
            super().__init__()
            self.frequency_matrix = torch.tensor([[0.5, 1.0, -2.0]], dtype=torch.float64)
            self.readout = nn.Linear(6, 2).double()

        def forward(self, x):
            p = 2 * math.pi * x @ self.frequency_matrix
            return self.readout(torch.cat([p.cos(), p.sin()], -1))

    class Sine(nn.Module):  # a hand-written sine layer: .linear and .omega_0
        def __init__(self):
            super().__init__()
            self.linear, self.omega_0, self.out = nn.Linear(1, 2).double(), 4.0, nn.Linear(2, 1).double()

        def forward(self, x):
            return self.out(torch.sin(self.omega_0 * self.linear(x)))

    f = Features()
    spec = classical_spectrum(f, kind="rff", in_features=1)
    x = torch.linspace(-3, 3, 200, dtype=torch.float64)[:, None]
    assert spec.size == 7 and least_squares_coefficients(f, spec.frequencies, x).residual_rms.max() < 1e-12
    s = Sine()
    spec = classical_spectrum(s)
    assert torch.allclose(spec.directions, 4 * s.linear.weight.detach())
    assert least_squares_coefficients(s, spec.frequencies, x).residual_rms < 1e-12


def test_coinciding_units_are_merged():
    siren = SIREN(1, 1, hidden_features=3, hidden_layers=0, first_omega_0=1.0)
    with torch.no_grad():
        siren.net[0].linear.weight.copy_(torch.tensor([[1.0], [1.0], [-1.0]]))
    assert classical_spectrum(siren).size == 3  # {0, +-1}


def test_bad_input():
    with pytest.raises(TypeError, match="no Fourier-feature matrix .* and no SIREN sine layer"):
        classical_spectrum(nn.Sequential(nn.Linear(2, 3)))
    with pytest.raises(TypeError, match="has activation 'relu', not 'sine'"):
        classical_spectrum(MLP(2, 1, 8))
    with pytest.raises(TypeError, match="no frequency matrix attribute"):
        classical_spectrum(SIREN(2, 1, 3), kind="rff")
    with pytest.raises(TypeError, match="registers an nn.Linear before its first sine layer"):
        classical_spectrum(nn.Sequential(nn.Linear(2, 2), SIREN(2, 1, 3)))
    with pytest.raises(ValueError, match="unknown kind 'mlp'"):
        classical_spectrum(SIREN(2, 1, 3), kind="mlp")
    with pytest.raises(ValueError, match="neither dimension is in_features=5"):
        classical_spectrum(RFFNet(2, 1, 8), in_features=5)
    with pytest.raises(ValueError, match="takes 2 inputs, not in_features=3"):
        classical_spectrum(SIREN(2, 1, 3), in_features=3)
    with pytest.raises(TypeError, match="expects a torch module"):
        classical_spectrum(lambda x: x)
