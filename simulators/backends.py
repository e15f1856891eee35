"""Backend registry: names to factories, imported lazily so optional packages stay optional."""

from __future__ import annotations

import importlib

# name -> ("module:factory", extra to install). Other backends register here (issue: PennyLane,
# Qiskit / Aer, JAX bridges); each factory takes keyword options and returns a callable
# ``backend(circuit, weights, x) -> (B, n_obs)`` tensor.
BACKENDS: dict[str, tuple[str, str | None]] = {
    "torch": ("qlite.simulators.native:NativeBackend", None),
}


def get_backend(name, **options):
    """Return a backend instance by name (or pass an instance through)."""
    if not isinstance(name, str):
        if callable(name):
            return name
        raise TypeError(f"backend must be a name or a callable backend, got {type(name).__name__}")
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    target, extra = BACKENDS[name]
    module, attr = target.split(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"backend {name!r} needs the optional extra: pip install 'qlite[{extra}]' ({err})") from err
    return factory(**options)
