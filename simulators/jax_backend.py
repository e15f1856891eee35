"""The JAX backend: a gate-by-gate statevector simulator in ``jax.numpy``, ``jit`` + ``vmap``,
bridged to torch autograd through ``jax.vjp``.

One sample's state is a ``(2,) * n`` complex tensor (wire 0 the first axis); a gate is a
``tensordot`` of its matrix with the wires' axes, or an elementwise product for diagonal gates (Z, S,
T, RZ, PhaseShift, CZ, CRZ); a Pauli word's value is ``Re <psi| P |psi>``. The simulation of one
input is ``vmap``-ed over the batch (weights shared) and ``jit``-compiled once per circuit, dtype and
batch size, shared by all instances. XLA's compile time grows with the gate count (the 8-qubit QIREN
layer, 160 gates: about 10 s for the forward and 30-40 s for the backward on a loaded 2-core CPU):
the first call is slow, later ones are not.

torch bridge: forward runs ``jit(lambda w, x: jax.vjp(f, w, x))``, which returns the values and the
VJP closure (a pytree of residual arrays, so it can leave ``jit``); backward calls the jitted
closure on the output cotangent. Gradients are reverse-mode automatic differentiation (backprop
through the stored intermediate states), for the weights and the inputs.

Precision: float32 weights run in complex64, float64 in complex128. JAX keeps 64-bit types off unless
``jax_enable_x64`` is set; this backend does **not** flip that global switch: every JAX call for a
float64 batch runs inside the scoped context manager ``jax.enable_x64(True)`` (and compiles its own
float64 program), so other JAX code in the process keeps its configuration. Contractions run at
``default_matmul_precision("highest")``, also scoped, so float32 on a GPU is true float32.

Devices: data moves torch -> JAX through NumPy on the CPU, and through DLPack (no copy) when the
tensors are on CUDA and JAX has a GPU; otherwise CUDA tensors are copied through the host. JAX by
default takes 75 % of the card's memory at its first call, which leaves too little for torch on the
same GPU: when this backend is the first to import JAX it sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false``
unless the variable is already set (measured: the PennyLane rows of the GPU benchmark ran out of
memory after the JAX rows without it).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys

import numpy as np
import torch

from ._optional import require
from .circuit import Circuit, validate_call

log = logging.getLogger(__name__)

_EXTRA = "jax"
_S2 = 1.0 / math.sqrt(2.0)
_FIXED = {
    "H": [[_S2, _S2], [_S2, -_S2]], "X": [[0, 1], [1, 0]], "Y": [[0, -1j], [1j, 0]], "Z": [[1, 0], [0, -1]],
    "S": [[1, 0], [0, 1j]], "Sdg": [[1, 0], [0, -1j]], "T": [[1, 0], [0, complex(_S2, _S2)]],
    "CNOT": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]],
    "CZ": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, -1]],
    "SWAP": [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]],
}
_PARAMETRIC = ("RX", "RY", "RZ", "PhaseShift", "Rot", "CRZ")
JAX_GATES = tuple(sorted(set(_FIXED) | set(_PARAMETRIC)))


def _jax():
    if "jax" not in sys.modules:  # the switch is read once, when JAX starts
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    jax = require("jax", _EXTRA, "backend 'jax'")
    return jax, jax.numpy


def _matrix(jnp, name: str, a, cdtype):
    """The gate matrix for angles ``a`` (a list of scalars), PennyLane conventions."""
    if name in _FIXED:
        return jnp.asarray(_FIXED[name], dtype=cdtype)
    if name == "Rot":  # RZ(omega) RY(theta) RZ(phi)
        phi, theta, omega = a
        c, s = jnp.cos(theta / 2), jnp.sin(theta / 2)
        e = lambda t: jnp.exp(1j * t)  # noqa: E731
        return jnp.stack([jnp.stack([e(-(phi + omega) / 2) * c, -e((phi - omega) / 2) * s]),
                          jnp.stack([e(-(phi - omega) / 2) * s, e((phi + omega) / 2) * c])]).astype(cdtype)
    t = a[0]
    c, s = jnp.cos(t / 2), jnp.sin(t / 2)
    zero, one = jnp.zeros_like(c), jnp.ones_like(c)
    if name == "RX":
        rows = [[c, -1j * s], [-1j * s, c]]
    elif name == "RY":
        rows = [[c, -s], [s, c]]
    elif name == "RZ":
        rows = [[c - 1j * s, zero], [zero, c + 1j * s]]
    elif name == "PhaseShift":
        rows = [[one, zero], [zero, jnp.exp(1j * t)]]
    elif name == "CRZ":
        m, p = c - 1j * s, c + 1j * s
        rows = [[one, zero, zero, zero], [zero, one, zero, zero], [zero, zero, m, zero], [zero, zero, zero, p]]
    else:  # pragma: no cover - guarded by _check_gates
        raise ValueError(f"backend 'jax' cannot run gate {name!r}")
    return jnp.stack([jnp.stack([jnp.asarray(v, dtype=cdtype) for v in row]) for row in rows])


_DIAGONAL = {"Z": [1, -1], "S": [1, 1j], "Sdg": [1, -1j], "T": [1, complex(_S2, _S2)], "CZ": [1, 1, 1, -1]}


def _diagonal(jnp, name: str, a, cdtype):
    """The diagonal of a diagonal gate (None for the others): applied as an elementwise product,
    which keeps the traced program (and XLA's compile time) small."""
    if name in _DIAGONAL:
        return jnp.asarray(_DIAGONAL[name], dtype=cdtype)
    if name in ("RZ", "CRZ"):
        m = jnp.exp(-0.5j * a[0]).astype(cdtype)
        one = jnp.ones((), dtype=cdtype)
        return jnp.stack([m, jnp.conj(m)] if name == "RZ" else [one, one, m, jnp.conj(m)])
    if name == "PhaseShift":
        return jnp.stack([jnp.ones((), dtype=cdtype), jnp.exp(1j * a[0]).astype(cdtype)])
    return None


def _apply_diagonal(state, diag, wires, n):
    """Multiply a ``(2,) * n`` state by a diagonal on ``wires`` (broadcast over the other axes)."""
    k = len(wires)
    d = diag.reshape((2,) * k)
    order = sorted(range(k), key=lambda i: wires[i])
    d = d.transpose(order)  # axes in increasing wire order
    shape = [1] * n
    for w in wires:
        shape[w] = 2
    return state * d.reshape(shape)


def _apply(jnp, state, mat, wires):
    """Apply a ``2**k`` square matrix to ``wires`` of a ``(2,) * n`` state."""
    k = len(wires)
    mat = mat.reshape((2,) * (2 * k))
    out = jnp.tensordot(mat, state, axes=(tuple(range(k, 2 * k)), tuple(wires)))
    return jnp.moveaxis(out, tuple(range(k)), tuple(wires))


def _check_gates(circuit: Circuit):
    for g in circuit.gates:
        if g.name not in JAX_GATES:
            raise ValueError(f"backend 'jax' cannot run gate {g.name!r}; it supports {list(JAX_GATES)}")


def simulate_fn(circuit: Circuit, cdtype):
    """``f(w, x1) -> (n_obs,)`` for one input ``x1`` (pure JAX; the caller jits and vmaps it)."""
    jax, jnp = _jax()
    _check_gates(circuit)
    n = circuit.n_qubits
    paulis = {"X": _FIXED["X"], "Y": _FIXED["Y"], "Z": _FIXED["Z"]}

    def angle(p, w, x1):
        if p.source == "weight":
            return w[p.index]
        if p.source == "input":
            return p.scale * x1[p.index]
        return jnp.asarray(p.value, dtype=w.dtype)

    def f(w, x1):
        state = jnp.zeros((2,) * n, dtype=cdtype).at[(0,) * n].set(1)
        for g in circuit.gates:
            a = [angle(p, w, x1) for p in g.params]
            diag = _diagonal(jnp, g.name, a, cdtype)
            if diag is not None:
                state = _apply_diagonal(state, diag, g.wires, n)
            else:
                state = _apply(jnp, state, _matrix(jnp, g.name, a, cdtype), g.wires)
        out = []
        for word in circuit.observables:
            phi = state
            for wire, letter in word.ops:
                phi = _apply(jnp, phi, jnp.asarray(paulis[letter], dtype=cdtype), (wire,))
            out.append(jnp.real(jnp.vdot(state, phi)))
        return jnp.stack(out)

    return f


_FUNCTIONS: dict = {}  # (circuit, dtype, jit) -> jitted functions, shared by all JaxBackend instances


def _scope(dtype: torch.dtype):
    """The scoped JAX configuration of a call: 64-bit types for float64 batches, and full-precision
    contractions always (on GPUs JAX's default float32 ``tensordot`` runs reduced-precision TF32-like
    passes: measured on an H200, outputs 7e-4 off float64 instead of 1e-7)."""
    jax, _ = _jax()
    stack = contextlib.ExitStack()
    if dtype == torch.float64:
        stack.enter_context(jax.enable_x64(True))
    stack.enter_context(jax.default_matmul_precision("highest"))
    return stack


class JaxBackend:
    """``backend(circuit, weights, x) -> (B, n_obs)`` by a jitted, vmapped JAX statevector simulation.

    Args:
        jit: compile with ``jax.jit`` (default); ``False`` runs eagerly (for debugging).

    Example:
        >>> from qlite.simulators import reuploading_circuit
        >>> c = reuploading_circuit(2, 1)
        >>> JaxBackend()(c, torch.zeros(c.n_weights), torch.zeros(3, 2)).shape
        torch.Size([3, 2])
    """

    name = "jax"

    def __init__(self, jit: bool = True):
        self.jax, self.jnp = _jax()
        self.jit = bool(jit)

    def functions(self, circuit: Circuit, dtype: torch.dtype):
        """``(forward, forward_with_vjp, apply_vjp)`` for a circuit and a dtype, built once per
        process (shared by all instances: the hybrid layers of a QIREN share one circuit, and XLA
        compiles it once per batch shape)."""
        key = (circuit, dtype, self.jit)
        fns = _FUNCTIONS.get(key)
        if fns is None:
            jax, jnp = self.jax, self.jnp
            cdtype = jnp.complex128 if dtype == torch.float64 else jnp.complex64
            batched = jax.vmap(simulate_fn(circuit, cdtype), in_axes=(None, 0))
            wrap = jax.jit if self.jit else (lambda f: f)
            fns = _FUNCTIONS[key] = (wrap(batched), wrap(lambda w, x: jax.vjp(batched, w, x)),
                                    wrap(lambda vjp, g: vjp(g)))
        return fns

    # -- torch <-> jax ------------------------------------------------------------------------
    def to_jax(self, t: torch.Tensor):
        t = t.detach().contiguous()
        if t.is_cuda:
            if any(d.platform == "gpu" for d in self.jax.devices()):
                return self.jnp.from_dlpack(t)
            t = t.cpu()
        return self.jnp.asarray(t.numpy())

    @staticmethod
    def to_torch(a, like: torch.Tensor) -> torch.Tensor:
        devices = a.devices() if hasattr(a, "devices") else set()
        on_gpu = any(getattr(d, "platform", "") == "gpu" for d in devices)  # str(device) reads "cuda:0"
        if like.is_cuda and on_gpu:
            return torch.from_dlpack(a).to(device=like.device, dtype=like.dtype)
        return torch.from_numpy(np.array(a)).to(device=like.device, dtype=like.dtype)

    def __call__(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        validate_call(circuit, weights, x)
        if weights.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"backend 'jax' runs in float32 or float64, got {weights.dtype}; call .float() or .double()")
        x = x.to(weights.dtype)
        _check_gates(circuit)
        fns = self.functions(circuit, weights.dtype)
        if torch.is_grad_enabled() and (weights.requires_grad or x.requires_grad):
            return _JaxFunction.apply(self, fns, weights, x)
        with _scope(weights.dtype):
            return self.to_torch(fns[0](self.to_jax(weights), self.to_jax(x)), weights)


class _JaxFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, backend: JaxBackend, fns, weights, x):
        with _scope(weights.dtype):
            out, vjp = fns[1](backend.to_jax(weights), backend.to_jax(x))
        ctx.backend, ctx.fns, ctx.vjp, ctx.dtype = backend, fns, vjp, weights.dtype
        ctx.like = (weights.detach(), x.detach())
        return backend.to_torch(out, weights)

    @staticmethod
    def backward(ctx, g):
        backend = ctx.backend
        with _scope(ctx.dtype):
            gw, gx = ctx.fns[2](ctx.vjp, backend.to_jax(g.to(ctx.dtype)))
        w_like, x_like = ctx.like
        ctx.vjp = None  # free the residual states
        return None, None, backend.to_torch(gw, w_like), backend.to_torch(gx, x_like)


