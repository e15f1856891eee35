"""Quantum layers as thin ``nn.Module`` shells around the functional simulator.

* :class:`QuantumLayer`: a data re-uploading variational circuit used as an activation.
* :class:`HybridLayer`: ``Linear -> BatchNorm1d -> QuantumLayer``.
* :class:`QIREN`: hybrid layers and a final ``Linear`` (Zhao et al., "Quantum Implicit Neural
  Representations", ICML 2024).
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from qlite.simulators import Circuit, get_backend, reuploading_circuit

TWO_PI = 2 * math.pi


def _tracing(x: torch.Tensor) -> bool:
    """Under torch.compile or CUDA-graph capture a data-dependent check would break the trace."""
    return torch.compiler.is_compiling() or (x.is_cuda and torch.cuda.is_current_stream_capturing())


class QuantumLayer(nn.Module):
    """A data re-uploading circuit as a layer: input ``(..., n_qubits)``, output ``(..., n_obs)``.

    For ``l`` in ``0..L-1`` the circuit applies ``StronglyEntanglingLayers(weights[l],
    imprimitive=entangler)`` then ``encoding(x[..., j])`` on wire ``j``; finally
    ``StronglyEntanglingLayers(weights[L])``; it returns ``<Z_j>`` for every wire. ``weights`` has
    shape ``(spectrum_layers + 1, sublayers, n_qubits, 3)`` (PennyLane's layout) and starts uniform
    in ``[0, 2*pi)`` like ``qml.qnn.TorchLayer``.

    Args:
        n_qubits: number of wires (= input features = outputs).
        spectrum_layers: number of re-uploads ``L``.
        sublayers: strongly entangling sub-layers per trainable block.
        entangler: ``"cz"`` or ``"cnot"``.
        encoding: ``"rz"``, ``"rx"`` or ``"ry"``.
        backend: ``"torch"`` (native, default) or another registered backend name / instance.
        circuit: use this :class:`~qlite.simulators.Circuit` instead of the re-uploading ansatz;
            ``weights`` is then a flat vector of ``circuit.n_weights`` (``config`` and ``repr``
            then describe that circuit; the ansatz arguments must be left at their defaults).
        generator: random generator for the initial angles (keyword only).
        check_finite: refuse inputs holding nan or inf. ``None`` (default): checked where that
            costs no device synchronisation, i.e. for CPU tensors (on CUDA the check would stall
            the host every call; ``qlite.fit`` and ``qlite.data`` check the data where it
            enters); ``True``: always (one synchronisation per call on CUDA); ``False``: never.
        **backend_options: passed to the backend (e.g. ``strategy="factored"``).

    Inputs are angles: real tensors of any floating or integer dtype, cast to the layer's dtype
    (float64 inputs into a float32 layer run in float32; call ``layer.double()`` for float64).
    Complex inputs are refused.

    Example:
        >>> layer = QuantumLayer(4)
        >>> layer(torch.zeros(10, 4)).shape
        torch.Size([10, 4])
    """

    def __init__(self, n_qubits: int | None = None, spectrum_layers: int = 2, sublayers: int = 2,
                 entangler: str = "cz", encoding: str = "rz", backend="torch", *, circuit: Circuit | None = None,
                 generator: torch.Generator | None = None, check_finite: bool | None = None, **backend_options):
        super().__init__()
        custom = circuit is not None
        if check_finite not in (None, True, False):
            raise ValueError(f"check_finite must be None (CPU tensors only), True or False, got {check_finite!r}")
        if circuit is None:
            if not isinstance(n_qubits, int) or isinstance(n_qubits, bool) or n_qubits < 1:
                raise ValueError(f"n_qubits must be an integer >= 1, got {n_qubits!r}")
            circuit = reuploading_circuit(n_qubits, spectrum_layers, sublayers, entangler, encoding)
            shape = (spectrum_layers + 1, sublayers, n_qubits, 3)
        else:
            if not isinstance(circuit, Circuit):
                raise TypeError(f"circuit must be a qlite.simulators.Circuit, got {type(circuit).__name__}")
            if n_qubits is not None and n_qubits != circuit.n_qubits:
                raise ValueError(f"n_qubits={n_qubits} but the circuit has {circuit.n_qubits}")
            given = {k: v for k, v in (("spectrum_layers", spectrum_layers), ("sublayers", sublayers),
                                       ("entangler", entangler), ("encoding", encoding)) if v != _ANSATZ[k]}
            if given:
                raise ValueError(f"{given} describe the re-uploading ansatz, but circuit= was given and is used as it "
                                 f"is; leave them out (build the ansatz with reuploading_circuit(...) to change it)")
            shape = (circuit.n_weights,)
        self.circuit = circuit
        self.check_finite = check_finite
        if custom:
            self.config = dict(n_qubits=circuit.n_qubits, circuit="custom", n_gates=len(circuit.gates),
                               n_weights=circuit.n_weights, n_inputs=circuit.n_inputs,
                               observables=[str(o) for o in circuit.observables])
        else:
            self.config = dict(n_qubits=circuit.n_qubits, spectrum_layers=spectrum_layers, sublayers=sublayers,
                               entangler=entangler, encoding=encoding)
        self.backend = get_backend(backend, **backend_options)
        self.weights = nn.Parameter(torch.rand(shape, generator=generator) * TWO_PI)

    @property
    def n_qubits(self) -> int:
        return self.circuit.n_qubits

    @property
    def in_features(self) -> int:
        return self.circuit.n_inputs

    @property
    def out_features(self) -> int:
        return self.circuit.n_observables

    def periodic_parameters(self) -> dict[str, tuple[nn.Parameter, float]]:
        """Angles live on a circle: the protocol ``qlite.classical.AngleQuant`` quantizes."""
        return {"weights": (self.weights, TWO_PI)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"QuantumLayer expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"QuantumLayer expects inputs of shape (..., {self.in_features}), got {tuple(x.shape)}; "
                f"put a Linear(..., {self.in_features}) in front or use n_qubits={x.shape[-1] if x.dim() else 1}"
            )
        if x.is_complex():
            raise TypeError(f"QuantumLayer inputs are rotation angles and must be real, got {x.dtype}; "
                            f"pass x.real or x.abs() (or encode real and imaginary parts as separate features)")
        if self._should_check_finite(x) and not bool(torch.isfinite(x).all()):
            raise ValueError("QuantumLayer got non-finite inputs (nan or inf); check the data and the learning rate")
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features).to(self.weights.dtype)
        out = self.backend(self.circuit, self.weights.reshape(-1), flat)
        return out.reshape(*lead, self.out_features)

    def _should_check_finite(self, x: torch.Tensor) -> bool:
        if self.check_finite is False or _tracing(x):
            return False
        return self.check_finite is True or x.device.type == "cpu"

    def extra_repr(self) -> str:
        c = self.config
        if c.get("circuit") == "custom":
            return (f"n_qubits={c['n_qubits']}, circuit=custom ({c['n_gates']} gates, {c['n_weights']} weights, "
                    f"{c['n_inputs']} inputs, observables={' | '.join(c['observables'])}), backend={self.backend.name!r}")
        return (f"n_qubits={c['n_qubits']}, spectrum_layers={c['spectrum_layers']}, sublayers={c['sublayers']}, "
                f"entangler={c['entangler']!r}, encoding={c['encoding']!r}, backend={self.backend.name!r}")


# the ansatz arguments' defaults, read from the signature (circuit= must leave them at these)
_ANSATZ = {k: p.default for k, p in inspect.signature(QuantumLayer.__init__).parameters.items()
           if k in ("spectrum_layers", "sublayers", "entangler", "encoding")}


class HybridLayer(nn.Module):
    """``Linear(in_features, n_qubits) -> BatchNorm1d(n_qubits) -> QuantumLayer(n_qubits)``.

    Inputs must have the model's dtype (a float64 tensor into a float32 model is refused with the
    fix, as ``nn.Linear`` would refuse it less clearly); in train mode a batch needs at least 2
    points (BatchNorm's statistics).
    """

    def __init__(self, in_features: int, n_qubits: int, spectrum_layers: int = 2, *, generator=None, **quantum):
        super().__init__()
        if not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"in_features must be an integer >= 1, got {in_features!r}")
        self.linear = nn.Linear(in_features, n_qubits)
        self.norm = nn.BatchNorm1d(n_qubits)
        self.quantum = QuantumLayer(n_qubits, spectrum_layers, generator=generator, **quantum)

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.quantum.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"HybridLayer expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"HybridLayer expects inputs of shape (..., {self.in_features}), got {tuple(x.shape)}")
        if x.dtype != self.linear.weight.dtype:
            # the Linear would fail with a bare dtype mismatch; casting silently could hide a float64 check
            raise TypeError(f"HybridLayer got {x.dtype} inputs but its weights are {self.linear.weight.dtype}; "
                            f"convert the data (x.to({self.linear.weight.dtype})) or the model (model.to({x.dtype}))")
        lead = x.shape[:-1]
        if self.training and x.numel() // self.in_features == 1:
            raise ValueError("HybridLayer in train mode got a batch of 1 point: BatchNorm needs at least 2 to estimate "
                             "its statistics; call model.eval() to predict single points, or train on larger batches")
        h = self.norm(self.linear(x.reshape(-1, self.in_features)))  # BatchNorm1d wants (N, C)
        return self.quantum(h).reshape(*lead, self.out_features)


class QIREN(nn.Module):
    """Quantum implicit neural representation: hybrid layers then a final ``Linear``.

    ``HybridLayer(in, hidden)``, ``hidden_layers`` x ``HybridLayer(hidden, hidden)``, ``Linear(hidden,
    out)``. With the defaults (8 qubits, 2 hidden layers, 2 re-uploads, 2 sub-layers, CZ, RZ) this is
    the paper's model: 657 trainable parameters for 2-D input, 649 for 1-D input.

    Example:
        >>> model = QIREN(2, 1)
        >>> sum(p.numel() for p in model.parameters())
        657
    """

    def __init__(self, in_features: int, out_features: int, hidden_features: int = 8, hidden_layers: int = 2,
                 spectrum_layers: int = 2, *, generator=None, **quantum):
        super().__init__()
        for name, v, lo in (("out_features", out_features, 1), ("hidden_features", hidden_features, 1),
                            ("hidden_layers", hidden_layers, 0)):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        self.config = dict(in_features=in_features, out_features=out_features, hidden_features=hidden_features,
                           hidden_layers=hidden_layers, spectrum_layers=spectrum_layers, **quantum)
        layers = [HybridLayer(in_features, hidden_features, spectrum_layers, generator=generator, **quantum)]
        layers += [HybridLayer(hidden_features, hidden_features, spectrum_layers, generator=generator, **quantum)
                   for _ in range(hidden_layers)]
        self.net = nn.Sequential(*layers, nn.Linear(hidden_features, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
