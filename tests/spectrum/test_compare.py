"""power_spectrum and compare_spectra: Parseval, frequency axes, band split."""

import math

import pytest
import torch

from qlite.spectrum import compare_spectra, power_spectrum


def test_peak_at_the_right_angular_frequency_and_parseval_2d():
    n0, n1 = 32, 48
    x0 = torch.arange(n0, dtype=torch.float64) / n0 * 2 - 1  # [-1, 1), spacing 2 / n0
    x1 = torch.arange(n1, dtype=torch.float64) / n1 * 2 - 1
    X0, X1 = torch.meshgrid(x0, x1, indexing="ij")
    w = (3 * math.pi, -5 * math.pi)  # 1.5 and -2.5 cycles per unit: on bins for a window of length 2
    v = torch.cos(w[0] * X0 + w[1] * X1) + 0.3
    ps = power_spectrum(v, spacing=(2 / n0, 2 / n1))
    assert ps.power.shape == (n0, n1)
    assert abs(ps.power.sum() - v.pow(2).mean()) < 1e-12
    top = torch.topk(ps.power.reshape(-1), 3).indices
    peaks = {(round(ps.axes[0][i // n1].item(), 9), round(ps.axes[1][i % n1].item(), 9)) for i in top.tolist()}
    assert peaks == {(0.0, 0.0), (round(w[0], 9), round(w[1], 9)), (round(-w[0], 9), round(-w[1], 9))}
    assert ps.radius[n0 // 2, n1 // 2] == 0 and ps.radius[0, n1 // 2] == pytest.approx(1.0)


def test_flat_values_with_channels_average_the_power():
    v = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ps = power_spectrum(v, (8, 8))
    assert ps.power.shape == (8, 8)
    assert abs(ps.power.sum() - v.pow(2).mean()) < 1e-12


def test_error_split_adds_up_and_lands_in_the_right_band():
    n = 128
    x = torch.arange(n, dtype=torch.float64) / n * 2 - 1
    target = torch.sin(2 * math.pi * 2 * x) + 0.2 * torch.sin(2 * math.pi * 25 * x)  # 4 and 50 cycles / window
    low_only = torch.sin(2 * math.pi * 2 * x)  # misses the 50-cycle tone: high-band error
    high_only = 0.2 * torch.sin(2 * math.pi * 25 * x) + 0.9 * torch.sin(2 * math.pi * 2 * x)
    a = compare_spectra(target, low_only, spacing=2 / n, cutoff=0.5)
    b = compare_spectra(target, high_only, spacing=2 / n, cutoff=0.5)
    for cmp in (a, b):
        assert abs(cmp.mse_low + cmp.mse_high - cmp.mse) < 1e-14
    assert a.mse_low < 1e-25 and a.mse_high == pytest.approx(0.02)  # 0.2^2 / 2
    assert b.mse_high < 1e-25 and b.mse_low == pytest.approx(0.005)  # 0.1^2 / 2
    assert a.target_low_fraction == pytest.approx(0.5 / 0.52)
    assert abs(a.radial["error"].sum() - a.mse) < 1e-14 and a.to_dict()["cutoff"] == 0.5


def test_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        compare_spectra(torch.zeros(4), torch.zeros(5))
    with pytest.raises(ValueError, match="cutoff is a fraction of the Nyquist frequency"):
        compare_spectra(torch.zeros(4, 4), torch.zeros(4, 4), cutoff=2.0)
    with pytest.raises(ValueError, match="do not fill the grid"):
        power_spectrum(torch.zeros(10), (3, 3))
    with pytest.raises(ValueError, match="spacing must be positive"):
        power_spectrum(torch.zeros(8), spacing=0.0)
