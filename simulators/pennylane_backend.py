"""The PennyLane backend: any PennyLane device, gradients by the device's own methods.

The circuit description is replayed as PennyLane operations inside a ``QNode`` with the torch
interface, so gradients come from PennyLane:

* ``default.qubit``: ``diff_method="best"`` resolves to ``backprop`` (torch autograd through the
  simulation; the batch runs as one broadcast execution).
* ``lightning.qubit`` / ``lightning.gpu`` / ``lightning.kokkos``: ``"best"`` resolves to ``adjoint``
  (PennyLane's adjoint method in C++).
* finite shots (``shots=N``) or ``diff_method="parameter-shift"``: parameter-shift rules. PennyLane
  cannot differentiate broadcast tapes with respect to the broadcast (input) parameters by
  parameter shift (its issue #4462), so the batch is then split into one tape per input
  (``qml.transforms.broadcast_expand``).

Outputs are returned in the weights' dtype on their device; ``default.qubit`` computes in
complex128 whatever the input dtype, lightning devices in their ``c_dtype``.
"""

from __future__ import annotations

import inspect
import logging

import numpy as np
import torch

from ._optional import require
from .circuit import Circuit, validate_call
from .shots import check_shots

log = logging.getLogger(__name__)

_EXTRA = "pennylane"
PENNYLANE_GATES = {
    "RX": "RX", "RY": "RY", "RZ": "RZ", "PhaseShift": "PhaseShift", "Rot": "Rot", "H": "Hadamard",
    "X": "PauliX", "Y": "PauliY", "Z": "PauliZ", "S": "S", "Sdg": "adjoint(S)", "T": "T", "CNOT": "CNOT",
    "CZ": "CZ", "SWAP": "SWAP", "CRZ": "CRZ",
}
_BROADCAST_METHODS = ("backprop", "adjoint")  # methods that take a broadcast batch as it is


def _pennylane():
    return require("pennylane", _EXTRA, "backend 'pennylane'")


def _float64(result):
    """Python floats in a (nested) device result as numpy float64; anything else unchanged."""
    if isinstance(result, float):
        return np.float64(result)
    if isinstance(result, (tuple, list)):
        return type(result)(_float64(r) for r in result)
    return result


_EXACT_CLASSES: dict[type, type] = {}


def _exact_results(device_cls: type) -> type:
    """``device_cls`` returning numpy float64 where it returns Python floats.

    Lightning devices return Python floats for scalar expectation values, and PennyLane's torch
    interface turns a Python float into a tensor of torch's *default* dtype (float32), so float64
    results would lose half their digits. Converting the device's results keeps them exact without
    touching torch's process-wide default dtype (which an earlier version flipped on every call).
    """
    cls = _EXACT_CLASSES.get(device_cls)
    if cls is None:
        def wrap(method):
            def call(self, *args, **kwargs):
                return _float64(getattr(super(cls, self), method)(*args, **kwargs))
            call.__name__ = method
            return call

        methods = ("execute", "compute_derivatives", "execute_and_compute_derivatives", "compute_vjp",
                   "execute_and_compute_vjp", "compute_jvp", "execute_and_compute_jvp")
        cls = type(device_cls.__name__, (device_cls,), {m: wrap(m) for m in methods if hasattr(device_cls, m)})
        _EXACT_CLASSES[device_cls] = cls
    return cls


class PennyLaneBackend:
    """``backend(circuit, weights, x) -> (B, n_obs)`` through a PennyLane device.

    Args:
        device: a PennyLane device name (``"default.qubit"``, ``"lightning.qubit"``,
            ``"lightning.gpu"`` where installed, or a plugin's).
        diff_method: passed to ``qml.QNode`` (``"best"``, ``"backprop"``, ``"adjoint"``,
            ``"parameter-shift"``, ...).
        shots: ``None`` (exact) or shots per input (>= 1).
        seed: seed of the device's sampling.
        **device_options: passed to ``qml.device`` (e.g. ``c_dtype`` for lightning).

    Example:
        >>> from qlite.simulators import reuploading_circuit
        >>> c = reuploading_circuit(2, 1)
        >>> PennyLaneBackend()(c, torch.zeros(c.n_weights), torch.zeros(3, 2)).shape
        torch.Size([3, 2])
    """

    name = "pennylane"

    def __init__(self, device: str = "default.qubit", diff_method: str = "best", shots: int | None = None,
                 seed: int | None = None, **device_options):
        qml = _pennylane()
        if not isinstance(device, str):
            raise TypeError(f"device must be a PennyLane device name, got {type(device).__name__}")
        self.device_name, self.diff_method = device, diff_method
        self.shots = check_shots(shots)
        self.seed, self.device_options = seed, device_options
        self._qml = qml
        self._qnodes: dict[Circuit, tuple] = {}
        self._device_cls = self._check_device()

    def _device_kwargs(self) -> dict:
        options = dict(self.device_options)
        if self.seed is not None:
            options.setdefault("seed", self.seed)
        return options

    def _check_device(self):
        """Make the device once now, so that a misspelled device option fails here and not at the
        first forward; returns the float64-exact class of a lightning device (or None)."""
        qml = self._qml
        options = self._device_kwargs()
        try:
            probe = qml.device(self.device_name, wires=1, **options)
        except TypeError as err:
            if "unexpected keyword" not in str(err):
                raise
            ours = sorted(p for p in inspect.signature(PennyLaneBackend.__init__).parameters if p not in ("self",
                                                                                                       "device_options"))
            theirs = self._device_keywords()
            raise ValueError(f"unknown option for backend 'pennylane' with device {self.device_name!r}: {err}; valid "
                             f"options: {ours} and the device's own {theirs}") from err
        cls = type(probe)
        lightning = cls.__module__.startswith("pennylane_lightning") and isinstance(probe, qml.devices.Device)
        return _exact_results(cls) if lightning else None

    def _device_keywords(self) -> list:
        try:
            cls = type(self._qml.device(self.device_name, wires=1))
        except Exception:  # noqa: BLE001 - only used to word an error message
            return []
        return sorted(p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "wires", "kwargs"))

    def _ops(self, circuit: Circuit):
        qml = self._qml
        table = {}
        for name, pl_name in PENNYLANE_GATES.items():
            table[name] = (lambda wires, op=qml.S: qml.adjoint(op)(wires=wires)) if pl_name == "adjoint(S)" else getattr(qml, pl_name)
        for g in circuit.gates:
            if g.name not in table:
                raise ValueError(f"backend 'pennylane' cannot run gate {g.name!r}; it supports {sorted(table)}")
        return table

    def _observable(self, word):
        qml = self._qml
        paulis = {"X": qml.PauliX, "Y": qml.PauliY, "Z": qml.PauliZ}
        if not word.ops:
            return qml.Identity(0)
        factors = [paulis[p](w) for w, p in word.ops]
        return factors[0] if len(factors) == 1 else qml.prod(*factors)

    def qnode(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor):
        """``(qnode, broadcast, diff_method)`` for a circuit, built on first use (``"best"`` is
        resolved with the first arguments): ``qnode(w, x)`` returns the expectation values;
        ``broadcast`` says whether the batch runs as one broadcast execution."""
        cached = self._qnodes.get(circuit)
        if cached is not None:
            return cached
        qml = self._qml
        table = self._ops(circuit)
        observables = [self._observable(o) for o in circuit.observables]
        options = self._device_kwargs()
        if self._device_cls is not None:  # lightning: results kept in float64 (see _exact_results)
            dev = self._device_cls(wires=circuit.n_qubits, **options)
        else:
            dev = qml.device(self.device_name, wires=circuit.n_qubits, **options)

        def angle(p, w, x):
            if p.source == "weight":
                return w[p.index]
            if p.source == "input":
                return p.scale * x[..., p.index]
            # a tensor, not a float: PennyLane's Rot matrix cannot mix Python floats with torch tensors
            return torch.tensor(p.value, dtype=w.dtype, device=w.device)

        def body(w, x):
            for g in circuit.gates:
                args = [angle(p, w, x) for p in g.params]
                table[g.name](*args, wires=list(g.wires)) if args else table[g.name](wires=list(g.wires))
            return [qml.expval(o) for o in observables]

        node = qml.QNode(body, dev, interface="torch", diff_method=self.diff_method,
                         shots=self.shots if self.shots is not None else "unset")
        method = self.diff_method
        if method == "best":
            method = qml.workflow.get_best_diff_method(node)(weights, x)
        broadcast = self.shots is None and method in _BROADCAST_METHODS
        if not broadcast:
            node = qml.transforms.broadcast_expand(node)
        log.info("pennylane backend: %s, diff_method=%s (%s), shots=%s", self.device_name, self.diff_method,
                 method, self.shots)
        self._qnodes[circuit] = (node, broadcast, method)
        return self._qnodes[circuit]

    def __call__(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        validate_call(circuit, weights, x)
        x = x.to(weights.dtype)
        node, _, _ = self.qnode(circuit, weights, x)
        res = node(weights, x)
        cols = [torch.as_tensor(r) for r in (res if isinstance(res, (list, tuple)) else [res])]
        cols = [c.real if c.is_complex() else c for c in cols]
        cols = [c.expand(x.shape[0]) if c.dim() == 0 else c for c in cols]  # constant (identity) columns
        return torch.stack(cols, -1).to(device=weights.device, dtype=weights.dtype)
