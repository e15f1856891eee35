"""Configs of dynamic and structural sparsity (issue 17, items 1, 2 and 5): activation sparsity of MLPs
(top-K, calibrated thresholds, a low-rank neuron predictor), layer skipping and cross-layer sharing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import CompressionConfig


def check_fraction(value, field: str, method: str) -> float:
    """``value`` as a float in [0, 1), or a ValueError naming the value and the fix."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{method}: {field} is the fraction of intermediate neurons switched off per token and must "
                         f"lie in [0, 1), got {value!r}; e.g. {field}=0.5 keeps half of them")
    return float(value)


def _positive_int(value, field: str, method: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{method}: {field} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class ActivationSparsity(CompressionConfig):
    """Activation sparsity of every gated (``gate_proj`` / ``up_proj`` / ``down_proj``) or plain
    (``up_proj`` / ``down_proj``) MLP: per token only ``K = round((1 - sparsity) * width)`` intermediate
    neurons pass to the down projection.

    Args:
        sparsity: fraction of the intermediate neurons switched off per token, in [0, 1).
        method: ``"topk"`` (Q-Sparse, Wang et al. 2024: the K largest ``|h|`` of each token, exactly K) or
            ``"threshold"`` (TEAL-style, Liu et al. 2024: one magnitude threshold per MLP, calibrated so
            that ``sparsity`` of the calibration activations fall below it; needs calibration).
        calib_values: at most this many ``|h|`` values per MLP are kept to place the threshold.
    """

    sparsity: float = 0.5
    method: str = "topk"
    calib_values: int = 2_000_000

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "sparsity", check_fraction(self.sparsity, "sparsity", "ActivationSparsity"))
        if self.method not in ("topk", "threshold"):
            raise ValueError(f"ActivationSparsity: method must be 'topk' or 'threshold', got {self.method!r}")
        _positive_int(self.calib_values, "calib_values", "ActivationSparsity")

    @property
    def requires_calibration(self) -> bool:
        return self.method == "threshold"

    @property
    def name(self) -> str:
        return f"ActivationSparsity({self.sparsity:g}, {self.method})"


@dataclass(frozen=True)
class NeuronPredictor(CompressionConfig):
    """A low-rank predictor per MLP (Deja Vu, Liu et al. 2023, Sec. 4.2; PowerInfer, Song et al. 2023)
    trained on calibration activations: ``scores = (x @ A) @ B`` with ``A: (hidden, rank)``,
    ``B: (rank, width)``; the top ``K = round((1 - sparsity) * width)`` scores of a token pick the
    neurons computed. Labels are the truly active neurons: the top-K ``|h|`` of the dense MLP.
    At decode only the predicted rows of gate / up and the matching rows of ``down^T`` are read.

    Args:
        rank: rank of the predictor.
        sparsity: fraction of the intermediate neurons kept from the down projection, in [0, 1).
        steps, lr: Adam steps (cosine-annealed) and learning rate of the predictor's training: binary
            cross-entropy, each label weighted by how far its ``|h|`` lies from the token's K-th largest
            (a neuron at the boundary costs little either way).
        max_tokens: calibration tokens kept per MLP for training (the last eighth held out).
        recall: ``None``: the top K scores are the neurons computed. A value in (0, 1]: two stages — the
            predictor proposes ``K' >= K`` candidates, ``K'`` calibrated per MLP on the held-out tokens so that
            the candidates hold ``recall`` of the truly active neurons; their gate / up rows are computed and
            the K largest ``|h|`` among them pass to the down projection. Gate / up then read ``K' / width``
            of their rows (less saving), the down projection ``K / width``.
    """

    needs_calibration: ClassVar[bool] = True
    rank: int = 64
    sparsity: float = 0.5
    steps: int = 500
    lr: float = 1e-2
    max_tokens: int = 8192
    recall: float | None = None

    def __post_init__(self):
        super().__post_init__()
        _positive_int(self.rank, "rank", "NeuronPredictor")
        object.__setattr__(self, "sparsity", check_fraction(self.sparsity, "sparsity", "NeuronPredictor"))
        _positive_int(self.steps, "steps", "NeuronPredictor")
        _positive_int(self.max_tokens, "max_tokens", "NeuronPredictor")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"NeuronPredictor: lr must be a positive number, got {self.lr!r}")
        if self.recall is not None and (isinstance(self.recall, bool) or not isinstance(self.recall, (int, float))
                                        or not 0 < self.recall <= 1):
            raise ValueError(f"NeuronPredictor: recall is the fraction of truly active neurons the candidates must hold "
                             f"and must lie in (0, 1], or be None (no second stage), got {self.recall!r}")

    @property
    def name(self) -> str:
        rec = "" if self.recall is None else f", recall {self.recall:g}"
        return f"NeuronPredictor(rank={self.rank}, {self.sparsity:g}{rec})"


@dataclass(frozen=True)
class LayerSkip(CompressionConfig):
    """Layer skipping ("Not all layers of LLMs are necessary during inference", Fan et al. 2024; ShortGPT's
    block influence, Men et al. 2024): importance of block ``i`` is ``1 - cos(x_i, x_{i+1})``, its input and
    output hidden states, averaged over the calibration tokens.

    Give exactly one of:
        n_layers: static removal: the ``n_layers`` least important blocks become identities.
        threshold: dynamic, per token: every block runs, and a token whose ``cos(in, out)`` exceeds
            ``threshold`` keeps its input (the block's update is dropped for that token). This measures
            the accuracy of per-token skipping; it saves no compute here (speed is ``simulated``).
    """

    needs_calibration: ClassVar[bool] = True
    n_layers: int | None = None
    threshold: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if (self.n_layers is None) == (self.threshold is None):
            raise ValueError(f"LayerSkip: give exactly one of n_layers (static) or threshold (dynamic), got "
                             f"n_layers={self.n_layers!r}, threshold={self.threshold!r}")
        if self.n_layers is not None:
            _positive_int(self.n_layers, "n_layers", "LayerSkip")
        elif isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or not -1 <= self.threshold <= 1:
            raise ValueError(f"LayerSkip: threshold is a cosine similarity and must lie in [-1, 1], got {self.threshold!r}")

    @property
    def requires_calibration(self) -> bool:
        return self.n_layers is not None

    @property
    def name(self) -> str:
        return f"LayerSkip(n_layers={self.n_layers})" if self.n_layers is not None else f"LayerSkip(threshold={self.threshold:g})"


@dataclass(frozen=True)
class ShareLayers(CompressionConfig):
    """Block-wise weight sharing (MobileLLM, Liu et al. 2024, Sec. 2.3): the blocks of each group share one
    set of linear weights of their MLP and / or attention (norms stay per block).

    Args:
        groups: an integer ``g`` (adjacent groups of ``g`` blocks; a last shorter group is left alone if of
            size 1) or explicit groups of block indices, e.g. ``((0, 1), (2, 3))``.
        parts: ``("mlp", "attn")`` or a subset: which sub-modules' linear weights are shared.
        init: ``"mean"`` (the group's mean weights) or ``"first"`` (the first block's).
        heal_steps: AdamW steps of distillation from the unshared model afterwards
            (:func:`qlite.classical.distill`, forward KL); 0: no healing.
        heal_lr: its learning rate.
    """

    groups: int | tuple = 2
    parts: tuple[str, ...] = ("mlp", "attn")
    init: str = "mean"
    heal_steps: int = 0
    heal_lr: float = 1e-4

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.groups, (list, tuple)):
            gs = tuple(tuple(g) for g in self.groups)
            flat = [i for g in gs for i in g]
            if not gs or any(len(g) < 2 for g in gs) or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in flat) \
                    or len(set(flat)) != len(flat):
                raise ValueError(f"ShareLayers: groups must be disjoint groups of at least 2 block indices, got {self.groups!r}")
            object.__setattr__(self, "groups", gs)
        elif isinstance(self.groups, bool) or not isinstance(self.groups, int) or self.groups < 2:
            raise ValueError(f"ShareLayers: groups must be a group size >= 2 or explicit groups of block indices, got "
                             f"{self.groups!r}")
        parts = (self.parts,) if isinstance(self.parts, str) else tuple(self.parts)
        if not parts or any(p not in ("mlp", "attn") for p in parts):
            raise ValueError(f"ShareLayers: parts must be a non-empty subset of ('mlp', 'attn'), got {self.parts!r}")
        object.__setattr__(self, "parts", parts)
        if self.init not in ("mean", "first"):
            raise ValueError(f"ShareLayers: init must be 'mean' or 'first', got {self.init!r}")
        if isinstance(self.heal_steps, bool) or not isinstance(self.heal_steps, int) or self.heal_steps < 0:
            raise ValueError(f"ShareLayers: heal_steps must be a non-negative integer, got {self.heal_steps!r}")

    @property
    def requires_calibration(self) -> bool:
        return self.heal_steps > 0

    @property
    def requires_teacher(self) -> bool:
        return self.heal_steps > 0

    @property
    def name(self) -> str:
        heal = f", healed {self.heal_steps} steps" if self.heal_steps else ""
        return f"ShareLayers({self.groups}, {'+'.join(self.parts)}, {self.init}{heal})"


__all__ = ["ActivationSparsity", "NeuronPredictor", "LayerSkip", "ShareLayers"]
