"""One benchmark row per simulator backend for the QIREN image model, in the simulator benchmark's
format (``simulator_bench``): ms per training step where the backend trains, ms per forward
otherwise.

The model is the paper's image QIREN (2 inputs, 8 qubits, 2 hidden layers, 2 re-uploads, 2 sub-layers,
CZ, RZ) with every ``QuantumLayer`` on the named backend; the step is the benchmark's own
(``bench_common.training_step``: forward, MSE, backward, Adam, full batch), timed by
``qlite.timing.time_call`` (warm-up runs first, so JAX's compilation stays out of the figure).

Modes: ``"step"`` for ``torch``, ``pennylane`` and ``jax`` (a real backward: adjoint, backprop /
adjoint, reverse-mode AD); ``"forward"`` for ``qiskit``, whose parameter-shift backward costs two
circuit runs per angle occurrence (2 x (144 + 16) per layer and point for this model), i.e. about
320 forwards: the forward is the comparable figure.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

DEFAULT_MODE = {"torch": "step", "pennylane": "step", "jax": "step", "qiskit": "forward"}


def time_backend(name: str, points: int, *, device="cpu", dtype: torch.dtype = torch.float32, mode: str | None = None,
                 repeats: int = 3, warmup: int = 1, max_seconds: float | None = 60.0, seed: int = 0,
                 hidden_features: int = 8, backend_options: dict | None = None) -> dict:
    """Time the QIREN image model on backend ``name`` for a batch of ``points`` coordinates.

    Args:
        name: a registered backend (``"torch"``, ``"pennylane"``, ``"qiskit"``, ``"jax"``).
        points: batch size (coordinates per step).
        device, dtype: where and in which precision the torch model lives.
        mode: ``"step"`` (forward + backward + Adam) or ``"forward"`` (inference, ``torch.no_grad``);
            default by backend (:data:`DEFAULT_MODE`).
        repeats, warmup, max_seconds: passed to ``qlite.timing.time_call``.
        hidden_features: qubits per hybrid layer (8 in the paper).
        backend_options: passed to the backend (e.g. ``{"device": "lightning.qubit"}`` for PennyLane,
            ``{"shots": 1000}`` for Qiskit); a dict, since ``device`` here is the torch device.

    Returns:
        A row ``{"impl": "backend:<name>", "qubits", "points", "strategy": mode, "ms", "ms_min",
        "ms_max", "runs", "mode", "dtype", "options"}`` that ``simulator_bench.to_markdown``
        prints; ``{"impl", "qubits", "points", "strategy", "error"}`` where the backend is missing.

    Example:
        >>> row = time_backend("torch", 64, repeats=1)
        >>> row["impl"], row["mode"]
        ('backend:torch', 'step')
    """
    from bench_common import training_step
    from qlite.timing import time_call
    from qlite.layers import QIREN

    backend_options = dict(backend_options or {})
    mode = mode or DEFAULT_MODE.get(name, "forward")
    if mode not in ("step", "forward"):
        raise ValueError(f"mode must be 'step' or 'forward', got {mode!r}")
    row = {"impl": f"backend:{name}", "qubits": hidden_features, "points": points, "strategy": mode}
    device = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(points, 2, generator=g) * 2 - 1).to(device, dtype)
    y = (torch.rand(points, 1, generator=g) * 2 - 1).to(device, dtype)
    try:
        torch.manual_seed(seed)
        model = QIREN(2, 1, hidden_features=hidden_features, backend=name, **backend_options).to(device, dtype)
    except ImportError as err:
        return {**row, "error": str(err).split(" (")[0]}
    if mode == "step":
        fn = training_step(model, x, y)
    else:
        model.eval()

        def fn():
            with torch.no_grad():
                model(x)

    t = time_call(fn, device, repeats=repeats, warmup=warmup, max_seconds=max_seconds)
    log.info("backend %s, %d points, %s: %.1f ms", name, points, mode, t["ms"])
    return {**row, **t, "mode": mode, "dtype": str(dtype).replace("torch.", ""),
            "options": ", ".join(f"{k}={v}" for k, v in backend_options.items())}


def backend_rows(names=("torch", "pennylane", "jax", "qiskit"), points=(1024,), **kwargs) -> list[dict]:
    """``[time_backend(name, p, **kwargs) for p in points for name in names]``."""
    return [time_backend(name, p, **kwargs) for p in points for name in names]
