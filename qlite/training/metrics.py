"""Reconstruction metrics: MSE, PSNR and SSIM as pure tensor functions.

SSIM follows Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error visibility to
structural similarity", IEEE TIP 13(4), 2004, Eq. (13), with their 11 x 11 Gaussian window
(sigma 1.5), ``K1 = 0.01``, ``K2 = 0.03`` and population (co)variances, averaged over the
positions where the window fits entirely inside the image. This matches
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=...)`` (checked in ``tests/fit/test_metrics.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11  # 2 * int(3.5 * sigma + 0.5) + 1 for sigma = 1.5, scikit-image's truncation


def mse(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Mean squared error over all entries."""
    _same_shape(prediction, target)
    return float(((prediction.double() - target.double()) ** 2).mean())


def psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB (``inf`` for a perfect fit).

    ``data_range`` is the nominal span of the values: 2 for signals normalised to ``[-1, 1]``.
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range!r}")
    e = mse(prediction, target)
    return math.inf if e == 0 else 10 * math.log10(data_range**2 / e)


def _gaussian_window(sigma: float = 1.5, size: int = SSIM_WINDOW) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 2.0) -> float:
    """Structural similarity of two images ``(H, W)`` or ``(H, W, C)`` (mean over channels).

    Raises:
        ValueError: shapes differ, or the image is smaller than the 11 x 11 window.
    """
    _same_shape(prediction, target)
    if prediction.dim() == 2:
        prediction, target = prediction[..., None], target[..., None]
    if prediction.dim() != 3:
        raise ValueError(f"ssim expects (H, W) or (H, W, C) images, got shape {tuple(prediction.shape)}")
    h, w, _ = prediction.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels, got {h} x {w}")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range!r}")
    x = prediction.detach().double().permute(2, 0, 1)[:, None]  # (C, 1, H, W)
    y = target.detach().double().to(x.device).permute(2, 0, 1)[:, None]
    g = _gaussian_window().to(x.device)

    def blur(t):  # separable Gaussian, 'valid' positions only
        t = F.conv2d(t, g.view(1, 1, -1, 1))
        return F.conv2d(t, g.view(1, 1, 1, -1))

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def _same_shape(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"prediction has shape {tuple(a.shape)} but target has {tuple(b.shape)}")


def signal_metrics(prediction: torch.Tensor, signal) -> dict[str, float | None]:
    """``mse``, ``psnr`` and ``ssim`` (images of at least 11 x 11 pixels; else ``None``) of a
    prediction ``(N, c)`` against a :class:`~qlite.data.Signal`."""
    target = signal.values.to(prediction.device)
    out = {"mse": mse(prediction, target), "psnr": psnr(prediction, target, signal.data_range), "ssim": None}
    if signal.is_image and min(signal.grid_shape) >= SSIM_WINDOW:
        out["ssim"] = ssim(signal.as_grid(prediction), signal.as_grid(target), signal.data_range)
    return out
