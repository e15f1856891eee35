"""Backend registry: names to factories, imported lazily so optional packages stay optional.

=============  ==============================================  ======================================
name           what                                            gradients
=============  ==============================================  ======================================
``torch``      native batched statevector (PyTorch, CPU/CUDA)  adjoint method (custom backward)
               ``shots=N`` / readout ``noise=``: finite-shot   straight-through (exact gradient)
               sampling (:class:`~.shots.ShotBackend`)
``pennylane``  any PennyLane device (``device=...``)           backprop / adjoint / parameter shift
``qiskit``     Qiskit Aer primitives, shots, noise models      parameter shift
``jax``        jit + vmap statevector in JAX                   reverse-mode AD through ``jax.vjp``
=============  ==============================================  ======================================

Each factory takes keyword options and returns a callable ``backend(circuit, weights, x) -> (B,
n_obs)`` tensor in the weights' dtype on their device, with a ``name`` attribute.
"""

from __future__ import annotations

import importlib

# name -> ("module:factory", extra to install)
BACKENDS: dict[str, tuple[str, str | None]] = {
    "torch": ("qlite.simulators.shots:native_backend", None),
    "pennylane": ("qlite.simulators.pennylane_backend:PennyLaneBackend", "pennylane"),
    "qiskit": ("qlite.simulators.qiskit_backend:QiskitBackend", "qiskit"),
    "jax": ("qlite.simulators.jax_backend:JaxBackend", "jax"),
}


def get_backend(name, **options):
    """Return a backend instance by name (or pass an instance through).

    Example:
        >>> get_backend("torch").name
        'torch'
        >>> get_backend("torch", shots=100, seed=0).name
        'torch[shots=100]'
    """
    if not isinstance(name, str):
        if callable(name):
            if options:
                raise ValueError(f"options {sorted(options)} were given with a backend instance; pass them "
                                 f"to its constructor or give the backend by name")
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
