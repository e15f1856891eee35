"""Small classical INR stand-ins for the spectrum comparisons (SIREN and random Fourier features).

``qlite.models`` holds the full baselines; these two modules exist so that ``qlite.spectrum`` and its
tests can compare against SIREN / Fourier-feature first layers without depending on it. They expose
the attributes :func:`~qlite.spectrum.classical_spectrum` reads: ``omega_0`` (SIREN) and ``B``
(Fourier features, ``(n_features, in_features)``, features ``cos(2 pi x B^T), sin(2 pi x B^T)``).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SirenStandIn(nn.Module):
    """SIREN (Sitzmann et al., NeurIPS 2020): ``sin(omega_0 (W x + b))`` layers, then a Linear.

    Initialisation of the paper (Sec. 3.2): first layer ``U(-1/in, 1/in)``, later sine layers
    ``U(-sqrt(6/in)/omega_0, sqrt(6/in)/omega_0)``.

    Example:
        >>> SirenStandIn(2, 16, 1)(torch.zeros(5, 2)).shape
        torch.Size([5, 1])
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int, hidden_layers: int = 1,
                 omega_0: float = 30.0, *, generator: torch.Generator | None = None):
        super().__init__()
        self.omega_0 = float(omega_0)
        dims = [in_features] + [hidden_features] * (hidden_layers + 1)
        self.sines = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(hidden_features, out_features)
        with torch.no_grad():
            for i, lin in enumerate(self.sines):
                bound = 1.0 / lin.in_features if i == 0 else math.sqrt(6.0 / lin.in_features) / self.omega_0
                lin.weight.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lin in self.sines:
            x = torch.sin(self.omega_0 * lin(x))
        return self.out(x)


class FourierFeatureStandIn(nn.Module):
    """Random Fourier features (Tancik et al., NeurIPS 2020) then a ReLU MLP.

    ``gamma(x) = [cos(2 pi x B^T), sin(2 pi x B^T)]`` with a fixed ``B ~ N(0, scale^2)`` of shape
    ``(n_features, in_features)``.

    Example:
        >>> FourierFeatureStandIn(2, 8, 16, 1)(torch.zeros(5, 2)).shape
        torch.Size([5, 1])
    """

    def __init__(self, in_features: int, n_features: int, hidden_features: int, out_features: int,
                 hidden_layers: int = 1, scale: float = 10.0, *, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("B", torch.randn(n_features, in_features, generator=generator) * scale)
        dims = [2 * n_features] + [hidden_features] * (hidden_layers + 1)
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*layers, nn.Linear(hidden_features, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * x @ self.B.T
        return self.mlp(torch.cat([proj.cos(), proj.sin()], -1))
