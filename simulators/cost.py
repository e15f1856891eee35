"""Arithmetic and memory-traffic counts of the native backend, for benchmark floors.

Counts follow the operations the native backend actually runs (``NativeBackend.plan``): a complex
multiply-add is 8 real FLOPs, an elementwise complex product 6. Bytes count each state-sized
operand read once and each result written once per operation (what an unfused implementation
must move); the batch-independent work (building the segment matrices) is left out, since it does
not grow with the batch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    flops: float
    bytes: float

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes + other.bytes)

    def floor_seconds(self, flop_rate: float, bandwidth: float) -> float:
        """The larger of the arithmetic time and the memory time: no version runs much faster."""
        return max(self.flops / flop_rate, self.bytes / bandwidth)


def run_cost(ops_list, n_qubits: int, batch: int, n_obs: int, item_bytes: int = 8) -> tuple[Cost, Cost]:
    """(forward, backward) cost of one batch pass through a list of run operations."""
    dim = 1 << n_qubits
    state = dim * batch * item_bytes
    fwd = bwd = Cost(0.0, 0.0)
    for op in ops_list:
        kind = op[0]
        if kind in ("chunk", "chunkb"):
            f = 8.0 * dim * batch * (1 << op[2])
            fwd += Cost(f, 2 * state)
            bwd += Cost(3 * f, 6 * state)  # state and adjoint back, plus the gradient contraction
        elif kind == "dense":
            f = 8.0 * dim * dim * batch
            fwd += Cost(f, 2 * state)
            bwd += Cost(3 * f, 6 * state)
        elif kind == "enc":
            # per-wire phases, Kronecker build (~2 products per amplitude), then one product
            f = 18.0 * dim * batch
            fwd += Cost(f, 3 * state)
            bwd += Cost(2 * f + (4 + 2 * n_qubits) * dim * batch, 7 * state)
        else:  # mono / pdiag
            fwd += Cost(6.0 * dim * batch, 2 * state)
            bwd += Cost(12.0 * dim * batch, 4 * state)
    meas = Cost(3.0 * dim * batch + 2.0 * dim * batch * n_obs, state)
    return fwd + meas, bwd + meas + Cost(6.0 * dim * batch, 2 * state)
