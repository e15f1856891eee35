"""classical_spectrum: SIREN and Fourier-feature first layers, exact by least squares."""

import math

import pytest
import torch
from torch import nn

from qlite.spectrum import FourierFeatureStandIn, SirenStandIn, classical_spectrum, least_squares_coefficients


def test_siren_first_layer_frequencies_explain_a_one_layer_siren():
    g = torch.Generator().manual_seed(0)
    siren = SirenStandIn(2, 6, 1, hidden_layers=0, omega_0=3.0, generator=g).double()
    spec = classical_spectrum(siren)
    assert spec.size == spec.bound == 13 and spec.enumerated and spec.hybrid_layers == 0
    expect = torch.cat([torch.zeros(1, 2, dtype=torch.float64), 3 * siren.sines[0].weight, -3 * siren.sines[0].weight])
    assert torch.allclose(torch.sort(spec.frequencies[:, 0]).values, torch.sort(expect[:, 0]).values)
    x = torch.rand(400, 2, generator=g, dtype=torch.float64) * 40 - 20
    assert least_squares_coefficients(siren, spec.frequencies, x).residual_rms < 1e-10


def test_rff_frequencies_are_two_pi_b_and_explain_a_linear_readout():
    class Features(nn.Module):  # B transposed (in_features, m), angular=False: 2 pi applied
        def __init__(self):
            super().__init__()
            self.frequency_matrix = torch.tensor([[0.5, 1.0, -2.0]], dtype=torch.float64)
            self.readout = nn.Linear(6, 2).double()

        def forward(self, x):
            p = 2 * math.pi * x @ self.frequency_matrix
            return self.readout(torch.cat([p.cos(), p.sin()], -1))

    m = Features()
    spec = classical_spectrum(m, kind="rff", in_features=1)
    assert spec.size == 7
    assert torch.allclose(torch.sort(spec.frequencies[:, 0]).values,
                          2 * math.pi * torch.tensor([-2.0, -1, -0.5, 0, 0.5, 1, 2], dtype=torch.float64))
    x = torch.linspace(-3, 3, 200, dtype=torch.float64)[:, None]
    assert least_squares_coefficients(m, spec.frequencies, x).residual_rms.max() < 1e-12
    stand_in = FourierFeatureStandIn(2, 8, 16, 1, generator=torch.Generator().manual_seed(1))
    assert classical_spectrum(stand_in).size == 17
    assert torch.allclose(classical_spectrum(stand_in, angular=True).directions, stand_in.B.double())


def test_coinciding_units_are_merged():
    siren = SirenStandIn(1, 3, 1, hidden_layers=0, omega_0=1.0)
    with torch.no_grad():
        siren.sines[0].weight.copy_(torch.tensor([[1.0], [1.0], [-1.0]]))
    assert classical_spectrum(siren).size == 3  # {0, +-1}


def test_bad_input():
    with pytest.raises(TypeError, match="no Fourier-feature matrix .* and no SIREN frequency"):
        classical_spectrum(nn.Sequential(nn.Linear(2, 3)))
    with pytest.raises(TypeError, match="no frequency matrix attribute"):
        classical_spectrum(SirenStandIn(2, 3, 1), kind="rff")
    with pytest.raises(ValueError, match="unknown kind 'mlp'"):
        classical_spectrum(SirenStandIn(2, 3, 1), kind="mlp")
    with pytest.raises(ValueError, match="neither dimension is in_features=5"):
        classical_spectrum(FourierFeatureStandIn(2, 8, 4, 1), in_features=5)
    with pytest.raises(TypeError, match="expects a torch module"):
        classical_spectrum(lambda x: x)
