"""The Qiskit / Aer backend: exact values, finite shots, noise models, parameter-shift gradients.

How it runs a batch:

* The circuit is translated once (:mod:`.export`) with one Qiskit parameter per angle *occurrence*
  (``a[k]``); the angles of a batch, ``a = coef * [w, x, 1][:, col]``, are computed in torch, so
  autograd carries their gradients to the weights and the inputs.
* ``shots=None``: Aer's ``EstimatorV2`` with precision 0 gives exact expectation values of all
  bindings in one Aer job (statevector; density matrix when a noise model is given, since a noisy
  statevector run would follow one random trajectory). Readout error of a :class:`NoiseConfig` is
  applied exactly (:func:`~qlite.simulators.noise.readout_expansion`): Aer's estimator does not
  measure, so it ignores readout errors.
* ``shots=N``: each qubit-wise commuting group of the observables is measured (basis rotation then
  ``measure_all``), ``N`` shots per input, with the noise model's gate and readout errors; each word
  is the mean of its parity. Aer runs the measured circuits and its outcome counts are read directly
  (what Aer's ``SamplerV2`` does, less its one bit string per shot); a ``sampler=`` primitive given
  by the user (hardware) is used through the ``SamplerV2`` interface instead. Shots go through
  sampling, not the estimator: Aer's ``EstimatorV2`` models finite precision as Gaussian noise ``N(ev, precision)``
  added to exact values (``qiskit_aer/primitives/estimator_v2.py``), which is not shot noise and
  has no readout error.
* Gradients: parameter-shift rules per angle occurrence (Schuld et al., PRA 99, 032331 (2019)):
  ``df/da = [f(a + pi/2) - f(a - pi/2)] / 2`` for RX/RY/RZ/PhaseShift and each angle of ``U``
  (= Rot). CRZ runs as ``RZ(t/2) CX RZ(-t/2) CX`` (two occurrences, chain rule), because Aer's
  primitives drop the bound angle of parameterised controlled rotations (qiskit-aer #2323, #2391,
  #2403; the export keeps ``crz``).
  With shots each shifted circuit is sampled too, as on hardware; with noise the rule holds for
  the noisy expectation because the errors follow the gates and do not depend on the angles.
  Cost: 2 (4 for CRZ) circuit runs per angle occurrence that needs a gradient and per input.

The device: ``device="auto"`` picks Aer's GPU when ``qiskit-aer-gpu`` is installed (then
``AerSimulator().available_devices()`` lists ``"GPU"``), else the CPU; ``self.device`` says which.
Custom ``estimator=`` / ``sampler=`` primitives (V2) can be passed instead of Aer's, e.g. those of
``qiskit-ibm-runtime``; the circuits are sent as they are (transpile-free), so a hardware backend
needs its own ISA pass manager first.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from ._optional import require
from .circuit import Circuit, validate_call
from .export import _ROT_TO_U, _gate_class, pauli_to_qiskit, qiskit_gate_name
from .noise import CRZ_LABEL, QUIET_LABEL
from .measure import measurement_groups
from .noise import NoiseConfig, aer_noise_model, readout_expansion
from .shots import check_shots

log = logging.getLogger(__name__)

_EXTRA = "qiskit"
_TWO_TERM = ((0.5, math.pi / 2), (-0.5, -math.pi / 2))
GRADIENTS = ("parameter-shift", None)


class _Plan:
    """What one circuit needs: the Qiskit circuit(s) with one parameter per angle occurrence, the
    affine map from ``[w, x, 1]`` to those angles, and the observables or measurement groups."""

    def __init__(self, circuit: Circuit, shots: int | None, readout: tuple[float, float] | None):
        qiskit = require("qiskit", _EXTRA, "backend 'qiskit'")
        n_w, n_x = circuit.n_weights, circuit.n_inputs
        cols, coefs = [], []
        qc = qiskit.QuantumCircuit(circuit.n_qubits)
        avec = qiskit.circuit.ParameterVector("a", sum(len(g.params) + (g.name == "CRZ") for g in circuit.gates))
        for g in circuit.gates:
            qname = qiskit_gate_name(g.name)  # a clear error for a gate this backend cannot run
            src = []
            for p in g.params:
                if p.source == "weight":
                    src.append((p.index, 1.0))
                elif p.source == "input":
                    src.append((n_w + p.index, p.scale))
                else:
                    src.append((n_w + n_x, p.value))
            k = len(cols)
            if g.name == "CRZ":
                # CRZ(t) = RZ_target(t/2) CX RZ_target(-t/2) CX: Aer's primitives drop the bound angle
                # of parameterised controlled rotations (qiskit-aer issues #2323, #2391, #2403)
                # The parts carry labels: a noise model attaches errors by name or label, so the parts
                # stay noiseless and the last CX, labelled CRZ_LABEL, takes the one 2-qubit error of a CRZ.
                (col, c), (ctrl, tgt) = src[0], g.wires
                cols += [col, col]
                coefs += [0.5 * c, -0.5 * c]
                rz, cx = _gate_class("rz"), _gate_class("cx")
                qc.append(rz(avec[k], label=QUIET_LABEL), [tgt])
                qc.append(cx(label=QUIET_LABEL), [ctrl, tgt])
                qc.append(rz(avec[k + 1], label=QUIET_LABEL), [tgt])
                qc.append(cx(label=CRZ_LABEL), [ctrl, tgt])
                continue
            cols += [col for col, _ in src]
            coefs += [c for _, c in src]
            values = [avec[k + i] for i in range(len(src))]
            if g.name == "Rot":
                values = [values[i] for i in _ROT_TO_U]
            qc.append(_gate_class(qname)(*values), list(g.wires))
        self.n_angles = len(cols)
        self.col = torch.tensor(cols, dtype=torch.long)
        self.coef = torch.tensor(coefs, dtype=torch.float64)
        self.qc = qc
        # Aer orders parameter_binds by qc.parameters (sorted by name: a[10] before a[2]); keep the map
        order = {p: i for i, p in enumerate(avec)}
        self.perm = np.array([order[p] for p in self.qc.parameters], dtype=np.int64)
        self.mix = None
        words = circuit.observables
        if readout is not None and shots is None:
            words, mix = readout_expansion(circuit.observables, *readout)
            self.mix = mix.numpy()
        self.observables = [pauli_to_qiskit(w, circuit.n_qubits) for w in words]
        self.groups = []
        if shots is not None:
            for grp in measurement_groups(circuit.observables):
                qc = self.qc.copy()
                for gate in grp.rotation_gates():  # the basis change of a measurement is not a noisy gate
                    qc.append(_gate_class(qiskit_gate_name(gate.name))(label=QUIET_LABEL), [gate.wires[0]])
                qc.measure_all()
                masks = []
                nbytes = (circuit.n_qubits + 7) // 8
                for word in grp.words:  # clbit i = qubit i; BitArray packs big-endian, clbit 0 = last byte's LSB
                    mask = np.zeros(nbytes, dtype=np.uint8)
                    for w in word.wires:
                        mask[nbytes - 1 - w // 8] |= np.uint8(1 << (w % 8))
                    masks.append(mask)
                self.groups.append((qc, np.stack(masks), np.array(grp.columns)))
        self.n_obs = circuit.n_observables

    def angles(self, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_angles)`` angles of a batch, differentiable in ``weights`` and ``x``."""
        src = torch.cat((weights.expand(x.shape[0], -1), x, x.new_ones(x.shape[0], 1)), 1)
        return src[:, self.col.to(src.device)] * self.coef.to(device=src.device, dtype=src.dtype)


class QiskitBackend:
    """``backend(circuit, weights, x) -> (B, n_obs)`` through Qiskit Aer primitives.

    Args:
        shots: ``None`` for exact expectation values, or shots per input (>= 1).
        noise: a :class:`~qlite.simulators.noise.NoiseConfig` or a ``qiskit_aer.noise.NoiseModel``.
        method: Aer simulation method (``"automatic"``, ``"statevector"``, ``"density_matrix"``...);
            with noise and ``shots=None`` only ``"density_matrix"`` gives exact noisy values.
        device: ``"auto"`` (GPU when ``qiskit-aer-gpu`` is installed), ``"CPU"`` or ``"GPU"``.
        seed: seed of the shot sampling (each call draws a fresh Aer seed from it).
        gradient: ``"parameter-shift"`` or ``None`` (no backward; forward only).
        max_bindings: circuit bindings per Aer job (memory bound for parameter-shift batches).
        estimator, sampler: V2 primitives to use instead of Aer's (hardware bridges).
        backend_options: further ``AerSimulator`` options (e.g. ``max_parallel_threads``).

    Example:
        >>> from qlite.simulators import reuploading_circuit
        >>> c = reuploading_circuit(2, 1)
        >>> QiskitBackend()(c, torch.zeros(c.n_weights), torch.zeros(3, 2)).shape
        torch.Size([3, 2])
    """

    name = "qiskit"

    def __init__(self, shots: int | None = None, noise=None, *, method: str = "automatic", device: str = "auto",
                 seed: int | None = None, gradient: str | None = "parameter-shift", max_bindings: int = 8192,
                 estimator=None, sampler=None, backend_options: dict | None = None):
        aer = require("qiskit_aer", _EXTRA, "backend 'qiskit'")
        self.shots = check_shots(shots)
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
        if not isinstance(max_bindings, int) or max_bindings < 1:
            raise ValueError(f"max_bindings must be a positive integer, got {max_bindings!r}")
        self.gradient, self.max_bindings = gradient, max_bindings
        self.readout = None
        noise_model = None
        if isinstance(noise, NoiseConfig):
            if noise.has_readout:
                self.readout = noise.readout
            if noise.has_gate_noise or (noise.has_readout and self.shots is not None):
                noise_model = aer_noise_model(noise)
        elif noise is not None:
            if not isinstance(noise, aer.noise.NoiseModel):
                raise TypeError(f"noise must be a NoiseConfig or a qiskit_aer NoiseModel, got {type(noise).__name__}")
            noise_model = noise
            if self.shots is None and any(e.get("type") == "roerror" for e in noise.to_dict().get("errors", [])):
                raise ValueError("this NoiseModel has readout errors, which only act on measured shots: pass "
                                 "shots=N, or give the noise as NoiseConfig(readout=...) for exact values")
        self.noise = noise
        available = aer.AerSimulator().available_devices()
        if device == "auto":
            device = "GPU" if "GPU" in available else "CPU"
        if device not in available:
            raise ValueError(f"Aer device {device!r} is not available here (available: {available}); "
                             f"GPU needs pip install qiskit-aer-gpu")
        self.device = device
        if noise_model is not None and self.shots is None:
            if method == "automatic":
                method = "density_matrix"
            elif method != "density_matrix":
                raise ValueError(f"exact noisy values need method='density_matrix', got {method!r} "
                                 f"(or pass shots=N)")
        self.method = method
        options = {"method": method, "device": device, **(backend_options or {})}
        if noise_model is not None:
            options["noise_model"] = noise_model
        if noise_model is not None and (estimator is not None or sampler is not None):
            raise ValueError("the depolarizing part of noise= reaches only qlite's own Aer primitives; a given "
                             "estimator= / sampler= would run without it: build them with the noise model "
                             "(qlite.simulators.noise.aer_noise_model) or leave them out")
        self._rng = np.random.default_rng(seed)
        prim = require("qiskit_aer.primitives", _EXTRA, "backend 'qiskit'")
        self.estimator = estimator or prim.EstimatorV2(options={"backend_options": options})
        self.sampler = sampler or prim.SamplerV2(options={"backend_options": options})
        self._own_sampler = sampler is None
        self._aer = aer.AerSimulator(**options) if sampler is None else None
        self._plans: dict[Circuit, _Plan] = {}
        log.info("qiskit backend: Aer %s on %s, shots=%s, noise=%s", method, device, self.shots, noise)

    def plan(self, circuit: Circuit) -> _Plan:
        p = self._plans.get(circuit)
        if p is None:
            if not isinstance(circuit, Circuit):
                raise TypeError(f"expected a qlite.simulators.Circuit, got {type(circuit).__name__}")
            p = self._plans[circuit] = _Plan(circuit, self.shots, self.readout)
        return p

    # -- evaluation of many bindings ------------------------------------------------------------
    def evaluate(self, plan: _Plan, angles: np.ndarray) -> np.ndarray:
        """Expectation values ``(N, n_obs)`` for angle bindings ``(N, n_angles)`` (float64)."""
        out = np.empty((angles.shape[0], plan.n_obs))
        for start in range(0, angles.shape[0], self.max_bindings):
            chunk = angles[start:start + self.max_bindings][:, plan.perm]
            out[start:start + len(chunk)] = self._exact(plan, chunk) if self.shots is None else self._sampled(plan, chunk)
        return out

    def _exact(self, plan: _Plan, values: np.ndarray) -> np.ndarray:
        if plan.n_angles == 0:
            values = np.zeros((len(values), 0))
            pub = (plan.qc, plan.observables)
            evs = np.asarray(self.estimator.run([pub]).result()[0].data.evs)[None].repeat(len(values), 0)
        else:
            pub = (plan.qc, plan.observables, values[:, None, :])
            evs = np.asarray(self.estimator.run([pub]).result()[0].data.evs)
        return evs if plan.mix is None else evs @ plan.mix

    def _sampled(self, plan: _Plan, values: np.ndarray) -> np.ndarray:
        if self._own_sampler:
            return self._sampled_counts(plan, values)
        # a circuit without parameters cannot be bound N times: sample N * shots outcomes instead
        pubs = [(qc, values) if plan.n_angles else (qc, None, self.shots * len(values)) for qc, _, _ in plan.groups]
        results = self.sampler.run(pubs, shots=self.shots).result()
        out = np.empty((len(values), plan.n_obs))
        for (_, masks, cols), res in zip(plan.groups, results):
            bits = res.data.meas.array  # (N, shots, nbytes) packed outcomes (or (N * shots, nbytes))
            bits = bits.reshape(len(values), self.shots, bits.shape[-1])
            for mask, col in zip(masks, cols):
                parity = np.bitwise_count(bits & mask).sum(-1) & 1  # (N, shots)
                out[:, col] = (1.0 - 2.0 * parity).mean(-1)
        return out

    def _sampled_counts(self, plan: _Plan, values: np.ndarray) -> np.ndarray:
        """Aer's own sampling, read as counts: the same shots as ``SamplerV2`` (which asks Aer for
        every shot's bit string, ``memory=True``) without one Python string per shot, so a million
        shots cost what a thousand do."""
        n = len(values)
        if plan.n_angles:
            circuits = [qc for qc, _, _ in plan.groups]
            binds = [{p: values[:, j].tolist() for j, p in enumerate(qc.parameters)} for qc in circuits]
            run = dict(parameter_binds=binds)
        else:  # nothing to bind: N copies of each circuit, N independent draws
            circuits, run = [qc for qc, _, _ in plan.groups for _ in range(n)], {}
        seed = int(self._rng.integers(2**31))  # fresh randomness each call, reproducible from the seed
        result = self._aer.run(circuits, shots=self.shots, seed_simulator=seed, **run).result()
        out = np.empty((n, plan.n_obs))
        for g, (_, masks, cols) in enumerate(plan.groups):
            # (N, n_words) parity masks as integers: clbit i (qubit i) is bit i of Aer's hex outcome keys
            imask = np.array([int.from_bytes(m.tobytes(), "big") for m in masks], dtype=np.int64)
            for b in range(n):
                counts = result.data(g * n + b)["counts"]
                keys = np.fromiter((int(k, 16) for k in counts), dtype=np.int64, count=len(counts))
                freq = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
                parity = np.bitwise_count(keys[:, None] & imask[None, :]) & 1  # (outcomes, words)
                out[b, cols] = freq @ (1.0 - 2.0 * parity) / self.shots
        return out

    # -- the torch interface ----------------------------------------------------------------------
    def __call__(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        validate_call(circuit, weights, x)
        plan = self.plan(circuit)
        x = x.to(weights.dtype)
        angles = plan.angles(weights, x)
        needs = torch.zeros(plan.n_angles, dtype=torch.bool)
        if weights.requires_grad:
            needs |= plan.col < circuit.n_weights
        if x.requires_grad:
            needs |= (plan.col >= circuit.n_weights) & (plan.col < circuit.n_weights + circuit.n_inputs)
        if self.gradient is None or not torch.is_grad_enabled() or not needs.any():
            with torch.no_grad():
                return _evaluate_torch(self, plan, angles.detach())
        return _ParameterShift.apply(self, plan, needs, angles)


def _evaluate_torch(backend: QiskitBackend, plan: _Plan, angles: torch.Tensor) -> torch.Tensor:
    values = backend.evaluate(plan, angles.detach().to("cpu", torch.float64).numpy())
    return torch.from_numpy(values).to(device=angles.device, dtype=angles.dtype)


class _ParameterShift(torch.autograd.Function):
    @staticmethod
    def forward(ctx, backend: QiskitBackend, plan: _Plan, needs: torch.Tensor, angles: torch.Tensor):
        ctx.backend, ctx.plan, ctx.needs = backend, plan, needs
        ctx.save_for_backward(angles)
        return _evaluate_torch(backend, plan, angles)

    @staticmethod
    def backward(ctx, g):
        (angles,) = ctx.saved_tensors
        backend, plan = ctx.backend, ctx.plan
        a = angles.detach().to("cpu", torch.float64).numpy()  # (B, K)
        gg = g.detach().to("cpu", torch.float64).numpy()  # (B, n_obs)
        batch = a.shape[0]
        grad = np.zeros_like(a)
        ks = np.flatnonzero(ctx.needs.numpy())
        per = max(1, backend.max_bindings // (2 * batch))  # angle columns per job
        for start in range(0, len(ks), per):
            cols = ks[start:start + per]
            shifted, weights, where = [], [], []
            for k in cols:
                for c, s in _TWO_TERM:
                    b = a.copy()
                    b[:, k] += s
                    shifted.append(b)
                    weights.append(c)
                    where.append(k)
            f = backend.evaluate(plan, np.concatenate(shifted)).reshape(len(shifted), batch, -1)
            contrib = np.einsum("tbo,bo->tb", f, gg) * np.asarray(weights)[:, None]
            np.add.at(grad.T, np.asarray(where), contrib)
        return None, None, None, torch.from_numpy(grad).to(device=angles.device, dtype=angles.dtype)
