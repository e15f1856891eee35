"""Export and import: QuantumLayer / Circuit <-> Qiskit QuantumCircuit <-> OpenQASM 3, checked by
simulation (Qiskit's own Statevector as the independent simulator) and by structural equality."""

import random

import pytest
import torch

pytest.importorskip("qiskit")
pytest.importorskip("qiskit_qasm3_import")

from qiskit import QuantumCircuit  # noqa: E402
from qiskit.circuit import Parameter, ParameterVector  # noqa: E402
from qiskit.quantum_info import Statevector  # noqa: E402

from qlite import QuantumLayer  # noqa: E402
from qlite.simulators import NativeBackend, PauliWord  # noqa: E402
from qlite.simulators.export import (  # noqa: E402
    from_qasm3,
    from_qiskit,
    observables_to_qiskit,
    to_qasm3,
    to_qiskit,
)

from .random_circuits import random_circuit  # noqa: E402
from .seeds import case_seeds  # noqa: E402

F64 = torch.float64


def _statevector_expvals(qc, circuit):
    sv = Statevector(qc)
    return torch.tensor([sv.expectation_value(op).real for op in observables_to_qiskit(circuit)], dtype=F64)


def _layer(seed=0, n=3, layers=2, **kw):
    # "trained": weights drawn far from the default initialisation, float64
    layer = QuantumLayer(n, layers, generator=torch.Generator().manual_seed(seed), **kw).double()
    with torch.no_grad():
        layer.weights.mul_(1.7).sub_(3.0)
    return layer


def test_trained_layer_for_one_input_matches_qiskit_statevector():
    layer = _layer(entangler="cnot", encoding="ry")
    x0 = torch.randn(3, dtype=F64)
    qc = to_qiskit(layer, x=x0)
    assert qc.num_parameters == 0 and len(qc.data) == len(layer.circuit.gates)
    assert (_statevector_expvals(qc, layer.circuit) - layer(x0[None])[0].detach()).abs().max() < 1e-12


def test_trained_layer_with_input_parameters_round_trips_through_qiskit():
    layer = _layer(1)
    qc = to_qiskit(layer)  # weights bound, inputs x[j] free
    assert sorted(p.name for p in qc.parameters) == ["x[0]", "x[1]", "x[2]"]
    x = torch.randn(4, 3, dtype=F64)
    for row in x:  # Qiskit simulates each bound input
        bound = qc.assign_parameters({p: float(row[int(p.name[2])]) for p in qc.parameters})
        assert (_statevector_expvals(bound, layer.circuit) - layer(row[None])[0].detach()).abs().max() < 1e-12
    back = from_qiskit(qc)  # constants + inputs: simulate with an empty weight vector
    assert back.n_weights == 0 and back.n_inputs == 3 and back.observables == layer.circuit.observables
    out = NativeBackend()(back, torch.zeros(0, dtype=F64), x)
    assert (out - layer(x).detach()).abs().max() < 1e-12


def test_parameterised_export_round_trips_to_the_same_circuit():
    layer = _layer(2, encoding="rx")
    assert from_qiskit(to_qiskit(layer, bind_weights=False)) == layer.circuit
    assert from_qasm3(to_qasm3(layer, bind_weights=False)) == layer.circuit


def test_qasm3_for_one_input_and_with_input_parameters():
    layer = _layer(3)
    x = torch.randn(5, 3, dtype=F64)
    text = to_qasm3(layer)
    assert text.startswith("OPENQASM 3.0;") and "input float[64] _x_0_;" in text
    assert "// qlite observables: Z0; Z1; Z2" in text
    back = from_qasm3(text)
    out = NativeBackend()(back, torch.zeros(0, dtype=F64), x)
    assert (out - layer(x).detach()).abs().max() < 1e-12
    one = from_qasm3(to_qasm3(layer, x=x[0]))
    assert one.n_inputs == 0 and one.n_weights == 0
    out = NativeBackend()(one, torch.zeros(0, dtype=F64), torch.zeros(1, 0, dtype=F64))
    assert (out[0] - layer(x[:1])[0].detach()).abs().max() < 1e-12


@pytest.mark.parametrize("seed", case_seeds("export", 3))
def test_random_circuits_with_every_gate_round_trip_exactly(seed):
    """Every gate, scaled inputs in any angle, constants, arbitrary Pauli words (in the QASM comment)."""
    circuit = random_circuit(random.Random(seed), 3, 10, n_obs=5, inputs_anywhere=True)
    assert from_qiskit(to_qiskit(circuit)) == circuit, f"seed={seed}"
    assert from_qasm3(to_qasm3(circuit)) == circuit, f"seed={seed}"
    # and by simulation against Qiskit, weights and one input bound
    g = torch.Generator().manual_seed(seed)
    w, x = torch.rand(circuit.n_weights, generator=g, dtype=F64) * 6, torch.rand(circuit.n_inputs, generator=g, dtype=F64)
    from tests.simulators.pl_reference import pennylane_expvals  # independent of the export code

    keep = [i for i, o in enumerate(circuit.observables) if o.ops]
    ref = pennylane_expvals(circuit.with_observables([circuit.observables[i] for i in keep]), w, x[None])[0]
    got = _statevector_expvals(to_qiskit(circuit, w, x), circuit)[keep]
    assert (got - ref).abs().max() < 1e-12, f"seed={seed}"


def test_importing_a_hand_written_qiskit_circuit():
    """A user's circuit: u3, cx, barrier, named inputs, global phase; observables given as strings."""
    x = ParameterVector("x", 2)
    qc = QuantumCircuit(2, global_phase=0.4)
    qc.h(0)
    qc.u(0.3, 0.2, 0.1, 1)
    qc.barrier()
    qc.rz(2.0 * x[0], 0)
    qc.cx(0, 1)
    qc.ry(x[1], 1)
    c = from_qiskit(qc, observables=["X0 Z1", "Y1"])
    assert [g.name for g in c.gates] == ["H", "Rot", "RZ", "CNOT", "RY"] and c.observables[1] == PauliWord.parse("Y1")
    xv = torch.tensor([[0.7, -1.1]], dtype=F64)
    bound = qc.assign_parameters({x[0]: 0.7, x[1]: -1.1})
    ref = _statevector_expvals(bound, c)
    assert (NativeBackend()(c, torch.zeros(0, dtype=F64), xv)[0] - ref).abs().max() < 1e-12


@pytest.mark.parametrize("build, match", [
    (lambda qc, t: qc.rzz(0.1, 0, 1), "cannot import instruction 'rzz'.*transpile"),
    (lambda qc, t: qc.measure_all(), "remove_final_measurements"),
    (lambda qc, t: qc.rx(t * t, 0), "not linear"),
    (lambda qc, t: qc.rx(t + 1.0, 0), "constant offset"),
    (lambda qc, t: qc.rx(Parameter("theta"), 0), "'theta' is neither a weight nor an input"),
    (lambda qc, t: qc.rx(2 * Parameter("w[0]"), 0), "scales the weight w\\[0\\] by 2"),
    (lambda qc, t: qc.rx(t + Parameter("w[1]"), 0), "depends on 2 parameters"),
])
def test_import_errors_name_the_problem(build, match):
    qc = QuantumCircuit(2)
    build(qc, Parameter("x[0]"))
    with pytest.raises(ValueError, match=match):
        from_qiskit(qc)


def test_export_errors():
    layer = _layer()
    with pytest.raises(ValueError, match="the circuit has 3 inputs; pass one input of that size, got 2"):
        to_qiskit(layer, x=torch.zeros(2))
    with pytest.raises(ValueError, match="the circuit has 54 weights, got 3 values"):
        to_qiskit(layer.circuit, weights=torch.zeros(3))
    with pytest.raises(TypeError, match="expected a qlite Circuit or a QuantumLayer"):
        to_qiskit(object())
    with pytest.raises(TypeError, match="expected an OpenQASM 3 string"):
        from_qasm3(b"OPENQASM 3.0;")
    with pytest.raises(TypeError, match="observables must be PauliWord"):
        from_qiskit(to_qiskit(layer), observables=[3])
