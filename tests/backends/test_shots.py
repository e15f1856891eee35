"""The native shot-noise mode: exact multinomial sampling, unbiased estimates with the right
variance, exact readout error, straight-through gradients, and bad input."""

import math

import pytest
import torch

from qlite import QuantumLayer
from qlite.simulators import Circuit, Gate, NativeBackend, PauliWord, get_backend, reuploading_circuit
from qlite.simulators.measure import BASIS_CHANGE, measurement_groups
from qlite.simulators.noise import NoiseConfig, apply_readout, readout_expansion
from qlite.simulators.shots import ShotBackend, sample_counts

from .random_circuits import random_case
from .seeds import case_seeds


def test_sample_counts_is_multinomial():
    """Mean ``N p``, variance ``N p (1 - p)`` and covariance ``-N p_i p_j`` of multinomial counts
    (independent binomials would have zero covariance), zero-probability outcomes never drawn."""
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.0, 0.2, 0.1, 0.05, 0.0, 0.15, 0.0], dtype=torch.float64)
    rows, shots = 20000, 40
    counts = sample_counts(p.expand(rows, -1), shots, g)
    assert torch.equal(counts.sum(1), torch.full((rows,), float(shots), dtype=torch.float64))
    assert counts[:, p == 0].abs().sum() == 0
    mean, cov = counts.mean(0), torch.cov(counts.T)
    se = (shots * p * (1 - p) / rows).sqrt()
    assert ((mean - shots * p).abs() <= 5 * se + 1e-12).all(), mean
    var_ref = shots * p * (1 - p)
    assert ((cov.diagonal() - var_ref).abs() <= 0.1 * var_ref + 1e-12).all()
    assert abs(cov[0, 2] - (-shots * 0.5 * 0.2)) < 0.1 * shots * 0.5 * 0.2


def test_sample_counts_reproducible_and_huge_shot_numbers():
    p = torch.softmax(torch.randn(3, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64), -1)
    a = sample_counts(p, 1000, torch.Generator().manual_seed(5))
    b = sample_counts(p, 1000, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    big = sample_counts(p, 10**12, torch.Generator().manual_seed(5))  # cost independent of shots
    assert torch.equal(big.sum(1), torch.full((3,), 1e12, dtype=torch.float64))
    assert (big / 1e12 - p).abs().max() < 1e-5


def test_shot_estimates_are_unbiased_with_binomial_variance():
    """One input repeated R times: each word's estimates have mean <P> and variance
    (1 - <P>^2) / shots (an average of +-1 outcomes), within 5 standard errors / 15 %."""
    seed = case_seeds("shots_unbiased", 1)[0]
    circuit, w, _ = random_case(seed, 3, 8, dtype=torch.float64)
    x = torch.rand(1, circuit.n_inputs, dtype=torch.float64).expand(4000, -1)
    shots = 50
    exact = NativeBackend()(circuit, w.detach(), x)[0]
    est = ShotBackend(NativeBackend(), shots, seed=seed)(circuit, w.detach(), x)
    var = (1 - exact**2) / shots
    se = (var / est.shape[0]).sqrt()
    assert ((est.mean(0) - exact).abs() <= 5 * se + 1e-12).all(), f"seed={seed}"
    varying = var > 1e-3
    assert ((est.var(0)[varying] / var[varying] - 1).abs() < 0.15).all(), f"seed={seed}"


def test_identity_and_deterministic_words_have_no_shot_noise():
    c = Circuit(2, (Gate("X", (0,)),), (PauliWord(()), PauliWord.parse("Z0"), PauliWord.parse("Z1 Z0")))
    out = ShotBackend(NativeBackend(), 7, seed=0)(c, torch.zeros(0, dtype=torch.float64), torch.zeros(5, 0))
    assert torch.equal(out, torch.tensor([[1.0, -1.0, -1.0]], dtype=torch.float64).expand(5, -1))


def test_measurement_groups_are_qubitwise_commuting_and_cover_every_word():
    words = tuple(PauliWord.parse(s) for s in ("Z0", "X1", "Z0 Z1", "X0", "Y2 X1", "Z2"))
    groups = measurement_groups(words)
    seen = sorted(c for g in groups for c in g.columns)
    assert seen == list(range(len(words)))
    for g in groups:
        basis = dict(g.basis)
        for word in g.words:
            assert all(basis[w] == p for w, p in word.ops)
        assert [gate.name for gate in g.rotation_gates()] == [n for _, p in g.basis for n in BASIS_CHANGE[p]]
    # greedy: {Z0, X1, Y2 X1} (basis Z0 X1 Y2), {Z0 Z1, Z2} (Z0 Z1 Z2), {X0}
    assert [g.columns for g in groups] == [(0, 1, 4), (2, 5), (3,)]


def _confusion_brute_force(probs, p01, p10, n):
    """Readout error as one 2**n x 2**n stochastic matrix (Kronecker product over wires)."""
    one = torch.tensor([[1 - p01, p10], [p01, 1 - p10]], dtype=torch.float64)
    m = torch.ones(1, 1, dtype=torch.float64)
    for _ in range(n):
        m = torch.kron(m, one)
    return probs @ m.T


def test_apply_readout_matches_the_kronecker_confusion_matrix():
    g = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(5, 16, generator=g, dtype=torch.float64), -1)
    got = apply_readout(probs, 0.03, 0.11)
    assert (got - _confusion_brute_force(probs, 0.03, 0.11, 4)).abs().max() < 1e-15
    assert torch.allclose(got.sum(1), torch.ones(5, dtype=torch.float64))


def test_exact_readout_values_match_brute_force_on_rotated_probabilities():
    """readout_expansion (sub-words) against: rotate each word into Z, apply the confusion matrix
    to the full probability vector, sum signs."""
    seed = case_seeds("readout_brute_force", 1)[0]
    circuit, w, x = random_case(seed, 3, 10, dtype=torch.float64)
    p01, p10 = 0.07, 0.2
    got = ShotBackend(NativeBackend(), None, noise=NoiseConfig(readout=(p01, p10)))(circuit, w, x)
    n, k = circuit.n_qubits, torch.arange(8)
    for col, word in enumerate(circuit.observables):
        rot = Circuit(n, circuit.gates + tuple(Gate(nm, (wi,)) for wi, p in word.ops for nm in BASIS_CHANGE[p]),
                      circuit.observables, circuit.n_weights, circuit.n_inputs)
        probs = _confusion_brute_force(NativeBackend().probabilities(rot, w.detach(), x.detach()), p01, p10, n)
        sign = torch.ones(8, dtype=torch.float64)
        for wire in word.wires:
            sign = sign * (1 - 2 * ((k >> (n - 1 - wire)) & 1)).double()
        assert (got[:, col].detach() - probs @ sign).abs().max() < 1e-12, f"seed={seed} {word}"


def test_readout_expansion_symmetric_error_scales_each_word():
    words = (PauliWord.parse("Z0"), PauliWord.parse("X0 Y1 Z2"))
    subs, m = readout_expansion(words, 0.1, 0.1)
    assert subs == words and torch.allclose(m, torch.diag(torch.tensor([0.8, 0.8**3], dtype=torch.float64)))


def test_straight_through_gradient_equals_exact_gradient():
    circuit, w, x = random_case(11, 3, 10)
    exact = NativeBackend()(circuit, w, x)
    ge = torch.autograd.grad(exact.sum(), (w, x))
    shots = ShotBackend(NativeBackend(), 100, seed=0)(circuit, w, x)
    gs = torch.autograd.grad(shots.sum(), (w, x))
    assert not torch.allclose(shots, exact)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(ge, gs))


def test_quantum_layer_with_shots_through_the_registry():
    layer = QuantumLayer(3, 1, backend="torch", shots=64, seed=1, generator=torch.Generator().manual_seed(0))
    assert layer.backend.name == "torch[shots=64]"
    out = layer(torch.randn(6, 3))
    assert out.dtype == torch.float32 and ((out * 64).round() - out * 64).abs().max() < 1e-4  # k/64 outcomes
    out.sum().backward()
    assert layer.weights.grad is not None and layer.weights.grad.abs().sum() > 0


def test_registry_native_without_options_is_plain_and_shot_mode_is_reproducible():
    assert isinstance(get_backend("torch"), NativeBackend)
    c = reuploading_circuit(2, 1)
    w, x = torch.rand(c.n_weights), torch.rand(4, 2)
    a = get_backend("torch", shots=10, generator=torch.Generator().manual_seed(3))(c, w, x)
    b = get_backend("torch", shots=10, generator=torch.Generator().manual_seed(3))(c, w, x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("shots, err, match", [
    (0, ValueError, "shots must be >= 1"), (-5, ValueError, "shots must be >= 1"),
    (2.5, TypeError, "shots must be an integer"), ("100", TypeError, "shots must be an integer"),
    (True, TypeError, "shots must be an integer"),
])
def test_bad_shot_numbers(shots, err, match):
    with pytest.raises(err, match=match):
        get_backend("torch", shots=shots)


@pytest.mark.parametrize("kwargs, match", [
    (dict(depolarizing=1.5), r"depolarizing must be a probability in \[0, 1\], got 1.5"),
    (dict(depolarizing_2q=-0.1), r"depolarizing_2q must be a probability in \[0, 1\]"),
    (dict(readout=(0.1, 1.2)), r"readout p10 must be a probability in \[0, 1\], got 1.2"),
    (dict(readout=math.nan), r"readout must be a probability in \[0, 1\], got nan"),
    (dict(readout=(0.1, 0.2, 0.3)), r"readout must be p or \(p01, p10\)"),
])
def test_bad_noise_probabilities(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NoiseConfig(**kwargs)


def test_noise_config_json_round_trip_and_type_errors():
    cfg = NoiseConfig(depolarizing=0.01, depolarizing_2q=0.02, readout=(0.03, 0.04))
    assert NoiseConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(TypeError, match="depolarizing must be a probability"):
        NoiseConfig(depolarizing="0.1")


def test_native_rejects_gate_noise_and_bad_generators():
    with pytest.raises(ValueError, match="cannot apply depolarizing noise.*backend='qiskit'"):
        get_backend("torch", shots=10, noise=NoiseConfig(depolarizing=0.01))
    with pytest.raises(ValueError, match="either generator= or seed="):
        get_backend("torch", shots=10, seed=1, generator=torch.Generator())
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        get_backend("torch", shots=10, generator=1)
    with pytest.raises(TypeError, match="noise must be a qlite.simulators.NoiseConfig"):
        get_backend("torch", shots=10, noise={"readout": 0.1})
    with pytest.raises(TypeError, match="noise must be a qlite.simulators.NoiseConfig"):
        get_backend("torch", noise=0.1)  # without shots too
    with pytest.raises(ValueError, match="options .* were given with a backend instance"):
        get_backend(NativeBackend(), shots=10)


def test_the_native_compiler_uses_the_one_measurement_grouping(monkeypatch):
    """compile.py measures the groups of measure.measurement_groups (one grouping for the exact and
    the shot paths): a different grouping there changes the compiled program."""
    from qlite.simulators import compile as compile_module
    from qlite.simulators import measure

    words = tuple(PauliWord.parse(s) for s in ("Z0", "X1", "Z0 X1", "Y0"))
    circuit = Circuit(2, (Gate("H", (0,)),), words)
    prog = compile_module.compile_circuit(circuit)
    assert [g.columns for g in prog.groups] == [list(g.columns) for g in measure.measurement_groups(words)]
    singles = lambda obs: [measure.MeasurementGroup(tuple(w.ops), (w,), (i,)) for i, w in enumerate(obs)]
    monkeypatch.setattr(measure, "measurement_groups", singles)
    assert [g.columns for g in compile_module.compile_circuit(circuit).groups] == [[0], [1], [2], [3]]
