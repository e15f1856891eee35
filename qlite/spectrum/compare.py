"""A target signal against a fitted model: power spectra and the error split by frequency band."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .power import PowerSpectrum, power_spectrum


@dataclass(frozen=True)
class SpectrumComparison:
    """Result of :func:`compare_spectra` (all powers centred, of the grid's shape).

    Attributes:
        target, model, error: :class:`PowerSpectrum` of the target, of the prediction and of
            ``prediction - target``.
        low: boolean mask of the low band (normalised radius ``<= cutoff``).
        cutoff: the band edge as a fraction of the Nyquist frequency.
        mse: mean squared error over the grid.
        mse_low, mse_high: the parts of ``mse`` in the low and high band; they add up to ``mse``.
        target_low_fraction: share of the target's (mean-removed) power in the low band.
        radial: ``{"radius", "target", "model", "error"}``: power summed in rings of width
            ``1 / bins`` of the normalised radius (1-D tensors), for profile plots.
    """

    target: PowerSpectrum
    model: PowerSpectrum
    error: PowerSpectrum
    low: torch.Tensor
    cutoff: float
    mse: float
    mse_low: float
    mse_high: float
    target_low_fraction: float
    radial: dict

    def to_dict(self) -> dict:
        return dict(cutoff=self.cutoff, mse=self.mse, mse_low=self.mse_low, mse_high=self.mse_high,
                    target_low_fraction=self.target_low_fraction)


def _radial(ps: PowerSpectrum, edges: torch.Tensor) -> torch.Tensor:
    idx = torch.bucketize(ps.radius.reshape(-1), edges[1:-1], right=True)
    return torch.zeros(len(edges) - 1, dtype=torch.float64).index_add_(0, idx, ps.power.reshape(-1))


def compare_spectra(target, prediction, grid_shape=None, *, spacing=1.0, cutoff: float = 0.5,
                    bins: int = 32) -> SpectrumComparison:
    r"""Power spectra of a target and of a model's prediction on the same grid, and the squared error
    split into a low- and a high-frequency part.

    With :math:`e = \hat y - y` on :math:`N` grid points and :math:`E = \mathrm{DFT}(e)`, Parseval
    gives :math:`\mathrm{MSE} = \sum_k |E_k|^2 / N^2`; splitting the sum at a normalised radius
    :math:`r_k = \|(k_i / (n_i/2))_i\| \le` ``cutoff`` gives ``mse_low + mse_high = mse`` exactly.
    This is the analysis of the QIREN paper's Figure 7 (Zhao et al., ICML 2024): a model whose
    spectrum holds more high frequencies leaves less error in the high band.

    Args:
        target, prediction: samples on the same grid (see :func:`power_spectrum` for the accepted
            shapes; a trailing channel axis is summed over).
        grid_shape: the grid when the values are flat ``(N,)`` / ``(N, C)``.
        spacing: sample spacing in the input coordinates (for the frequency axes).
        cutoff: band edge in ``(0, sqrt(D)]`` as a fraction of the Nyquist frequency.
        bins: number of rings of the radial profiles (radius 0 to ``sqrt(D)``).

    Returns:
        SpectrumComparison: the three power spectra, the band mask, the MSE and its split.

    Raises:
        ValueError: shapes that differ, a cutoff outside ``(0, sqrt(D)]``, ``bins < 1``.

    Example:
        >>> import math, torch
        >>> x = torch.arange(64, dtype=torch.float64) / 32 - 1  # periodic grid on [-1, 1), Nyquist 16 / unit
        >>> y = torch.sin(2 * math.pi * x) + 0.1 * torch.sin(2 * math.pi * 12 * x)  # 1 and 12 cycles / unit
        >>> cmp = compare_spectra(y, torch.sin(2 * math.pi * x), spacing=1 / 32, cutoff=0.5)
        >>> round(cmp.mse_high / cmp.mse, 12), abs(cmp.mse_low + cmp.mse_high - cmp.mse) < 1e-15
        (1.0, True)
    """
    t = torch.as_tensor(target).detach().to(torch.float64).cpu()
    p = torch.as_tensor(prediction).detach().to(torch.float64).cpu()
    if t.shape != p.shape:
        raise ValueError(f"target {tuple(t.shape)} and prediction {tuple(p.shape)} must have the same shape")
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    ts, ps, es = (power_spectrum(v, grid_shape, spacing=spacing) for v in (t, p, p - t))
    dmax = float(len(ts.axes)) ** 0.5
    if not 0 < cutoff <= dmax:
        raise ValueError(f"cutoff is a fraction of the Nyquist frequency in (0, {dmax:.3g}], got {cutoff!r}")
    low = ts.radius <= cutoff
    mse_low, mse_high = float(es.power[low].sum()), float(es.power[~low].sum())
    centred = ts.power.clone()
    centred[ts.radius == 0] = 0.0  # the mean is neither low nor high detail
    total = float(centred.sum())
    edges = torch.linspace(0, dmax, bins + 1, dtype=torch.float64)
    radial = {"radius": (edges[1:] + edges[:-1]) / 2, "target": _radial(ts, edges), "model": _radial(ps, edges),
              "error": _radial(es, edges)}
    return SpectrumComparison(ts, ps, es, low, float(cutoff), float((p - t).pow(2).mean()), mse_low, mse_high,
                              float(centred[low].sum()) / total if total > 0 else 0.0, radial)
