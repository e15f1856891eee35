"""Independent reference: the same circuit description run by PennyLane default.qubit (float64)."""

import pennylane as qml
import torch

_ONE = {"RX": qml.RX, "RY": qml.RY, "RZ": qml.RZ, "PhaseShift": qml.PhaseShift}
_FIXED = {"H": qml.Hadamard, "X": qml.PauliX, "Y": qml.PauliY, "Z": qml.PauliZ, "S": qml.S, "T": qml.T,
          "CNOT": qml.CNOT, "CZ": qml.CZ, "SWAP": qml.SWAP}
_PAULI = {"X": qml.PauliX, "Y": qml.PauliY, "Z": qml.PauliZ}


def _angle(p, w, x):
    if p.source == "weight":
        return w[p.index]
    if p.source == "input":
        return p.scale * x[..., p.index]
    return torch.tensor(p.value, dtype=torch.float64)


def pennylane_expvals(circuit, weights, x):
    """``(B..., n_obs)`` expectation values by PennyLane with torch backprop (float64)."""
    dev = qml.device("default.qubit", wires=circuit.n_qubits)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def f(w, xx):
        for g in circuit.gates:
            ang = [_angle(p, w, xx) for p in g.params]
            if g.name in _ONE:
                _ONE[g.name](ang[0], wires=g.wires[0])
            elif g.name == "Rot":
                qml.Rot(*ang, wires=g.wires[0])
            elif g.name == "Sdg":
                qml.adjoint(qml.S)(wires=g.wires[0])
            elif g.name == "CRZ":
                qml.CRZ(ang[0], wires=list(g.wires))
            else:
                _FIXED[g.name](wires=list(g.wires))
        out = []
        for word in circuit.observables:
            factors = [_PAULI[p](w) for w, p in word.ops] or [qml.Identity(0)]
            op = factors[0] if len(factors) == 1 else qml.prod(*factors)
            out.append(qml.expval(op))
        return out

    res = torch.stack([r.real if r.is_complex() else r for r in f(weights, x)], -1)
    # a circuit that reads no input is not broadcast by PennyLane: give it the batch shape of x
    return res.expand(*x.shape[:-1], res.shape[-1]) if res.dim() < x.dim() else res
