"""qlite: hybrid quantum-classical lightweight models.

``from qlite import QuantumLayer, HybridLayer, QIREN``. Subpackages: ``qlite.simulators`` (circuits
and simulator backends), ``qlite.classical`` (compression toolkit for any torch model).
"""

from __future__ import annotations

import importlib

from .layers import QIREN, HybridLayer, QuantumLayer

__version__ = "0.1.0"

# Public names that live in heavier modules, imported on first use so `import qlite` stays fast.
_LAZY: dict[str, str] = {
    "circuit_spectrum": ".spectrum",
    "model_spectrum": ".spectrum",
    "spectrum_size": ".spectrum",
    "fit": ".training",
    "fit_many": ".training",
    "FitConfig": ".training",
    "FitResult": ".training",
    "predict": ".training",
    "Signal": ".data",
    "TextData": ".data",
    "MLP": ".models",
    "SIREN": ".models",
    "RFFNet": ".models",
    "ModelSpec": ".models",
    "build_model": ".models",
    "compare": ".comparison",
    "Comparison": ".comparison",
    "NoiseConfig": ".simulators.noise",
    "to_qiskit": ".simulators.export",
    "from_qiskit": ".simulators.export",
    "to_qasm3": ".simulators.export",
    "from_qasm3": ".simulators.export",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'qlite' has no attribute {name!r}")


__all__ = ["QIREN", "HybridLayer", "QuantumLayer", "__version__", *_LAZY]
