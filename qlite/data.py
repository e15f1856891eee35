"""Signals for implicit neural representations: coordinates, values, grid shape and metadata.

A :class:`Signal` is what :func:`qlite.fit` trains on: ``coords`` of shape ``(N, d)`` (inputs of
the representation network), ``values`` of shape ``(N, c)`` (its targets), the grid shape when the
points form a regular grid (images, audio), a nominal ``data_range`` for PSNR, and JSON-able
metadata recording where the signal came from.

Constructors:

* :func:`image` -- scikit-image's bundled images by name (``camera``, ``astronaut``, ``coffee`` as in
  the QIREN paper) or any image file; centre crop, resize, values mapped to ``[-1, 1]``.
* :func:`audio` -- a WAV file; amplitude divided by its maximum magnitude, time in ``[-1, 1]``.
* :func:`function` -- an analytic target sampled on a grid or on given coordinates.
* :func:`super_resolution` -- a training grid and a finer evaluation grid of the same source;
  :func:`upsample` gives the classical interpolation baselines on the fine grid.
* :func:`text` -- train / validation / test token windows of a corpus (:class:`TextData`, for
  language models; implemented in :mod:`qlite.data_text`).

Grid convention: coordinates follow PyTorch's ``align_corners`` semantics. With the default
``align_corners=False`` sample ``i`` of ``n`` sits at the cell centre ``-1 + (2i + 1) / n``, so a
grid and its 2x block-averaged version describe the same continuous signal and bilinear
interpolation (``F.interpolate(..., align_corners=False)``) is consistent with the coordinates a
model is evaluated on. ``align_corners=True`` gives ``linspace(-1, 1, n)`` as in the paper's code;
the difference is a scale of ``(n - 1) / n`` that the first linear layer of every model absorbs.
Grid points are listed in row-major (``"ij"``) order: for an image, ``coords[k] = (row, column)``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .data_text import CharTokenizer, TextData, text  # noqa: F401  (public here: qlite.data.text)

# scikit-image's bundled example images (skimage.data) that load without a download.
SKIMAGE_IMAGES = (
    "astronaut", "brick", "camera", "cat", "checkerboard", "chelsea", "clock", "coffee", "coins",
    "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
    "moon", "page", "retina", "rocket", "text",
)


def _require(module: str, extra: str = "data"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"{module} is needed here; install it with: pip install 'qlite[{extra}]'") from err


def grid_coordinates(shape, *, align_corners: bool = False, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Coordinates of a regular grid in ``[-1, 1]^d``, row-major: shape ``(prod(shape), len(shape))``.

    ``align_corners=False``: cell centres ``-1 + (2i + 1) / n``; ``True``: ``linspace(-1, 1, n)``.

    Example:
        >>> grid_coordinates((2, 3)).shape
        torch.Size([6, 2])
    """
    shape = _grid_shape(shape)
    axes = []
    for n in shape:
        if align_corners:
            axes.append(torch.linspace(-1.0, 1.0, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64))
        else:
            axes.append(-1.0 + (2.0 * torch.arange(n, dtype=torch.float64) + 1.0) / n)
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1).to(dtype)


def _grid_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"a grid shape must be an int or a tuple of ints, got {shape!r}") from None
    if not shape or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in shape):
        raise ValueError(f"a grid shape must be a non-empty tuple of positive ints, got {shape!r}")
    return tuple(int(n) for n in shape)


@dataclass(frozen=True, eq=False)
class Signal:
    """Coordinates and values of a signal to represent.

    Args:
        coords: ``(N, d)`` floating tensor of input coordinates.
        values: ``(N, c)`` (or ``(N,)``, taken as one channel) floating tensor of targets.
        grid_shape: the grid the points form, row-major (``(H, W)`` for an image, ``(T,)`` for
            audio), or ``None`` for scattered points. ``prod(grid_shape)`` must equal ``N``.
        data_range: nominal range of the values, used by PSNR and SSIM. ``None`` (default) means
            ``2.0`` for values within ``[-1, 1]`` (qlite's normalisation) and is refused for values
            outside it (e.g. 0-255 pixels): PSNR with an assumed range of 2 would be wrong by
            ~42 dB, so such data must say its range (``data_range=255``).
        meta: JSON-able description of the source (kind, file, size, ...).

    Raises:
        TypeError: coords or values are not floating tensors.
        ValueError: empty data, lengths that differ, non-finite entries, a grid shape that does not
            match the number of points, or a non-positive data range.
    """

    coords: torch.Tensor
    values: torch.Tensor
    grid_shape: tuple[int, ...] | None = None
    data_range: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        coords, values = self.coords, self.values
        for name, t in (("coords", coords), ("values", values)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"Signal.{name} must be a torch.Tensor, got {type(t).__name__}")
            if not t.is_floating_point():
                raise TypeError(f"Signal.{name} must be a floating tensor, got dtype {t.dtype}; convert with .float()")
        if values.dim() == 1:
            values = values[:, None]
            object.__setattr__(self, "values", values)
        if coords.dim() == 1:
            coords = coords[:, None]
            object.__setattr__(self, "coords", coords)
        if coords.dim() != 2 or values.dim() != 2:
            raise ValueError(f"Signal needs coords (N, d) and values (N, c), got {tuple(coords.shape)} and {tuple(values.shape)}")
        if coords.shape[0] == 0 or coords.shape[1] == 0 or values.shape[1] == 0:
            raise ValueError(f"Signal is empty: coords {tuple(coords.shape)}, values {tuple(values.shape)}")
        if coords.shape[0] != values.shape[0]:
            raise ValueError(
                f"Signal has {coords.shape[0]} coordinates but {values.shape[0]} values; they must have the same length"
            )
        for name, t in (("coords", coords), ("values", values)):
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise ValueError(f"Signal.{name} has {bad} non-finite entries (nan or inf); clean the data first")
        if self.grid_shape is not None:
            shape = _grid_shape(self.grid_shape)
            object.__setattr__(self, "grid_shape", shape)
            if math.prod(shape) != coords.shape[0]:
                raise ValueError(f"grid_shape {shape} holds {math.prod(shape)} points but the signal has {coords.shape[0]}")
        if self.data_range is None:
            lo, hi = float(values.min()), float(values.max())
            if lo < -1 - 1e-6 or hi > 1 + 1e-6:
                raise ValueError(f"the values span [{lo:.4g}, {hi:.4g}], outside [-1, 1] where the default PSNR range of 2 "
                                 f"applies; pass data_range= (the span of the values' scale, e.g. 255 for 8-bit data or "
                                 f"{hi - lo:.4g} for this span) or normalise the values to [-1, 1]")
            object.__setattr__(self, "data_range", 2.0)
        if isinstance(self.data_range, bool) or not isinstance(self.data_range, (int, float, np.floating, np.integer)):
            raise TypeError(f"data_range must be a number, got {self.data_range!r}")
        dr = float(self.data_range)
        if not math.isfinite(dr) or dr <= 0:
            raise ValueError(f"data_range must be a positive finite number, got {self.data_range!r}")
        object.__setattr__(self, "data_range", dr)
        object.__setattr__(self, "meta", dict(self.meta))

    # -- shape ------------------------------------------------------------------------------
    @property
    def n_points(self) -> int:
        return self.coords.shape[0]

    @property
    def in_features(self) -> int:
        return self.coords.shape[1]

    @property
    def out_features(self) -> int:
        return self.values.shape[1]

    @property
    def is_image(self) -> bool:
        """True for a 2-D grid (SSIM applies)."""
        return self.grid_shape is not None and len(self.grid_shape) == 2

    def as_grid(self, values: torch.Tensor | None = None) -> torch.Tensor:
        """``values`` (default: the signal's own) reshaped to ``(*grid_shape, c)``."""
        if self.grid_shape is None:
            raise ValueError("this signal has no grid_shape (scattered points); it cannot be shown as a grid")
        v = self.values if values is None else values
        if v.dim() == 1:
            v = v[:, None]
        if v.shape[0] != self.n_points:
            raise ValueError(f"expected {self.n_points} values for grid {self.grid_shape}, got {v.shape[0]}")
        return v.reshape(*self.grid_shape, v.shape[-1])

    def to(self, device=None, dtype: torch.dtype | None = None) -> Signal:
        """A copy with coords and values moved (a new Signal; this one is unchanged)."""
        return Signal(self.coords.to(device=device, dtype=dtype), self.values.to(device=device, dtype=dtype),
                      self.grid_shape, self.data_range, self.meta)

    def fingerprint(self) -> str:
        """SHA-256 of coordinates and values (float32 bytes); checkpoints use it to refuse resuming
        on different data."""
        h = hashlib.sha256()
        for t in (self.coords, self.values):
            a = t.detach().to("cpu", torch.float32).contiguous().numpy()
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def describe(self) -> dict:
        """JSON-able summary: sizes, grid, range and metadata."""
        return {"n_points": self.n_points, "in_features": self.in_features, "out_features": self.out_features,
                "grid_shape": list(self.grid_shape) if self.grid_shape else None, "data_range": self.data_range,
                **self.meta}


# -- images ---------------------------------------------------------------------------------
def _load_image_array(source) -> tuple[np.ndarray, str]:
    if isinstance(source, np.ndarray):
        return source, "array"
    if isinstance(source, torch.Tensor):
        return source.detach().cpu().numpy(), "tensor"
    if not isinstance(source, (str, Path)):
        raise TypeError(f"image source must be a name, a path or an array, got {type(source).__name__}")
    path = Path(source)
    if path.is_file():
        io = _require("skimage.io")
        try:
            return np.asarray(io.imread(str(path))), str(path)
        except Exception as err:  # imageio/PIL raise many types for a corrupt or non-image file
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"{str(path)!r} is not an image file scikit-image can read (PNG, JPEG, TIFF, BMP, ...): "
                             f"{reason}; pass an image file, a bundled image name or an array") from err
    if isinstance(source, str) and source in SKIMAGE_IMAGES:
        data = _require("skimage.data")
        return np.asarray(getattr(data, source)()), source
    raise FileNotFoundError(
        f"image {str(source)!r} is neither an existing file nor one of scikit-image's bundled images "
        f"({', '.join(SKIMAGE_IMAGES)})"
    )


def _to_unit_float(img: np.ndarray, gray: bool) -> np.ndarray:
    """Image as float64 in [0, 1], shape (H, W, C) with C = 1 if gray."""
    util, color = _require("skimage.util"), _require("skimage.color")
    if img.ndim not in (2, 3) or img.size == 0:
        raise ValueError(f"an image must be a non-empty (H, W) or (H, W, C) array, got shape {img.shape}")
    img = util.img_as_float(img) if img.dtype.kind in "uib" else img.astype(np.float64)
    if img.ndim == 3 and img.shape[2] == 4:
        img = color.rgba2rgb(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if gray and img.ndim == 3:
        if img.shape[2] != 3:
            raise ValueError(f"cannot convert a {img.shape[2]}-channel image to gray; pass gray=False")
        img = color.rgb2gray(img)
    if img.ndim == 2:
        img = img[..., None]
    if not np.isfinite(img).all():
        raise ValueError("the image has non-finite pixels")
    lo, hi = float(img.min()), float(img.max())
    if lo < -1e-3 or hi > 1 + 1e-3:  # e.g. a float array of 0..255: clipping would saturate it
        raise ValueError(f"a float image must hold values in [0, 1], got [{lo:.4g}, {hi:.4g}]; divide by its maximum "
                         "(e.g. 255) or pass an integer array")
    return np.clip(img, 0.0, 1.0)  # rounding noise of colour conversions only


def image(source, size: int | None = 32, gray: bool = True, *, align_corners: bool = False) -> Signal:
    """An image as a signal: coordinates in ``[-1, 1]^2``, values in ``[-1, 1]``.

    The image is centre-cropped to a square and resized to ``size x size`` (bilinear, with
    scikit-image's Gaussian anti-aliasing when shrinking), as the paper's code does with
    torchvision's ``Resize`` and ``CenterCrop``; values ``v`` in ``[0, 1]`` become ``2 v - 1``
    (the paper's ``Normalize(0.5, 0.5)``).

    Args:
        source: a scikit-image bundled image name (see :data:`SKIMAGE_IMAGES`), a path to an image
            file, or an ``(H, W)`` / ``(H, W, C)`` array.
        size: side of the square output; ``None`` keeps the image as it is (no crop, no resize).
        gray: convert colour images to one luminance channel (``skimage.color.rgb2gray``).
        align_corners: grid convention (see the module docstring).

    Returns:
        A :class:`Signal` with ``grid_shape == (size, size)``, ``data_range == 2``.

    Raises:
        FileNotFoundError: ``source`` is neither a file nor a bundled name.
        ValueError: the file cannot be read as an image, or ``size`` is not a positive int.

    Example:
        >>> s = image("camera", size=32)
        >>> s.coords.shape, s.values.shape, s.grid_shape
        (torch.Size([1024, 2]), torch.Size([1024, 1]), (32, 32))
    """
    if size is not None and (not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1):
        raise ValueError(f"size must be a positive int or None, got {size!r}")
    raw, origin = _load_image_array(source)
    img = _to_unit_float(raw, gray)
    if size is not None:
        transform = _require("skimage.transform")
        h, w = img.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        img = img[top:top + side, left:left + side]
        if side != size:
            img = transform.resize(img, (size, size, img.shape[2]), order=1, mode="reflect",
                                   anti_aliasing=size < side, preserve_range=True)
        img = np.clip(img, 0.0, 1.0)
    values = torch.from_numpy(np.ascontiguousarray(img)).float().reshape(-1, img.shape[2]) * 2 - 1
    shape = img.shape[:2]
    meta = {"kind": "image", "source": origin, "size": size, "gray": gray, "align_corners": align_corners}
    return Signal(grid_coordinates(shape, align_corners=align_corners), values, shape, 2.0, meta)


# -- audio ----------------------------------------------------------------------------------
def audio(path, start: int | None = None, stop: int | None = None, step: int = 1, *,
          align_corners: bool = False) -> Signal:
    """A WAV file as a signal: time in ``[-1, 1]``, amplitude divided by its maximum magnitude.

    The QIREN paper fits ``gt_bach.wav[20000:25000:5]`` (1,000 points): ``audio(path, 20000, 25000, 5)``.
    Multi-channel files are mixed down to their channel mean.

    Args:
        path: WAV file.
        start, stop, step: Python slice of the samples.
        align_corners: grid convention (see the module docstring).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable file, an empty selection, a non-positive step, or silence (all zeros).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {str(path)!r} not found")
    if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step < 1:
        raise ValueError(f"step must be a positive int, got {step!r}")
    for name, bound in (("start", start), ("stop", stop)):
        if bound is not None and (not isinstance(bound, (int, np.integer)) or isinstance(bound, bool)):
            raise TypeError(f"{name} must be an int sample index or None, got {bound!r}; e.g. audio(path, 20000, 25000, 5)")
    wavfile = _require("scipy.io.wavfile")
    try:
        rate, data = wavfile.read(str(path))
    except Exception as err:  # scipy raises ValueError/struct.error/... for a bad file
        raise ValueError(f"could not read WAV file {str(path)!r}: the file is truncated or not a WAV (RIFF/WAVE) file "
                         f"({type(err).__name__}: {err}); pass a complete .wav file") from err
    unsigned = data.dtype == np.uint8  # 8-bit WAV is unsigned, silence at 128
    data = np.asarray(data, dtype=np.float64)
    if unsigned:
        data = data - 128.0
    if data.ndim == 2:
        data = data.mean(axis=1)
    selected = data[start:stop:step]
    if selected.size == 0:
        raise ValueError(f"samples [{start}:{stop}:{step}] of {str(path)!r} ({data.shape[0]} samples) are empty")
    scale = np.abs(selected).max()
    if scale == 0:
        raise ValueError(f"samples [{start}:{stop}:{step}] of {str(path)!r} are silent (all zero); nothing to normalise")
    values = torch.from_numpy(selected / scale).float()
    meta = {"kind": "audio", "source": str(path), "start": start, "stop": stop, "step": step, "rate": int(rate),
            "align_corners": align_corners}
    return Signal(grid_coordinates(values.shape[0], align_corners=align_corners), values, (values.shape[0],), 2.0, meta)


# -- analytic functions ---------------------------------------------------------------------
def function(f: Callable[[torch.Tensor], torch.Tensor], grid, *, align_corners: bool = False,
             data_range: float | None = None, name: str | None = None) -> Signal:
    """An analytic target ``f(coords)`` sampled on a grid or at given coordinates.

    Args:
        f: maps coordinates ``(N, d)`` to values ``(N,)`` or ``(N, c)``.
        grid: a grid shape (``int`` or tuple, coordinates from :func:`grid_coordinates`) or an
            ``(N, d)`` tensor of coordinates.
        data_range: for PSNR; default ``max(values) - min(values)`` (``1.0`` for a constant).
        name: recorded in the metadata.

    Example:
        >>> s = function(lambda x: torch.sin(3 * x[:, 0]), 100)
        >>> s.values.shape
        torch.Size([100, 1])
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if isinstance(grid, torch.Tensor):
        coords, shape = (grid[:, None] if grid.dim() == 1 else grid).float(), None
    else:
        shape = _grid_shape(grid)
        coords = grid_coordinates(shape, align_corners=align_corners)
    values = f(coords)
    if not isinstance(values, torch.Tensor):
        values = torch.as_tensor(np.asarray(values))
    values = values.float()
    if data_range is None:
        finite = values[torch.isfinite(values)]
        span = float(finite.max() - finite.min()) if finite.numel() else 1.0
        data_range = span if span > 0 else 1.0
    meta = {"kind": "function", "name": name or getattr(f, "__name__", "function"), "align_corners": align_corners}
    return Signal(coords, values, shape, data_range, meta)


# -- super-resolution -----------------------------------------------------------------------
class SuperResolution(NamedTuple):
    """A training signal on a coarse grid and the evaluation signal on the fine grid."""

    train: Signal
    eval: Signal


def downsample(signal: Signal, factor: int | tuple[int, ...]) -> Signal:
    """Block-average a grid signal by an integer ``factor`` per axis (values and coordinates).

    With ``align_corners=False`` coordinates, the block means of the fine grid are exactly the cell
    centres of the coarse grid, so coarse and fine grids describe one continuous signal.
    """
    if signal.grid_shape is None:
        raise ValueError("downsample needs a signal on a grid (grid_shape is None)")
    shape = signal.grid_shape
    factors = (factor,) * len(shape) if isinstance(factor, int) else tuple(factor)
    if len(factors) != len(shape) or any(not isinstance(k, int) or k < 1 for k in factors):
        raise ValueError(f"factor must be a positive int or one per grid axis {shape}, got {factor!r}")
    if any(n % k for n, k in zip(shape, factors)):
        raise ValueError(f"grid {shape} is not divisible by factor {factors}; crop or resize first")
    coarse = tuple(n // k for n, k in zip(shape, factors))

    def block_mean(t: torch.Tensor) -> torch.Tensor:  # (N, c) on the fine grid -> (N / prod(k), c)
        c = t.shape[1]
        g = t.reshape(*[x for n, k in zip(coarse, factors) for x in (n, k)], c)
        return g.mean(dim=tuple(range(1, 2 * len(shape), 2))).reshape(-1, c)

    meta = {**signal.meta, "downsampled_from": list(shape), "factor": list(factors)}
    return Signal(block_mean(signal.coords.double()).float(), block_mean(signal.values.double()).float(),
                  coarse, signal.data_range, meta)


def super_resolution(source, low: int = 32, high: int = 64, gray: bool = True) -> SuperResolution:
    """A super-resolution pair: train on ``low x low``, evaluate on ``high x high`` of one source.

    ``source`` is an image name / path / array (loaded with :func:`image` at ``high``) or a grid
    :class:`Signal` at the high resolution. The training grid is its exact block average
    (``high`` must be a multiple of ``low``).
    """
    if not isinstance(low, int) or not isinstance(high, int) or low < 1 or high < low or high % low:
        raise ValueError(f"need integers with high a multiple of low, got low={low!r}, high={high!r}")
    fine = source if isinstance(source, Signal) else image(source, size=high, gray=gray)
    if fine.grid_shape is None:
        raise ValueError("super_resolution needs a grid signal")
    if any(n != high for n in fine.grid_shape):
        raise ValueError(f"the source signal's grid is {tuple(fine.grid_shape)}, not {high} per side as high={high} "
                         "says; pass high equal to its size (a multiple of low)")
    factor = high // low
    return SuperResolution(downsample(fine, factor), fine)


def upsample(signal: Signal, shape, mode: str = "bilinear") -> torch.Tensor:
    """Classical interpolation of a grid signal onto a finer grid: values ``(prod(shape), c)``.

    ``mode`` is ``"nearest"``, ``"linear"`` (1-D), ``"bilinear"`` (2-D) or ``"bicubic"`` (2-D);
    uses ``F.interpolate`` with the signal's own ``align_corners`` convention, so the result lines
    up with :func:`grid_coordinates` of ``shape`` -- the baselines of the super-resolution study.
    """
    if signal.grid_shape is None:
        raise ValueError("upsample needs a grid signal")
    shape = _grid_shape(shape)
    if len(shape) != len(signal.grid_shape):
        raise ValueError(f"target grid {shape} has a different dimension than the signal's {signal.grid_shape}")
    modes = {1: ("nearest", "linear"), 2: ("nearest", "bilinear", "bicubic")}
    if mode not in modes.get(len(shape), ("nearest",)):
        raise ValueError(f"mode {mode!r} is not available for a {len(shape)}-D grid; use one of {modes.get(len(shape))}")
    grid = signal.as_grid().movedim(-1, 0)[None]  # (1, c, *grid)
    if mode == "nearest":  # "nearest-exact" picks the closest cell centre (plain "nearest" floors)
        out = F.interpolate(grid.double(), size=shape, mode="nearest-exact")[0]  # (c, *shape)
    else:
        align = bool(signal.meta.get("align_corners", False))
        out = F.interpolate(grid.double(), size=shape, mode=mode, align_corners=align)[0]
    return out.movedim(0, -1).reshape(-1, signal.out_features).float()
