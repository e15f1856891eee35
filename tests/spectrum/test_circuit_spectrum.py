"""circuit_spectrum against PennyLane's circuit_spectrum / qnode_spectrum and against the simulator."""

import pytest
import torch

from qlite import HybridLayer, QuantumLayer
from qlite.simulators import Circuit, Gate, Param, PauliWord, angle_encoding, reuploading_circuit, strongly_entangling
from qlite.spectrum import circuit_spectrum, coefficients


def _mixed_circuit():
    """Scaled inputs through RX, RY, CRZ and PhaseShift; input 2 unused."""
    gates = [
        Gate("RX", (0,), (Param.input(0, 0.5),)),
        Gate("RY", (1,), (Param.input(0, 1.5),)),
        *strongly_entangling(3, 1),
        Gate("CRZ", (0, 1), (Param.input(1, 2.0),)),
        Gate("PhaseShift", (2,), (Param.input(1, -1.0),)),
        Gate("RZ", (2,), (Param.input(0, 0.25),)),
        *strongly_entangling(3, 1, offset=9),
    ]
    return Circuit(3, tuple(gates), (PauliWord.z(0),), n_inputs=3)


@pytest.mark.parametrize("n,L,enc", [(1, 1, "rz"), (2, 2, "rx"), (3, 3, "ry"), (2, 0, "rz")])
def test_matches_pennylane_circuit_spectrum(n, L, enc):
    pytest.importorskip("pennylane")
    from tests.spectrum.pl_spectrum import pl_circuit_spectrum

    circuit = reuploading_circuit(n, L, 1, "cnot", enc)
    if L == 0:
        with pytest.raises(ValueError, match="no encoding gate"):
            circuit_spectrum(circuit)
        return
    ours = circuit_spectrum(circuit)
    assert ours == pl_circuit_spectrum(circuit)
    assert all(ours[j] == [float(k) for k in range(-L, L + 1)] for j in range(n))


def test_matches_pennylane_qnode_spectrum_with_scales_and_mixed_gates():
    pytest.importorskip("pennylane")
    from tests.spectrum.pl_spectrum import pl_qnode_spectrum

    circuit = _mixed_circuit()
    ours = circuit_spectrum(circuit)
    ref = pl_qnode_spectrum(circuit)
    assert ours == ref
    # by hand: x0 -> {+-0.5} + {+-1.5} + {+-0.25}; x1 -> CRZ {0, +-1, +-2} + PhaseShift {+-1}
    assert ours[0] == sorted({a + b + c for a in (-0.5, 0, 0.5) for b in (-1.5, 0, 1.5) for c in (-0.25, 0, 0.25)})
    assert ours[1] == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert ours[2] == [0.0]


def test_layers_are_accepted_and_give_their_circuit_spectrum():
    q = QuantumLayer(3, spectrum_layers=2)
    h = HybridLayer(5, 3, spectrum_layers=2)
    assert circuit_spectrum(q) == circuit_spectrum(h) == circuit_spectrum(q.circuit)


def test_simulated_coefficients_vanish_outside_the_spectrum_and_fill_it():
    """Ground truth from the simulator: a 2-qubit, L=2 layer has coefficients only for |n_i| <= 2."""
    # CNOT ring: on two wires a CZ ring is CZ(0,1) CZ(1,0) = identity, and <Z_0> would not see x_1
    layer = QuantumLayer(2, spectrum_layers=2, entangler="cnot", generator=torch.Generator().manual_seed(3)).double()
    spec = circuit_spectrum(layer)
    c = coefficients(lambda x: layer(x)[:, 0], 2, 4)  # degree 4 > L: no aliasing, zeros beyond L
    n = torch.fft.fftfreq(9, 1 / 9)
    outside = (n.abs()[:, None] > 2) | (n.abs()[None, :] > 2)
    assert c[outside].abs().max() < 1e-12
    assert c[~outside].abs().max() > 1e-3
    assert spec[0] == spec[1] == [-2.0, -1.0, 0.0, 1.0, 2.0]
    # the extreme frequency (2, 2) is reachable: its coefficient is non-zero for these weights
    assert c[2, 2].abs() > 1e-6


def test_bad_input():
    with pytest.raises(TypeError, match="Circuit, QuantumLayer or HybridLayer"):
        circuit_spectrum(torch.nn.Linear(2, 2))
    no_enc = Circuit(2, tuple(strongly_entangling(2, 1)), (PauliWord.z(0),))
    with pytest.raises(ValueError, match="no encoding gate"):
        circuit_spectrum(no_enc)
    rot = Circuit(1, (Gate("Rot", (0,), (Param.input(0), Param.weight(0), Param.weight(1))),), (PauliWord.z(0),))
    with pytest.raises(ValueError, match="multi-angle gate"):
        circuit_spectrum(rot)
    with pytest.raises(ValueError, match="decimals must be an integer >= 0"):
        circuit_spectrum(Circuit(1, tuple(angle_encoding(1)), (PauliWord.z(0),)), decimals=-1)
