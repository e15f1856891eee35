"""The native backend: a batched statevector simulator in PyTorch (CPU and CUDA).

``psi = S_L E_L(x) ... S_1 E_1(x) S_0 |0>`` (see ``compile.py``). Per forward:

1. The static segments are built from the weights with ordinary autograd (batch independent):
   either as one dense matrix ``R_l = S_l^T`` (``strategy="dense"``) or as a few factored
   operations (Kronecker chunks of single-qubit layers, signed permutations for CZ/CNOT rings;
   ``strategy="factored"``). ``S_0 |0>`` is a single batch-independent state.
2. The batch part runs inside one ``torch.autograd.Function``: encodings are elementwise phases,
   dense segments one GEMM each, and all expectation values come from one GEMM on ``|psi|^2``.
3. Its backward is the adjoint method: the final state and the adjoint state
   ``phi = dL/d conj(psi)`` travel back together through ``S^dagger`` and ``E^dagger``
   (recomputing the states instead of storing one per gate), and each operation's gradient is one
   contraction of ``phi`` with the recomputed state. Memory stays at a few states.
"""

from __future__ import annotations

import logging
import os

import torch

from . import fused as fused_path
from . import fused_realry
from . import ops, realry
from .circuit import Circuit, PauliWord, validate_call
from .compile import Program, compile_circuit
from .gates import complex_dtype
from .layout import Layout, build, make_layout
from .runops import Chunk, ChunkBlocks, Dense, Encode, Env, Grads, Permute, apply_all, check_ops

log = logging.getLogger(__name__)

# amplitudes per CPU tile of the batch pass (2 MB of complex64 states), measured in
# experiments/results/bench_simulator_cpu_realry.md
_CPU_TILE_AMPLITUDES = 1 << 18
STRATEGIES = ("auto", "dense", "factored", "realry", "autograd")
FUSED_KERNELS = ("auto", "realry", "complex")


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def estimate_bytes(n_qubits: int, batch: int, dtype: torch.dtype = torch.float32, training: bool = True,
                   dense_segments: int = 0) -> int:
    """Peak bytes the native backend needs: a few batch states plus the dense segment matrices.

    Forward holds about 4 state-sized buffers (state, phases, temporaries); backward about 7 (state
    and adjoint stacked, their updates, and the saved final state).
    """
    item = 16 if dtype == torch.float64 else 8
    state = batch * (1 << n_qubits) * item
    return state * (7 if training else 4) + dense_segments * (1 << (2 * n_qubits)) * item


def check_memory(n_qubits: int, batch: int, dtype: torch.dtype, device: torch.device, training: bool,
                 dense_segments: int = 0) -> None:
    need = estimate_bytes(n_qubits, batch, dtype, training, dense_segments)
    have = _available_bytes(device)
    if need > have:
        raise ValueError(
            f"simulating {n_qubits} qubits for a batch of {batch} needs about {need / 2**30:.2f} GiB "
            f"({need} bytes) on {device}, but only {have / 2**30:.2f} GiB is available; "
            f"use fewer points per batch (e.g. fit(..., batch_size=...)), fewer qubits, or float32"
        )


def default_fused_kernel(n_qubits: int) -> str:
    """The fused kernels ``fused_kernel="auto"`` runs on CUDA: the real-RY ones at 8 and 9 qubits,
    the complex ones at 10 (and none above). One H200, 65,536 points, 2026-12-04: at 8 qubits a
    QIREN step takes 13.6 ms with the real-RY kernels against 26.5 ms with the complex ones; at 12
    qubits the real-RY kernels (one sample per program) take 10 s, far slower than the unfused
    strategies, so they run there only when asked for."""
    return "realry" if 8 <= n_qubits <= 9 else "complex"


def default_strategy(n_qubits: int, device: torch.device) -> str:
    """Dense GEMMs while 2**n is small, factored operations above (GPU crossover measured in
    experiments/bench_strategy.py). On a CPU the real-RY plan from 8 qubits, the factored one at 7
    (one thread, 2-core AMD EPYC, 2026-12-04, experiments/results/bench_simulator_cpu_realry.md:
    a layer's forward + backward at 1,024 points: realry 1.07x factored at 8 qubits, 1.3-1.5x at
    10-12, slower below 8; at 7 factored 1.45x dense). ``realry`` is not chosen on GPUs: not measured
    there."""
    if device.type == "cuda":
        return "dense" if n_qubits <= 9 else "factored"
    if n_qubits <= 6:
        return "dense"
    return "factored" if n_qubits == 7 else "realry"


class _Run:
    """The batch part of one forward: typed operations (:mod:`.runops`) on a batch-last state ``X``
    of shape (2**n, B), then the measurement. ``tensors`` (given to the autograd Function) are the
    trainable data the operations index by ``t``, so their gradients flow back to the weights."""

    def __init__(self, ops_list, consts: Layout, n_qubits: int, n_obs: int, cdtype):
        check_ops(ops_list)
        self.ops = ops_list
        self.c = consts
        self.n = n_qubits
        self.n_obs = n_obs
        self.cdtype = cdtype

    def env(self, x: torch.Tensor) -> Env:
        return Env(x, self.c.encodings, self.n, self.cdtype)

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x, psi0, tensors, keep: list | None = None):
        """Run the operations; with ``keep`` (a list), append the state entering each one."""
        env = self.env(x)
        state = psi0[:, None].expand(-1, x.shape[0])
        for op in self.ops:
            if keep is not None:
                keep.append(state)
            state = op.apply(state, tensors, env)
        return state

    def measure(self, state):
        out = state.new_empty((state.shape[1], self.n_obs), dtype=state.real.dtype)
        for rotation, m, cols in self.c.groups:
            s = state
            for wire, mat in rotation:
                s = ops.apply_chunk(s, mat, wire, 1)
            out[:, cols] = (m.transpose(0, 1) @ ops.probabilities(s)).transpose(0, 1)
        return out

    # -- backward (adjoint method) ----------------------------------------------------------
    def backward(self, g, x, psi, tensors, need_x: bool, need_t: list[bool], kept: list | None = None):
        """``phi = dL/d conj(psi)`` and the state travel back together; torch's gradient of a
        complex tensor is ``2 * dL/d conj(z)``, hence the factors 2. With ``kept`` (the states
        entering each operation, stored by the forward) the states are read instead of recomputed,
        which saves one product per operation when memory allows."""
        phi = None
        for rotation, m, cols in self.c.groups:
            s = psi
            for wire, mat in rotation:
                s = ops.apply_chunk(s, mat, wire, 1)
            part = ops.scale_real(s, m @ g[:, cols].transpose(0, 1))
            for wire, mat in reversed(rotation):
                part = ops.apply_chunk(part, mat.mH, wire, 1)
            phi = part if phi is None else phi + part
        grads = Grads([None] * len(tensors), need_t, torch.zeros_like(x) if need_x else None)
        env = self.env(x)
        for i in reversed(range(len(self.ops))):
            psi, phi = self.ops[i].backward(psi, phi, tensors, env, grads, kept[i] if kept else None)
        return grads.x, 2 * phi.sum(1), grads.tensors


class _Simulate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run: _Run, store: bool, x, psi0, *tensors):
        kept = [] if store else None
        psi = run.forward(x, psi0, tensors, kept)
        ctx.run = run
        ctx.n_tensors = len(tensors)
        ctx.save_for_backward(x, psi, *tensors, *(kept or []))
        return run.measure(psi)

    @staticmethod
    def backward(ctx, g):
        if torch.is_grad_enabled():  # backward(create_graph=True): a gradient of this gradient is wanted
            raise RuntimeError(
                "the native backend's adjoint backward gives first derivatives only; for losses on gradients "
                "(create_graph=True, e.g. derivative-matching INR losses) build the layer with strategy='autograd'")
        x, psi, *rest = ctx.saved_tensors
        tensors, kept = rest[:ctx.n_tensors], rest[ctx.n_tensors:]
        need = ctx.needs_input_grad
        gx, gpsi0, grads = ctx.run.backward(g.contiguous(), x, psi, tensors, need[2], list(need[4:]), kept or None)
        return (None, None, gx, gpsi0 if need[3] else None, *grads)


class NativeBackend:
    """``backend(circuit, weights, x) -> (B, n_obs)`` expectation values.

    Args:
        strategy: ``"auto"`` (by qubit count and device), ``"dense"`` (one GEMM per static
            segment), ``"factored"`` (Kronecker chunks and signed permutations), ``"realry"``
            (merged diagonal phases and real RY Kronecker chunks, ``realry.py``) or
            ``"autograd"`` (plain autograd through the dense forward; a reference for tests).
        chunk: qubits per Kronecker chunk in the factored strategy (default: the two halves).
        check_memory: estimate the bytes needed before allocating and raise if they exceed what
            the device has free. Checked on the first call for a circuit size, dtype, device and
            mode, and again only for a larger batch: the allocator query (and, on CUDA, its
            synchronisation) stays out of the steady-state forward.
        fused: ``"auto"`` runs the fused Triton kernels (``fused.py``) on CUDA where the circuit
            allows, ``True`` insists (also under ``TRITON_INTERPRET=1`` on a CPU), ``False`` never.
        precision: the fused kernels' matrix-product mode: ``"ieee"`` (float32), ``"tf32x3"``
            or ``"tf32"`` (faster on tensor cores, ~1e-3 relative error).
        store_states: keep the state entering each operation for the backward instead of
            recomputing it (``"auto"``: where it takes at most min(1 GiB, a quarter of free memory)).
        cpu_tile: on a CPU, run the batch pass in tiles of about this many amplitudes (points x
            2**n) so that the states stay in cache through every operation (``"auto"``: 2**18,
            2 MB of complex64; ``None``: one pass over the whole batch). Results are identical.
        fused_block, fused_warps, fused_back_block: tuning knobs of the fused kernels (samples per
            program in the forward, warps (None: 4 for the real-RY kernels, 8 for the complex ones, as
            measured on an H200), samples per program in the backward).
        fused_kernel: which fused kernels: ``"realry"`` (merged phases and real RY factors,
            ``fused_realry.py``, 8 to 12 qubits), ``"complex"`` (complex Kronecker chunks,
            ``fused.py``, 8 to 10 qubits) or ``"auto"`` (see :func:`default_fused_kernel`).
    """

    name = "torch"

    def __init__(self, strategy: str = "auto", chunk: int | None = None, check_memory: bool = True,
                 fused="auto", precision: str = "ieee", fused_block: int | None = None, fused_warps: int | None = None,
                 fused_back_block: int | None = None, store_states="auto", cpu_tile="auto",
                 fused_kernel: str = "auto"):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
        if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        if fused not in ("auto", True, False):
            raise ValueError(f"fused must be 'auto', True or False, got {fused!r}")
        if precision not in fused_path.PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {fused_path.PRECISIONS}")
        self.strategy = strategy
        self.chunk = chunk
        self.check_memory = check_memory
        self.fused = fused
        self.precision = precision
        self.fused_block = fused_block
        self.fused_warps = fused_warps
        self.fused_back_block = fused_back_block
        if fused_kernel not in FUSED_KERNELS:
            raise ValueError(f"unknown fused_kernel {fused_kernel!r}; choose one of {FUSED_KERNELS}")
        self.fused_kernel = fused_kernel
        if store_states not in ("auto", True, False):
            raise ValueError(f"store_states must be 'auto', True or False, got {store_states!r}")
        self.store_states = store_states
        if cpu_tile is not None and cpu_tile != "auto" and (not isinstance(cpu_tile, int) or isinstance(cpu_tile, bool)
                                                            or cpu_tile < 1):
            raise ValueError(f"cpu_tile must be 'auto', None (no tiling) or a positive number of amplitudes, "
                             f"got {cpu_tile!r}")
        self.cpu_tile = cpu_tile
        self._plans: dict = {}
        self._checked: dict = {}  # (n, dtype, device, training, dense segments) -> largest batch that passed
        self._stores: dict = {}  # (run length, n, batch, dtype, device) -> store_states="auto" decision
        self._programs: dict[Circuit, Program] = {}
        self._layouts: dict = {}

    def program(self, circuit: Circuit) -> Program:
        prog = self._programs.get(circuit)
        if prog is None:
            prog = self._programs[circuit] = compile_circuit(circuit)
        return prog

    def _real_layout(self, prog: Program, lay: Layout, device, rdtype) -> realry.RealLayout:
        key = ("realry", id(prog), str(device), rdtype)
        real = self._layouts.get(key)
        if real is None:
            real = self._layouts[key] = realry.make_real_layout(prog, lay, device, rdtype)
        return real

    def _layout(self, prog: Program, device, rdtype) -> Layout:
        key = (id(prog), str(device), rdtype)
        lay = self._layouts.get(key)
        if lay is None:
            lay = self._layouts[key] = make_layout(prog, device, rdtype, self.chunk)
        return lay

    # -- the forward ---------------------------------------------------------------------------
    def __call__(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Expectation values ``(B, n_obs)`` for inputs ``x`` of shape ``(B, n_inputs)``."""
        if isinstance(x, torch.Tensor) and x.dim() == 2 and x.shape[0] == 0:  # an empty batch: nothing to simulate
            validate_call(circuit, weights, x)
            return weights.new_zeros((0, circuit.n_observables)) + 0 * weights.sum()
        if self._fused_realry_eligible(circuit, weights):
            run, xx, psi0, tensors, _ = self._prepare(circuit, weights, x, strategy="realry", fold_diagonals=False)
            key = (circuit, str(weights.device), "realry")
            if key not in self._plans:
                self._plans[key] = fused_realry.plan(run.c, run.ops, circuit.n_qubits, weights.device,
                                                     self.fused_block, self.fused_warps, self.fused_back_block)
            plan = self._plans[key]
            if plan is not None:
                return fused_realry.expvals(plan, run, xx, psi0, tensors, self.precision)
            if self.fused is True and self.fused_kernel == "realry":
                raise ValueError("fused=True, fused_kernel='realry' but this circuit is not one the real-RY kernels "
                                 "run (CNOT/SWAP permutations, observables other than every wire's Z in order, or "
                                 "fewer than 8 / more than 12 qubits: see qlite.simulators.fused_realry); "
                                 "use fused='auto'")
        if self._fused_eligible(circuit, weights):
            run, xx, psi0, tensors, _ = self._prepare(circuit, weights, x, strategy="factored", fold_diagonals=False)
            key = (circuit, str(weights.device))
            if key not in self._plans:
                self._plans[key] = fused_path.plan(run.c, run.ops, circuit.n_qubits, weights.device,
                                                   self.fused_block, self.fused_warps, self.fused_back_block)
            plan = self._plans[key]
            if plan is not None:
                return fused_path.expvals(plan, run.c, xx, psi0, tensors[:2], self.precision)
            if self.fused is True:
                raise ValueError("fused=True but this circuit is not a uniform re-uploading program the fused "
                                 "kernel runs (see qlite.simulators.fused); use fused='auto'")
        run, x, psi0, tensors, strategy = self._prepare(circuit, weights, x)
        if strategy == "autograd":
            return run.measure(run.forward(x, psi0, tensors))
        store = self._store(run, x, weights)  # for the whole batch: the tiles' stored states add up
        tile = self._tile_points(run.n, x)
        if tile:  # CPU: tiles of the batch whose states stay in cache through every pass
            return torch.cat([_Simulate.apply(run, store, xt, psi0, *tensors) for xt in x.split(tile)])
        return _Simulate.apply(run, store, x, psi0, *tensors)

    def _tile_points(self, n: int, x: torch.Tensor) -> int:
        """Points per tile of the batch pass, or 0 for one pass over the whole batch."""
        if self.cpu_tile is None or x.device.type != "cpu":
            return 0
        tile = max(1, (self.cpu_tile if self.cpu_tile != "auto" else _CPU_TILE_AMPLITUDES) >> n)
        return tile if x.shape[0] >= 2 * tile else 0

    def _store(self, run: _Run, x: torch.Tensor, weights: torch.Tensor) -> bool:
        """Keep the state entering each operation for the backward, where it fits comfortably:
        ``store_states="auto"`` allows min(1 GiB, a quarter of the free memory)."""
        if self.store_states is not True and self.store_states is not False:
            if not (torch.is_grad_enabled() and (weights.requires_grad or x.requires_grad)):
                return False
            if x.is_cuda and torch.cuda.is_current_stream_capturing():
                return False
            key = (len(run.ops), run.n, x.shape[0], weights.dtype, str(x.device))
            store = self._stores.get(key)
            if store is None:  # decided once per shape: no allocator query in the steady state
                item = 16 if weights.dtype == torch.float64 else 8
                need = len(run.ops) * (1 << run.n) * x.shape[0] * item
                store = need <= min(1 << 30, _available_bytes(x.device) // 4)
                if len(self._stores) > 256:  # many batch sizes (inference sweeps): keep the cache small
                    self._stores.clear()
                self._stores[key] = store
            return store
        return self.store_states

    def _check_memory(self, n: int, batch: int, rdtype, device, training: bool, dense_segments: int = 0) -> None:
        """``check_memory`` on the first call for a configuration and for each larger batch (the
        need grows with the batch): the steady-state forward makes no allocator query."""
        key = (n, rdtype, str(device), training, dense_segments)
        if batch <= self._checked.get(key, -1):
            return
        check_memory(n, batch, rdtype, device, training, dense_segments)
        self._checked[key] = batch

    def state(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Final states ``(B, 2**n)`` of the circuit's gates (differentiable by autograd)."""
        plain = circuit.with_observables([PauliWord.z(0)])  # no measurement rotation folded in
        run, x, psi0, tensors, _ = self._prepare(plain, weights, x, keep_trailing=True)
        return run.forward(x, psi0, tensors).transpose(0, 1)

    def probabilities(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Computational-basis probabilities ``(B, 2**n)`` of the final state."""
        return ops.probabilities(self.state(circuit, weights, x))

    def plan(self, circuit: Circuit, device="cpu", dtype=torch.float32, batch: int = 1024) -> list:
        """The batch operations (:mod:`.runops`) a forward of ``batch`` points runs (strategy resolved), e.g. for cost
        counting (the batch decides whether CZ rings fold into chunks)."""
        w = torch.zeros(circuit.n_weights, dtype=dtype, device=device)
        x = torch.zeros((1, circuit.n_inputs), dtype=dtype, device=device)
        if self._fused_realry_eligible(circuit, w):  # the real-RY kernels run the realry operations unfolded
            with torch.no_grad():
                run = self._prepare(circuit, w, x, strategy="realry", fold_diagonals=False)[0]
            if fused_realry.plan(run.c, run.ops, circuit.n_qubits, w.device) is not None:
                return run.ops
        fused = self._fused_eligible(circuit, w)  # the fused kernels run the factored operations
        with torch.no_grad():
            run, _, _, tensors, strategy = self._prepare(circuit, w, x, strategy="factored" if fused else None,
                                                         fold_diagonals=False)
        if fused or strategy in ("dense", "autograd", "realry"):
            return run.ops
        return self._fold_diagonals(run.ops, tensors, circuit.n_qubits, batch)

    def _fused_realry_eligible(self, circuit: Circuit, weights: torch.Tensor) -> bool:
        if self.fused is False or self.chunk is not None or weights.dtype != torch.float32:
            return False
        if self.strategy in ("autograd", "factored") or (self.fused == "auto" and self.strategy == "dense"):
            return False  # an explicit strategy is honoured (factored: the complex kernels)
        n = circuit.n_qubits
        kind = self.fused_kernel if self.fused_kernel != "auto" else default_fused_kernel(n)
        if kind != "realry" or not fused_realry.MIN_QUBITS <= n <= fused_realry.MAX_QUBITS:
            return False
        if not realry.supports(self.program(circuit)):
            return False
        on_device = weights.device.type == "cuda" or (self.fused is True and fused_path.interpreted())
        return on_device and fused_path.available()

    def _fused_eligible(self, circuit: Circuit, weights: torch.Tensor) -> bool:
        if self.fused is False or self.chunk is not None or weights.dtype != torch.float32:
            return False
        if self.fused_kernel == "realry":
            return False
        if self.strategy == "autograd" or (self.fused == "auto" and self.strategy in ("dense", "realry")):
            return False  # an explicit strategy is honoured (autograd: for second derivatives)
        # "auto" only where fused was measured faster than unfused (8 and 9 qubits on an H200,
        # experiments/results/tune_fused.md); fused=True runs it up to 10 qubits
        if not 8 <= circuit.n_qubits <= (10 if self.fused is True else 9):
            return False
        on_device = weights.device.type == "cuda" or (self.fused is True and fused_path.interpreted())
        return on_device and fused_path.available()

    @staticmethod
    def _fold_diagonals(run_ops: list, tensors: list, n: int, batch: int) -> list:
        """A CZ ring right after the chunk on the last wires disappears into that chunk.

        The chunk acts on the state viewed as ``(2**before, 2**w, B)`` with one matrix per leading
        block; a diagonal ``D[h, l]`` after it is the same as the per-block matrices
        ``diag(D[h, :]) K``. One pass over the state less per ring (built batch-independently,
        ``2**before`` small matrices; autograd carries their gradient back to ``K``).
        """
        out = []
        for op in run_ops:
            prev = out[-1] if out else None
            # only where the 2**before matrices (2**(before + 2 * width) entries) are no larger than the
            # state: for small batches at many qubits they would dwarf it
            if (isinstance(op, Permute) and op.is_diagonal and isinstance(prev, Chunk) and prev.before > 0
                    and prev.before + prev.width == n
                    and (1 << (prev.before + 2 * prev.width)) <= (1 << n) * batch):
                k = 1 << prev.width
                tensors.append(op.sign.reshape(1 << prev.before, k, 1) * tensors[prev.t][prev.i])  # (2**before, k, k)
                out[-1] = ChunkBlocks(prev.before, prev.width, len(tensors) - 1)
            else:
                out.append(op)
        return out

    def _prepare(self, circuit: Circuit, weights: torch.Tensor, x: torch.Tensor, keep_trailing: bool = False,
                 strategy: str | None = None, fold_diagonals: bool = True):
        validate_call(circuit, weights, x)
        n, dim = circuit.n_qubits, 1 << circuit.n_qubits
        device, rdtype = weights.device, weights.dtype
        cdtype = complex_dtype(rdtype)
        x = x.to(rdtype)
        strategy = strategy or (self.strategy if self.strategy != "auto" else default_strategy(n, device))
        dense = strategy in ("dense", "autograd")
        training = torch.is_grad_enabled() and (weights.requires_grad or x.requires_grad)
        capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        if self.check_memory and not capturing:  # before compiling: the program alone holds O(2**n) indices
            self._check_memory(n, x.shape[0], rdtype, device, training)
        prog = self.program(circuit)
        if self.check_memory and dense and not capturing:
            self._check_memory(n, x.shape[0], rdtype, device, training, len(prog.encodings))
        lay = self._layout(prog, device, rdtype)
        if strategy == "realry":
            if not realry.supports(prog):  # every gate of the description has a decomposition: an invariant
                raise ValueError("strategy='realry' cannot decompose a gate of this circuit; use 'factored'")
            # batch 0: no sign folding (the fused real-RY kernels take the signs as phases)
            psi0, run_ops, tensors = realry.build_run(self._real_layout(prog, lay, device, rdtype), lay, weights,
                                                      keep_trailing, x.shape[0] if fold_diagonals else 0)
            return _Run(run_ops, lay, n, circuit.n_observables, cdtype), x, psi0, tensors, strategy
        chunk_mats, crz = build(lay, weights)
        tensors = [*chunk_mats, *crz]
        seg_ops = lay.segments
        psi0 = apply_all(seg_ops[0], lay.e0, tensors)[:, 0]
        run_ops = []
        if dense:
            tensors = []
        for l in range(len(prog.encodings)):
            pre = None
            if run_ops and isinstance(run_ops[-1], Permute) and run_ops[-1].is_diagonal:
                pre = run_ops.pop().sign  # a CZ ring just before: fold its signs into the phases
            run_ops.append(Encode(l, pre))
            if dense:
                eye = torch.eye(dim, dtype=cdtype, device=device)
                tensors.append(apply_all(seg_ops[l + 1], eye, [*chunk_mats, *crz]))  # the matrix S
                run_ops.append(Dense(len(tensors) - 1))
            else:
                run_ops += seg_ops[l + 1]
        if not keep_trailing and all(not rot for rot, _, _ in lay.groups):
            while run_ops and isinstance(run_ops[-1], Permute) and run_ops[-1].is_diagonal:
                run_ops.pop()  # a diagonal of unit modulus right before a Z measurement changes nothing
        if fold_diagonals and not dense:
            run_ops = self._fold_diagonals(run_ops, tensors, n, x.shape[0])
        run = _Run(run_ops, lay, n, circuit.n_observables, cdtype)
        return run, x, psi0, tensors, strategy
