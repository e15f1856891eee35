"""Exact Fourier coefficients of a one-hybrid-layer model in its input coordinates."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._encoding import check_int, folded_affine, integer_spectra
from .coefficients import _grid, fftn_any
from .model_spectrum import _unique_rows


def _split(model: nn.Module):
    """(HybridLayer, readout Linear or None) for a HybridLayer or a one-hybrid-layer model."""
    from qlite.layers import QIREN, HybridLayer

    if isinstance(model, HybridLayer):
        return model, None
    if isinstance(model, QIREN) or isinstance(model, nn.Sequential):
        net = model.net if isinstance(model, QIREN) else model
        hybrids = [m for m in net if isinstance(m, HybridLayer)]
        if len(hybrids) > 1:
            raise ValueError(
                f"the model has {len(hybrids)} hybrid layers: its output is not a finite Fourier series (deeper layers "
                f"encode Fourier series, see model_spectrum); fit coefficients on an order-M set with "
                f"least_squares_coefficients(model, model_spectrum(model, order=M).frequencies, points)")
        mods = list(net)
        if len(hybrids) == 1 and mods[0] is hybrids[0] and (
                len(mods) == 1 or (len(mods) == 2 and isinstance(mods[1], nn.Linear))):
            return hybrids[0], (mods[1] if len(mods) == 2 else None)
    raise TypeError(f"hybrid_coefficients takes a HybridLayer, or a QIREN / nn.Sequential of one HybridLayer and an "
                    f"optional final nn.Linear; got {type(model).__name__}")


def hybrid_coefficients(model: nn.Module, *, chunk_size: int = 32768, dtype: torch.dtype = torch.float64,
                        decimals: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The exact Fourier series of a hybrid layer (and an optional final ``Linear``) in the model's
    input coordinates: frequency vectors and their complex coefficients.

    With the circuit's series :math:`g(h) = \sum_\omega \gamma_\omega e^{i \omega \cdot h}` over an
    integer spectrum :math:`\Omega` (unit encoding scales, :func:`circuit_spectrum`), the circuit is
    :math:`2\pi`-periodic in each input, so :func:`coefficients` on the circuit's own grid (degree
    :math:`\max|\Omega_j|` per input) returns every :math:`\gamma_\omega` exactly. Substituting
    :math:`h = A x + b` (Linear and eval-mode BatchNorm, :func:`model_spectrum`) gives

    .. math::

        f(x) = \sum_{\omega \in \Omega} \gamma_\omega e^{i \omega \cdot b}\, e^{i (A^\top \omega) \cdot x},

    with the coefficients of coinciding vectors :math:`A^\top\omega` added; a final ``Linear``
    :math:`W y + c` maps them to :math:`W \gamma` (and adds :math:`c` at frequency 0). This is "which
    frequencies a trained model carries", exactly, without sampling the model on any window. The
    circuit is evaluated on :math:`\prod_j (2 L_j + 1)` points, in chunks of ``chunk_size`` (390,625
    points for the paper's 8 qubits and 2 re-uploads).

    Args:
        model: a :class:`~qlite.HybridLayer`, or a :class:`~qlite.QIREN` / ``nn.Sequential`` made of one
            hybrid layer and an optional final ``nn.Linear`` (``hidden_layers=0``).
        chunk_size: points per batched simulator call.
        dtype: float dtype of the evaluation (float64 for exact coefficients).
        decimals: rounding used to merge coinciding frequency vectors.

    Returns:
        tuple: ``frequencies`` ``(K, in_features)`` float64 and ``coefficients`` ``(K, n_out)``
        complex128, with :math:`f(x) = \mathrm{Re}\sum_k c_k e^{i w_k \cdot x}` **over the full
        symmetric set** (both :math:`w` and :math:`-w` are listed; :math:`c_{-w} = \overline{c_w}`).

    Raises:
        TypeError: not a hybrid layer or a one-hybrid-layer model.
        ValueError: several hybrid layers (not a finite series), non-integer encoding scales (use
            :func:`least_squares_coefficients`), bad ``chunk_size``.

    Example:
        >>> import torch
        >>> from qlite import QIREN
        >>> model = QIREN(1, 1, hidden_features=2, hidden_layers=0, spectrum_layers=1).double().eval()
        >>> w, c = hybrid_coefficients(model)
        >>> x = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]
        >>> series = (torch.polar(torch.ones(7, len(w), dtype=torch.float64), x @ w.T) @ c).real
        >>> bool(torch.allclose(series, model(x).detach(), atol=1e-12)), tuple(w.shape)
        (True, (9, 1))
    """
    check_int("chunk_size", chunk_size, 1)
    check_int("decimals", decimals, 0)
    hybrid, readout = _split(model)
    quantum = hybrid.quantum
    circuit = quantum.circuit
    spectra = integer_spectra(circuit, decimals)
    for j, spec in spectra.items():
        if any(v != round(v) for v in spec):
            raise ValueError(f"circuit input {j} has non-integer frequencies {spec}: the circuit is not 2 pi-periodic "
                             f"in it; use least_squares_coefficients on model_spectrum(model).frequencies")
    degree = tuple(int(max(abs(v) for v in spectra[j])) for j in range(circuit.n_inputs))
    weights = quantum.weights.detach().to(dtype).reshape(-1)
    grid = _grid(degree, dtype, weights.device)  # (P, n) in FFT order, on the model's device
    with torch.no_grad():
        vals = torch.cat([quantum.backend(circuit, weights, grid[i:i + chunk_size]).cpu()
                          for i in range(0, len(grid), chunk_size)]).to(torch.float64)  # (P, n_obs)
    grid = grid.cpu()
    shape = tuple(2 * d + 1 for d in degree)
    gamma = fftn_any(vals.reshape(*shape, -1).to(torch.complex128), tuple(range(len(shape))))
    gamma = gamma.reshape(math.prod(shape), -1) / math.prod(shape)  # (P, n_obs), row p <-> grid point p
    omega = torch.round(grid.to(torch.float64) * torch.tensor(shape, dtype=torch.float64) / (2 * math.pi))  # (P, n)
    a, b = folded_affine(hybrid.linear, hybrid.norm)
    coeff = gamma * torch.polar(torch.ones(len(omega), dtype=torch.float64), omega @ b)[:, None]
    if readout is not None:
        w_out = readout.weight.detach().to(torch.float64).cpu()
        coeff = coeff @ w_out.T.to(torch.complex128)
        if readout.bias is not None:
            coeff[(omega == 0).all(1)] += readout.bias.detach().to(torch.float64).cpu()
    freqs = omega @ a  # (P, d)
    # merge coinciding vectors: sum their coefficients
    key = torch.round(freqs, decimals=decimals) + 0.0
    uniq, inverse = torch.unique(key, dim=0, return_inverse=True)
    summed = torch.zeros(len(uniq), coeff.shape[1], dtype=torch.complex128).index_add_(0, inverse, coeff)
    reps, _ = _unique_rows(freqs, omega, decimals)
    return reps, summed
