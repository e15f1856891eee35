"""Private helpers of the spectrum study: the two real signals and a plain full-batch Adam loop.

The loaders follow the QIREN paper's protocols; ``qlite.data`` (being written in parallel) is the
public home of signal loading and ``qlite.fit`` of training. Until they land on main, the study uses
these small stand-ins, and says so in its report.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


def grid_coords(shape: tuple[int, ...]) -> torch.Tensor:
    """``(prod(shape), D)`` coordinates on ``[-1, 1]^D``, row-major like ``image.reshape(-1)``."""
    axes = [torch.linspace(-1, 1, n) for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], -1)


def camera(size: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """scikit-image's ``camera`` (the paper's image), area-resized to ``size x size``, values in
    ``[-1, 1]``; returns ``(coords (N, 2), values (N, 1), (size, size))``."""
    try:
        from skimage import data, transform
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"the image study needs scikit-image: pip install 'qlite[data]' ({err})") from err
    img = transform.resize(data.camera().astype(np.float64) / 255.0, (size, size), anti_aliasing=True)
    vals = torch.tensor(img * 2 - 1, dtype=torch.float32).reshape(-1, 1)
    return grid_coords((size, size)), vals, (size, size)


def bach(path: Path, start: int = 20000, stop: int = 25000, step: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's audio protocol: samples ``start:stop:step`` of the WAV file, amplitude divided by
    its maximum absolute value, time mapped to ``[-1, 1]``; returns ``(t (N, 1), values (N, 1))``."""
    try:
        from scipy.io import wavfile
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"reading WAV files needs scipy: pip install 'qlite[data]' ({err})") from err
    _, pcm = wavfile.read(str(path))  # the clip is 32-bit float, which the stdlib wave module cannot read
    pcm = np.asarray(pcm, dtype=np.float64)
    if pcm.ndim == 2:
        pcm = pcm[:, 0]
    clip = pcm[start:stop:step]
    clip = clip / np.abs(clip).max()
    t = torch.linspace(-1, 1, len(clip))[:, None]
    return t, torch.tensor(clip, dtype=torch.float32)[:, None]


def train_adam(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, *,
               device: torch.device) -> dict:
    """Full-batch Adam on the MSE (the model is trained in place: it is the study's own model).
    Returns the loss history, the final MSE in eval mode and the wall time."""
    model.to(device).train()
    x, y = x.to(device), y.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    t0 = time.perf_counter()
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if step % max(1, steps // 20) == 0 or step == steps - 1:
            history.append((step, float(loss.detach())))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        mse = float(torch.nn.functional.mse_loss(model(x), y))
    log.info("trained %s for %d steps in %.1f s: MSE %.3g", type(model).__name__, steps, seconds, mse)
    return {"history": history, "mse": mse, "seconds": seconds, "steps": steps, "lr": lr}


def psnr(mse: float, peak_to_peak: float = 2.0) -> float:
    """PSNR for values in a range of width ``peak_to_peak`` (2 for ``[-1, 1]``)."""
    return float(10 * np.log10(peak_to_peak**2 / mse)) if mse > 0 else float("inf")
