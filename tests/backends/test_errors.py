"""Missing optional packages name the extra; every backend supports every gate of the description
and names a gate it cannot run."""

import sys

import pytest
import torch

from qlite.simulators import GATES, Circuit, Gate, Param, PauliWord, get_backend
from qlite.simulators import circuit as circuit_module


@pytest.mark.parametrize("backend, module, extra", [
    ("pennylane", "pennylane", "pennylane"), ("qiskit", "qiskit_aer", "qiskit"), ("jax", "jax", "jax"),
])
def test_missing_package_names_the_extra(monkeypatch, backend, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ImportError, match=rf"pip install 'qlite\[{extra}\]'"):
        get_backend(backend)


def test_export_without_qiskit_names_the_extra(monkeypatch):
    from qlite.simulators.export import from_qasm3, to_qiskit
    from qlite.simulators import reuploading_circuit

    with monkeypatch.context() as m:
        m.setitem(sys.modules, "qiskit", None)
        with pytest.raises(ImportError, match=r"exporting to Qiskit needs the package 'qiskit'.*pip install 'qlite\[qiskit\]'"):
            to_qiskit(reuploading_circuit(2, 1))
    pytest.importorskip("qiskit")
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "qiskit_qasm3_import", None)
        with pytest.raises(ImportError, match=r"qiskit_qasm3_import.*pip install 'qlite\[qiskit\]'"):
            from_qasm3("OPENQASM 3.0;")


def test_every_gate_of_the_description_is_in_every_translation_table():
    from qlite.simulators.export import TO_QISKIT
    from qlite.simulators.jax_backend import JAX_GATES
    from qlite.simulators.pennylane_backend import PENNYLANE_GATES

    for table in (TO_QISKIT, PENNYLANE_GATES, JAX_GATES):
        assert set(GATES) <= set(table), set(GATES) - set(table)


@pytest.mark.parametrize("name, module", [("pennylane", "pennylane"), ("qiskit", "qiskit_aer"), ("jax", "jax")])
def test_a_gate_a_backend_cannot_run_is_named(monkeypatch, name, module):
    """A gate added to the description later, without a translation, gives a clear error."""
    pytest.importorskip(module)
    monkeypatch.setitem(circuit_module.GATES, "FancyGate", (1, 1))
    c = Circuit(1, (Gate("RX", (0,), (Param.weight(0),)), Gate("FancyGate", (0,), (Param.weight(1),))),
                (PauliWord.z(0),))
    with pytest.raises(ValueError, match=f"backend '{name}' cannot run gate 'FancyGate'"):
        get_backend(name)(c, torch.zeros(2), torch.zeros(1, 0))


def test_export_names_an_unsupported_gate(monkeypatch):
    pytest.importorskip("qiskit")
    from qlite.simulators.export import to_qiskit

    monkeypatch.setitem(circuit_module.GATES, "FancyGate", (1, 0))
    with pytest.raises(ValueError, match="cannot run gate 'FancyGate'"):
        to_qiskit(Circuit(1, (Gate("FancyGate", (0,)),), (PauliWord.z(0),)))


@pytest.mark.parametrize("name, module", [("pennylane", "pennylane"), ("qiskit", "qiskit_aer")])
def test_shot_numbers_are_checked_everywhere(name, module):
    pytest.importorskip(module)
    with pytest.raises(ValueError, match="shots must be >= 1"):
        get_backend(name, shots=0)


@pytest.mark.parametrize("name, module", [("pennylane", "pennylane"), ("qiskit", "qiskit_aer"), ("jax", "jax")])
def test_shape_and_type_errors(name, module):
    pytest.importorskip(module)
    from qlite.simulators import reuploading_circuit

    backend, c = get_backend(name), reuploading_circuit(2, 1)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 2\), got \(3,\)"):
        backend(c, torch.zeros(c.n_weights), torch.zeros(3))
    with pytest.raises(ValueError, match=f"expected a flat weight vector of {c.n_weights}"):
        backend(c, torch.zeros(3), torch.zeros(1, 2))
    with pytest.raises(TypeError, match="expected a qlite.simulators.Circuit"):
        backend("not a circuit", torch.zeros(3), torch.zeros(1, 2))


@pytest.mark.parametrize("name, module, bad, hint", [
    ("torch", "torch", "strategi", "strategy"), ("qiskit", "qiskit_aer", "shot", "shots"), ("jax", "jax", "jitt", "jit"),
])
def test_a_misspelled_option_lists_the_valid_ones(name, module, bad, hint):
    pytest.importorskip(module)
    with pytest.raises(ValueError, match=rf"unknown option '{bad}' for backend '{name}'; did you mean '{hint}'\? "
                                         rf"valid options: \[.*'{hint}'"):
        get_backend(name, **{bad: 1})


@pytest.mark.parametrize("device", ["default.qubit", "lightning.qubit"])
def test_a_misspelled_pennylane_option_fails_at_construction(device):
    pytest.importorskip("pennylane")
    with pytest.raises(ValueError, match=rf"unknown option for backend 'pennylane' with device '{device}'.*"
                                         r"'diff_metod'.*valid options: \['device', 'diff_method'"):
        get_backend("pennylane", device=device, diff_metod="adjoint")


@pytest.mark.parametrize("device", ["default.qubit", "lightning.qubit"])
def test_the_pennylane_backend_leaves_the_default_dtype_alone(monkeypatch, device):
    """float64 results stay exact on lightning (which returns Python floats) without flipping torch's
    process-wide default dtype around each call."""
    pytest.importorskip("pennylane")
    from qlite.simulators import reuploading_circuit

    def refuse(dtype):
        raise AssertionError(f"torch.set_default_dtype({dtype}) called by a library call")

    backend = get_backend("pennylane", device=device)
    c = reuploading_circuit(2, 1)
    w = torch.rand(c.n_weights, dtype=torch.float64, requires_grad=True)
    x = torch.rand(3, 2, dtype=torch.float64)
    monkeypatch.setattr(torch, "set_default_dtype", refuse)
    out = backend(c, w, x)
    out.sum().backward()
    ref = get_backend("torch")(c, w.detach(), x)
    assert out.dtype == torch.float64 and (out - ref).abs().max() < 1e-12
