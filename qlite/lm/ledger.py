"""``parameter_ledger(model)``: an honest count of what a hybrid model trains and stores.

Trainable parameters are split into **circuit angles** (parameters that a module declares through
``periodic_parameters()``: rotation angles of ``QuantumLayer`` and of the circuits that generate
weights or unitaries), **adapter weights** (every other trainable parameter inside a qlite.lm module:
down / up projections, norms, mapping networks, free features) and **other** trainable parameters
(an unfrozen base). A mapping network is trainable parameters too: QPA-style papers that count only
circuit angles leave out >99% of what is trained.

Bytes are those of the state_dict (each storage once). ``bytes_inference`` is what remains once the
mergeable adapters (QuantumLoRA, UnitaryAdapter) are folded into their base weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..classical.transform import tensors_bytes
from .inject import adapter_modules


def _own_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """State of an adapter without the base layer it wraps."""
    return {k: v for k, v in module.state_dict().items() if not k.startswith("base.")}


@dataclass(frozen=True)
class LedgerRow:
    name: str
    kind: str
    circuit_angles: int
    adapter_weights: int
    bytes: int
    mergeable: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Ledger:
    """Counts of a model's parameters and bytes (see the module docstring)."""

    circuit_angles: int
    adapter_weights: int
    other_trainable: int
    frozen: int
    bytes_stored: int
    adapter_bytes: int
    bytes_inference: int
    rows: list[LedgerRow] = field(default_factory=list)

    @property
    def total_trainable(self) -> int:
        return self.circuit_angles + self.adapter_weights + self.other_trainable

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total_trainable"] = self.total_trainable
        return d

    def to_markdown(self) -> str:
        lines = ["| part | count |", "|---|---:|",
                 f"| circuit angles | {self.circuit_angles:,} |", f"| adapter weights | {self.adapter_weights:,} |",
                 f"| other trainable | {self.other_trainable:,} |", f"| **total trainable** | **{self.total_trainable:,}** |",
                 f"| frozen | {self.frozen:,} |", f"| bytes stored | {self.bytes_stored:,} |",
                 f"| adapter bytes | {self.adapter_bytes:,} |", f"| bytes at inference (merged) | {self.bytes_inference:,} |"]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Ledger(trainable={self.total_trainable:,}: circuit angles {self.circuit_angles:,}, adapter weights "
                f"{self.adapter_weights:,}, other {self.other_trainable:,}; bytes {self.bytes_stored:,}, "
                f"at inference {self.bytes_inference:,})")

    def _repr_html_(self) -> str:
        """Notebook display: the :meth:`to_markdown` counts, then one row per adapter."""
        from qlite.display import table

        parts = [["circuit angles", self.circuit_angles], ["adapter weights", self.adapter_weights],
                 ["other trainable", self.other_trainable], ["total trainable", self.total_trainable],
                 ["frozen", self.frozen], ["bytes stored", self.bytes_stored], ["adapter bytes", self.adapter_bytes],
                 ["bytes at inference (merged)", self.bytes_inference]]
        out = table(parts, ["part", "count"], caption="parameter ledger")
        if self.rows:
            out += table([[r.name, r.kind, r.circuit_angles, r.adapter_weights, r.bytes, r.mergeable] for r in self.rows],
                         ["adapter", "kind", "circuit angles", "adapter weights", "bytes", "mergeable"])
        return out


def parameter_ledger(model: nn.Module) -> Ledger:
    """Count ``model``'s trainable parameters by role and its bytes (stored and after merging).

    Example:
        >>> from torch import nn
        >>> from qlite.lm import inject, parameter_ledger, QuantumAdapterConfig
        >>> m = inject(nn.Sequential(nn.Linear(8, 8)), QuantumAdapterConfig(n_qubits=2, spectrum_layers=1,
        ...            sublayers=1), target_modules=["0"])
        >>> led = parameter_ledger(m)
        >>> led.circuit_angles, led.adapter_weights, led.frozen    # 2*1*2*3 angles; down 16 + norm 4 + up 16
        (12, 36, 72)
    """
    angles = set()
    for m in model.modules():
        declared = getattr(m, "periodic_parameters", None)
        if callable(declared):
            angles |= {id(p) for p, _ in declared().values() if isinstance(p, nn.Parameter)}
    adapters = adapter_modules(model)
    inside = set()
    rows = []
    for name, m in adapters.items():
        own = {id(p) for n, p in m.named_parameters() if not n.startswith("base.")}
        inside |= own
        params = [p for n, p in m.named_parameters() if not n.startswith("base.") and p.requires_grad]
        a = sum(p.numel() for p in params if id(p) in angles)
        rows.append(LedgerRow(name, type(m).__name__, a, sum(p.numel() for p in params) - a,
                              tensors_bytes(_own_state(m).values()), bool(getattr(m, "mergeable", True))))
    seen, circuit, weights, other, frozen = set(), 0, 0, 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if not p.requires_grad:
            frozen += p.numel()
        elif id(p) in angles:
            circuit += p.numel()
        elif id(p) in inside:
            weights += p.numel()
        else:
            other += p.numel()
    stored = tensors_bytes(model.state_dict().values())
    adapter_bytes = sum(r.bytes for r in rows)
    merged_away = sum(r.bytes for r in rows if r.mergeable)
    return Ledger(circuit, weights, other, frozen, stored, adapter_bytes, stored - merged_away, rows)
