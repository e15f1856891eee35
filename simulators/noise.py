"""Noise models: a small frozen config, readout error applied exactly, and its Qiskit Aer form.

Conventions (Qiskit's, so the same numbers mean the same channel in every backend):

* ``depolarizing = p`` after every single-qubit gate: ``rho -> (1 - p) rho + p I/2`` (Qiskit's
  ``depolarizing_error(p, 1)``; the Bloch vector shrinks by ``1 - p``). ``depolarizing_2q = p``
  after every two-qubit gate: ``rho -> (1 - p) rho + p I/4``. (PennyLane's ``DepolarizingChannel(p)``
  is another parameterisation: its Bloch vector shrinks by ``1 - 4p/3``.)
* ``readout = (p01, p10)``: each measured bit flips independently, ``0 -> 1`` with probability
  ``p01`` and ``1 -> 0`` with ``p10`` (Qiskit's ``ReadoutError([[1 - p01, p01], [p10, 1 - p10]])``);
  a single number means a symmetric error.

Readout error acts on measured bits only, so its effect on a Pauli word's expectation value is
exact and cheap: with ``m_i`` the measured +-1 outcome of wire ``i`` and ``z_i`` the true one,
``E[m_i | z_i] = alpha z_i + beta`` with ``alpha = 1 - p01 - p10`` and ``beta = p10 - p01``, so for a
word ``P`` on wires ``W`` (flips independent given the true bits)

    E[prod_{i in W} m_i] = sum_{S subset W} alpha**|S| beta**(|W| - |S|) <P_S>,

where ``P_S`` is the word restricted to ``S`` (``<P_{}> = 1``). :func:`readout_expansion` builds that
linear map; :func:`apply_readout` applies the same error to a probability vector (for sampling).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass

import torch

from ._optional import require
from .circuit import PauliWord


def _check_probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a probability (a float in [0, 1]), got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return value


@dataclass(frozen=True)
class NoiseConfig:
    """Depolarizing and readout noise with Qiskit's conventions (see the module docstring).

    Args:
        depolarizing: depolarizing probability after every single-qubit gate, in [0, 1].
        depolarizing_2q: depolarizing probability after every two-qubit gate, in [0, 1].
        readout: ``p`` (symmetric) or ``(p01, p10)``: bit-flip probabilities of each measured bit.

    Example:
        >>> NoiseConfig(depolarizing=0.01, readout=0.02).readout
        (0.02, 0.02)
    """

    depolarizing: float = 0.0
    depolarizing_2q: float = 0.0
    readout: float | tuple[float, float] = (0.0, 0.0)

    def __post_init__(self):
        object.__setattr__(self, "depolarizing", _check_probability("depolarizing", self.depolarizing))
        object.__setattr__(self, "depolarizing_2q", _check_probability("depolarizing_2q", self.depolarizing_2q))
        ro = self.readout
        if isinstance(ro, (list, tuple)):
            if len(ro) != 2:
                raise ValueError(f"readout must be p or (p01, p10), got {ro!r}")
            ro = (_check_probability("readout p01", ro[0]), _check_probability("readout p10", ro[1]))
        else:
            p = _check_probability("readout", ro)
            ro = (p, p)
        object.__setattr__(self, "readout", ro)

    @property
    def has_gate_noise(self) -> bool:
        return self.depolarizing > 0 or self.depolarizing_2q > 0

    @property
    def has_readout(self) -> bool:
        return self.readout != (0.0, 0.0)

    @property
    def is_noiseless(self) -> bool:
        return not (self.has_gate_noise or self.has_readout)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "NoiseConfig":
        return cls(**json.loads(text))


def readout_coefficients(p01: float, p10: float) -> tuple[float, float]:
    """``(alpha, beta)`` with ``E[measured | true z] = alpha z + beta`` for one bit."""
    return 1.0 - p01 - p10, p10 - p01


def readout_expansion(observables: tuple[PauliWord, ...], p01: float, p10: float,
                      max_word: int = 12) -> tuple[tuple[PauliWord, ...], torch.Tensor]:
    """The sub-words whose exact values give the readout-noisy values, and the map between them.

    Returns ``(subwords, M)`` with ``M`` of shape ``(len(subwords), len(observables))`` (float64) such
    that ``noisy = exact(subwords) @ M`` row by row. The identity word may be among ``subwords``
    (its value is 1). Raises ValueError for words longer than ``max_word`` wires (``2**len`` terms).
    """
    alpha, beta = readout_coefficients(p01, p10)
    index: dict[PauliWord, int] = {}
    entries = []
    for col, word in enumerate(observables):
        k = len(word.ops)
        if k > max_word:
            raise ValueError(f"readout expansion of {word} needs 2**{k} sub-words; at most {max_word} wires")
        for size in range(k + 1):
            coef = alpha**size * beta ** (k - size)
            if coef == 0.0:
                continue
            for subset in itertools.combinations(word.ops, size):
                sub = PauliWord(subset)
                row = index.setdefault(sub, len(index))
                entries.append((row, col, coef))
    m = torch.zeros(len(index), len(observables), dtype=torch.float64)
    for row, col, coef in entries:
        m[row, col] += coef
    return tuple(index), m


def apply_readout(probs: torch.Tensor, p01: float, p10: float) -> torch.Tensor:
    """Probabilities ``(B, 2**n)`` of the measured bits after independent per-wire bit flips."""
    batch, dim = probs.shape
    n = dim.bit_length() - 1
    conf = torch.tensor([[1 - p01, p10], [p01, 1 - p10]], dtype=probs.dtype, device=probs.device)  # [read, true]
    out = probs
    for w in range(n):  # wire w is bit n-1-w: view as (B, 2**w, 2, rest)
        out = torch.einsum("rt,bxty->bxry", conf, out.reshape(batch, 1 << w, 2, -1))
    return out.reshape(batch, dim)


# Labels of the qiskit backend's helper gates: Aer matches errors by instruction name, or by label where
# one is set, so QUIET_LABEL gates (CRZ's decomposition, measurement basis changes) stay noiseless and
# CRZ_LABEL marks the last gate of a CRZ, which takes that gate's one 2-qubit error.
QUIET_LABEL = "qlite_noiseless"
CRZ_LABEL = "qlite_crz"


def aer_noise_model(config: NoiseConfig, one_qubit_gates=None, two_qubit_gates=None):
    """A ``qiskit_aer.noise.NoiseModel`` for ``config`` on the gates the qiskit backend emits."""
    noise = require("qiskit_aer.noise", "qiskit", "an Aer noise model")
    from .export import ONE_QUBIT_QISKIT, TWO_QUBIT_QISKIT

    one = list(one_qubit_gates or ONE_QUBIT_QISKIT)
    two = list(two_qubit_gates or TWO_QUBIT_QISKIT)
    model = noise.NoiseModel(basis_gates=sorted(set(one) | set(two)))
    if config.depolarizing > 0:
        model.add_all_qubit_quantum_error(noise.depolarizing_error(config.depolarizing, 1), one)
    if config.depolarizing_2q > 0:
        model.add_all_qubit_quantum_error(noise.depolarizing_error(config.depolarizing_2q, 2), [*two, CRZ_LABEL])
    if config.has_readout:
        p01, p10 = config.readout
        model.add_all_qubit_readout_error(noise.ReadoutError([[1 - p01, p01], [p10, 1 - p10]]))
    return model
