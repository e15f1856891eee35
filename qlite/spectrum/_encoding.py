"""Private helpers: encoding gates of a circuit, their frequency sets, and the affine map that a
hybrid layer's ``Linear -> BatchNorm1d`` applies before its circuit.

Everything here is a pure function of a circuit description or of module parameters; nothing
mutates its arguments.
"""

from __future__ import annotations

import logging
import math
from typing import Iterable

import torch
from torch import nn

from qlite.simulators import Circuit

log = logging.getLogger(__name__)

# Eigenvalues of the generator G of each one-angle gate U(t) = exp(-i t G) (PennyLane's conventions:
# RX(t) = exp(-i t X / 2), PhaseShift(t) = diag(1, e^{it}) = e^{it/2} exp(-i t (-Z/2 + ...)), i.e.
# generator |1><1| up to a sign that does not change the set of differences, CRZ = |1><1| x Z/2).
_GENERATOR_EIGENVALUES: dict[str, tuple[float, ...]] = {
    "RX": (-0.5, 0.5),
    "RY": (-0.5, 0.5),
    "RZ": (-0.5, 0.5),
    "PhaseShift": (0.0, 1.0),
    "CRZ": (-0.5, 0.0, 0.0, 0.5),
}


def round_set(values: Iterable[float], decimals: int) -> list[float]:
    """Sorted distinct values after rounding (``+ 0.0`` turns ``-0.0`` into ``0.0``)."""
    return sorted({round(float(v), decimals) + 0.0 for v in values})


def merge_close(values: Iterable[float], decimals: int) -> list[float]:
    """Sorted values with those closer than ``10**-decimals / 2`` to a group's first member merged,
    keeping unrounded representatives. Sums are formed from these, never from rounded values, so that
    rounding errors do not accumulate (``round(pi) + pi`` is not ``round(2 pi)`` at 8 decimals)."""
    tol = 0.5 * 10.0**-decimals
    out: list[float] = []
    for v in sorted(float(v) for v in values):
        if not out or v - out[-1] > tol:
            out.append(v)
    return out


def gate_frequencies(name: str, scale: float, decimals: int) -> list[float]:
    """All differences of the generator's eigenvalues, times the input's scale (a symmetric set).

    Schuld, Sweke & Meyer, "Effect of data encoding on the expressive power of variational quantum
    machine learning models", PRA 103, 032430 (2021), eq. (5): a gate ``exp(-i x G)`` contributes
    the frequencies ``lambda_j - lambda_k`` for eigenvalues of ``G``.
    """
    evals = _GENERATOR_EIGENVALUES[name]
    return merge_close(((a - b) * scale for a in evals for b in evals), decimals)


def minkowski_sum(a: list[float], b: list[float], decimals: int) -> list[float]:
    """``{x + y : x in a, y in b}`` (close values merged): ``exp(i a x) exp(i b x) = exp(i (a + b) x)``."""
    return merge_close((x + y for x in a for y in b), decimals)


def encoding_gates(circuit: Circuit) -> dict[int, list[tuple[str, tuple[int, ...], float]]]:
    """Per input index: the ``(gate name, wires, scale)`` of every gate whose angle is that input.

    Raises:
        ValueError: a gate takes an input through several angles (``Rot``) or mixes an input with
            other angles; such gates are not of the form ``exp(-i x G)``.
    """
    found: dict[int, list[tuple[str, tuple[int, ...], float]]] = {}
    for g in circuit.gates:
        if not g.depends_on_input:
            continue
        if g.name not in _GENERATOR_EIGENVALUES or len(g.params) != 1:
            raise ValueError(
                f"gate {g.name} on wires {g.wires} takes an input through a multi-angle gate; spectrum analysis "
                f"needs one-angle encoding gates exp(-i x G) ({sorted(_GENERATOR_EIGENVALUES)}): split it into "
                f"RZ/RY/RZ rotations"
            )
        p = g.params[0]
        found.setdefault(p.index, []).append((g.name, g.wires, p.scale))
    return found


def integer_spectra(circuit: Circuit, decimals: int = 8, rounded: bool = True) -> dict[int, list[float]]:
    """Per circuit input ``0..n_inputs-1``: the symmetric frequency set (``[0.0]`` if not encoded),
    rounded to ``decimals`` for display, or the unrounded representatives (``rounded=False``).

    Raises:
        ValueError: the circuit has no encoding gate at all.
    """
    gates = encoding_gates(circuit)
    if not gates:
        raise ValueError(
            f"the circuit ({circuit.n_qubits} qubits, {len(circuit.gates)} gates) has no encoding gate: no gate angle "
            f"is a Param.input(...), so its output does not depend on any input and its spectrum is just {{0}}; "
            f"add an encoding such as qlite.simulators.angle_encoding"
        )
    spectra = {}
    for j in range(circuit.n_inputs):
        spec = [0.0]
        for name, _, scale in gates.get(j, []):
            spec = minkowski_sum(spec, gate_frequencies(name, scale, decimals), decimals)
        spectra[j] = round_set(spec, decimals) if rounded else spec
    return spectra


def as_circuit(obj) -> Circuit:
    """A :class:`Circuit` from a circuit, a ``QuantumLayer`` or a ``HybridLayer``."""
    from qlite.layers import HybridLayer, QuantumLayer

    if isinstance(obj, Circuit):
        return obj
    if isinstance(obj, QuantumLayer):
        return obj.circuit
    if isinstance(obj, HybridLayer):
        return obj.quantum.circuit
    raise TypeError(
        f"expected a qlite.simulators.Circuit, QuantumLayer or HybridLayer, got {type(obj).__name__}; for a whole "
        f"model use qlite.spectrum.model_spectrum, for SIREN / Fourier-feature networks classical_spectrum"
    )


def folded_affine(linear: nn.Linear, norm: nn.BatchNorm1d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, b)`` in float64 with ``norm(linear(x)) = x @ A.T + b`` for eval-mode BatchNorm.

    Eval-mode BatchNorm is ``gamma * (z - mu) / sqrt(var + eps) + beta`` (Ioffe & Szegedy 2015, Alg. 2),
    so folding it into the Linear gives ``A = diag(s) W`` and ``b = s * (b_lin - mu) + beta`` with
    ``s = gamma / sqrt(var + eps)``.

    Raises:
        ValueError: the BatchNorm keeps no running statistics (it then always normalises by the batch,
            which is no fixed affine map).
    """
    w = linear.weight.detach().to(torch.float64).cpu()
    b = (linear.bias.detach().to(torch.float64).cpu() if linear.bias is not None
         else torch.zeros(w.shape[0], dtype=torch.float64))
    if norm is None:
        return w, b
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError(
            "the BatchNorm1d in front of the circuit has track_running_stats=False: it normalises every batch by "
            "its own statistics, so the map to the circuit's inputs is not fixed; build it with "
            "track_running_stats=True (the default) to analyse its spectrum"
        )
    if norm.training:
        log.warning("BatchNorm1d is in training mode; the spectrum uses its running statistics (eval-mode behaviour)")
    mu = norm.running_mean.detach().to(torch.float64).cpu()
    var = norm.running_var.detach().to(torch.float64).cpu()
    s = 1.0 / torch.sqrt(var + norm.eps)
    if norm.affine:
        s = s * norm.weight.detach().to(torch.float64).cpu()
        beta = norm.bias.detach().to(torch.float64).cpu()
    else:
        beta = torch.zeros_like(mu)
    return s[:, None] * w, s * (b - mu) + beta


def check_int(name: str, value, lo: int) -> int:
    """``value`` as an int >= lo, else a ValueError naming it (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return value


def product_size(sets: Iterable[list]) -> int:
    return math.prod(len(s) for s in sets)
