"""Fresh random circuits over every gate of the description, for cross-backend tests."""

from __future__ import annotations

import random

import torch

from qlite.simulators import GATES, Circuit, Gate, Param, PauliWord


ENCODABLE = ("RX", "RY", "RZ", "PhaseShift")  # the gates whose angle the native backend lets be an input


def random_circuit(rng: random.Random, n_qubits: int, n_gates: int, n_obs: int = 4, n_inputs: int = 2,
                   inputs_anywhere: bool = False) -> Circuit:
    """Every gate of ``GATES`` at least once (in random order) plus ``n_gates`` random ones; angles
    from weights, scaled inputs and constants; random Pauli words (the identity included).

    Inputs enter only through single-angle Pauli rotations unless ``inputs_anywhere`` (the native
    backend's restriction; the other backends take inputs in any angle)."""
    names = list(GATES) + [rng.choice(list(GATES)) for _ in range(n_gates)]
    rng.shuffle(names)
    gates, n_w = [], 0
    for name in names:
        n_wires, n_params = GATES[name]
        wires = tuple(rng.sample(range(n_qubits), n_wires))
        params = []
        for _ in range(n_params):
            kind = rng.random()
            if kind < 0.6:
                params.append(Param.weight(n_w))
                n_w += 1
            elif kind < 0.85 and (inputs_anywhere or name in ENCODABLE):
                params.append(Param.input(rng.randrange(n_inputs), rng.choice([1.0, 0.5, -2.0])))
            else:
                params.append(Param.const(rng.uniform(-3, 3)))
        gates.append(Gate(name, wires, tuple(params)))
    words = [PauliWord(())]
    while len(words) < n_obs:
        k = rng.randint(1, n_qubits)
        words.append(PauliWord(tuple((w, rng.choice("XYZ")) for w in rng.sample(range(n_qubits), k))))
    rng.shuffle(words)
    return Circuit(n_qubits, tuple(gates), tuple(words), n_weights=n_w, n_inputs=n_inputs)


def random_case(seed: int, n_qubits: int, n_gates: int = 12, batch: int = 3, dtype=torch.float64,
                inputs_anywhere: bool = False):
    """``(circuit, weights, x)`` with gradients enabled; same seed, same case."""
    rng = random.Random(seed)
    circuit = random_circuit(rng, n_qubits, n_gates, inputs_anywhere=inputs_anywhere)
    g = torch.Generator().manual_seed(seed)
    w = (torch.rand(circuit.n_weights, generator=g, dtype=torch.float64) * 6.3 - 3.15).to(dtype).requires_grad_()
    x = (torch.rand(batch, circuit.n_inputs, generator=g, dtype=torch.float64) * 4 - 2).to(dtype).requires_grad_()
    return circuit, w, x


def weighted_loss(out: torch.Tensor) -> torch.Tensor:
    """A loss that weighs outputs differently, so gradient errors cannot cancel."""
    return (out * torch.linspace(0.5, 1.5, out.shape[-1], dtype=out.dtype, device=out.device)).sum() + (out**2).sum()


def reference(circuit, w, x, pennylane: bool = False):
    """Float64 values and gradients (weights, inputs): the native backend, or PennyLane
    ``default.qubit`` with backprop (the independent reference of tests/simulators)."""
    from qlite.simulators import NativeBackend

    w64 = w.detach().double().requires_grad_()
    x64 = x.detach().double().requires_grad_()
    if pennylane:
        from tests.simulators.pl_reference import pennylane_expvals

        # pl_reference has no identity word: its columns are 1
        keep = [i for i, o in enumerate(circuit.observables) if o.ops]
        part = pennylane_expvals(circuit.with_observables([circuit.observables[i] for i in keep]), w64, x64)
        out = torch.ones(x64.shape[0], circuit.n_observables, dtype=torch.float64).index_copy(1, torch.tensor(keep), part)
    else:
        out = NativeBackend(strategy="dense")(circuit, w64, x64)
    gw, gx = grads(out, w64, x64)
    return out.detach(), gw, gx


def grads(out, w, x):
    """Gradients of :func:`weighted_loss` for the weights and inputs (zeros where unused)."""
    gw, gx = torch.autograd.grad(weighted_loss(out), (w, x), allow_unused=True)
    return (torch.zeros_like(w) if gw is None else gw), (torch.zeros_like(x) if gx is None else gx)
