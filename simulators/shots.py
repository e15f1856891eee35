"""Finite-shot sampling for backends that give exact probabilities (the native one by default).

For every qubit-wise commuting group of the circuit's Pauli words (:mod:`.measure`), the exact
probabilities ``p`` (B, 2**n) of the rotated final state are computed once and ``shots`` outcomes are
drawn from them; each word's estimate is the mean of the product of its wires' +-1 outcomes, as on
hardware. The counts are drawn without materialising the shots: a multinomial draw is a chain of
binomial splits, so the counts of the two halves of the outcome space (wire 0 = 0 or 1) are one
binomial draw, each half splits again on wire 1, and so on: ``n`` vectorised ``torch.binomial`` calls
of total size ``B * 2**n``, whatever ``shots`` is (exact multinomial, not a normal approximation).

Gradients: the forward value is the shot estimate; the backward pass is that of the exact expectation
(a straight-through estimator, ``exact + (estimate - exact).detach()``). The shot estimate is unbiased,
so this is the gradient of the estimate's mean, which is what a parameter-shift rule averaged over
many shot draws would return; the per-draw noise of hardware gradients is not modelled.

Readout error (``NoiseConfig.readout``) is applied exactly to the probabilities before sampling, and
to the exact values through :func:`~qlite.simulators.noise.readout_expansion`. Gate noise needs mixed
states: use ``backend="qiskit"`` (Aer density matrix) for that.
"""

from __future__ import annotations

import logging

import torch

from .circuit import Circuit
from .measure import measurement_groups, parity_signs
from .noise import NoiseConfig, apply_readout, readout_expansion

log = logging.getLogger(__name__)


def check_shots(shots) -> int | None:
    """``None`` (exact) or an integer >= 1; raises ValueError / TypeError otherwise."""
    if shots is None:
        return None
    if isinstance(shots, bool) or not isinstance(shots, int):
        if isinstance(shots, float) and shots.is_integer() and shots >= 1:
            return int(shots)
        raise TypeError(f"shots must be an integer >= 1 or None (exact), got {shots!r}")
    if shots < 1:
        raise ValueError(f"shots must be >= 1 (or None for exact expectation values), got {shots}")
    return shots


def sample_counts(probs: torch.Tensor, shots: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Multinomial counts ``(B, D)`` of ``shots`` draws from each row of ``probs`` ``(B, D)``, ``D = 2**n``.

    Sampled by binary splitting (see the module docstring) in float64, exact for up to ``2**53`` shots.
    """
    batch, dim = probs.shape
    n = dim.bit_length() - 1
    if 1 << n != dim:
        raise ValueError(f"expected 2**n outcomes per row, got {dim}")
    p = probs.detach().to(torch.float64).clamp_min(0.0)
    counts = torch.full((batch, 1), float(shots), dtype=torch.float64, device=p.device)
    for level in range(n):
        halves = p.reshape(batch, 1 << level, 2, -1).sum(-1)  # (B, 2**level, 2): mass of bit=0 / bit=1
        total = halves.sum(-1)
        ratio = torch.where(total > 0, halves[..., 0] / total.clamp_min(1e-300), torch.zeros_like(total))
        left = torch.binomial(counts, ratio.clamp(0.0, 1.0), generator=generator)
        counts = torch.stack((left, counts - left), -1).reshape(batch, -1)
    return counts


class ShotBackend:
    """Wrap a backend that has ``probabilities(circuit, weights, x)`` with finite-shot estimates.

    Args:
        base: the exact backend (e.g. :class:`~qlite.simulators.NativeBackend`); it must provide
            ``__call__`` (exact values, differentiable) and ``probabilities``.
        shots: number of shots per input and per measurement group (>= 1); ``None`` gives the
            exact values (with readout error applied exactly, if any).
        generator: ``torch.Generator`` for the draws, on the device of the weights (keyword only).
        seed: alternative to ``generator``: an integer seed for a generator made on first use.
        noise: a :class:`~qlite.simulators.noise.NoiseConfig` with readout error only.

    Example:
        >>> from qlite.simulators import NativeBackend, reuploading_circuit
        >>> backend = ShotBackend(NativeBackend(), shots=1000, seed=0)
        >>> c = reuploading_circuit(2, 1)
        >>> backend(c, torch.zeros(c.n_weights), torch.zeros(3, 2)).shape
        torch.Size([3, 2])
    """

    def __init__(self, base, shots: int | None, *, generator: torch.Generator | None = None,
                 seed: int | None = None, noise: NoiseConfig | None = None):
        if not (callable(base) and hasattr(base, "probabilities")):
            raise TypeError(f"ShotBackend needs a backend with probabilities(), got {type(base).__name__}")
        if generator is not None and seed is not None:
            raise ValueError("give either generator= or seed=, not both")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if noise is not None and not isinstance(noise, NoiseConfig):
            raise TypeError(f"noise must be a qlite.simulators.NoiseConfig, got {type(noise).__name__}")
        if noise is not None and noise.has_gate_noise:
            raise ValueError(
                f"the {base.name!r} backend simulates pure states and cannot apply depolarizing noise "
                f"({noise}); use backend='qiskit' (Aer density matrix) for gate noise"
            )
        self.base = base
        self.shots = check_shots(shots)
        self.noise = noise if noise is not None and not noise.is_noiseless else None
        self.generator = generator
        self.seed = seed
        self.name = base.name if self.shots is None else f"{base.name}[shots={self.shots}]"
        self._cache: dict[Circuit, tuple] = {}

    def _plan(self, circuit: Circuit):
        plan = self._cache.get(circuit)
        if plan is None:
            groups = []
            for g in measurement_groups(circuit.observables):
                rotated = Circuit(circuit.n_qubits, circuit.gates + g.rotation_gates(), circuit.observables,
                                  circuit.n_weights, circuit.n_inputs)
                # each word measured in the rotated basis is a Z-parity on its wires
                groups.append((rotated, parity_signs(g.words, circuit.n_qubits), torch.tensor(g.columns)))
            exact_circuit, mix = circuit, None
            if self.noise is not None:
                subwords, mix = readout_expansion(circuit.observables, *self.noise.readout)
                exact_circuit = circuit.with_observables(subwords)
            plan = self._cache[circuit] = (groups, exact_circuit, mix)
        return plan

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.generator is None and self.seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(self.seed)
        if self.generator is not None and self.generator.device.type != device.type:
            raise ValueError(
                f"the shot generator is on {self.generator.device} but the weights are on {device}; "
                f"pass generator=torch.Generator(device={str(device)!r}) or seed="
            )
        return self.generator

    def exact(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Exact expectation values (readout error included), differentiable through ``base``."""
        groups, exact_circuit, mix = self._plan(circuit)
        out = self.base(exact_circuit, weights, x)
        if mix is not None:
            out = out @ mix.to(device=out.device, dtype=out.dtype)
        return out

    def sample(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Finite-shot estimates ``(B, n_obs)`` (no gradient)."""
        groups, _, _ = self._plan(circuit)
        gen = self._generator(weights.device)
        out = torch.empty(x.shape[0], circuit.n_observables, dtype=torch.float64, device=weights.device)
        with torch.no_grad():
            for rotated, signs, cols in groups:
                probs = self.base.probabilities(rotated, weights, x)
                if self.noise is not None:
                    probs = apply_readout(probs.to(torch.float64), *self.noise.readout)
                counts = sample_counts(probs, self.shots, gen)
                out[:, cols.to(out.device)] = counts @ signs.to(out.device) / self.shots
        return out.to(weights.dtype)

    def __call__(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.shots is None:
            return self.exact(circuit, weights, x)
        estimate = self.sample(circuit, weights, x)
        if not (torch.is_grad_enabled() and (weights.requires_grad or x.requires_grad)):
            return estimate  # nothing to differentiate: skip the exact pass
        exact = self.exact(circuit, weights, x)
        return exact + (estimate - exact).detach()

    def probabilities(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Exact computational-basis probabilities of the measured bits (readout error applied)."""
        probs = self.base.probabilities(circuit, weights, x)
        return probs if self.noise is None else apply_readout(probs, *self.noise.readout)


def native_backend(shots: int | None = None, *, generator: torch.Generator | None = None, seed: int | None = None,
                   noise: NoiseConfig | None = None, **options):
    """Factory behind ``get_backend("torch", ...)``: the native backend, wrapped in
    :class:`ShotBackend` when ``shots`` or a readout ``noise`` is given."""
    from .native import NativeBackend

    if noise is not None and not isinstance(noise, NoiseConfig):
        raise TypeError(f"noise must be a qlite.simulators.NoiseConfig (e.g. NoiseConfig(readout=(0.02, 0.05))), "
                        f"got {type(noise).__name__}")
    base = NativeBackend(**options)
    if shots is None and generator is None and seed is None and (noise is None or noise.is_noiseless):
        return base
    return ShotBackend(base, shots, generator=generator, seed=seed, noise=noise)
