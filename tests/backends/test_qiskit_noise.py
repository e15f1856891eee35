"""The Qiskit / Aer backend with shots and noise: analytic depolarizing values, readout error
against the native exact formula, shot statistics, noisy parameter-shift gradients, bad input."""

import math

import pytest
import torch

pytest.importorskip("qiskit_aer")

from qlite.simulators import Circuit, Gate, NativeBackend, Param, PauliWord, get_backend  # noqa: E402
from qlite.simulators.noise import NoiseConfig, aer_noise_model  # noqa: E402
from qlite.simulators.qiskit_backend import QiskitBackend  # noqa: E402
from qlite.simulators.shots import ShotBackend  # noqa: E402

from .random_circuits import random_case  # noqa: E402
from .seeds import case_seeds  # noqa: E402

W, X = Param.weight, Param.input


def _rx_circuit():
    return Circuit(1, (Gate("RX", (0,), (W(0),)),), (PauliWord.parse("Z0"), PauliWord.parse("Y0")))


def test_depolarizing_single_qubit_matches_the_bloch_shrink():
    """RX(t) then depolarizing(p): Bloch vector (0, -sin t, cos t) shrinks by 1 - p."""
    p, t = 0.13, 0.7
    out = QiskitBackend(noise=NoiseConfig(depolarizing=p))(_rx_circuit(), torch.tensor([t], dtype=torch.float64),
                                                          torch.zeros(1, 0, dtype=torch.float64))
    assert torch.allclose(out[0], (1 - p) * torch.tensor([math.cos(t), -math.sin(t)], dtype=torch.float64), atol=1e-12)


def test_depolarizing_bell_state_matches_analytic_values():
    """H (1q error p1) then CNOT (2q error p2) on |00>: <Z0 Z1> = 1 - p2, <X0 X1> = (1-p1)(1-p2),
    <Z0> = 0."""
    p1, p2 = 0.05, 0.2
    c = Circuit(2, (Gate("H", (0,)), Gate("CNOT", (0, 1))),
                tuple(PauliWord.parse(s) for s in ("Z0 Z1", "X0 X1", "Z0")))
    out = QiskitBackend(noise=NoiseConfig(depolarizing=p1, depolarizing_2q=p2))(
        c, torch.zeros(0, dtype=torch.float64), torch.zeros(2, 0, dtype=torch.float64))
    ref = torch.tensor([1 - p2, (1 - p1) * (1 - p2), 0.0], dtype=torch.float64)
    assert (out - ref).abs().max() < 1e-12


def test_crz_takes_one_two_qubit_error_and_no_one_qubit_error():
    """H x H then CRZ(t): <X1> = (1 + cos t) / 2 and <X0> = cos(t / 2), each times (1 - p1) for the
    H's one-qubit errors and (1 - p2) for the CRZ's single two-qubit error (not its decomposition's)."""
    t = 0.9
    c = Circuit(2, (Gate("H", (0,)), Gate("H", (1,)), Gate("CRZ", (0, 1), (W(0),))),
                (PauliWord.parse("X1"), PauliWord.parse("X0")))
    w, x = torch.tensor([t], dtype=torch.float64), torch.zeros(1, 0, dtype=torch.float64)
    clean = torch.tensor([(1 + math.cos(t)) / 2, math.cos(t / 2)], dtype=torch.float64)
    for p1, p2 in ((0.0, 0.2), (0.1, 0.0), (0.1, 0.2)):
        out = QiskitBackend(noise=NoiseConfig(depolarizing=p1, depolarizing_2q=p2))(c, w, x)[0]
        assert torch.allclose(out, (1 - p1) * (1 - p2) * clean, atol=1e-12), (p1, p2, out)


def test_measurement_basis_changes_are_noiseless_with_shots():
    """With shots, the H / Sdg that measure X and Y words are not noisy gates: the estimate agrees
    with the exact noisy value (1 - p) (-sin t), not (1 - p)**2 (-sin t)."""
    p, t = 0.13, 0.7
    w, x = torch.tensor([t], dtype=torch.float64), torch.zeros(1, 0, dtype=torch.float64)
    est = QiskitBackend(noise=NoiseConfig(depolarizing=p), shots=200_000, seed=3)(_rx_circuit(), w, x)[0]
    assert abs(float(est[1]) - (1 - p) * -math.sin(t)) < 0.012  # 5 sigma of 200k shots


def test_exact_readout_matches_native_readout():
    circuit, w, x = random_case(case_seeds("qiskit_noise_exact", 1)[0], 3, 10)
    noise = NoiseConfig(readout=(0.04, 0.09))
    ref = ShotBackend(NativeBackend(), None, noise=noise)(circuit, w, x)
    out = QiskitBackend(noise=noise)(circuit, w, x)
    assert (out - ref).abs().max() < 1e-10


def test_sampled_values_with_readout_error_are_unbiased():
    """Aer SamplerV2 with Aer's ReadoutError vs the exact noisy value (native formula): each
    estimate within 5 standard errors, sqrt((1 - v^2) / shots)."""
    seed = case_seeds("qiskit_readout_sampled", 1)[0]
    circuit, w, _ = random_case(seed, 3, 10)
    x = torch.rand(1, circuit.n_inputs, dtype=torch.float64).expand(8, -1)
    shots = 4000
    noise = NoiseConfig(readout=(0.05, 0.1))
    exact = ShotBackend(NativeBackend(), None, noise=noise)(circuit, w.detach(), x)
    est = QiskitBackend(shots=shots, noise=noise, seed=seed)(circuit, w.detach(), x)
    se = ((1 - exact**2).clamp_min(0) / (shots * est.shape[0])).sqrt()
    assert ((est.mean(0) - exact[0]).abs() <= 5 * se[0] + 1e-12).all(), f"seed={seed}"
    assert est.std(0).max() > 0  # different inputs rows are independent draws


def test_shots_are_reproducible_from_the_seed_and_fresh_each_call():
    c, w, x = random_case(1, 2, 6)
    a = QiskitBackend(shots=100, seed=7)
    b = QiskitBackend(shots=100, seed=7)
    with torch.no_grad():
        first, second = a(c, w, x), a(c, w, x)
        assert torch.equal(first, b(c, w, x)) and not torch.equal(first, second)


def test_noisy_parameter_shift_gradient_matches_finite_differences():
    """The shift rule holds for the noisy (density-matrix) expectation: gate errors follow the
    gates and do not depend on the angles."""
    circuit, w, x = random_case(5, 3, 8)
    backend = QiskitBackend(noise=NoiseConfig(depolarizing=0.03, depolarizing_2q=0.05, readout=0.02))
    out = backend(circuit, w, x)
    gw, = torch.autograd.grad(out.sum(), w)
    eps = 1e-5
    fd = torch.empty_like(w)
    with torch.no_grad():
        for i in range(w.numel()):
            e = torch.zeros_like(w)
            e[i] = eps
            fd[i] = (backend(circuit, w + e, x).sum() - backend(circuit, w - e, x).sum()) / (2 * eps)
    assert (gw - fd).abs().max() < 1e-6
    assert (out - NativeBackend()(circuit, w, x)).abs().max() > 1e-3  # the noise did something


def test_parameter_shift_with_shots_estimates_the_gradient():
    shots = 20000
    t = torch.tensor([0.9], dtype=torch.float64, requires_grad=True)
    out = QiskitBackend(shots=shots, seed=3)(_rx_circuit(), t, torch.zeros(1, 0, dtype=torch.float64))
    (g,) = torch.autograd.grad(out[0, 0], t)
    # d<Z>/dt = -sin t; estimate (f(t+pi/2) - f(t-pi/2)) / 2 has sd <= sqrt(2) / 2 / sqrt(shots)
    assert abs(g.item() + math.sin(0.9)) < 5 * math.sqrt(2) / 2 / math.sqrt(shots)


def test_aer_noise_model_has_the_requested_errors():
    model = aer_noise_model(NoiseConfig(depolarizing=0.01, depolarizing_2q=0.02, readout=(0.1, 0.2)))
    d = model.to_dict()["errors"]
    kinds = sorted({e["type"] for e in d})
    assert kinds == ["qerror", "roerror"]
    ro = next(e for e in d if e["type"] == "roerror")
    assert ro["probabilities"] == [[0.9, 0.1], [0.2, 0.8]]
    two = {op for e in d if e["type"] == "qerror" for op in e["operations"] if op in ("cx", "cz", "swap", "crz")}
    assert two == {"cx", "cz", "swap", "crz"}


def test_bad_qiskit_options():
    from qiskit_aer.noise import NoiseModel, ReadoutError

    with pytest.raises(ValueError, match="shots must be >= 1"):
        QiskitBackend(shots=0)
    with pytest.raises(ValueError, match="exact noisy values need method='density_matrix'"):
        QiskitBackend(noise=NoiseConfig(depolarizing=0.1), method="statevector")
    model = NoiseModel()
    model.add_all_qubit_readout_error(ReadoutError([[0.9, 0.1], [0.1, 0.9]]))
    with pytest.raises(ValueError, match="readout errors, which only act on measured shots: pass shots=N"):
        QiskitBackend(noise=model)
    QiskitBackend(noise=model, shots=10)  # fine with shots
    from qiskit_aer.primitives import SamplerV2

    with pytest.raises(ValueError, match="would run without it"):  # a user's primitive would drop the noise
        QiskitBackend(noise=NoiseConfig(depolarizing=0.1), shots=10, sampler=SamplerV2())
    with pytest.raises(TypeError, match="noise must be a NoiseConfig or a qiskit_aer NoiseModel"):
        QiskitBackend(noise=0.1)
    with pytest.raises(ValueError, match="gradient must be one of"):
        QiskitBackend(gradient="adjoint")
    from qiskit_aer import AerSimulator

    if "GPU" not in AerSimulator().available_devices():
        with pytest.raises(ValueError, match="Aer device 'GPU' is not available.*qiskit-aer-gpu"):
            QiskitBackend(device="GPU")
    assert get_backend("qiskit").device in ("CPU", "GPU")


def test_forward_only_mode_has_no_gradient():
    c, w, x = random_case(2, 2, 4)
    out = QiskitBackend(gradient=None)(c, w, x)
    assert not out.requires_grad


def test_a_user_sampler_primitive_is_used_through_the_v2_interface():
    """The hardware bridge: any SamplerV2 (here Aer's own, as a stand-in) instead of the built-in
    counts path; estimates unbiased within 5 standard errors."""
    from qiskit_aer.primitives import SamplerV2

    seed = case_seeds("qiskit_sampler_bridge", 1)[0]
    circuit, w, _ = random_case(seed, 3, 8)
    x = torch.rand(1, circuit.n_inputs, dtype=torch.float64).expand(16, -1)
    shots = 2000
    exact = NativeBackend()(circuit, w.detach(), x)[0]
    est = QiskitBackend(shots=shots, sampler=SamplerV2(seed=seed))(circuit, w.detach(), x)
    se = ((1 - exact**2).clamp_min(0) / (shots * est.shape[0])).sqrt()
    assert ((est.mean(0) - exact).abs() <= 5 * se + 1e-12).all(), f"seed={seed}"


def test_circuit_without_parameters_draws_independent_shots_per_input():
    c = Circuit(2, (Gate("H", (0,)), Gate("CNOT", (0, 1))), tuple(PauliWord.parse(s) for s in ("Z0 Z1", "Z0", "X0 X1")))
    out = QiskitBackend(shots=100, seed=0)(c, torch.zeros(0, dtype=torch.float64), torch.zeros(50, 0, dtype=torch.float64))
    assert torch.equal(out[:, 0], torch.ones(50, dtype=torch.float64)) and torch.equal(out[:, 2], out[:, 0])
    assert out[:, 1].std() > 0.03 and abs(out[:, 1].mean()) < 5 * 0.1 / 50**0.5
