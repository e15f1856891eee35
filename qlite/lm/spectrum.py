"""The Fourier spectrum of an adapter's circuit, in the circuit's angles and in its layer's inputs.

A per-token circuit computes ``f(a) = sum_w c_w exp(i w . a)`` of its angles ``a = norm(D x)``
(``D``: the down projection); with Pauli-rotation encodings ``w`` ranges over the integer vectors that
:func:`qlite.spectrum.circuit_spectrum` lists (``|w_j| <= spectrum_layers``). :func:`adapter_spectrum`
returns that set, the coefficients the *trained* adapter carries (the FFT of ``up(Q(a))`` on the
standard grid, :func:`qlite.spectrum.coefficients`), their power by frequency order, and the directions
that map the angles back to the layer's inputs: exactly ``D`` without a norm, and for a LayerNorm
``diag(gamma) (I - 11^T / n) D / sigma`` with the per-token scale ``sigma`` (its median over the
tokens given): the frequencies in ``x`` then scale with ``1 / sigma`` token by token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..spectrum import circuit_spectrum, coefficients
from .adapter import QuantumAdapter
from .ffn import QuantumFFN


@dataclass(frozen=True)
class AdapterSpectrum:
    """What :func:`adapter_spectrum` returns (one entry per circuit; a QuantumFFN has one per head).

    Attributes:
        frequencies: per circuit input, the frequencies its encodings reach (``circuit_spectrum``).
        coefficients: per circuit, complex128 ``(2L+1, ..., 2L+1, d_out)`` coefficients of the
            adapter's output as a function of the circuit's angles (numpy FFT order).
        power_by_order: per circuit, ``(n * L + 1,)`` float64: the power ``sum |c_w|^2`` (over outputs)
            of the frequencies with ``|w|_1 = k``, for ``k = 0..n L``.
        directions: per circuit, ``(n_qubits, d_in)`` float64 map from layer inputs to angles.
        exact_directions: ``True`` without a norm (the map is linear), ``False`` for a LayerNorm.
    """

    frequencies: dict
    coefficients: list
    power_by_order: list
    directions: list
    exact_directions: bool


def _order_power(c: torch.Tensor, n: int, L: int) -> torch.Tensor:
    k = 2 * L + 1
    freq = torch.fft.fftfreq(k, 1.0 / k).round().long().abs()  # |w| along each axis, FFT order
    order = torch.zeros((k,) * n, dtype=torch.long)
    for axis in range(n):
        shape = [1] * n
        shape[axis] = k
        order = order + freq.reshape(shape)
    power = (c.abs() ** 2).sum(-1)  # over outputs
    return torch.zeros(n * L + 1, dtype=torch.float64).index_add_(0, order.reshape(-1), power.reshape(-1))


def _directions(down_w: torch.Tensor, norm: nn.Module, tokens: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
    D = down_w.detach().double()  # (n, d_in)
    if not isinstance(norm, nn.LayerNorm):
        return D, True
    n = D.shape[0]
    centred = D - D.mean(0, keepdim=True)  # (I - 11^T / n) D
    sigma = 1.0
    if tokens is not None:
        a = tokens.detach().double().reshape(-1, D.shape[1]) @ D.t()
        sigma = float(a.var(-1, unbiased=False).add(norm.eps).sqrt().median())
    gamma = norm.weight.detach().double() if norm.weight is not None else torch.ones(n, dtype=torch.float64)
    return gamma[:, None] * centred / sigma, False


def adapter_spectrum(module: nn.Module, *, tokens: torch.Tensor | None = None, chunk: int = 16384) -> AdapterSpectrum:
    """Spectrum of a trained :class:`~qlite.lm.QuantumAdapter` or :class:`~qlite.lm.QuantumFFN` (module docstring).

    Args:
        module: the adapter (e.g. ``model.model.layers[3].self_attn.q_proj``).
        tokens: ``(..., d_in)`` inputs of the layer, for the LayerNorm's typical scale.
        chunk: grid points per simulator call ((2L+1)**n points in all).

    Raises:
        TypeError: not a per-token adapter (generated-weight adapters are linear maps: no spectrum).
    """
    if isinstance(module, QuantumAdapter):
        heads = [(module.down.weight, module.norm, module.circuit, lambda q: module.up(q) * module.scale)]
    elif isinstance(module, QuantumFFN):
        n = module.config.n_qubits
        W = module.up.weight
        heads = [(module.down.weight[i * n:(i + 1) * n], norm, q, (lambda q, i=i: q @ W[:, i * n:(i + 1) * n].t()))
                 for i, (norm, q) in enumerate(zip(module.norms, module.circuits))]
    else:
        raise TypeError(f"adapter_spectrum takes a QuantumAdapter or QuantumFFN, got {type(module).__name__}; "
                        "QuantumLoRA and UnitaryAdapter are linear maps of their input")
    L, n = module.config.spectrum_layers, module.config.n_qubits
    coeffs, powers, dirs, exact = [], [], [], True
    for down_w, norm, circuit, readout in heads:
        def f(a, circuit=circuit, readout=readout):
            return torch.cat([readout(circuit(part)) for part in a.split(chunk)])

        c = coefficients(f, n, L, dtype=down_w.dtype, device=down_w.device)
        coeffs.append(c)
        powers.append(_order_power(c, n, L))
        d, exact_d = _directions(down_w, norm, tokens)
        dirs.append(d)
        exact = exact and exact_d
    return AdapterSpectrum(circuit_spectrum(heads[0][2]), coeffs, powers, dirs, exact)
