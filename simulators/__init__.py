"""qlite.simulators: the circuit description and the simulator backends.

``Circuit`` / ``Gate`` / ``Param`` / ``PauliWord`` describe a parameterised circuit; the builders make
the common ansätze; ``get_backend(name)`` returns a callable ``backend(circuit, weights, x)`` that
gives the expectation values for a batch of inputs.
"""

from .backends import BACKENDS, get_backend
from .builders import (
    angle_encoding,
    basic_entangler,
    hardware_efficient,
    reuploading_circuit,
    strongly_entangling,
)
from .circuit import GATES, Circuit, Gate, Param, PauliWord
from .native import NativeBackend, estimate_bytes

# Heavier or optional-dependency modules, imported on first use.
_LAZY = {
    "NoiseConfig": ".noise",
    "ShotBackend": ".shots",
    "to_qiskit": ".export",
    "from_qiskit": ".export",
    "to_qasm3": ".export",
    "from_qasm3": ".export",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'qlite.simulators' has no attribute {name!r}")

__all__ = [
    *_LAZY,
    "BACKENDS",
    "GATES",
    "Circuit",
    "Gate",
    "NativeBackend",
    "Param",
    "PauliWord",
    "angle_encoding",
    "basic_entangler",
    "estimate_bytes",
    "get_backend",
    "hardware_efficient",
    "reuploading_circuit",
    "strongly_entangling",
]
