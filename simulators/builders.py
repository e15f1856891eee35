"""Builders for the common ansätze and encodings, gate for gate as PennyLane decomposes them.

Each builder returns a list of :class:`~qlite.simulators.circuit.Gate` whose trainable angles index a
flat weight vector starting at ``offset``; the layout matches the row-major flattening of the
PennyLane template's weight tensor, so ``weights.reshape(-1)`` can be passed straight through.
"""

from __future__ import annotations

from .circuit import Circuit, Gate, Param, PauliWord

ENTANGLERS = ("cz", "cnot")
ENCODINGS = ("rz", "rx", "ry")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {allowed}")
    return value.lower()


def strongly_entangling(n_qubits: int, layers: int, offset: int = 0, imprimitive: str = "cnot",
                        ranges: tuple[int, ...] | None = None) -> list[Gate]:
    """PennyLane's ``StronglyEntanglingLayers`` for weights of shape ``(layers, n_qubits, 3)``.

    Per layer ``l``: ``Rot(w[l, i, 0], w[l, i, 1], w[l, i, 2])`` on every wire ``i``, then (for more
    than one wire) the imprimitive on ``(i, (i + r_l) mod n)`` for every ``i``, with PennyLane's
    default ranges ``r_l = (l mod (n - 1)) + 1``.
    """
    imprimitive = _check_choice("entangler", imprimitive, ENTANGLERS).upper()
    if ranges is None:
        ranges = tuple((l % (n_qubits - 1)) + 1 for l in range(layers)) if n_qubits > 1 else (0,) * layers
    if len(ranges) != layers:
        raise ValueError(f"ranges has {len(ranges)} entries for {layers} layers")
    gates = []
    for l in range(layers):
        for i in range(n_qubits):
            base = offset + (l * n_qubits + i) * 3
            gates.append(Gate("Rot", (i,), tuple(Param.weight(base + k) for k in range(3))))
        if n_qubits > 1:
            for i in range(n_qubits):
                gates.append(Gate(imprimitive, (i, (i + ranges[l]) % n_qubits)))
    return gates


def basic_entangler(n_qubits: int, layers: int, offset: int = 0, rotation: str = "rx") -> list[Gate]:
    """PennyLane's ``BasicEntanglerLayers`` for weights of shape ``(layers, n_qubits)``."""
    rotation = _check_choice("rotation", rotation, ENCODINGS).upper()
    gates = []
    for l in range(layers):
        for i in range(n_qubits):
            gates.append(Gate(rotation, (i,), (Param.weight(offset + l * n_qubits + i),)))
        if n_qubits == 2:
            gates.append(Gate("CNOT", (0, 1)))
        elif n_qubits > 2:
            gates.extend(Gate("CNOT", (i, (i + 1) % n_qubits)) for i in range(n_qubits))
    return gates


def hardware_efficient(n_qubits: int, layers: int, offset: int = 0) -> list[Gate]:
    """A hardware-efficient layer: ``RY, RZ`` on every wire then a linear CNOT chain;
    weights of shape ``(layers, n_qubits, 2)``."""
    gates = []
    for l in range(layers):
        for i in range(n_qubits):
            base = offset + (l * n_qubits + i) * 2
            gates.append(Gate("RY", (i,), (Param.weight(base),)))
            gates.append(Gate("RZ", (i,), (Param.weight(base + 1),)))
        gates.extend(Gate("CNOT", (i, i + 1)) for i in range(n_qubits - 1))
    return gates


def angle_encoding(n_qubits: int, axis: str = "rz", inputs: tuple[int, ...] | None = None,
                   scale: float = 1.0) -> list[Gate]:
    """``R_axis(scale * x[inputs[j]])`` on wire ``j`` (one re-upload); inputs default to ``0..n-1``."""
    axis = _check_choice("encoding", axis, ENCODINGS).upper()
    inputs = tuple(range(n_qubits)) if inputs is None else tuple(inputs)
    if len(inputs) != n_qubits:
        raise ValueError(f"angle_encoding needs one input index per wire, got {len(inputs)} for {n_qubits}")
    return [Gate(axis, (j,), (Param.input(i, scale),)) for j, i in enumerate(inputs)]


def reuploading_circuit(n_qubits: int, spectrum_layers: int = 2, sublayers: int = 2, entangler: str = "cz",
                        encoding: str = "rz", observables: tuple[PauliWord, ...] | None = None) -> Circuit:
    """The QIREN circuit (Zhao et al., ICML 2024): for ``l`` in ``0..L-1`` apply
    ``StronglyEntanglingLayers(w[l], imprimitive=entangler)`` then ``encoding(x[j])`` on wire ``j``;
    finally ``StronglyEntanglingLayers(w[L])``; measure ``<Z_j>`` on every wire.

    The weights are ``w`` of shape ``(L + 1, sublayers, n_qubits, 3)``, flattened row-major.
    """
    if not isinstance(n_qubits, int) or isinstance(n_qubits, bool) or n_qubits < 1:
        raise ValueError(f"n_qubits must be an integer >= 1, got {n_qubits!r}")
    for name, v, lo in (("spectrum_layers", spectrum_layers, 0), ("sublayers", sublayers, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    entangler = _check_choice("entangler", entangler, ENTANGLERS)
    encoding = _check_choice("encoding", encoding, ENCODINGS)
    per_layer = sublayers * n_qubits * 3
    gates: list[Gate] = []
    for l in range(spectrum_layers):
        gates += strongly_entangling(n_qubits, sublayers, offset=l * per_layer, imprimitive=entangler)
        gates += angle_encoding(n_qubits, encoding)
    gates += strongly_entangling(n_qubits, sublayers, offset=spectrum_layers * per_layer, imprimitive=entangler)
    if observables is None:
        observables = tuple(PauliWord.z(j) for j in range(n_qubits))
    return Circuit(n_qubits, tuple(gates), tuple(observables), n_weights=(spectrum_layers + 1) * per_layer,
                   n_inputs=n_qubits)
