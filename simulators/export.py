"""Export and import: qlite circuits <-> Qiskit ``QuantumCircuit`` and OpenQASM 3 strings.

Gate by gate, with the angles as Qiskit parameter expressions:

==============  ===============================  ==============================================
qlite           Qiskit / OpenQASM 3              note
==============  ===============================  ==============================================
RX RY RZ        rx ry rz
PhaseShift      p                                ``P(t) = e^{it/2} RZ(t)``
Rot(a, b, c)    u(b, c, a) (QASM ``U``)          ``RZ(c) RY(b) RZ(a) = U(b, c, a)`` up to a
                                                 global phase ``e^{-i(a+c)/2}``
H X Y Z S T     h x y z s t
Sdg             sdg
CNOT CZ SWAP    cx cz swap
CRZ             crz
==============  ===============================  ==============================================

Wire ``i`` is Qiskit qubit ``i`` (expectation values of Pauli words do not depend on how bits are
ordered in a basis-state index). Trainable angles become ``ParameterVector("w")`` elements, input
features ``ParameterVector("x")`` elements (``scale * x[j]`` for scaled inputs); a trained layer's
weights and one input can be bound to numbers instead. OpenQASM 3 writes them as ``input float[64]
_w_0_`` declarations; both spellings are recognised on import. OpenQASM has no observables, so the
export writes them in a comment (``// qlite observables: Z0; X1 Y2``, with ``// qlite sizes:
n_weights=.. n_inputs=..`` for parameters the gates do not use) that the import reads back; Qiskit
circuits carry them in ``metadata``. Global phases are dropped (they do
not change expectation values).
"""

from __future__ import annotations

import re

import torch

from ._optional import require
from .circuit import GATES, Circuit, Gate, Param, PauliWord

_EXTRA = "qiskit"

# qlite gate name -> Qiskit instruction name
TO_QISKIT = {
    "RX": "rx", "RY": "ry", "RZ": "rz", "PhaseShift": "p", "Rot": "u",
    "H": "h", "X": "x", "Y": "y", "Z": "z", "S": "s", "Sdg": "sdg", "T": "t",
    "CNOT": "cx", "CZ": "cz", "SWAP": "swap", "CRZ": "crz",
}
FROM_QISKIT = {v: k for k, v in TO_QISKIT.items()} | {"u3": "Rot", "U": "Rot", "cnot": "CNOT", "phase": "PhaseShift"}
ONE_QUBIT_QISKIT = tuple(TO_QISKIT[g] for g, (w, _) in GATES.items() if w == 1 and g in TO_QISKIT)
TWO_QUBIT_QISKIT = tuple(TO_QISKIT[g] for g, (w, _) in GATES.items() if w == 2 and g in TO_QISKIT)
_ROT_TO_U = (1, 2, 0)  # U(theta, phi, lam) = (Rot[1], Rot[2], Rot[0])
_U_TO_ROT = (2, 0, 1)  # Rot(phi, theta, omega) = (U[2], U[0], U[1])
_IGNORED = {"barrier", "id", "delay"}
OBSERVABLES_TAG = "qlite observables:"
SIZES_TAG = "qlite sizes:"


def _qiskit():
    return require("qiskit", _EXTRA, "exporting to Qiskit")


def qiskit_gate_name(name: str, backend: str = "qiskit") -> str:
    """The Qiskit name of a qlite gate, or a ValueError naming the gate."""
    try:
        return TO_QISKIT[name]
    except KeyError:
        raise ValueError(f"backend {backend!r} cannot run gate {name!r}; it supports {sorted(TO_QISKIT)}") from None


def _gate_class(qiskit_name: str):
    lib = require("qiskit.circuit.library", _EXTRA, "exporting to Qiskit")
    classes = {"rx": lib.RXGate, "ry": lib.RYGate, "rz": lib.RZGate, "p": lib.PhaseGate, "u": lib.UGate,
               "h": lib.HGate, "x": lib.XGate, "y": lib.YGate, "z": lib.ZGate, "s": lib.SGate,
               "sdg": lib.SdgGate, "t": lib.TGate, "cx": lib.CXGate, "cz": lib.CZGate, "swap": lib.SwapGate,
               "crz": lib.CRZGate}
    return classes[qiskit_name]


def build_qiskit_circuit(circuit: Circuit, angle, backend: str = "qiskit"):
    """A ``QuantumCircuit`` with the gates of ``circuit``; ``angle(k, param)`` gives the Qiskit
    value of the k-th angle of the circuit (in gate order, ``Rot`` counting three)."""
    qiskit = _qiskit()
    qc = qiskit.QuantumCircuit(circuit.n_qubits)
    k = 0
    for g in circuit.gates:
        qname = qiskit_gate_name(g.name, backend)
        values = [angle(k + i, p) for i, p in enumerate(g.params)]
        k += len(g.params)
        if g.name == "Rot":
            values = [values[i] for i in _ROT_TO_U]
        qc.append(_gate_class(qname)(*values), list(g.wires))
    qc.metadata = {"qlite_observables": [str(o) for o in circuit.observables]}
    return qc


def pauli_to_qiskit(word: PauliWord, n_qubits: int):
    """A ``SparsePauliOp`` for a Pauli word (wire ``i`` = qubit ``i``)."""
    qi = require("qiskit.quantum_info", _EXTRA, "exporting to Qiskit")
    if not word.ops:
        return qi.SparsePauliOp("I" * n_qubits)
    letters = "".join(p for _, p in word.ops)
    return qi.SparsePauliOp.from_sparse_list([(letters, list(word.wires), 1.0)], num_qubits=n_qubits)


def _unpack(source, weights, x):
    """``(circuit, weights or None, x or None)`` from a Circuit or a layer with ``.circuit``/``.weights``."""
    if isinstance(source, Circuit):
        circuit = source
    elif isinstance(getattr(source, "circuit", None), Circuit) and isinstance(getattr(source, "weights", None),
                                                                            torch.Tensor):
        circuit = source.circuit
        if weights is None:
            weights = source.weights
    else:
        raise TypeError(f"expected a qlite Circuit or a QuantumLayer, got {type(source).__name__}")
    if weights is not None:
        weights = torch.as_tensor(weights).detach().reshape(-1).to("cpu", torch.float64)
        if weights.numel() != circuit.n_weights:
            raise ValueError(f"the circuit has {circuit.n_weights} weights, got {weights.numel()} values")
    if x is not None:
        x = torch.as_tensor(x).detach().reshape(-1).to("cpu", torch.float64)
        if x.numel() != circuit.n_inputs:
            raise ValueError(f"the circuit has {circuit.n_inputs} inputs; pass one input of that size, "
                             f"got {x.numel()} values")
    return circuit, weights, x


def to_qiskit(source, weights=None, x=None, *, bind_weights: bool = True):
    """A Qiskit ``QuantumCircuit`` for a circuit or a trained ``QuantumLayer``.

    Args:
        source: a :class:`~qlite.simulators.Circuit`, or a layer with ``.circuit`` and ``.weights``.
        weights: flat weight values to bind (a layer's own weights by default). Without values (or
            with ``bind_weights=False``) the weights stay parameters ``w[i]``.
        x: one input ``(n_inputs,)`` to bind; without it the inputs stay parameters ``x[j]``.
        bind_weights: ``False`` keeps a layer's weights as parameters.

    Returns:
        ``QuantumCircuit`` without measurements; the observables as strings are in
        ``qc.metadata["qlite_observables"]`` (see :func:`observables_to_qiskit`).

    Example:
        >>> from qlite.simulators import reuploading_circuit
        >>> qc = to_qiskit(reuploading_circuit(2, 1))
        >>> sorted(p.name for p in qc.parameters)[:2]
        ['w[0]', 'w[10]']
    """
    circuit, weights, x = _unpack(source, weights, x)
    if not bind_weights:
        weights = None
    qiskit = _qiskit()
    wvec = qiskit.circuit.ParameterVector("w", circuit.n_weights) if weights is None else None
    xvec = qiskit.circuit.ParameterVector("x", circuit.n_inputs) if x is None else None

    def angle(_, p: Param):
        if p.source == "const":
            return p.value
        if p.source == "weight":
            return float(weights[p.index]) if wvec is None else wvec[p.index]
        if xvec is None:
            return p.scale * float(x[p.index])
        return xvec[p.index] if p.scale == 1.0 else p.scale * xvec[p.index]

    qc = build_qiskit_circuit(circuit, angle)
    # unused weights / inputs have no Qiskit parameter: keep the sizes for the way back
    qc.metadata["qlite_sizes"] = [0 if wvec is None else circuit.n_weights, 0 if xvec is None else circuit.n_inputs]
    return qc


def observables_to_qiskit(circuit: Circuit) -> list:
    """The circuit's observables as a list of ``SparsePauliOp``."""
    return [pauli_to_qiskit(o, circuit.n_qubits) for o in circuit.observables]


def to_qasm3(source, weights=None, x=None, *, bind_weights: bool = True) -> str:
    """An OpenQASM 3 program for a circuit or a trained layer (arguments as :func:`to_qiskit`).

    Unbound weights and inputs become ``input float[64]`` declarations; the observables are written
    in a ``// qlite observables: ...`` comment that :func:`from_qasm3` reads back.
    """
    qasm3 = require("qiskit.qasm3", _EXTRA, "exporting to OpenQASM 3")
    qc = to_qiskit(source, weights, x, bind_weights=bind_weights)
    text = qasm3.dumps(qc)
    head, sep, rest = text.partition("\n")
    n_w, n_x = qc.metadata["qlite_sizes"]
    comment = (f"// {OBSERVABLES_TAG} " + "; ".join(qc.metadata["qlite_observables"])
               + f"\n// {SIZES_TAG} n_weights={n_w} n_inputs={n_x}")
    return f"{head}\n{comment}\n{rest}" if sep else f"{head}\n{comment}\n"


def _parse_word(text: str) -> PauliWord:
    # str(PauliWord(())) is "I", which PauliWord.parse does not read back (it wants a wire per letter)
    return PauliWord(()) if text.strip() in ("", "I") else PauliWord.parse(text)


def _parse_observables(observables, n_qubits: int, fallback) -> tuple[PauliWord, ...]:
    if observables is None:
        observables = fallback
    if observables is None:
        return tuple(PauliWord.z(j) for j in range(n_qubits))
    words = tuple(_parse_word(o) if isinstance(o, str) else o for o in observables)
    for w in words:
        if not isinstance(w, PauliWord):
            raise TypeError(f"observables must be PauliWord or strings like 'Z0 X1', got {type(w).__name__}")
    return words


def _param_from_expression(value, gate: str, weight_re, input_re) -> Param:
    """A qlite Param from a number or an affine Qiskit expression of one parameter."""
    params = getattr(value, "parameters", None)
    if not params:
        return Param.const(float(value))
    if len(params) != 1:
        raise ValueError(f"gate {gate}: angle {value} depends on {len(params)} parameters; qlite angles "
                         f"depend on one weight or one input")
    (p,) = params
    coef = value.gradient(p)
    offset = value.assign(p, 0)
    if getattr(coef, "parameters", None) or getattr(offset, "parameters", None):
        raise ValueError(f"gate {gate}: angle {value} is not linear in {p.name}")
    coef, offset = float(coef), float(offset.numeric() if hasattr(offset, "numeric") else offset)
    if offset != 0.0:
        raise ValueError(f"gate {gate}: angle {value} has a constant offset {offset}; qlite angles are "
                         f"w[i], scale * x[j] or constants")
    if m := weight_re.match(p.name):
        if coef != 1.0:
            raise ValueError(f"gate {gate}: angle {value} scales the weight {p.name} by {coef}; qlite weights "
                             f"enter unscaled (rescale the trained value instead)")
        return Param.weight(int(m.group(1) or m.group(2)))
    if m := input_re.match(p.name):
        return Param.input(int(m.group(1) or m.group(2)), coef)
    raise ValueError(f"gate {gate}: parameter {p.name!r} is neither a weight nor an input; name them "
                     f"{weight_re.pattern!r} / {input_re.pattern!r} or bind it first (qc.assign_parameters)")


def _name_pattern(prefix: str):
    # ParameterVector elements are named "w[3]"; the OpenQASM 3 exporter writes them as "_w_3_".
    return re.compile(rf"^_?{re.escape(prefix)}(?:\[(\d+)\]|_(\d+)_?)$")


def from_qiskit(qc, observables=None, *, weight_prefix: str = "w", input_prefix: str = "x") -> Circuit:
    """A qlite :class:`Circuit` from a Qiskit ``QuantumCircuit``.

    Supported instructions: those of the table in the module docstring (also ``u3``); ``barrier``,
    ``id`` and ``delay`` are skipped. Angles must be numbers, a weight parameter (``w[i]``) or a
    scaled input parameter (``s * x[j]``).

    Args:
        qc: the circuit (no measurements or resets; ``qc.remove_final_measurements()`` first).
        observables: Pauli words (``PauliWord`` or strings like ``"Z0 X1"``); default: those in
            ``qc.metadata["qlite_observables"]``, else ``Z`` on every qubit.
        weight_prefix, input_prefix: names of the weight and input parameter vectors.

    Raises:
        ValueError: an instruction qlite has no gate for (named, with a hint to transpile), an
            angle that is not of the forms above.
    """
    _qiskit()
    weight_re, input_re = _name_pattern(weight_prefix), _name_pattern(input_prefix)
    n = qc.num_qubits
    gates = []
    for inst in qc.data:
        op = inst.operation
        if op.name in _IGNORED:
            continue
        if op.name not in FROM_QISKIT:
            hint = " (remove measurements with qc.remove_final_measurements())" if op.name == "measure" else ""
            raise ValueError(
                f"cannot import instruction {op.name!r}{hint}; qlite supports {sorted(FROM_QISKIT)}: "
                f"qiskit.transpile(qc, basis_gates=['u', 'cx']) rewrites a circuit into supported gates"
            )
        name = FROM_QISKIT[op.name]
        params = [_param_from_expression(v, op.name, weight_re, input_re) for v in op.params]
        if name == "Rot":
            params = [params[i] for i in _U_TO_ROT]
        wires = tuple(qc.find_bit(q).index for q in inst.qubits)
        gates.append(Gate(name, wires, tuple(params)))
    meta = qc.metadata or {}
    n_w, n_x = meta.get("qlite_sizes", (0, 0))
    for p in qc.parameters:  # a ParameterVector knows its length, used elements or not
        vec = getattr(p, "vector", None)
        if vec is not None and weight_re.match(p.name):
            n_w = max(n_w, len(vec))
        elif vec is not None and input_re.match(p.name):
            n_x = max(n_x, len(vec))
    used_w = 1 + max((p.index for g in gates for p in g.params if p.source == "weight"), default=-1)
    used_x = 1 + max((p.index for g in gates for p in g.params if p.source == "input"), default=-1)
    return Circuit(n, tuple(gates), _parse_observables(observables, n, meta.get("qlite_observables")),
                   n_weights=max(n_w, used_w), n_inputs=max(n_x, used_x))


def from_qasm3(text: str, observables=None, **prefixes) -> Circuit:
    """A qlite :class:`Circuit` from an OpenQASM 3 program (needs ``qiskit-qasm3-import``).

    Observables: ``observables`` if given, else the ``// qlite observables:`` comment written by
    :func:`to_qasm3`, else ``Z`` on every qubit.
    """
    qasm3 = require("qiskit.qasm3", _EXTRA, "importing OpenQASM 3")
    require("qiskit_qasm3_import", _EXTRA, "importing OpenQASM 3")
    if not isinstance(text, str):
        raise TypeError(f"expected an OpenQASM 3 string, got {type(text).__name__}")
    meta = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("//") and OBSERVABLES_TAG in line:
            spec = line.split(OBSERVABLES_TAG, 1)[1]
            meta["qlite_observables"] = [s.strip() for s in spec.split(";") if s.strip()]
        elif line.startswith("//") and SIZES_TAG in line:
            sizes = dict(kv.split("=") for kv in line.split(SIZES_TAG, 1)[1].split())
            meta["qlite_sizes"] = [int(sizes.get("n_weights", 0)), int(sizes.get("n_inputs", 0))]
    qc = qasm3.loads(text)
    qc.metadata = meta
    return from_qiskit(qc, observables, **prefixes)


__all__ = ["from_qasm3", "from_qiskit", "observables_to_qiskit", "pauli_to_qiskit", "to_qasm3", "to_qiskit"]

