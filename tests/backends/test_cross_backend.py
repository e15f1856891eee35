"""Every backend against the native one on fresh random circuits: values and gradients.

Each case draws a random circuit (every gate of the description, weights / scaled inputs / constants,
random Pauli words with the identity) from a fixed seed (``seeds.py``: ``QLITE_TEST_SEED`` picks
another set, ``QLITE_TEST_WIDEN`` draws more), named in the test id and in every failure message.
Tolerances: float64 backends agree to 1e-10 in values and 1e-8 in gradients (exact arithmetic up to
rounding); float32 runs to 1e-5 / 1e-4 (single-precision rounding over a few dozen gates).
"""

import pytest
import torch

from .random_circuits import grads, random_case, reference, weighted_loss
from .seeds import case_seeds

SEEDS = case_seeds("cross_backend", 3)
TOL = {torch.float64: (1e-10, 1e-8), torch.float32: (1e-5, 1e-4)}


def _check(backend, seed, n_qubits, dtype, n_gates=12, batch=3, inputs_anywhere=False):
    circuit, w, x = random_case(seed, n_qubits, n_gates, batch, dtype, inputs_anywhere)
    ref, gw_ref, gx_ref = reference(circuit, w, x, pennylane=inputs_anywhere)
    out = backend(circuit, w, x)
    assert out.shape == ref.shape and out.dtype == dtype and out.device == w.device, (out.shape, out.dtype)
    gw, gx = grads(out, w, x)
    why = f"seed={seed} n={n_qubits} {dtype} {backend.name}"
    tv, tg = TOL[dtype]
    assert (out.double() - ref).abs().max() < tv, why
    assert (gw.double() - gw_ref).abs().max() < tg, why
    assert (gx.double() - gx_ref).abs().max() < tg, why


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("device", ["default.qubit", "lightning.qubit"])
@pytest.mark.parametrize("seed", SEEDS)
def test_pennylane_matches_native(seed, device, dtype):
    pytest.importorskip("pennylane")
    from qlite.simulators.pennylane_backend import PennyLaneBackend

    _check(PennyLaneBackend(device=device), seed, 2 + seed % 3, dtype)


@pytest.mark.parametrize("seed", SEEDS[:1])
def test_pennylane_parameter_shift_matches_native(seed):
    pytest.importorskip("pennylane")
    from qlite.simulators.pennylane_backend import PennyLaneBackend

    backend = PennyLaneBackend(diff_method="parameter-shift")
    _check(backend, seed, 3, torch.float64)
    assert backend._qnodes and all(method == "parameter-shift" for _, _, method in backend._qnodes.values())


@pytest.mark.parametrize("seed", SEEDS)
def test_qiskit_exact_and_parameter_shift_match_native(seed):
    pytest.importorskip("qiskit_aer")
    from qlite.simulators.qiskit_backend import QiskitBackend

    _check(QiskitBackend(), seed, 2 + seed % 3, torch.float64)


def test_qiskit_float32_matches_native():
    pytest.importorskip("qiskit_aer")
    from qlite.simulators.qiskit_backend import QiskitBackend

    _check(QiskitBackend(), SEEDS[0], 3, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_jax_matches_native(seed, dtype):
    jax = pytest.importorskip("jax")
    from qlite.simulators.jax_backend import JaxBackend

    before = jax.config.jax_enable_x64
    _check(JaxBackend(), seed, 2 + seed % 3, dtype, n_gates=6)
    assert jax.config.jax_enable_x64 == before, "the JAX backend must not leave jax_enable_x64 changed"


@pytest.mark.parametrize("name", ["qiskit", "jax"])
def test_inputs_in_any_angle_match_pennylane(name):
    """Inputs inside Rot and CRZ angles too (which the native backend does not take): against
    PennyLane default.qubit in float64."""
    pytest.importorskip("pennylane")
    pytest.importorskip({"qiskit": "qiskit_aer", "jax": "jax"}[name])
    from qlite.simulators import get_backend

    _check(get_backend(name), SEEDS[1], 3, torch.float64, n_gates=6, inputs_anywhere=True)


def test_jax_float32_really_runs_in_single_precision():
    """float32 must not silently run in float64 (nor float64 in float32): the error against the
    float64 reference is at single-precision level in one case and at double in the other."""
    pytest.importorskip("jax")
    from qlite.simulators.jax_backend import JaxBackend

    circuit, w, x = random_case(SEEDS[0], 3, 6, 4, torch.float64)
    ref = reference(circuit, w, x)[0]
    backend = JaxBackend()
    with torch.no_grad():
        err64 = (backend(circuit, w, x) - ref).abs().max()
        err32 = (backend(circuit, w.float(), x.float()).double() - ref).abs().max()
    assert err64 < 1e-12 and 1e-9 < err32 < 1e-5, (float(err64), float(err32))


@pytest.mark.parametrize("name", ["pennylane", "qiskit", "jax"])
def test_quantum_layer_trains_on_every_backend(name):
    """QuantumLayer(backend=name): outputs and gradients of a whole layer equal the native layer's."""
    pytest.importorskip({"pennylane": "pennylane", "qiskit": "qiskit_aer", "jax": "jax"}[name])
    from qlite import QuantumLayer

    g = torch.Generator().manual_seed(3)
    native = QuantumLayer(3, 1, generator=g).double()
    other = QuantumLayer(3, 1, backend=name).double()
    other.load_state_dict(native.state_dict())
    x = torch.randn(5, 3, dtype=torch.float64)
    out_n, out_o = native(x), other(x)
    (gn,) = torch.autograd.grad(weighted_loss(out_n), native.weights)
    (go,) = torch.autograd.grad(weighted_loss(out_o), other.weights)
    assert (out_n - out_o).abs().max() < 1e-10 and (gn - go).abs().max() < 1e-8, name


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pennylane", "qiskit", "jax"])
def test_qiren_sized_layer_matches_native(name):
    """The paper's layer size (8 qubits, 2 re-uploads, 2 sub-layers): 144 weights, 8 inputs."""
    pytest.importorskip({"pennylane": "pennylane", "qiskit": "qiskit_aer", "jax": "jax"}[name])
    from qlite.simulators import get_backend, reuploading_circuit

    circuit = reuploading_circuit(8, 2)
    g = torch.Generator().manual_seed(0)
    w = (torch.rand(circuit.n_weights, generator=g, dtype=torch.float64) * 6.3).requires_grad_()
    x = torch.randn(16, 8, generator=g, dtype=torch.float64, requires_grad=True)
    ref, gw_ref, gx_ref = reference(circuit, w, x)
    out = get_backend(name)(circuit, w, x)
    gw, gx = torch.autograd.grad(weighted_loss(out), (w, x))
    assert (out - ref).abs().max() < 1e-10 and (gw - gw_ref).abs().max() < 1e-8 and (gx - gx_ref).abs().max() < 1e-8


@pytest.mark.gpu
def test_jax_and_shots_on_cuda_tensors():
    """CUDA tensors in, CUDA tensors out (JAX through DLPack when JAX sees the GPU)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("jax")
    from qlite.simulators import get_backend

    circuit, w, x = random_case(SEEDS[0], 4, 8, 64, torch.float32)
    ref, gw_ref, _ = reference(circuit, w, x)
    wc, xc = w.detach().cuda().requires_grad_(), x.detach().cuda()
    out = get_backend("jax")(circuit, wc, xc)
    assert out.device.type == "cuda" and (out.double().cpu() - ref).abs().max() < 1e-5
    (gw,) = torch.autograd.grad(weighted_loss(out), wc)
    assert (gw.double().cpu() - gw_ref).abs().max() < 1e-4
    shots = get_backend("torch", shots=1000, generator=torch.Generator(device="cuda").manual_seed(0))
    est = shots(circuit, wc.detach(), xc)
    assert est.device.type == "cuda" and (est.double().cpu() - ref).abs().max() < 0.2
