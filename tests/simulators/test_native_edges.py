"""Edges of the native backend: empty batches, second derivatives, negative wires, and the CZ-ring
folding that must not outgrow the state at small batches."""

import pytest
import torch

from qlite import QuantumLayer
from qlite.simulators import Gate, NativeBackend, Param, reuploading_circuit
from qlite.simulators.runops import ChunkBlocks


def test_an_empty_batch_gives_an_empty_result():
    layer = QuantumLayer(3)
    out = layer(torch.zeros(0, 3))
    assert out.shape == (0, 3)
    out.sum().backward()
    assert torch.equal(layer.weights.grad, torch.zeros_like(layer.weights))


def test_second_derivatives_need_the_autograd_strategy():
    """The adjoint backward is first-order: create_graph=True raises and names the fix; the autograd
    strategy's second derivative matches a finite difference of the first."""
    x = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)
    fast = QuantumLayer(3).double()
    with pytest.raises(RuntimeError, match="first derivatives only.*strategy='autograd'"):
        torch.autograd.grad(fast(x).sum(), x, create_graph=True)
    exact = QuantumLayer(3, strategy="autograd").double()
    exact.load_state_dict(fast.state_dict())

    def first(z):
        (g,) = torch.autograd.grad(exact(z)[:, 0].sum(), z, create_graph=True)
        return g

    (h,) = torch.autograd.grad(first(x)[0, 1], x)
    eps = 1e-6
    dx = torch.zeros_like(x)
    dx[0, 2] = eps
    fd = (first((x + dx).detach().requires_grad_())[0, 1] - first((x - dx).detach().requires_grad_())[0, 1]) / (2 * eps)
    assert abs(h[0, 2].item() - fd.item()) < 1e-6


def test_negative_wires_and_non_param_angles_are_refused():
    with pytest.raises(ValueError, match="negative wires"):
        Gate("RX", (-1,), (Param.weight(0),))
    with pytest.raises(TypeError, match="angles must be Param objects"):
        Gate("RX", (0,), (0.5,))
    with pytest.raises(ValueError, match="spectrum_layers must be an integer"):
        reuploading_circuit(2, True)
    c = reuploading_circuit(2, 1)
    with pytest.raises(TypeError, match="must be real"):
        NativeBackend()(c, torch.zeros(c.n_weights), torch.zeros(3, 2, dtype=torch.complex64))


def test_ring_folding_only_where_its_matrices_are_no_larger_than_the_state():
    c = reuploading_circuit(12, 2, 2)
    backend = NativeBackend(strategy="factored")
    assert not any(isinstance(op, ChunkBlocks) for op in backend.plan(c, batch=1))  # 64 6-qubit matrices > one state
    assert any(isinstance(op, ChunkBlocks) for op in backend.plan(c, batch=1024))


def test_a_circuit_hashes_its_gates_once_and_pickles_without_the_hash():
    import pickle

    c, d = reuploading_circuit(4, 2), reuploading_circuit(4, 2)
    assert hash(c) == hash(d) and {c: 1}[d] == 1
    assert c.__dict__["_hash"] == hash(c)  # cached: the backends' per-forward lookups cost nothing
    e = pickle.loads(pickle.dumps(c))
    assert "_hash" not in e.__dict__ and e == c and hash(e) == hash(c)  # recomputed in the new process
