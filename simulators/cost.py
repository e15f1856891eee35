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
    """(forward, backward) cost of one batch pass through a list of run operations
    (:mod:`.runops`: each operation counts itself; anything else is refused)."""
    from .runops import check_ops

    check_ops(ops_list)
    dim = 1 << n_qubits
    state = dim * batch * item_bytes
    fwd = bwd = Cost(0.0, 0.0)
    for op in ops_list:
        f, b = op.cost(n_qubits, batch, item_bytes)
        fwd, bwd = fwd + f, bwd + b
    meas = Cost(3.0 * dim * batch + 2.0 * dim * batch * n_obs, state)
    return fwd + meas, bwd + meas + Cost(6.0 * dim * batch, 2 * state)
