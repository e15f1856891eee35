"""The reference implementation of QIREN's architecture on PennyLane (``qml.qnn.TorchLayer``).

This is how the paper's code builds its quantum layer (``default.qubit`` through ``TorchLayer``);
qlite keeps it as the independent baseline that benchmarks and cross-checks run against. Requires
the ``pennylane`` extra.
"""

from __future__ import annotations

from torch import nn


def _pennylane():
    try:
        import pennylane as qml
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the PennyLane reference needs the optional extra: pip install 'qlite[pennylane]'") from err
    return qml


def pennylane_quantum_layer(n_qubits: int, spectrum_layers: int = 2, sublayers: int = 2, entangler: str = "cz",
                            encoding: str = "rz", device: str = "default.qubit", diff_method: str = "backprop"):
    """A ``qml.qnn.TorchLayer`` with the same circuit and weight layout as :class:`qlite.QuantumLayer`."""
    qml = _pennylane()
    imprimitive = {"cz": qml.CZ, "cnot": qml.CNOT}[entangler]
    rotation = {"rz": qml.RZ, "rx": qml.RX, "ry": qml.RY}[encoding]
    dev = qml.device(device, wires=n_qubits)

    @qml.qnode(dev, interface="torch", diff_method=diff_method)
    def circuit(inputs, weights):
        for l in range(spectrum_layers):
            qml.StronglyEntanglingLayers(weights[l], wires=range(n_qubits), imprimitive=imprimitive)
            for j in range(n_qubits):
                rotation(inputs[..., j], wires=j)
        qml.StronglyEntanglingLayers(weights[spectrum_layers], wires=range(n_qubits), imprimitive=imprimitive)
        return [qml.expval(qml.PauliZ(j)) for j in range(n_qubits)]

    return qml.qnn.TorchLayer(circuit, {"weights": (spectrum_layers + 1, sublayers, n_qubits, 3)})


def pennylane_qiren(in_features: int, out_features: int, hidden_features: int = 8, hidden_layers: int = 2,
                    spectrum_layers: int = 2, **circuit) -> nn.Module:
    """QIREN with PennyLane quantum layers: the reference model, layer for layer like :class:`qlite.QIREN`."""
    layers = []
    widths = [in_features] + [hidden_features] * (hidden_layers + 1)
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), pennylane_quantum_layer(b, spectrum_layers, **circuit)]
    layers.append(nn.Linear(hidden_features, out_features))
    return nn.Sequential(*layers)
