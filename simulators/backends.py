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

import difflib
import importlib
import inspect

# name -> ("module:factory", extra to install)
BACKENDS: dict[str, tuple[str, str | None]] = {
    "torch": ("qlite.simulators.shots:native_backend", None),
    "pennylane": ("qlite.simulators.pennylane_backend:PennyLaneBackend", "pennylane"),
    "qiskit": ("qlite.simulators.qiskit_backend:QiskitBackend", "qiskit"),
    "jax": ("qlite.simulators.jax_backend:JaxBackend", "jax"),
}
# factories whose **options go on to another class: its keywords are valid options too
_FORWARDS = {"torch": "qlite.simulators.native:NativeBackend"}


def _load(target: str):
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def _keywords(factory) -> tuple[set[str], bool]:
    """(keyword names ``factory`` takes, whether it also takes any other ``**options``)."""
    params = inspect.signature(factory).parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def check_options(name: str, factory, options: dict) -> None:
    """Refuse an option the backend does not take, listing the valid ones (a misspelled option
    must not surface as a bare ``TypeError`` deep in a constructor, or be silently ignored)."""
    names, open_ended = _keywords(factory)
    if open_ended and name in _FORWARDS:
        more, open_ended = _keywords(_load(_FORWARDS[name]))
        names |= more
    if open_ended:  # e.g. PennyLane's device options: that backend checks them itself
        return
    for key in options:
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown option {key!r} for backend {name!r}{hint} valid options: {sorted(names)}")


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
    try:
        factory = _load(target)
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"backend {name!r} needs the optional extra: pip install 'qlite[{extra}]' ({err})") from err
    check_options(name, factory, options)
    return factory(**options)
