"""Power spectrum of a signal (or of a model's output) sampled on a regular grid."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .coefficients import fftn_any


@dataclass(frozen=True)
class PowerSpectrum:
    """Result of :func:`power_spectrum`.

    Attributes:
        power: ``grid_shape`` float64, :math:`|\\hat v_k|^2 / N^2` with frequency 0 at the centre
            (``fftshift``); it sums to the mean square of the signal (Parseval).
        axes: per grid dimension, the ``(n_i,)`` angular frequencies (radians per unit of the input
            coordinate, i.e. ``w`` in ``exp(i w x)``), centred like ``power``.
        radius: ``grid_shape`` float64, :math:`\\sqrt{\\sum_i (k_i / (n_i/2))^2}`: distance from 0 as a
            fraction of the Nyquist frequency (1 on the Nyquist edge of each axis).
    """

    power: torch.Tensor
    axes: tuple
    radius: torch.Tensor


def _as_grid(values, grid_shape) -> torch.Tensor:
    v = torch.as_tensor(values).detach().to(torch.float64).cpu()
    if grid_shape is None:
        return v
    grid_shape = tuple(int(n) for n in grid_shape)
    n = math.prod(grid_shape)
    if v.numel() == n:
        return v.reshape(grid_shape)
    if v.dim() == 2 and v.shape[0] == n:  # (N, channels): channels last
        return v.reshape(*grid_shape, v.shape[1])
    raise ValueError(f"values of shape {tuple(v.shape)} do not fill the grid {grid_shape} ({n} points)")


def power_spectrum(values, grid_shape=None, *, spacing=1.0, channels_last: bool | None = None) -> PowerSpectrum:
    r"""The power spectrum :math:`P_k = |\mathrm{DFT}(v)_k|^2 / N^2` of grid samples, centred.

    With samples :math:`v_m = v(x_0 + m \Delta)` on an :math:`n_1 \times \dots \times n_D` grid,
    index :math:`k_i` corresponds to the angular frequency :math:`w_i = 2\pi k_i / (n_i \Delta_i)` in
    the input coordinates, which is the unit :func:`model_spectrum` reports frequencies in, so the two
    can be drawn on one figure. By Parseval, :math:`\sum_k P_k = \frac1N \sum_m v_m^2`. For several
    channels (an RGB image, a model with several outputs), the powers of the channels are averaged, so
    that the total stays the mean square over all values.

    Args:
        values: samples, either already shaped like the grid (``(n_1, ..., n_D)``, or with a trailing
            channel axis) or flat ``(N,)`` / ``(N, C)`` together with ``grid_shape``.
        grid_shape: ``(n_1, ..., n_D)`` when ``values`` is flat.
        spacing: the sample spacing :math:`\Delta` (one float or one per dimension), e.g. ``2 / (n - 1)``
            for ``n`` points spanning ``[-1, 1]``.
        channels_last: whether the last axis of grid-shaped ``values`` is a channel axis; default: yes
            when ``grid_shape`` is given and values are ``(N, C)``, otherwise no.

    Returns:
        PowerSpectrum: ``power`` of the grid's shape, the angular-frequency ``axes`` and the normalised
        ``radius``.

    Raises:
        ValueError: values that do not fill the grid, or a non-positive spacing.

    Example:
        >>> import math, torch
        >>> x = torch.arange(16, dtype=torch.float64) * (2 * math.pi / 16)
        >>> ps = power_spectrum(torch.cos(3 * x), spacing=2 * math.pi / 16)
        >>> ps.axes[0][ps.power.argmax()].abs().item(), round(ps.power.sum().item(), 12)
        (3.0, 0.5)
    """
    v = _as_grid(values, grid_shape)
    if channels_last is None:
        channels_last = grid_shape is not None and v.dim() == len(tuple(grid_shape)) + 1
    dims = tuple(range(v.dim() - 1)) if channels_last else tuple(range(v.dim()))
    if not dims:
        raise ValueError(f"need at least one grid dimension, got values of shape {tuple(v.shape)}")
    spacing = (float(spacing),) * len(dims) if isinstance(spacing, (int, float)) else tuple(float(s) for s in spacing)
    if len(spacing) != len(dims) or any(s <= 0 for s in spacing):
        raise ValueError(f"spacing must be positive, one value or one per grid dimension ({len(dims)}), got {spacing}")
    shape = tuple(v.shape[d] for d in dims)
    n = math.prod(shape)
    spec = torch.fft.fftshift(fftn_any(v.to(torch.complex128), dims), dim=dims)
    power = (spec.real ** 2 + spec.imag ** 2) / n**2
    if channels_last:
        power = power.mean(-1)
    axes = tuple(torch.fft.fftshift(torch.fft.fftfreq(m, d=s, dtype=torch.float64)) * 2 * math.pi
                 for m, s in zip(shape, spacing))
    ks = torch.meshgrid(*[torch.fft.fftshift(torch.fft.fftfreq(m, d=1.0 / m, dtype=torch.float64)) / (m / 2)
                          for m in shape], indexing="ij")
    radius = torch.sqrt(sum(k**2 for k in ks))
    return PowerSpectrum(power, axes, radius)
