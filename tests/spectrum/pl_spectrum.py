"""Independent references: the same circuit description as PennyLane QNodes, for
``qml.fourier.circuit_spectrum`` (encoding gates marked per input) and ``qml.fourier.qnode_spectrum``
(inputs as one array argument, scales as classical preprocessing)."""

import pennylane as qml
import numpy as np

_ONE = {"RX": qml.RX, "RY": qml.RY, "RZ": qml.RZ, "PhaseShift": qml.PhaseShift, "CRZ": qml.CRZ}
_FIXED = {"H": qml.Hadamard, "X": qml.PauliX, "Y": qml.PauliY, "Z": qml.PauliZ, "S": qml.S, "T": qml.T,
          "CNOT": qml.CNOT, "CZ": qml.CZ, "SWAP": qml.SWAP}


def _apply(circuit, w, x, mark: bool):
    for g in circuit.gates:
        ang = []
        for p in g.params:
            if p.source == "weight":
                ang.append(w[p.index])
            elif p.source == "input":
                ang.append(p.scale * x[p.index])
            else:
                ang.append(p.value)
        if g.name in _ONE:
            op = _ONE[g.name](ang[0], wires=list(g.wires))
            if mark and g.depends_on_input:
                qml.fourier.mark(op, f"x{g.params[0].index}")
        elif g.name == "Rot":
            qml.Rot(*ang, wires=g.wires[0])
        elif g.name == "Sdg":
            qml.adjoint(qml.S)(wires=g.wires[0])
        else:
            _FIXED[g.name](wires=list(g.wires))
    return qml.expval(qml.PauliZ(0))


def pl_circuit_spectrum(circuit) -> dict:
    """``qml.fourier.circuit_spectrum`` keyed by input index (unit scales only: PennyLane's
    circuit_spectrum ignores classical preprocessing)."""
    dev = qml.device("default.qubit", wires=circuit.n_qubits)

    @qml.qnode(dev)
    def f(w, x):
        return _apply(circuit, w, x, mark=True)

    w = np.random.default_rng(0).uniform(0, 2 * np.pi, circuit.n_weights)
    res = qml.fourier.circuit_spectrum(f)(w, np.zeros(circuit.n_inputs))
    return {int(k[1:]): [float(v) for v in vals] for k, vals in res.items()}


def pl_qnode_spectrum(circuit) -> dict:
    """``qml.fourier.qnode_spectrum`` with respect to the input array, keyed by input index."""
    dev = qml.device("default.qubit", wires=circuit.n_qubits)

    @qml.qnode(dev)
    def f(x, w):
        return _apply(circuit, w, x, mark=False)

    w = qml.numpy.array(np.random.default_rng(0).uniform(0, 2 * np.pi, circuit.n_weights), requires_grad=True)
    x = qml.numpy.array(np.random.default_rng(1).uniform(-1, 1, circuit.n_inputs), requires_grad=True)
    res = qml.fourier.qnode_spectrum(f, argnum=[0])(x, w)["x"]
    return {int(k[0]): [float(v) for v in vals] for k, vals in res.items()}


def pl_coefficients(circuit, weights, degree, lowpass_filter=False):
    """``qml.fourier.coefficients`` of ``<Z_0>`` (point by point, float64)."""
    dev = qml.device("default.qubit", wires=circuit.n_qubits)
    w = np.asarray(weights, dtype=np.float64)

    @qml.qnode(dev)
    def f(x):
        return _apply(circuit, w, x, mark=False)

    return qml.fourier.coefficients(f, circuit.n_inputs, degree, lowpass_filter=lowpass_filter)


def pl_model_spectrum(layer) -> dict:
    """``qml.fourier.qnode_spectrum`` of a hybrid layer as a function of the model input ``x``: the
    Linear and eval-mode BatchNorm become classical preprocessing ``h = A x + b`` inside the QNode
    (PennyLane reads the Jacobian ``A`` itself). Returns per input coordinate its frequency list."""
    lin, bn = layer.linear, layer.norm
    s = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach().double().numpy()
    a = s[:, None] * lin.weight.detach().double().numpy()
    mu, beta = bn.running_mean.detach().double().numpy(), bn.bias.detach().double().numpy()
    b = s * (lin.bias.detach().double().numpy() - mu) + beta
    circuit = layer.quantum.circuit
    dev = qml.device("default.qubit", wires=circuit.n_qubits)

    @qml.qnode(dev)
    def f(x, w):
        h = qml.math.dot(qml.numpy.array(a, requires_grad=False), x) + b
        return _apply(circuit, w, h, mark=False)

    w = qml.numpy.array(layer.quantum.weights.detach().double().reshape(-1).numpy(), requires_grad=True)
    x = qml.numpy.array(np.random.default_rng(1).uniform(-1, 1, a.shape[1]), requires_grad=True)
    res = qml.fourier.qnode_spectrum(f, argnum=[0])(x, w)["x"]
    return {int(k[0]): [float(v) for v in vals] for k, vals in res.items()}
