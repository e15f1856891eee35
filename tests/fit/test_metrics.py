"""MSE / PSNR analytic values and SSIM against scikit-image (an independent implementation)."""

import math

import pytest
import torch

from qlite.training import mse, psnr, ssim

metrics = pytest.importorskip("skimage.metrics")


def test_mse_and_psnr_closed_forms():
    a = torch.zeros(10, 1)
    b = torch.full((10, 1), 0.1)
    assert mse(a, b) == pytest.approx(0.01)
    assert psnr(a, b, data_range=2.0) == pytest.approx(10 * math.log10(4 / 0.01))
    assert psnr(a, b, data_range=1.0) == pytest.approx(20.0)
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError, match="shape"):
        mse(a, torch.zeros(9, 1))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("smooth", [False, True])
def test_ssim_matches_scikit_image(seed, smooth):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(32, 40, generator=g, dtype=torch.float64) * 2 - 1
    if smooth:
        x = torch.cumsum(torch.cumsum(x, 0), 1)
        x = 2 * (x - x.min()) / (x.max() - x.min()) - 1
    y = (x + 0.2 * torch.randn(32, 40, generator=g, dtype=torch.float64)).clamp(-1, 1)
    ref = metrics.structural_similarity(x.numpy(), y.numpy(), data_range=2.0, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False)
    assert ssim(x, y, 2.0) == pytest.approx(ref, abs=1e-9)
    assert ssim(x, x, 2.0) == pytest.approx(1.0)


def test_ssim_colour_is_the_channel_mean_like_scikit_image():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(24, 24, 3, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(24, 24, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    ref = metrics.structural_similarity(x.numpy(), y.numpy(), data_range=1.0, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, channel_axis=2)
    assert ssim(x, y, 1.0) == pytest.approx(ref, abs=1e-9)


def test_ssim_bad_input():
    with pytest.raises(ValueError, match="at least 11 x 11"):
        ssim(torch.zeros(8, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="shape"):
        ssim(torch.zeros(16, 16), torch.zeros(16, 15))
