"""QuantumLayer, HybridLayer and QIREN: interface, shapes, dtypes, gradients and bad input."""

import math

import pytest
import torch

from qlite import QIREN, HybridLayer, QuantumLayer
from qlite.simulators import NativeBackend, estimate_bytes, reuploading_circuit


def test_qiren_parameter_counts_match_the_paper():
    assert sum(p.numel() for p in QIREN(2, 1).parameters()) == 657
    assert sum(p.numel() for p in QIREN(1, 1).parameters()) == 649


def test_weights_shape_and_initial_range():
    layer = QuantumLayer(5, spectrum_layers=3, sublayers=2, generator=torch.Generator().manual_seed(0))
    assert layer.weights.shape == (4, 2, 5, 3)
    assert 0 <= layer.weights.min() and layer.weights.max() < 2 * math.pi
    assert layer.periodic_parameters()["weights"][1] == pytest.approx(2 * math.pi)


@pytest.mark.parametrize("shape", [(), (7,), (3, 4)])
def test_batch_shapes_match_pennylane(shape):
    pytest.importorskip("pennylane")
    from tests.simulators.pl_reference import pennylane_expvals

    layer = QuantumLayer(3, spectrum_layers=2, generator=torch.Generator().manual_seed(1)).double()
    x = torch.randn(*shape, 3, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    assert out.shape == (*shape, 3)
    ref = pennylane_expvals(layer.circuit, layer.weights.reshape(-1), x.reshape(-1, 3)).reshape(*shape, 3)
    assert (out - ref).abs().max() < 1e-10
    gx, = torch.autograd.grad(out.sum(), x)
    gx_ref, = torch.autograd.grad(ref.sum(), x)
    assert gx.shape == x.shape and (gx - gx_ref).abs().max() < 1e-8


@pytest.mark.parametrize("strategy", ["dense", "factored", "realry"])
def test_gradients_against_finite_differences_float64(strategy):
    circuit = reuploading_circuit(3, 2, 1, "cnot", "ry")
    backend = NativeBackend(strategy=strategy, chunk=2)
    w = torch.rand(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w, x: backend(circuit, w, x), (w, x), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("strategy,chunk", [("dense", None), ("factored", None), ("factored", 1), ("factored", 3),
                                            ("realry", None), ("realry", 3)])
def test_state_norm_stays_one(strategy, chunk):
    circuit = reuploading_circuit(6, 3, 2, "cz", "rx")
    w = torch.rand(circuit.n_weights) * 6
    x = torch.randn(16, 6) * 3
    state = NativeBackend(strategy=strategy, chunk=chunk).state(circuit, w, x)
    assert state.dtype == torch.complex64
    assert torch.allclose(state.abs().pow(2).sum(1), torch.ones(16), atol=1e-5)


def test_strategies_and_chunkings_agree():
    circuit = reuploading_circuit(7, 2, 2, "cnot", "rz")
    w = torch.rand(circuit.n_weights, dtype=torch.float64) * 6
    x = torch.randn(9, 7, dtype=torch.float64)
    ref = NativeBackend(strategy="autograd")(circuit, w, x)
    for strategy, chunk in [("dense", None), ("factored", None), ("factored", 1), ("factored", 2), ("factored", 5),
                            ("realry", None), ("realry", 1), ("realry", 3)]:
        assert (NativeBackend(strategy=strategy, chunk=chunk)(circuit, w, x) - ref).abs().max() < 1e-12


def test_twelve_qubits_on_cpu_small_batch():
    layer = QuantumLayer(12, spectrum_layers=2, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 12, requires_grad=True)
    out = layer(x)
    assert out.shape == (4, 12) and torch.isfinite(out).all() and out.abs().max() <= 1 + 1e-5
    out.sum().backward()
    assert torch.isfinite(layer.weights.grad).all() and torch.isfinite(x.grad).all()
    ref = layer.double()(x.detach().double())
    assert (out.detach().double() - ref).abs().max() < 1e-5


def test_dtype_follows_module():
    layer = QuantumLayer(2)
    assert layer(torch.rand(3, 2)).dtype == torch.float32
    layer = layer.double()
    out = layer(torch.rand(3, 2))  # float32 input is cast to the module's dtype
    assert out.dtype == torch.float64


def test_hybrid_layer_and_qiren_forward_backward_any_batch_shape():
    model = QIREN(2, 3, hidden_features=4, hidden_layers=1, spectrum_layers=1)
    x = torch.rand(5, 6, 2)
    out = model(x)
    assert out.shape == (5, 6, 3)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert HybridLayer(3, 4)(torch.rand(10, 3)).shape == (10, 4)


# ---- bad input ------------------------------------------------------------------------------

def test_wrong_last_dimension_is_a_clear_error():
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\), got \(3, 5\)"):
        QuantumLayer(4)(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"HybridLayer expects inputs of shape \(\.\.\., 2\)"):
        HybridLayer(2, 3)(torch.zeros(3, 5))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs_are_rejected(bad):
    x = torch.zeros(3, 2)
    x[1, 0] = bad
    with pytest.raises(ValueError, match="non-finite"):
        QuantumLayer(2)(x)


@pytest.mark.parametrize("n", [0, -1, 2.5, None])
def test_bad_qubit_counts(n):
    with pytest.raises(ValueError, match="n_qubits must be an integer >= 1"):
        QuantumLayer(n)


@pytest.mark.parametrize("kw,msg", [
    (dict(entangler="cx"), "unknown entangler 'cx'"),
    (dict(encoding="rw"), "unknown encoding 'rw'"),
    (dict(backend="cirq"), "unknown backend 'cirq'"),
    (dict(strategy="magic"), "unknown strategy 'magic'"),
])
def test_unknown_names(kw, msg):
    with pytest.raises(ValueError, match=msg):
        QuantumLayer(2, **kw)


def test_non_tensor_input_is_a_type_error():
    with pytest.raises(TypeError, match="expects a torch.Tensor"):
        QuantumLayer(2)([[0.0, 1.0]])


def test_a_state_too_large_for_memory_names_the_bytes():
    need = estimate_bytes(30, 1024)
    layer = QuantumLayer(30, spectrum_layers=1, sublayers=1)
    with pytest.raises(ValueError, match=rf"\({need} bytes\)"):
        layer(torch.zeros(1024, 30))


def test_half_precision_is_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"float32 or float64.*\.float\(\)"):
        QuantumLayer(2).half()(torch.zeros(2, 2))


@pytest.mark.parametrize("strategy", ["dense", "factored", "realry"])
def test_stored_and_recomputed_backward_agree(strategy):
    circuit = reuploading_circuit(5, 2, 2, "cnot", "rx")
    w = torch.rand(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    grads = []
    for store in (True, False):
        out = NativeBackend(strategy=strategy, store_states=store)(circuit, w, x)
        grads.append(torch.autograd.grad((out * torch.arange(1.0, 6.0, dtype=torch.float64)).sum(), (w, x)))
    for a, b in zip(*grads):
        assert (a - b).abs().max() < 1e-12


# ---- the steady-state forward: no allocator query, non-finite check where it costs nothing -----

def test_memory_is_checked_once_per_configuration_and_larger_batch(monkeypatch):
    """The allocator query (a host synchronisation on CUDA) runs on the first call for a shape and
    again only for a larger batch, not on every forward."""
    from qlite.simulators import native

    calls = []
    real = native._available_bytes
    monkeypatch.setattr(native, "_available_bytes", lambda device: calls.append(str(device)) or real(device))
    layer = QuantumLayer(3, strategy="factored")
    x = torch.rand(16, 3)
    layer(x).sum().backward()
    layer(x[:8]).sum().backward()  # the memory check of batch 16 covers it; the store decision is per shape
    first = len(calls)
    assert first >= 1
    for _ in range(3):
        layer(x).sum().backward()
        layer(x[:8]).sum().backward()
    assert len(calls) == first
    layer(torch.rand(32, 3)).sum().backward()
    assert len(calls) > first


def test_check_finite_modes():
    x = torch.zeros(3, 2)
    x[0, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        QuantumLayer(2, check_finite=True)(x)
    out = QuantumLayer(2, check_finite=False)(x)  # the caller validated its data (qlite.fit does)
    assert torch.isnan(out[0]).all() and torch.isfinite(out[1:]).all()
    with pytest.raises(ValueError, match="check_finite must be None"):
        QuantumLayer(2, check_finite="yes")


def test_the_default_checks_only_cpu_tensors():
    layer = QuantumLayer(2)
    cpu = torch.zeros(1, 2)
    assert layer._should_check_finite(cpu)
    meta = torch.empty(1, 2, device="meta")  # stands in for a device tensor: checking it would synchronise
    assert not layer._should_check_finite(meta)
    assert QuantumLayer(2, check_finite=True)._should_check_finite(meta)


# ---- issue 15: bad input that was unclear or silently wrong ------------------------------------

def test_complex_input_is_a_type_error():
    with pytest.raises(TypeError, match="must be real, got torch.complex64"):
        QuantumLayer(2)(torch.zeros(3, 2, dtype=torch.complex64))


def test_float64_input_into_a_float32_quantum_layer_is_cast():
    """Documented: angles are cast to the layer's dtype (and the result has the layer's dtype)."""
    layer = QuantumLayer(2, generator=torch.Generator().manual_seed(0))
    x = torch.rand(4, 2, dtype=torch.float64)
    out = layer(x)
    assert out.dtype == torch.float32 and torch.equal(out, layer(x.float()))


def test_float64_input_into_a_float32_hybrid_model_names_the_fix():
    model = QIREN(2, 1, hidden_layers=0)
    with pytest.raises(TypeError, match=r"got torch.float64 inputs but its weights are torch.float32.*model.to"):
        model(torch.rand(4, 2, dtype=torch.float64))
    assert model.double()(torch.rand(4, 2, dtype=torch.float64)).dtype == torch.float64


def test_a_batch_of_one_in_train_mode_is_a_clear_error():
    model = QIREN(2, 1, hidden_layers=0)
    with pytest.raises(ValueError, match="batch of 1 point.*model.eval()"):
        model(torch.rand(1, 2))
    with pytest.raises(ValueError, match="batch of 1 point"):
        model(torch.rand(1, 1, 2))
    assert model.eval()(torch.rand(1, 2)).shape == (1, 1)
    with pytest.raises(TypeError, match="HybridLayer expects a torch.Tensor"):
        HybridLayer(2, 2)([[0.0, 1.0]])


def test_config_and_repr_describe_a_given_circuit():
    from qlite.simulators import Circuit, Gate, Param, PauliWord

    c = Circuit(2, (Gate("RX", (0,), (Param.input(0),)), Gate("RY", (1,), (Param.weight(0),)), Gate("CNOT", (0, 1))),
                (PauliWord.parse("Z0 Z1"), PauliWord.z(1)))
    layer = QuantumLayer(circuit=c)
    assert layer.config == dict(n_qubits=2, circuit="custom", n_gates=3, n_weights=1, n_inputs=1,
                                observables=["Z0 Z1", "Z1"])
    text = repr(layer)
    assert "circuit=custom (3 gates, 1 weights, 1 inputs, observables=Z0 Z1 | Z1)" in text
    assert "spectrum_layers" not in text and "entangler" not in text
    with pytest.raises(ValueError, match=r"\{'sublayers': 3\} describe the re-uploading ansatz"):
        QuantumLayer(circuit=c, sublayers=3)
    ansatz = QuantumLayer(3, 1, 1, "cnot", "ry")
    assert ansatz.config == dict(n_qubits=3, spectrum_layers=1, sublayers=1, entangler="cnot", encoding="ry")


def test_a_misspelled_backend_option_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown option 'strategi' for backend 'torch'.*did you mean 'strategy'.*"
                                         r"valid options: .*'store_states'"):
        QuantumLayer(2, strategi="dense")


@pytest.mark.parametrize("strategy", ["factored", "realry", "dense"])
def test_cpu_tiles_give_the_untiled_results(strategy):
    """The batch pass in tiles (the CPU default for large batches) against one pass: same values
    and gradients; tiles that do not divide the batch included."""
    circuit = reuploading_circuit(3, 2, 2, "cz", "rz")
    w = torch.rand(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    x = torch.randn(37, 3, dtype=torch.float64, requires_grad=True)
    tiled = NativeBackend(strategy=strategy, cpu_tile=64)  # 8 points per tile
    assert tiled._tile_points(3, x) == 8
    res = []
    for backend in (tiled, NativeBackend(strategy=strategy, cpu_tile=None)):
        out = backend(circuit, w, x)
        res.append((out, *torch.autograd.grad((out * torch.arange(1.0, 4.0, dtype=out.dtype)).sum(), (w, x))))
    for a, b in zip(*res):
        assert (a - b).abs().max() < 1e-12
    with pytest.raises(ValueError, match="cpu_tile must be"):
        NativeBackend(cpu_tile=0)
