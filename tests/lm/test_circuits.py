"""The circuits inside the adapters against PennyLane ``default.qubit`` in float64."""

import math

import pytest
import torch
from torch import nn

from qlite.lm import QuantumAdapterConfig, UnitaryAdapterConfig, inject
from qlite.lm.generated import CircuitProbabilities
from qlite.lm.unitary import ColumnBank, orthonormal_columns

qml = pytest.importorskip("pennylane")


def test_generator_probabilities_and_gradients_match_pennylane():
    n, depth = 4, 3
    src = CircuitProbabilities(n, depth, generator=torch.Generator().manual_seed(0)).double()
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def probs(w):
        for d in range(depth):
            for i in range(n):
                qml.RY(w[d * n + i], wires=i)
            for i in range(n - 1):
                qml.CNOT(wires=[i, i + 1])
        return qml.probs(wires=range(n))

    w = src.weights.detach().clone().requires_grad_(True)
    p_ref = probs(w)
    p = src.backend.probabilities(src.circuit, src.weights, src.weights.new_zeros((1, 0)))[0]
    torch.testing.assert_close(p, p_ref, atol=1e-12, rtol=0)
    g = torch.randn(2 ** n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (p * g).sum().backward()
    (p_ref * g).sum().backward()
    torch.testing.assert_close(src.weights.grad, w.grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("entangler", ["cz", "cnot"])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_bank_columns_are_the_circuit_unitaries(entangler, n):
    r, depth, count = min(3, 2 ** n), 2, 3
    bank = ColumnBank(n, count, r, depth, entangler, generator=torch.Generator().manual_seed(2)).double()
    gate = qml.CZ if entangler == "cz" else qml.CNOT
    ring = [(0, 1)] if n == 2 else [(i, (i + 1) % n) for i in range(n)] if n > 2 else []

    def circuit(w):
        for b in range(depth):
            for i in range(n):
                qml.RY(w[b, i], wires=i)
            for i, j in ring:
                gate(wires=[i, j])

    with torch.no_grad():
        cols = bank()  # (count, 2**n, r)
    for g in range(count):
        U = qml.matrix(circuit, wire_order=range(n))(bank.weights[g].detach())
        torch.testing.assert_close(cols[g], torch.as_tensor(U).real[:, :r], atol=1e-12, rtol=0)


def test_bank_gradients_match_pennylane():
    n, r, depth = 3, 2, 2
    bank = ColumnBank(n, 2, r, depth, "cz", generator=torch.Generator().manual_seed(3)).double()
    w = bank.weights.detach().clone().requires_grad_(True)

    def unitary(wg):
        def circuit():
            for b in range(depth):
                for i in range(n):
                    qml.RY(wg[b, i], wires=i)
                for i in range(n):
                    qml.CZ(wires=[i, (i + 1) % n])
        return torch.as_tensor(qml.matrix(circuit, wire_order=range(n))()).real[:, :r]

    g = torch.randn(2, 2 ** n, r, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    (bank() * g).sum().backward()
    (torch.stack([unitary(w[i]) for i in range(2)]) * g).sum().backward()
    torch.testing.assert_close(bank.weights.grad, w.grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("d_out, d_in", [(16, 16), (576, 192), (48, 16), (5, 3)])
def test_unitary_adapter_factors_are_orthonormal(d_out, d_in):
    net = nn.Sequential(nn.Linear(d_in, d_out))
    a = inject(net, UnitaryAdapterConfig(r=3, depth=3), target_modules=["0"])[0]
    U, V = a.factors()
    assert U.shape == (d_out, 3) and V.shape == (d_in, 3)
    eye = torch.eye(3)
    torch.testing.assert_close(U.t() @ U, eye, atol=1e-6, rtol=0)
    torch.testing.assert_close(V.t() @ V, eye, atol=1e-6, rtol=0)


def test_orthonormal_columns_span_the_input_and_are_idempotent():
    m = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    q = orthonormal_columns(m)
    torch.testing.assert_close(q.t() @ q, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
    r = q.t() @ m  # m = q r with r upper triangular and a positive diagonal
    torch.testing.assert_close(torch.triu(r), r, atol=1e-12, rtol=0)
    assert (torch.diagonal(r) > 0).all()
    torch.testing.assert_close(orthonormal_columns(q), q, atol=1e-12, rtol=0)


def test_adapter_gradients_match_pennylane_in_float64():
    """The same tiny hybrid model with the native and the PennyLane backend: loss gradients of every
    adapter parameter (down, LayerNorm, circuit angles, up) agree to 1e-8."""
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.randn(7, 6, dtype=torch.float64)
    grads = []
    for backend in ("torch", "pennylane"):
        cfg = QuantumAdapterConfig(n_qubits=3, spectrum_layers=2, sublayers=1, backend=backend)
        m = inject(base, cfg, target_modules=["0", "2"], seed=5).double()
        with torch.no_grad():  # a non-zero up projection so every parameter gets a gradient
            for name, p in m.named_parameters():
                if name.endswith("up.weight"):
                    p.copy_(torch.linspace(-1, 1, p.numel(), dtype=torch.float64).reshape(p.shape))
        (m(x) ** 2).sum().backward()
        grads.append({n: p.grad for n, p in m.named_parameters() if p.requires_grad})
    assert set(grads[0]) == set(grads[1]) and len(grads[0]) == 10
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-8, rtol=0, msg=name)
    assert all(g.abs().sum() > 0 for g in grads[0].values())


def test_zero_angles_leave_the_entangler_alone():
    bank = ColumnBank(2, 1, 4, 1, "cz").double()
    with torch.no_grad():
        bank.weights.zero_()  # U = CZ only: diag(1, 1, 1, -1)
        c = bank()[0]
    torch.testing.assert_close(c, torch.diag(torch.tensor([1.0, 1, 1, -1], dtype=torch.float64)))
    assert math.isclose(float(c[0, 0]), 1.0)
