"""Periodic quantization of rotation angles (``AngleQuant``).

A rotation ``R(theta)`` depends on ``theta`` only modulo its period ``P`` (``2*pi`` for the rotations of a
variational circuit), so angles live on a circle, where 0 and ``P - eps`` are neighbours. Quantizing them
as ordinary reals would waste levels on a range the circuit cannot tell apart and would map
``P - eps`` far from 0. Here the circle is cut into ``L = 2**bits`` uniform levels
``k * P / L``: ``k = round(theta / P * L) mod L``; the circular error is at most ``P / (2 L)``.

The protocol: a module declares its angles through ``periodic_parameters() -> {name: (parameter, period)}``
(qlite's ``QuantumLayer`` returns ``{"weights": (self.weights, 2*math.pi)}``). qlite.classical never
imports quantum code; any module implementing the method is quantized.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..transform import LayerRecord, Transform, state_bytes, transform_for
from .configs import AngleQuant
from .primitives import pack_bits, unpack_bits


def angle_codes(theta: torch.Tensor, period: float, bits: int) -> torch.Tensor:
    """Codes ``round(theta / P * L) mod L`` (uint8) of angles ``theta`` on a circle of period ``P``."""
    L = 2**bits
    k = torch.round(torch.remainder(theta.detach().double(), period) / period * L)
    return torch.remainder(k, L).to(torch.uint8)


def angle_values(codes: torch.Tensor, period: float, bits: int, dtype=torch.float32) -> torch.Tensor:
    """Angles ``k * P / L`` in ``[0, P)`` of the codes."""
    return (codes.double() * (period / 2**bits)).to(dtype)


def circular_distance(a: torch.Tensor, b: torch.Tensor, period: float) -> torch.Tensor:
    """Distance on the circle of period ``P``: ``min(d, P - d)`` with ``d = (a - b) mod P``."""
    d = torch.remainder(a.double() - b.double(), period)
    return torch.minimum(d, period - d)


class PeriodicCodes(nn.Module):
    """Packed angle codes of one parameter; calling it returns the dequantized angles."""

    def __init__(self, codes: torch.Tensor, period: float, bits: int, dtype: torch.dtype):
        super().__init__()
        self.bits, self.shape, self.dtype = bits, tuple(codes.shape), dtype
        self.register_buffer("packed", pack_bits(codes, bits))
        self.register_buffer("period", torch.tensor(float(period), dtype=torch.float64))

    def forward(self) -> torch.Tensor:
        n = math.prod(self.shape)
        codes = unpack_bits(self.packed, self.bits, n).reshape(self.shape)
        return angle_values(codes, float(self.period), self.bits, self.dtype).to(self.packed.device)


def _decode_angles(module: nn.Module, _args) -> None:
    # Forward pre-hook: the module's own forward reads ``self.<name>`` as before.
    for name in module._qlite_angle_names:
        setattr(module, name, getattr(module, f"{name}_codes")())


@transform_for(AngleQuant)
class _AngleQuant(Transform):
    def run(self, model, calib, ctx):
        bits = self.config.bits
        found = [(n, m) for n, m in model.named_modules() if callable(getattr(m, "periodic_parameters", None))]
        if not found:
            raise ValueError(
                "AngleQuant: no module declares periodic parameters; a module opts in by defining "
                "periodic_parameters() -> {name: (parameter, period)}"
            )
        records = []
        for mname, m in found:
            declared = m.periodic_parameters()
            names = []
            for pname, (p, period) in declared.items():
                where = f"{mname}.{pname}" if mname else pname
                if m._parameters.get(pname) is not p:
                    raise ValueError(
                        f"AngleQuant: {where!r} must be a parameter registered directly on its module "
                        "(periodic_parameters() returned a different tensor)"
                    )
                if not (isinstance(period, (int, float)) and math.isfinite(period) and period > 0):
                    raise ValueError(f"AngleQuant: period of {where!r} must be a positive number, got {period!r}")
                if not torch.isfinite(p).all():
                    raise ValueError(f"AngleQuant: parameter {where!r} has non-finite values; repair it first")
                before = p.numel() * p.element_size()
                codes = angle_codes(p, period, bits)
                holder = PeriodicCodes(codes, period, bits, p.dtype).to(p.device)
                err = float(circular_distance(holder(), p, period).max())
                del m._parameters[pname]
                m.add_module(f"{pname}_codes", holder)
                setattr(m, pname, holder())
                names.append(pname)
                records.append(
                    LayerRecord(where, self.config.name, tuple(p.shape), before, state_bytes(holder),
                                extra={"max_circular_error": err, "period": float(period)})
                )
            m._qlite_angle_names = tuple(names)
            m.register_forward_pre_hook(_decode_angles)
        return records
