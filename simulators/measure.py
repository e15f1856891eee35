"""Measuring Pauli words from computational-basis samples.

A Pauli word is measured by rotating each of its wires into the Z basis (``X``: ``H``; ``Y``:
``Sdg`` then ``H``, since ``H S^dagger Y S H = Z``) and multiplying the +-1 outcomes of its wires.
Words that agree on every shared wire (qubit-wise commuting) share one rotated measurement; the
greedy grouping below puts each word into the first group it is compatible with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .circuit import Gate, PauliWord

# Basis change per Pauli letter, gates in time order (applied after the circuit).
BASIS_CHANGE = {"X": ("H",), "Y": ("Sdg", "H"), "Z": ()}


@dataclass(frozen=True)
class MeasurementGroup:
    """Words measured together: ``basis`` maps each wire to the letter it is measured in;
    ``columns`` are the words' positions in the circuit's observable list."""

    basis: tuple[tuple[int, str], ...]
    words: tuple[PauliWord, ...]
    columns: tuple[int, ...]

    def rotation_gates(self) -> tuple[Gate, ...]:
        """The fixed gates that turn this group's measurement into a Z-basis one."""
        return tuple(Gate(name, (wire,)) for wire, letter in self.basis for name in BASIS_CHANGE[letter])


def measurement_groups(observables: tuple[PauliWord, ...]) -> list[MeasurementGroup]:
    """Greedy qubit-wise commuting groups of ``observables`` (order of first appearance)."""
    bases: list[dict[int, str]] = []
    members: list[list[int]] = []
    for col, word in enumerate(observables):
        for basis, cols in zip(bases, members):
            if all(basis.get(w, p) == p for w, p in word.ops):
                basis.update(word.ops)
                cols.append(col)
                break
        else:
            bases.append(dict(word.ops))
            members.append([col])
    return [
        MeasurementGroup(tuple(sorted(b.items())), tuple(observables[c] for c in cols), tuple(cols))
        for b, cols in zip(bases, members)
    ]


def parity_signs(words: tuple[PauliWord, ...], n_qubits: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """``(2**n, len(words))``: the product of ``(-1)**bit`` over each word's wires, for every basis
    state (wire 0 is the most significant bit, as in :mod:`qlite.simulators.circuit`)."""
    k = torch.arange(1 << n_qubits, device=device)
    cols = []
    for word in words:
        parity = torch.zeros_like(k)
        for w in word.wires:
            parity ^= (k >> (n_qubits - 1 - w)) & 1
        cols.append(1 - 2 * parity)
    return torch.stack(cols, 1).to(dtype)
