import pytest
import torch
from torch import nn

from qlite.lm import QuantumAdapterConfig, QuantumFFNConfig, adapter_spectrum, inject
from qlite.spectrum import adapter_spectrum as spectrum_entry


def _series(c, a, L):
    """sum_w c_w exp(i w . a) on points a (P, n) from FFT-ordered coefficients (..., d_out)."""
    n = a.shape[1]
    k = 2 * L + 1
    freqs = torch.fft.fftfreq(k, 1.0 / k, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(*([freqs] * n), indexing="ij"), -1).reshape(-1, n)  # (K, n)
    phase = torch.exp(1j * (a.double() @ grid.t()))  # (P, K)
    return (phase @ c.reshape(-1, c.shape[-1])).real


@pytest.mark.parametrize("norm", ["none", "layernorm"])
def test_adapter_coefficients_reproduce_its_output(norm):
    net = nn.Sequential(nn.Linear(6, 5))
    m = inject(net, QuantumAdapterConfig(n_qubits=3, spectrum_layers=2, sublayers=1, norm=norm),
               target_modules=["0"], seed=1)[0]
    with torch.no_grad():
        m.up.weight.normal_(generator=torch.Generator().manual_seed(0))
    spec = adapter_spectrum(m, tokens=torch.randn(40, 6))
    assert spec.frequencies == {j: [-2.0, -1.0, 0.0, 1.0, 2.0] for j in range(3)}
    a = torch.rand(25, 3, generator=torch.Generator().manual_seed(2)) * 6 - 3  # any angles
    with torch.no_grad():
        direct = m.up(m.circuit(a)) * m.scale
    torch.testing.assert_close(_series(spec.coefficients[0], a, 2).float(), direct, atol=2e-5, rtol=0)
    p = spec.power_by_order[0]
    assert p.shape == (7,) and torch.isclose(p.sum(), (spec.coefficients[0].abs() ** 2).sum())
    assert spec.exact_directions == (norm == "none")
    if norm == "none":
        torch.testing.assert_close(spec.directions[0], m.down.weight.double())
    else:  # centred rows: the LayerNorm removes the mean of the angles
        torch.testing.assert_close(spec.directions[0].sum(0), torch.zeros(6, dtype=torch.float64), atol=1e-12, rtol=0)


def test_ffn_has_one_spectrum_per_head():
    net = nn.Sequential(nn.Linear(4, 4))
    ffn = inject(net, QuantumFFNConfig(n_qubits=2, heads=3, spectrum_layers=1), target_modules=["0"])[0]
    spec = adapter_spectrum(ffn)
    assert len(spec.coefficients) == 3 and spec.coefficients[0].shape == (3, 3, 4)
    with pytest.raises(TypeError, match="QuantumAdapter or QuantumFFN"):
        adapter_spectrum(net[0])


def test_qlite_spectrum_reexports_the_adapter_spectrum():
    assert spectrum_entry is adapter_spectrum
