"""Quantization configs (issue 5). Each is a frozen dataclass validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from ..config import CompressionConfig, check_bits
from ..granularity import UNSET, Granularity, PerChannel, PerGroup, PerTensor


def _resolve_granularity(cfg, method: str) -> None:
    """``granularity`` is the setting; ``group_size`` is a strict alias for it (``group_size=n`` means
    ``PerGroup(n)``, ``None`` means no groups). Given together they must agree, so neither can silently
    win; given neither, the class default applies. Afterwards ``group_size`` reads the granularity's
    group size (``None`` without groups)."""
    g, gs = cfg.granularity, cfg.group_size
    if g is not None and not isinstance(g, (PerTensor, PerChannel, PerGroup)):
        raise TypeError(f"{method}: granularity must be PerTensor(), PerChannel() or PerGroup(n), got {g!r}")
    if gs is not UNSET:
        if gs is not None and (not isinstance(gs, int) or isinstance(gs, bool) or gs < 2):
            raise ValueError(f"{method}: group_size must be an integer >= 2 or None, got {gs!r}")
        if g is not None and (gs is None) != (not isinstance(g, PerGroup)) or (isinstance(g, PerGroup) and g.size != gs):
            raise ValueError(f"{method}: group_size={gs} contradicts granularity={g!r}; give one of them "
                             f"(granularity=PerGroup(n) is the setting, group_size=n its shorthand)")
        if g is None:
            g = PerGroup(gs) if gs is not None else PerChannel()
    elif g is None:
        g = type(cfg).default_granularity
    object.__setattr__(cfg, "granularity", g)
    object.__setattr__(cfg, "group_size", g.size if isinstance(g, PerGroup) else None)


def _alias():
    # not written to JSON (the granularity is) and not shown by ``name`` unless it says something
    return field(default=UNSET, metadata={"alias_of": "granularity"})


@dataclass(frozen=True)
class RTN(CompressionConfig):
    """Round-to-nearest weight quantization, per tensor / per output channel / per group.

    Args:
        bits: 2 to 8.
        group_size: shorthand for ``granularity=PerGroup(n)`` (``None``: per output channel); given
            with ``granularity`` the two must agree.
        symmetric: signed grid around 0 (no zero point) or an asymmetric grid with a zero point.
        granularity: ``PerTensor()``, ``PerChannel()`` (the default) or ``PerGroup(n)``.
        act_bits: also quantize activations per token, dynamically (``act_bits=8`` is the naive W8A8
            that SmoothQuant improves on); ``None`` keeps activations in float.
    """

    default_granularity: ClassVar[Granularity] = PerChannel()
    bits: int = 8
    group_size: int | None = _alias()
    symmetric: bool = True
    granularity: Granularity | None = None
    act_bits: int | None = None

    def __post_init__(self):
        super().__post_init__()
        check_bits(self.bits, 2, 8, "RTN")
        _resolve_granularity(self, "RTN")
        if self.act_bits is not None:
            check_bits(self.act_bits, 2, 8, "RTN act_bits")


@dataclass(frozen=True)
class LLMInt8(CompressionConfig):
    """LLM.int8() (Dettmers et al. 2022): vector-wise int8 (per-row weight scales, per-token activation
    scales) with feature columns holding any ``|x| >= threshold`` kept in float (mixed-precision
    decomposition). As in bitsandbytes' inference layout, the outlier columns multiply the int8
    weights dequantized, so only int8 weights are stored.

    With ``keep_outlier_weights=True`` the weight columns of the feature dimensions that reach the
    threshold on the calibration data are also stored in float16, so those dimensions compute as the
    paper's ``X_f16 W_f16`` term (Eq. 3); outliers in other dimensions still use the int8 weights.
    This variant needs ``calib``.

    Args:
        threshold: outlier magnitude (the paper's 6.0); ``float('inf')`` disables the decomposition.
        keep_outlier_weights: store float16 weight columns for calibration-time outlier dimensions.
    """

    threshold: float = 6.0
    keep_outlier_weights: bool = False

    @property
    def requires_calibration(self) -> bool:
        return self.keep_outlier_weights

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.threshold, (int, float)) or math.isnan(self.threshold) or self.threshold <= 0:
            raise ValueError(f"LLMInt8: threshold must be a positive number, got {self.threshold!r}")


@dataclass(frozen=True)
class SmoothQuant(CompressionConfig):
    """SmoothQuant (Xiao et al. 2023): migrate activation outliers into the weights with per-channel
    ``s_j = max|X_j|^alpha / max|W_j|^(1-alpha)`` (Eq. 4), then W8A8: per-channel int8 weights and
    dynamic per-token int8 activations.

    Every group of layers reading one input is smoothed with one shared scale, kept as the layers'
    explicit input scale. The paper folds ``1/s`` into the preceding LayerNorm, which is why it smooths
    only the QKV and FC1 inputs; without that constraint (and without knowing the architecture) the
    output projections are smoothed too.

    Args:
        alpha: migration strength in [0, 1] (0.5 in the paper for most models).
        bits: weight and activation bits (8).
    """

    needs_calibration: ClassVar[bool] = True
    alpha: float = 0.5
    bits: int = 8

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.alpha, (int, float)) or not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"SmoothQuant: alpha must be in [0, 1], got {self.alpha!r}")
        check_bits(self.bits, 4, 8, "SmoothQuant")


@dataclass(frozen=True)
class GPTQ(CompressionConfig):
    """GPTQ (Frantar et al. 2022): quantize columns one at a time, spreading each column's error over
    the not-yet-quantized columns with the inverse Hessian of the layer's calibration inputs.

    Args:
        bits: 2 to 8.
        group_size: shorthand for ``granularity=PerGroup(n)`` (``None``: per output channel); the
            default granularity is ``PerGroup(128)``.
        act_order: process columns by decreasing Hessian diagonal ("desc_act").
        damp: dampening, as a fraction of the mean Hessian diagonal, added to its diagonal.
        symmetric: symmetric grid (else asymmetric with zero points, the reference default).
        block_size: columns per lazy batch update (Sec. 4, "Lazy Batch-Updates"; 128 in the paper).
        static_groups: with act_order, fix each contiguous group's scale up front (no group index).
        true_sequential: inside a block, calibrate each group of layers on the outputs of the groups
            before it already quantized (the reference's ``--true-sequential``; one block pass per group).
    """

    needs_calibration: ClassVar[bool] = True
    default_granularity: ClassVar[Granularity] = PerGroup(128)
    bits: int = 4
    group_size: int | None = _alias()
    act_order: bool = True
    damp: float = 0.01
    symmetric: bool = False
    block_size: int = 128
    static_groups: bool = False
    true_sequential: bool = False
    granularity: Granularity | None = None

    def __post_init__(self):
        super().__post_init__()
        check_bits(self.bits, 2, 8, "GPTQ")
        if not isinstance(self.damp, (int, float)) or not 0.0 < self.damp < 1.0:
            raise ValueError(f"GPTQ: damp must be in (0, 1), got {self.damp!r}")
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"GPTQ: block_size must be a positive integer, got {self.block_size!r}")
        _resolve_granularity(self, "GPTQ")
        if isinstance(self.granularity, PerTensor):
            raise ValueError("GPTQ: per-tensor granularity is not supported; use PerChannel() or PerGroup(n)")


@dataclass(frozen=True)
class AWQ(CompressionConfig):
    """AWQ (Lin et al. 2023): per-input-channel scales ``s = mean|x|^r`` searched over a grid of ``r``
    (Sec. 3.2, Eq. 5) for every group of layers sharing an input, then a per-group weight clipping search.
    The searches measure the error on the group's own outputs (the reference uses the enclosing attention
    or MLP module, which needs architecture knowledge), and every layer is clipped (the reference skips
    q/k). The scale is kept as the layers' explicit input scale instead of being folded into a norm.

    Args:
        bits: 2 to 8.
        group_size: shorthand for ``granularity=PerGroup(n)`` (``None``: per output channel); the
            default granularity is ``PerGroup(128)``.
        symmetric: symmetric grid (else asymmetric with zero points, the reference default).
        n_grid: grid points for the scale search (20 in the reference).
        clip: run the clipping search (``max_shrink`` 0.5 over ``n_grid`` steps, as the reference).
        search_rows: token rows sampled (fixed seed) for the searches; ``0`` uses every row.
        clip_rows: token rows used by the clipping search (512 in the reference).
    """

    needs_calibration: ClassVar[bool] = True
    default_granularity: ClassVar[Granularity] = PerGroup(128)
    bits: int = 4
    group_size: int | None = _alias()
    symmetric: bool = False
    n_grid: int = 20
    clip: bool = True
    search_rows: int = 4096
    clip_rows: int = 512
    granularity: Granularity | None = None

    def __post_init__(self):
        super().__post_init__()
        check_bits(self.bits, 2, 8, "AWQ")
        _resolve_granularity(self, "AWQ")
        if isinstance(self.granularity, PerTensor):  # its scale and clip searches fit per-row grids
            raise ValueError("AWQ: per-tensor granularity is not supported; use PerChannel() or PerGroup(n)")
        for f in ("n_grid", "search_rows", "clip_rows"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < (1 if f == "n_grid" else 0):
                raise ValueError(f"AWQ: {f} must be a non-negative integer (n_grid >= 1), got {v!r}")


@dataclass(frozen=True)
class AngleQuant(CompressionConfig):
    """Periodic quantization of rotation angles onto ``2**bits`` uniform levels of their circle.

    Applies to every module that declares angles through the protocol
    ``periodic_parameters() -> {name: (parameter, period)}`` (e.g. qlite's ``QuantumLayer``).
    """

    bits: int = 8

    def __post_init__(self):
        super().__post_init__()
        check_bits(self.bits, 1, 8, "AngleQuant")


@dataclass(frozen=True)
class SqueezeLLM(CompressionConfig):
    """SqueezeLLM (Kim et al., ICML 2024): per-output-channel non-uniform codebooks by Fisher-weighted
    k-means, plus a dense-and-sparse split keeping ``outlier_fraction`` of each layer's weights (largest
    magnitudes, then largest sensitivities) in a sparse float16 matrix. The Fisher diagonal is the sum of
    squared gradients of the next-token loss over the calibration items (token-id tensors), taken on the
    full-precision model.

    Args:
        bits: 2 to 8 (``2**bits`` centroids per row; a row must hold at least that many weights).
        outlier_fraction: in [0, 1); the paper's 0.5% (0.45% magnitude outliers, 0.05% sensitive).
        kmeans_iters: Lloyd iterations at most.
    """

    needs_calibration: ClassVar[bool] = True
    bits: int = 4
    outlier_fraction: float = 0.005
    kmeans_iters: int = 50

    def __post_init__(self):
        super().__post_init__()
        check_bits(self.bits, 2, 8, "SqueezeLLM")
        f = self.outlier_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= f < 1.0:
            raise ValueError(f"SqueezeLLM: outlier_fraction must be in [0, 1) (0.005 = 0.5% kept sparse), got {f!r}")
        if not isinstance(self.kmeans_iters, int) or self.kmeans_iters < 1:
            raise ValueError(f"SqueezeLLM: kmeans_iters must be a positive integer, got {self.kmeans_iters!r}")


@dataclass(frozen=True)
class QAT(CompressionConfig):
    """Quantization-aware training by distillation (LLM-QAT, Liu et al. 2023, arXiv:2305.17888): the
    weights (and, with ``act_bits``, the activations per token) are fake-quantized in the forward with a
    straight-through estimator, started from the round-to-nearest grid, and trained for ``steps`` steps
    to match the full-precision model's next-token distributions (forward KL on the logits). The data is
    text the full-precision model generates itself (``data="self"``, LLM-QAT's data-free recipe: the
    first token drawn uniformly from the vocabulary, the rest sampled from the model) or the calibration
    items (``data="calib"``). The result is exported as ordinary :class:`QuantizedLinear` layers on the
    same grid the training used.

    Args:
        bits: weight bits, 2 to 8; group_size / granularity as RTN (asymmetric grid).
        act_bits: per-token activation bits (``None``: float activations).
        steps: optimizer steps, one sequence each.
        data: ``"self"`` or ``"calib"``.
        n_samples, seq_len: generated sequences and their length (``data="self"``).
        lr: AdamW learning rate.
        max_epochs: passes over the training sequences allowed for ``steps`` (fewer sequences is refused).
    KV-cache quantization (LLM-QAT's third part) and a GPTQ start are not built.
    """

    needs_calibration: ClassVar[bool] = True
    default_granularity: ClassVar[Granularity] = PerGroup(128)
    bits: int = 4
    group_size: int | None = _alias()
    act_bits: int | None = None
    steps: int = 100
    data: str = "self"
    n_samples: int = 32
    seq_len: int = 256
    lr: float = 1e-5
    max_epochs: int = 8
    granularity: Granularity | None = None

    @property
    def requires_calibration(self) -> bool:
        return self.data == "calib"

    @property
    def requires_teacher(self) -> bool:
        return True

    def __post_init__(self):
        super().__post_init__()
        check_bits(self.bits, 2, 8, "QAT")
        _resolve_granularity(self, "QAT")
        if self.act_bits is not None:
            check_bits(self.act_bits, 2, 8, "QAT act_bits")
        if self.data not in ("self", "calib"):
            raise ValueError(f"QAT: data must be 'self' (generated by the model) or 'calib', got {self.data!r}")
        for f in ("steps", "n_samples", "seq_len", "max_epochs"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < (2 if f == "seq_len" else 1):
                raise ValueError(f"QAT: {f} must be a positive integer (seq_len >= 2), got {v!r}")
        if not isinstance(self.lr, (int, float)) or not 0 < self.lr < 1:
            raise ValueError(f"QAT: lr must be in (0, 1), got {self.lr!r}")


@dataclass(frozen=True)
class OmniQuant(CompressionConfig):
    """OmniQuant (Shao et al., ICLR 2024, arXiv:2308.13137): per block, learnable weight clipping (LWC,
    Sec. 3.2, Eq. 2: per-group strengths ``gamma, beta = sigmoid(logits)`` shrinking the asymmetric grid's
    range) and, for weight-activation settings, a learnable equivalent transformation (LET, Sec. 3.3,
    Eq. 3-5: a channel-wise scale ``s`` and shift ``delta`` between a normalisation layer and the linears
    reading its output, ``Y = ((X - delta) / s) (s W) + (B + delta W)``), trained with AdamW to reproduce
    the full-precision block's output (MSE) on the calibration inputs, rounding straight-through. The
    learned parameters are then folded away: ``1/s`` and the shift into the norm's weight / bias, ``s``
    into the linears' weights, the strengths into the stored grid, so the result is ordinary
    :class:`QuantizedLinear` layers (and the norm's own weights).

    Args:
        bits: weight bits, 2 to 8; group_size / granularity as RTN (per channel or per group; asymmetric).
        act_bits: per-token dynamic activation bits (``None``: weight-only).
        epochs: passes over the calibration items per block (the paper: 20 for weight-only, 20 W4A4;
            fewer is allowed; 0 keeps the initial grid).
        lwc_lr, let_lr: AdamW learning rates of the clipping logits and of the LET scales / shifts
            (the paper's 1e-2 and 5e-3; weight decay 0).
        lwc_init: initial logit of every strength (the reference's 4.0, sigmoid 0.982);
            ``float('inf')`` starts from strength 1, exactly RTN (its gradient is then 0).
        let: learn the equivalent transformation (default: only with ``act_bits``).
        alpha: migration strength of the LET scale's SmoothQuant initialisation ``max|x|^a / max|W|^(1-a)``.
    Not built: the paper's LET between ``v_proj`` and ``o_proj`` and the q/k scale of the attention
    product (they need the attention's internals); ``down_proj`` is not transformed (as the reference does
    for LLaMA: its input is a product, not a layer's output).
    """

    needs_calibration: ClassVar[bool] = True
    default_granularity: ClassVar[Granularity] = PerGroup(128)
    bits: int = 4
    group_size: int | None = _alias()
    act_bits: int | None = None
    epochs: int = 20
    lwc_lr: float = 1e-2
    let_lr: float = 5e-3
    lwc_init: float = 4.0
    let: bool | None = None
    alpha: float = 0.5
    granularity: Granularity | None = None

    @property
    def uses_let(self) -> bool:
        return self.act_bits is not None if self.let is None else bool(self.let)

    def __post_init__(self):
        super().__post_init__()
        check_bits(self.bits, 2, 8, "OmniQuant")
        _resolve_granularity(self, "OmniQuant")
        if isinstance(self.granularity, PerTensor):
            raise ValueError("OmniQuant: per-tensor granularity is not supported (its clipping strengths are per "
                             "group or per channel); use PerChannel() or PerGroup(n)")
        if self.act_bits is not None:
            check_bits(self.act_bits, 2, 8, "OmniQuant act_bits")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"OmniQuant: epochs must be a non-negative integer, got {self.epochs!r}")
        for f in ("lwc_lr", "let_lr"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                raise ValueError(f"OmniQuant: {f} must be in (0, 1), got {v!r}")
        if isinstance(self.lwc_init, bool) or not isinstance(self.lwc_init, (int, float)) or math.isnan(self.lwc_init) \
                or self.lwc_init == float("-inf"):
            raise ValueError(f"OmniQuant: lwc_init must be a logit (a number, or inf for strength 1), got {self.lwc_init!r}")
        if self.let is not None and not isinstance(self.let, bool):
            raise ValueError(f"OmniQuant: let must be True, False or None (on with act_bits), got {self.let!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"OmniQuant: alpha must be in [0, 1], got {self.alpha!r}")
