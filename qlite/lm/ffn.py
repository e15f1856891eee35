"""``QuantumFFN``: per-token circuits in place of a transformer block's MLP.

``y = up(concat_h Q_h(norm_h(down(x)_h)))``: ``down: d_in -> heads * n_qubits``, for every head a
LayerNorm and a re-uploading circuit (a QIREN-style hybrid layer applied to each token, with
LayerNorm instead of BatchNorm so that no statistic crosses tokens), ``up: heads * n_qubits -> d_out``.
The widths come from the replaced module: the input width of its first linear layer and the output
width of its last (Llama's ``gate/up/down_proj``, GPT-2's ``c_fc/c_proj``, a single ``nn.Linear``).
"""

from __future__ import annotations

import torch
from torch import nn

from .adapter import angle_norm, circuit_block
from .base import linear_dims, module_device, new_linear
from .configs import QuantumFFNConfig


def mlp_dims(module: nn.Module) -> tuple[int, int]:
    """``(d_in, d_out)`` of an MLP-like module: first linear's input, last linear's output."""
    dims = [d for d in (linear_dims(m) for m in module.modules()) if d is not None]
    if not dims:
        raise TypeError(f"QuantumFFN replaces modules that contain linear layers (a block's MLP); "
                        f"{type(module).__name__} has none")
    return dims[0][0], dims[-1][1]


class QuantumFFN(nn.Module):
    """See the module docstring; built by :class:`~qlite.lm.QuantumFFNConfig` through :func:`qlite.lm.inject`."""

    mergeable = False

    def __init__(self, mlp: nn.Module, config: QuantumFFNConfig, *, generator: torch.Generator | None = None):
        super().__init__()
        self.in_features, self.out_features = mlp_dims(mlp)
        self.config = config
        self.replaced = type(mlp).__name__
        n, heads = config.n_qubits, config.heads
        dev = module_device(mlp)
        self.down = new_linear(self.in_features, heads * n, bias=True, generator=generator).to(dev)
        self.norms = nn.ModuleList(angle_norm(config, n) for _ in range(heads)).to(dev)
        self.circuits = nn.ModuleList(circuit_block(config, generator=generator) for _ in range(heads)).to(dev)
        self.up = new_linear(heads * n, self.out_features, bias=True, generator=generator).to(dev)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.config.n_qubits
        lead = x.shape[:-1]
        h = self.down(x.reshape(-1, self.in_features).to(self.down.weight.dtype))  # (tokens, heads * n)
        parts = [q(norm(h[:, i * n:(i + 1) * n])) for i, (norm, q) in enumerate(zip(self.norms, self.circuits))]
        out = self.up(torch.cat(parts, dim=-1))
        return out.reshape(*lead, self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        c = self.config
        return (f"in_features={self.in_features}, out_features={self.out_features}, heads={c.heads}, "
                f"n_qubits={c.n_qubits}, spectrum_layers={c.spectrum_layers}, replaces={self.replaced}")
