"""Quantization granularities as value types (torchao style), not magic ints or strings.

``PerTensor()`` shares one scale over the whole weight, ``PerChannel()`` one scale per output row,
``PerGroup(128)`` one scale per run of 128 consecutive input columns in each row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PerTensor:
    """One scale (and zero point) for the whole weight matrix."""

    def group_size(self, in_features: int) -> int:
        return in_features


@dataclass(frozen=True)
class PerChannel:
    """One scale (and zero point) per output channel (row of ``W``, shape ``(out, in)``)."""

    def group_size(self, in_features: int) -> int:
        return in_features


@dataclass(frozen=True)
class PerGroup:
    """One scale (and zero point) per ``size`` consecutive input columns of each output row.

    ``ragged=True`` accepts an input dimension that ``size`` does not divide: the last group is shorter
    (SmolLM2's hidden size 576 is 4 x 128 + 64)."""

    size: int
    ragged: bool = False  # allow a shorter last group when size does not divide the input dimension

    def __post_init__(self):
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 2:
            raise ValueError(f"PerGroup size must be an integer >= 2, got {self.size!r}")

    def group_size(self, in_features: int) -> int:
        return self.size


Granularity = PerTensor | PerChannel | PerGroup


class _Unset:
    """The default of an alias field (``group_size``): tells "not given" apart from ``None``."""

    def __repr__(self) -> str:
        return "<unset>"

    def __reduce__(self):
        return "UNSET"  # one instance, also after copy / pickle


UNSET = _Unset()

_BY_NAME = {"PerTensor": PerTensor, "PerChannel": PerChannel, "PerGroup": PerGroup}


def granularity_to_dict(g: Granularity) -> dict:
    d = {"type": type(g).__name__}
    if isinstance(g, PerGroup):
        d["size"] = g.size
        if g.ragged:
            d["ragged"] = True
    return d


def granularity_from_dict(d: dict) -> Granularity:
    kind = d.get("type")
    if kind not in _BY_NAME:
        raise ValueError(f"unknown granularity {kind!r}; expected one of {sorted(_BY_NAME)}")
    return _BY_NAME[kind](**{k: v for k, v in d.items() if k != "type"})


def check_divides(g: Granularity, in_features: int, layer: str) -> None:
    """Raise a ValueError naming the layer when a group size does not divide its input dimension."""
    if isinstance(g, PerGroup) and in_features % g.size and not g.ragged:
        divisors = [s for s in (32, 64, 128, 256) if in_features % s == 0]
        hint = f"a divisor of {in_features} such as {divisors[-1]}" if divisors else f"a divisor of {in_features}"
        raise ValueError(
            f"layer {layer!r}: group_size {g.size} does not divide its input dimension {in_features}; "
            f"use {hint}, allow a shorter last group with PerGroup({g.size}, ragged=True) (as the GPTQ "
            f"reference does), or leave the layer out with skip=({layer!r},)"
        )
