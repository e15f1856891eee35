"""The realry plan (merged diagonal phases, real RY chunks): its gate decompositions, its states
(global phase included) and its plan's shape. Values and gradients against PennyLane are in
test_native_vs_pennylane.py (STRATEGIES)."""

import math

import pytest
import torch

from qlite.simulators import Circuit, Gate, NativeBackend, Param, PauliWord, reuploading_circuit
from qlite.simulators import realry, runops
from qlite.simulators.gates import fixed_matrix, rotation_matrices

from tests.backends.random_circuits import random_case
from tests.backends.seeds import case_seeds


def _matrix(factors, phase, params):
    """The 2x2 matrix of a decomposition: factors in time order, then the global phase."""
    def value(angle):
        pos, coef, const = angle
        return const + (coef * params[pos] if pos is not None else 0.0)

    m = torch.eye(2, dtype=torch.complex128)
    for kind, angle in factors:
        a = torch.tensor([value(angle)], dtype=torch.float64)
        m = rotation_matrices("RZ" if kind == "z" else "RY", a)[0] @ m
    if phase is not None:
        m = m * complex(math.cos(value(phase)), math.sin(value(phase)))
    return m


@pytest.mark.parametrize("name", sorted(realry._FACTORS))
def test_each_decomposition_is_its_gate_exactly(name):
    factors, phase = realry._FACTORS[name]
    params = [0.37, -1.2, 2.5]
    if name in ("RX", "RY", "RZ", "PhaseShift"):
        want = rotation_matrices(name, torch.tensor([params[0]], dtype=torch.float64))[0]
    elif name == "Rot":
        want = rotation_matrices("Rot", torch.tensor([params], dtype=torch.float64))[0]
    else:
        want = fixed_matrix(name, torch.complex128, "cpu")
    assert (_matrix(factors, phase, params) - want).abs().max() < 1e-14


@pytest.mark.parametrize("seed", case_seeds("realry_states", 4))
def test_states_equal_the_dense_strategy_with_the_global_phase(seed):
    circuit, w, x = random_case(seed, 2 + seed % 3, 14, 4, torch.float64)
    circuit = Circuit(circuit.n_qubits, tuple(g for g in circuit.gates if g.name != "PhaseShift" or not g.depends_on_input),
                      circuit.observables, circuit.n_weights, circuit.n_inputs)  # input PhaseShift: a per-sample phase
    ref = NativeBackend(strategy="dense").state(circuit, w, x)
    got = NativeBackend(strategy="realry").state(circuit, w, x)
    assert (got - ref).abs().max() < 1e-12


def test_the_qiren_plan_is_real_chunks_merged_phases_and_encodings():
    c = reuploading_circuit(8, 2, 2)
    ops_list = NativeBackend(strategy="realry").plan(c, batch=1024)
    kinds = [type(op) for op in ops_list]
    assert set(kinds) <= {runops.RealChunk, runops.RealChunkBlocks, runops.Diagonal, runops.Encode}
    encs = [op for op in ops_list if isinstance(op, runops.Encode)]
    assert len(encs) == 2 and all(e.offset is not None for e in encs)  # RZ parts merged into the encodings
    # per re-upload: 2 sub-layers x 2 real chunks and one merged phase between the sub-layers
    assert kinds.count(runops.Diagonal) == 2
    assert kinds.count(runops.RealChunk) + kinds.count(runops.RealChunkBlocks) == 8
    fact = NativeBackend(strategy="factored").plan(c, batch=1024)
    from qlite.simulators.cost import run_cost

    assert run_cost(ops_list, 8, 1024, 8)[0].flops < 0.6 * run_cost(fact, 8, 1024, 8)[0].flops


def test_permutations_and_crz_stay_exact():
    W, X = Param.weight, Param.input
    gates = (Gate("Rot", (0,), (W(0), W(1), W(2))), Gate("CNOT", (0, 1)), Gate("CRZ", (1, 2), (W(3),)),
             Gate("RX", (1,), (X(0),)), Gate("CRZ", (0, 1), (W(4),)), Gate("H", (2,)), Gate("SWAP", (0, 2)),
             Gate("RY", (0,), (W(5),)), Gate("CZ", (0, 2)))
    c = Circuit(3, gates, (PauliWord.parse("Z0 X2"), PauliWord.parse("Y1")))
    g = torch.Generator().manual_seed(5)
    w = torch.rand(c.n_weights, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(6, 1, generator=g, dtype=torch.float64, requires_grad=True)
    outs = [NativeBackend(strategy=s)(c, w, x) for s in ("dense", "realry")]
    grads = [torch.autograd.grad((o * torch.tensor([1.0, -0.5], dtype=o.dtype)).sum(), (w, x)) for o in outs]
    assert (outs[0] - outs[1]).abs().max() < 1e-12
    for a, b in zip(*grads):
        assert (a - b).abs().max() < 1e-12


def test_auto_picks_realry_on_cpu_only_where_it_measured_faster():
    from qlite.simulators.native import default_strategy

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [default_strategy(n, cpu) for n in (4, 6, 7, 8, 12)] == ["dense", "dense", "factored", "realry", "realry"]
    assert [default_strategy(n, cuda) for n in (8, 10)] == ["dense", "factored"]
    plan = NativeBackend().plan(reuploading_circuit(8, 2, 2), batch=1024)
    assert any(isinstance(op, runops.RealChunk) for op in plan)
