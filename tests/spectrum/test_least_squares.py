"""least_squares_coefficients on analytic series with known real frequencies."""

import math

import pytest
import torch

from qlite.spectrum import least_squares_coefficients


def test_recovers_a_two_dimensional_series_with_real_frequencies():
    g = torch.Generator().manual_seed(0)
    freqs = torch.tensor([[0.0, 0.0], [math.sqrt(2), 0.3], [-0.7, math.pi], [2.5, -1.1]], dtype=torch.float64)
    c = torch.tensor([0.4 + 0j, 0.3 - 0.2j, -0.1 + 0.5j, 0.05j], dtype=torch.complex128)

    def f(x):  # c_0 + sum 2 Re(c_w e^{i w.x})
        phase = x @ freqs[1:].T
        return c[0].real + 2 * (torch.polar(torch.ones_like(phase), phase) @ c[1:]).real

    x = torch.rand(300, 2, generator=g, dtype=torch.float64) * 8 - 4
    # give the set with the signs of two pairs flipped and a duplicate: they are merged
    given = torch.cat([freqs[[0, 1]], -freqs[[2, 3]], freqs[[1]]])
    fit = least_squares_coefficients(f, given, x)
    assert fit.frequencies.shape == (4, 2)
    for w, cw in zip(freqs, c):
        k = ((fit.frequencies - w).norm(dim=1) < 1e-12).nonzero()
        if len(k):
            assert abs(fit.coefficients[k[0, 0]] - cw) < 1e-12
        else:  # stored as -w: coefficient conj(c_w)
            k = ((fit.frequencies + w).norm(dim=1) < 1e-12).nonzero()[0, 0]
            assert abs(fit.coefficients[k] - cw.conj()) < 1e-12
    assert fit.residual_rms < 1e-12 and abs(fit.explained - 1) < 1e-12
    x_new = torch.rand(50, 2, generator=g, dtype=torch.float64)
    assert torch.allclose(fit(x_new), f(x_new), atol=1e-12)


def test_precomputed_values_and_missing_frequency():
    x = torch.linspace(-10, 10, 400, dtype=torch.float64)
    y = torch.cos(1.3 * x) + 0.5 * torch.sin(0.4 * x)
    full = least_squares_coefficients(y, torch.tensor([1.3, 0.4], dtype=torch.float64), x)
    assert full.residual_rms < 1e-12
    part = least_squares_coefficients(y, torch.tensor([1.3], dtype=torch.float64), x)
    # the missing sin(0.4 x) has mean square 1/8; nearly all of it stays in the residual
    assert 0.3 < part.residual_rms < 0.36 and part.explained < 0.85


def test_bad_input():
    x = torch.zeros(5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="same d"):
        least_squares_coefficients(torch.zeros(5), torch.zeros(3, 1), x)
    with pytest.raises(ValueError, match="5 points for 7 real unknowns"):
        least_squares_coefficients(torch.zeros(5), torch.tensor([[0.0, 0.0], [1, 0], [0, 1], [1, 1]]), x)
    with pytest.raises(TypeError, match="callable or a tensor"):
        least_squares_coefficients("y", torch.zeros(1, 2), x)
    with pytest.raises(ValueError, match="4 values for 5 points"):
        least_squares_coefficients(torch.zeros(4), torch.zeros(1, 2), x)
