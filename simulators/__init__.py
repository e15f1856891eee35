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

__all__ = [
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
