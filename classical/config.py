"""The base class of every compression config, and JSON round-tripping of recipes.

A config is a small frozen dataclass that validates itself in ``__post_init__``; each config class is
mapped to one private transform (see ``compress.py``). Quantization (issue 5) and sparsity / low-rank /
KV-cache / distillation (issue 6) configs all derive from :class:`CompressionConfig`, so a recipe can
mix them and be written to an experiment log and read back.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

from .granularity import PerChannel, PerGroup, PerTensor, granularity_from_dict, granularity_to_dict

_CONFIGS: dict[str, type["CompressionConfig"]] = {}


@dataclasses.dataclass(frozen=True)
class CompressionConfig:
    """Base of all compression configs.

    Attributes:
        skip: ``fnmatch`` patterns of qualified module names to leave untouched. The default keeps the
            output head (``lm_head``) in float, as GPTQ, AWQ and SmoothQuant do.
    Class attributes:
        needs_calibration: whether ``compress`` must be given ``calib`` data for this method.
        reshapes_layers: the method changes the shapes of plain linear layers (structured pruning,
            GQA), so it must come before any method that replaces them (checked by ``compress``).
    """

    needs_calibration: ClassVar[bool] = False
    reshapes_layers: ClassVar[bool] = False
    skip: tuple[str, ...] = dataclasses.field(default=("lm_head", "*.lm_head"), kw_only=True)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _CONFIGS[cls.__name__] = cls

    @property
    def requires_calibration(self) -> bool:
        """Whether this config, with its field values, needs ``calib`` (defaults to ``needs_calibration``)."""
        return type(self).needs_calibration

    @property
    def requires_teacher(self) -> bool:
        """Whether the step distils from the model as given to ``compress`` (kept as a copy in place)."""
        return False

    def __post_init__(self):
        if isinstance(self.skip, str) or not all(isinstance(s, str) for s in self.skip):
            raise TypeError(f"skip must be a tuple of name patterns, got {self.skip!r}")
        object.__setattr__(self, "skip", tuple(self.skip))

    @property
    def name(self) -> str:
        """A short human label, e.g. ``GPTQ(bits=4, group_size=128)``."""
        fields = [f for f in dataclasses.fields(self) if f.name != "skip" and f.repr]
        default_g = getattr(type(self), "default_granularity", None)
        parts = []
        for f in fields:
            v = getattr(self, f.name)
            if f.name == "granularity" and (v == PerChannel() or (isinstance(v, PerGroup) and not v.ragged)):
                continue  # said by group_size, or the default per-channel granularity
            if f.metadata.get("alias_of") == "granularity":
                g = self.granularity
                if g != default_g and (isinstance(g, PerChannel) or (isinstance(g, PerGroup) and not g.ragged)):
                    parts.append(f"{f.name}={v!r}")
                continue
            if v != f.default or f.name == "bits":
                parts.append(f"{f.name}={v!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in dataclasses.fields(self):
            if f.metadata.get("alias_of"):
                continue  # the field it is an alias of is written
            v = getattr(self, f.name)
            if isinstance(v, (PerTensor, PerChannel, PerGroup)):
                v = granularity_to_dict(v)
            elif type(v).__name__ == "NMPattern":
                v = {"type": "NMPattern", "n": v.n, "m": v.m}
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "CompressionConfig":
        kind = d.get("type")
        if kind not in _CONFIGS:
            raise ValueError(f"unknown config type {kind!r}; known: {sorted(_CONFIGS)}")
        cls = _CONFIGS[kind]
        kwargs = {}
        names = {f.name for f in dataclasses.fields(cls)}
        for k, v in d.items():
            if k == "type":
                continue
            if k not in names:
                raise ValueError(f"{kind} has no field {k!r}; fields are {sorted(names)}")
            if isinstance(v, dict) and "type" in v and v["type"] in ("PerTensor", "PerChannel", "PerGroup"):
                v = granularity_from_dict(v)
            elif isinstance(v, dict) and v.get("type") == "NMPattern":
                from .sparse.masks import NMPattern  # here: the sparse package imports this module

                v = NMPattern(v["n"], v["m"])
            elif isinstance(v, list):
                v = tuple(v)
            kwargs[k] = v
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @staticmethod
    def from_json(s: str) -> "CompressionConfig":
        return CompressionConfig.from_dict(json.loads(s))


def recipe_to_json(recipe: list[CompressionConfig]) -> str:
    """A recipe (list of configs) as a JSON array."""
    return json.dumps([c.to_dict() for c in recipe])


def recipe_from_json(s: str) -> list[CompressionConfig]:
    return [CompressionConfig.from_dict(d) for d in json.loads(s)]


def check_bits(bits: Any, lo: int, hi: int, method: str) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not lo <= bits <= hi:
        raise ValueError(f"{method}: bits must be an integer in [{lo}, {hi}], got {bits!r}")
