"""Gate matrices as differentiable torch functions (PennyLane conventions).

Single-qubit matrices are built vectorised: ``single_qubit_matrices(names, angles)`` returns a
``(G, 2, 2)`` complex tensor for G gates at once, so that building a layer's unitaries costs one
call instead of one per gate.
"""

from __future__ import annotations

import math

import torch

_S2 = 1.0 / math.sqrt(2.0)

# Fixed single-qubit gates, as nested lists of complex numbers.
FIXED = {
    "H": [[_S2, _S2], [_S2, -_S2]],
    "X": [[0, 1], [1, 0]],
    "Y": [[0, -1j], [1j, 0]],
    "Z": [[1, 0], [0, -1]],
    "S": [[1, 0], [0, 1j]],
    "Sdg": [[1, 0], [0, -1j]],
    "T": [[1, 0], [0, complex(math.cos(math.pi / 4), math.sin(math.pi / 4))]],
}

def complex_dtype(real_dtype: torch.dtype) -> torch.dtype:
    if real_dtype == torch.float64:
        return torch.complex128
    if real_dtype == torch.float32:
        return torch.complex64
    raise TypeError(f"simulation runs in float32 or float64, got {real_dtype}; call .float() or .double()")


def real_dtype(cdtype: torch.dtype) -> torch.dtype:
    return torch.float64 if cdtype == torch.complex128 else torch.float32


def fixed_matrix(name: str, cdtype: torch.dtype, device) -> torch.Tensor:
    return torch.tensor(FIXED[name], dtype=cdtype, device=device)


def rotation_matrices(name: str, angles: torch.Tensor) -> torch.Tensor:
    """Matrices of a parameterised single-qubit gate type for a batch of angles.

    ``angles`` is real, shape ``(G,)`` for one-angle gates or ``(G, 3)`` for ``Rot``; returns
    ``(G, 2, 2)`` complex. Each entry is written as ``m * exp(i a)`` with real ``m`` and ``a``, so
    a whole batch costs a handful of kernels (this runs every forward).
    """
    if name == "Rot":
        phi, theta, omega = angles.unbind(-1)
        c, s = torch.cos(theta / 2), torch.sin(theta / 2)
        ap, am = (phi + omega) / 2, (phi - omega) / 2
        mag = torch.stack((c, -s, s, c), -1)
        arg = torch.stack((-ap, am, -am, ap), -1)
    elif name in ("RX", "RY", "RZ", "PhaseShift"):
        half = angles / 2
        c, s = torch.cos(half), torch.sin(half)
        zero = torch.zeros_like(c)
        if name == "RX":  # [[c, -i s], [-i s, c]]
            re, im = torch.stack((c, zero, zero, c), -1), torch.stack((zero, -s, -s, zero), -1)
        elif name == "RY":  # [[c, -s], [s, c]]
            re, im = torch.stack((c, -s, s, c), -1), torch.zeros_like(torch.stack((c, c, c, c), -1))
        elif name == "RZ":  # diag(exp(-i t/2), exp(i t/2))
            re, im = torch.stack((c, zero, zero, c), -1), torch.stack((-s, zero, zero, s), -1)
        else:  # diag(1, exp(i t))
            one = torch.ones_like(c)
            re = torch.stack((one, zero, zero, torch.cos(angles)), -1)
            im = torch.stack((zero, zero, zero, torch.sin(angles)), -1)
        return torch.complex(re, im).reshape(-1, 2, 2)
    else:
        raise ValueError(f"{name} is not a parameterised single-qubit gate")
    return torch.complex(mag * torch.cos(arg), mag * torch.sin(arg)).reshape(-1, 2, 2)


def two_qubit_index_map(name: str, n_qubits: int, wires: tuple[int, int]):
    """For the monomial two-qubit gates: ``(perm, sign)`` with ``out[k] = sign[k] * in[perm[k]]``.

    Returns None for gates that are not monomial (CRZ is diagonal but parameterised: handled apart).
    """
    dim = 1 << n_qubits
    k = torch.arange(dim)
    a, b = (n_qubits - 1 - w for w in wires)  # bit positions (wire 0 = most significant)
    bit_a, bit_b = (k >> a) & 1, (k >> b) & 1
    if name == "CZ":
        return k, 1.0 - 2.0 * (bit_a & bit_b).double()
    if name == "CNOT":
        return k ^ (bit_a << b), torch.ones(dim, dtype=torch.float64)
    if name == "SWAP":
        return k ^ ((bit_a ^ bit_b) << a) ^ ((bit_a ^ bit_b) << b), torch.ones(dim, dtype=torch.float64)
    return None


def z_signs(n_qubits: int, wires) -> torch.Tensor:
    """``(len(wires), 2**n)`` float64 matrix of the eigenvalues of Z_w on every basis state."""
    k = torch.arange(1 << n_qubits)
    rows = [1.0 - 2.0 * ((k >> (n_qubits - 1 - w)) & 1).double() for w in wires]
    return torch.stack(rows) if rows else torch.ones((0, 1 << n_qubits), dtype=torch.float64)
