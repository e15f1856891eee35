"""Fourier coefficients of a function on the standard grid, in one batched evaluation."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ._encoding import check_int


def _per_input(name: str, value, n_inputs: int, lo: int) -> tuple[int, ...]:
    vals = (value,) * n_inputs if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(vals) != n_inputs:
        raise ValueError(f"{name} has {len(vals)} entries for n_inputs={n_inputs}; give one int or one per input")
    for v in vals:
        check_int(name, v, lo)
    return vals


def _module_dtype_device(f, dtype, device):
    if isinstance(f, nn.Module):
        p = next(f.parameters(), None)
        if p is not None:
            return dtype or p.dtype, device or p.device
    return dtype or torch.float64, device or torch.device("cpu")


def _grid(degree: tuple[int, ...], dtype, device) -> torch.Tensor:
    """``(prod(2d+1), n_inputs)`` points ``x_i = 2 pi n_i / (2 d_i + 1)``, ``n_i`` in ``-d_i..d_i``,
    laid out so that row-major index ``n_i mod (2 d_i + 1)`` holds ``n_i`` (numpy's FFT order).

    PennyLane samples these very points (not ``0..2 pi``), which matters for functions that are not
    2 pi-periodic, such as a hybrid model with real frequencies."""
    axes = []
    for d in degree:
        k = 2 * d + 1
        n = torch.fft.fftfreq(k, 1.0 / k, dtype=torch.float64)  # 0, 1, .., d, -d, .., -1
        axes.append(n * (2 * math.pi / k))
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], -1).to(dtype=dtype, device=device)


def fftn_any(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """``torch.fft.fftn`` over any number of dimensions: MKL's DFTI (torch's CPU FFT) rejects more
    than 7 at once ("Invalid configuration parameters"; 8 qubits -> 8 dims), so transform at most 3
    dimensions per call; the multi-dimensional DFT is separable, so the result is the same."""
    for i in range(0, len(dims), 3):
        x = torch.fft.fftn(x, dim=dims[i:i + 3])
    return x


def _evaluate(f, x: torch.Tensor, batched: bool) -> torch.Tensor:
    was_training = isinstance(f, nn.Module) and f.training
    try:
        if was_training:
            f.eval()  # BatchNorm must use running statistics, not the grid's own; restored below
        with torch.no_grad():
            if batched:
                out = f(x)
            else:
                out = [f(row) for row in x]
                # python floats would become float32 under torch's default dtype
                out = torch.stack([o if isinstance(o, torch.Tensor) else torch.as_tensor(o, dtype=torch.float64)
                                   for o in out])
    finally:
        if was_training:
            f.train()
    out = out if isinstance(out, torch.Tensor) else torch.as_tensor(out, dtype=torch.float64)
    if out.dim() == 0 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"f returned shape {tuple(out.shape)} for {x.shape[0]} points of shape {tuple(x.shape)}; it must return "
            f"(N,) or (N, n_out) (use batched=False for a function of one point)"
        )
    if out.dim() > 2:
        raise ValueError(f"f must return (N,) or (N, n_out), got {tuple(out.shape)}")
    if out.is_complex():
        raise ValueError("f must be real-valued (an expectation value or a model output), got a complex tensor")
    return out.to(torch.float64)


def coefficients(f: Callable, n_inputs: int, degree, *, lowpass_filter: bool = False,
                 filter_threshold=None, batched: bool = True, dtype: torch.dtype | None = None,
                 device=None) -> torch.Tensor:
    r"""The Fourier coefficients :math:`c_n`, :math:`n \in \{-d,\dots,d\}^N`, of a function of
    :math:`N` inputs, sampled on the standard grid and transformed by an FFT.

    For a :math:`2\pi`-periodic :math:`f(x) = \sum_n c_n e^{i n \cdot x}` with integer frequencies
    :math:`|n_i| \le d_i`, sampling at :math:`x_i = 2\pi m_i / (2d_i + 1)`, :math:`m_i \in
    \{-d_i, \dots, d_i\}`, and dividing the :math:`N`-dimensional DFT by the number of points gives the
    :math:`c_n` exactly; higher frequencies alias onto them. This follows ``qml.fourier.coefficients``
    point for point (Schuld, Sweke & Meyer, PRA 103, 032430 (2021)): same grid, same numpy FFT order
    (index ``k`` holds frequency ``k`` for ``k <= d`` and ``k - (2d+1)`` above), same optional low-pass
    filter (compute to ``filter_threshold`` (default ``2d``), keep ``|n| <= d``, round-trip through the
    inverse FFT). Unlike PennyLane, ``f`` is called **once** on all grid points (``batched=True``): a
    qlite layer or model evaluates the whole grid in one call of the native simulator.

    Args:
        f: callable taking a ``(P, n_inputs)`` tensor and returning ``(P,)`` or ``(P, n_out)`` real
            values (any qlite layer or model); with ``batched=False``, a function of one ``(n_inputs,)``
            point returning a scalar or ``(n_out,)``. A module is evaluated under ``torch.no_grad()``
            and in eval mode (its mode is restored afterwards), so BatchNorm uses running statistics.
        n_inputs: :math:`N \ge 1`.
        degree: :math:`d \ge 0`, an int or one per input.
        lowpass_filter: filter out frequencies above ``degree`` first (see above).
        filter_threshold: int or one per input, ``>= degree``; default ``2 * degree``.
        batched: call ``f`` once on all points (default) or once per point.
        dtype, device: of the grid; default: those of a module's first parameter, else float64 / CPU.

    Returns:
        torch.Tensor: complex128 coefficients of shape ``(2d_1+1, ..., 2d_N+1)`` for scalar ``f``, or
        ``(2d_1+1, ..., 2d_N+1, n_out)`` for vector-valued ``f``, in numpy FFT order
        (``torch.fft.fftshift(c, dims)`` centres frequency 0).

    Raises:
        TypeError: ``f`` is not callable.
        ValueError: negative degree, degree / threshold of the wrong length, threshold below degree,
            ``f`` returning the wrong shape or complex values.

    Example:
        >>> import torch
        >>> f = lambda x: 0.5 + torch.cos(x[:, 0]) + 0.25 * torch.sin(2 * x[:, 0] - x[:, 1])
        >>> c = coefficients(f, 2, 2)
        >>> [round(c[n].real.item(), 6) for n in [(0, 0), (1, 0), (-1, 0)]]  # 0.5 + (e^ix + e^-ix) / 2
        [0.5, 0.5, 0.5]
        >>> round(c[2, -1].imag.item(), 6)  # sin(2 x0 - x1) = (e^{i(2, -1).x} - e^{-i(2, -1).x}) / 2i
        -0.125
    """
    if not callable(f):
        raise TypeError(f"f must be callable (a function, layer or model of (P, n_inputs) points), "
                        f"got {type(f).__name__}")
    check_int("n_inputs", n_inputs, 1)
    degree = _per_input("degree", degree, n_inputs, 0)
    if lowpass_filter:
        thr = tuple(2 * d for d in degree) if filter_threshold is None else _per_input(
            "filter_threshold", filter_threshold, n_inputs, 0)
        for t, d in zip(thr, degree):
            if t < d:
                raise ValueError(f"filter_threshold {thr} must be >= degree {degree} per input")
        sample_degree = thr
    else:
        sample_degree = degree
    dtype, device = _module_dtype_device(f, dtype, device)
    x = _grid(sample_degree, dtype, device)
    vals = _evaluate(f, x, batched).cpu()
    shape = tuple(2 * d + 1 for d in sample_degree)
    vals = vals.reshape(*shape, *vals.shape[1:])
    dims = tuple(range(n_inputs))
    coeffs = fftn_any(vals.to(torch.complex128), dims) / math.prod(shape)
    if not lowpass_filter:
        return coeffs
    # Keep the central |n| <= d block (PennyLane: fftshift, slice, ifftshift, then ifft -> fft).
    shifted = torch.fft.fftshift(coeffs, dim=dims)
    for axis, (t, d) in enumerate(zip(sample_degree, degree)):
        shifted = shifted.narrow(axis, t - d, 2 * d + 1)
    return torch.fft.ifftshift(shifted, dim=dims)
