"""Least-squares Fourier coefficients on a known, non-integer frequency set."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ._encoding import check_int

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FourierFit:
    """Result of :func:`least_squares_coefficients`.

    Attributes:
        frequencies: ``(K, d)`` float64, one representative of each ``{w, -w}`` pair (0 first if given).
        coefficients: ``(K,)`` or ``(K, n_out)`` complex128 :math:`c_w`; the function is
            :math:`c_0 + \\sum_{w \\ne 0} 2\\,\\mathrm{Re}(c_w e^{i w \\cdot x})`, i.e. :math:`c_{-w} =
            \\overline{c_w}`.
        residual_rms: root-mean-square misfit at the points, per output (float64 tensor).
        explained: :math:`1 - \\|r\\|^2 / \\|y - \\bar y\\|^2`, per output (R^2, 1 for an exact set).
        rank: rank of the design matrix (``< 2K - 1`` when frequencies nearly coincide at these points).
    """

    frequencies: torch.Tensor
    coefficients: torch.Tensor
    residual_rms: torch.Tensor
    explained: torch.Tensor
    rank: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The fitted series at ``(P, d)`` points: ``(P,)`` or ``(P, n_out)`` float64."""
        phase = x.to(torch.float64) @ self.frequencies.T  # (P, K)
        basis = torch.polar(torch.ones_like(phase), phase)  # (P, K)
        zero = (self.frequencies.abs().sum(1) == 0).to(torch.float64)
        weight = (2.0 - zero).to(torch.complex128)  # 1 for w = 0, 2 for each +-w pair
        c = self.coefficients if self.coefficients.dim() == 2 else self.coefficients[:, None]
        out = (basis @ (weight[:, None] * c)).real
        return out if self.coefficients.dim() == 2 else out[:, 0]


def _half_set(freqs: torch.Tensor, decimals: int) -> torch.Tensor:
    """One of each ``{w, -w}`` (the one whose first non-zero entry is positive), and 0 if present."""
    key = torch.round(freqs, decimals=decimals) + 0.0
    idx = (key != 0).to(torch.int64).argmax(1)  # first non-zero coordinate (0 for the zero vector)
    sign = torch.sign(key.gather(1, idx[:, None])[:, 0])
    flip = torch.where(sign < 0, -1.0, 1.0).to(freqs.dtype)[:, None]
    uniq, inverse = torch.unique(key * flip + 0.0, dim=0, return_inverse=True)
    # Keep the unrounded value of the first member of each class: rounding is only the merge key.
    first = torch.full((len(uniq),), len(key), dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(len(key)), "amin")
    rep = (freqs * flip)[first]
    is_zero = uniq.abs().sum(1) == 0
    return torch.cat([rep[is_zero] * 0.0, rep[~is_zero]])


def least_squares_coefficients(f, frequencies: torch.Tensor, points: torch.Tensor, *, rcond: float | None = None,
                               decimals: int = 8) -> FourierFit:
    r"""Fourier coefficients of a real function on a **given** set of real frequency vectors.

    A trained hybrid model is :math:`f(x) = \sum_{w \in \mathcal{F}} c_w e^{i w \cdot x}` with real,
    non-integer :math:`w` (:func:`model_spectrum`), so the FFT grid of :func:`coefficients` does not
    apply. Writing :math:`c_w = (\alpha_w - i \beta_w)/2` for one :math:`w` of each pair
    :math:`\{w, -w\}`, the real model is linear in the unknowns,

    .. math::

        f(x) = \alpha_0 + \sum_{w} \alpha_w \cos(w \cdot x) + \beta_w \sin(w \cdot x),

    and they are the least-squares solution at the given points (``torch.linalg.lstsq``, float64,
    ``gelsd``: minimum-norm when frequencies nearly coincide). ``explained`` close to 1 says the set
    carries the model; the residual measures what lies outside it (e.g. the tail beyond an order-M
    truncation of a deep QIREN).

    Args:
        f: a callable (layer, model, function) of ``(P, d)`` points returning ``(P,)`` or
            ``(P, n_out)``; evaluated once, under ``torch.no_grad()`` and in eval mode for modules
            (mode restored). Or a tensor of values ``(P,)`` / ``(P, n_out)`` already computed at ``points``.
        frequencies: ``(K, d)`` angular frequency vectors (signs and duplicates are merged; a 1-D tensor
            is read as ``(K, 1)``). Include 0 for a constant term.
        points: ``(P, d)`` sample points, with ``P`` at least the number of real unknowns
            (``2K - 1`` with 0 in the set).
        rcond: cut-off for small singular values (``torch.linalg.lstsq``'s).
        decimals: rounding used to merge ``w`` and ``-w`` and duplicates.

    Returns:
        FourierFit: frequencies, complex coefficients, residual, explained fraction and rank.

    Raises:
        TypeError: ``f`` is neither callable nor a tensor.
        ValueError: shapes that disagree, or fewer points than unknowns.

    Example:
        >>> import math, torch
        >>> x = torch.linspace(-1, 1, 200, dtype=torch.float64)[:, None]
        >>> f = lambda x: 1.0 + 3.0 * torch.cos(math.sqrt(2) * x[:, 0] + 0.5)
        >>> fit = least_squares_coefficients(f, torch.tensor([0.0, math.sqrt(2)], dtype=torch.float64), x)
        >>> [round(c, 9) for c in fit.coefficients.abs().tolist()], round(fit.explained.item(), 9)
        ([1.0, 1.5], 1.0)
    """
    points = torch.as_tensor(points, dtype=torch.float64)
    if points.dim() == 1:
        points = points[:, None]
    frequencies = torch.as_tensor(frequencies, dtype=torch.float64).cpu()
    if frequencies.dim() == 1:
        frequencies = frequencies[:, None]
    if frequencies.dim() != 2 or frequencies.shape[1] != points.shape[1]:
        raise ValueError(f"frequencies {tuple(frequencies.shape)} and points {tuple(points.shape)} must be (K, d) and "
                         f"(P, d) with the same d")
    check_int("decimals", decimals, 0)
    if isinstance(f, torch.Tensor):
        y = f.detach().to(torch.float64).cpu()
    elif callable(f):
        from .coefficients import _evaluate, _module_dtype_device

        dtype, device = _module_dtype_device(f, None, None)
        y = _evaluate(f, points.to(dtype=dtype, device=device), batched=True).cpu()
    else:
        raise TypeError(f"f must be callable or a tensor of values, got {type(f).__name__}")
    if y.shape[0] != points.shape[0]:
        raise ValueError(f"{y.shape[0]} values for {points.shape[0]} points")
    squeeze = y.dim() == 1
    y = y[:, None] if squeeze else y  # (P, n_out)
    half = _half_set(frequencies, decimals)  # (K, d), zero first if present
    has_zero = bool(len(half)) and bool(half[0].abs().sum() == 0)
    nz = half[1:] if has_zero else half
    n_unknowns = int(has_zero) + 2 * len(nz)
    if points.shape[0] < n_unknowns:
        raise ValueError(f"{points.shape[0]} points for {n_unknowns} real unknowns ({len(half)} frequencies); "
                         f"give at least {n_unknowns} points")
    phase = points.cpu() @ nz.T  # (P, K')
    cols = ([torch.ones(len(points), 1, dtype=torch.float64)] if has_zero else []) + [phase.cos(), phase.sin()]
    design = torch.cat(cols, 1)  # (P, n_unknowns)
    sol = torch.linalg.lstsq(design, y, rcond=rcond, driver="gelsd")
    theta = sol.solution  # (n_unknowns, n_out)
    resid = y - design @ theta
    k = len(nz)
    alpha0 = theta[:1] if has_zero else theta[:0]
    alpha, beta = theta[int(has_zero):int(has_zero) + k], theta[int(has_zero) + k:]
    coeffs = torch.cat([torch.complex(alpha0, torch.zeros_like(alpha0)), torch.complex(alpha, -beta) / 2])
    rms = resid.pow(2).mean(0).sqrt()
    total = (y - y.mean(0)).pow(2).sum(0)
    explained = 1 - resid.pow(2).sum(0) / torch.where(total > 0, total, torch.ones_like(total))
    if squeeze:
        coeffs, rms, explained = coeffs[:, 0], rms[0], explained[0]
    log.info("least squares on %d frequencies at %d points: rank %d", len(half), len(points), int(sol.rank))
    return FourierFit(half, coeffs, rms, explained, int(sol.rank))
