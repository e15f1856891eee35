"""``QuantumAdapter``: a re-uploading circuit on every token, beside a frozen Linear.

``y = W x + s * up(Q(norm(down(x))))`` (HyQuT-style per-token circuits, arXiv 2511.10653): ``down``
compresses the token to ``n_qubits`` angles, a LayerNorm keeps them at unit scale (per token: nothing
crosses tokens or sequences, so causal masking is preserved), ``Q`` is :class:`qlite.QuantumLayer`
(``<Z_j>`` of every wire) and ``up`` maps the expectation values back to the layer's output width.
``up`` starts at zero, so an injected model computes exactly what the base computed.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import QuantumLayer
from .base import LinearAdapter, module_device, new_linear
from .configs import QuantumAdapterConfig


def circuit_block(cfg, *, generator: torch.Generator | None) -> QuantumLayer:
    """The per-token circuit of a config (``n_qubits`` wires, re-uploading ansatz)."""
    return QuantumLayer(cfg.n_qubits, cfg.spectrum_layers, cfg.sublayers, cfg.entangler, cfg.encoding,
                        backend=cfg.backend, generator=generator)


def angle_norm(cfg, width: int) -> nn.Module:
    return nn.LayerNorm(width) if cfg.norm == "layernorm" else nn.Identity()


class QuantumAdapter(LinearAdapter):
    """See the module docstring; built by :class:`~qlite.lm.QuantumAdapterConfig` through :func:`qlite.lm.inject`.

    Shapes: input ``(..., d_in)``, output ``(..., d_out)``; the circuit sees ``(tokens, n_qubits)``.
    """

    def __init__(self, base: nn.Module, config: QuantumAdapterConfig, *, generator: torch.Generator | None = None):
        super().__init__(base)
        n = config.n_qubits
        if n > self.in_features:
            raise ValueError(f"n_qubits={n} is larger than the layer's input width {self.in_features}; "
                             f"use n_qubits <= {self.in_features}")
        self.config = config
        self.scale = float(config.scale)
        dev = module_device(base)
        self.down = new_linear(self.in_features, n, bias=False, generator=generator)
        self.norm = angle_norm(config, n)
        self.circuit = circuit_block(config, generator=generator)
        self.up = new_linear(n, self.out_features, bias=False, generator=None, zero=True)
        for m in (self.down, self.norm, self.circuit, self.up):
            m.to(dev)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        h = x.reshape(-1, self.in_features).to(self.down.weight.dtype)  # (tokens, d_in)
        q = self.circuit(self.norm(self.down(h)))  # (tokens, n_qubits) expectation values
        return (self.up(q) * self.scale).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        c = self.config
        return (f"in_features={self.in_features}, out_features={self.out_features}, n_qubits={c.n_qubits}, "
                f"spectrum_layers={c.spectrum_layers}, scale={c.scale}")
