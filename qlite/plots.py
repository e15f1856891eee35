"""Figures for fitted signals: reconstruction, ground truth, error map and loss curve.

Every function draws on the ``ax`` it is given (a new one when ``None``) and returns it, so panels
compose into any layout. matplotlib is imported only when a function is called
(``pip install 'qlite[plots]'``).
"""

from __future__ import annotations

import torch

from .data import Signal


def _plt():
    try:  # matplotlib falls back to the Agg backend by itself on machines without a display
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'qlite[plots]'") from err
    return plt


def _axes(ax):
    if ax is None:
        _, ax = _plt().subplots()
    return ax


def _values(signal: Signal, values) -> torch.Tensor:
    v = signal.values if values is None else values
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"values must be a tensor, got {type(v).__name__}")
    v = v.detach().cpu().float()
    if v.dim() == 1:
        v = v[:, None]
    if v.shape != signal.values.shape:
        raise ValueError(f"values have shape {tuple(v.shape)} but the signal's are {tuple(signal.values.shape)}")
    return v


def plot_signal(signal: Signal, values: torch.Tensor | None = None, ax=None, title: str | None = None):
    """Draw ``values`` (default: the signal itself) the way the signal lives: an image for a 2-D
    grid (gray for one channel, colour range fixed by the ground truth), a curve over the
    coordinate for 1-D signals, a scatter for scattered 2-D points."""
    ax = _axes(ax)
    v = _values(signal, values)
    lo, hi = float(signal.values.min()), float(signal.values.max())
    if signal.is_image:
        grid = signal.as_grid(v).numpy()
        if grid.shape[-1] == 1:
            ax.imshow(grid[..., 0], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        else:
            ax.imshow(((grid[..., :3] - lo) / max(hi - lo, 1e-12)).clip(0, 1), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    elif signal.in_features == 1:
        order = torch.argsort(signal.coords[:, 0].cpu())
        ax.plot(signal.coords[order, 0].cpu().numpy(), v[order].numpy(), lw=0.8)
        ax.set_xlabel("coordinate")
        ax.set_ylabel("value")
    elif signal.in_features == 2:
        c = signal.coords.cpu().numpy()
        ax.scatter(c[:, 1], c[:, 0], c=v[:, 0].numpy(), s=4, cmap="gray", vmin=lo, vmax=hi)
        ax.set_aspect("equal")
    else:
        raise ValueError(f"cannot draw a signal with {signal.in_features}-D coordinates")
    if title:
        ax.set_title(title)
    return ax


def plot_error(signal: Signal, prediction: torch.Tensor, ax=None, title: str | None = "absolute error"):
    """``|prediction - truth|``: a heat map with a colour bar for images, a curve otherwise."""
    ax = _axes(ax)
    err = (_values(signal, prediction) - signal.values.detach().cpu().float()).abs()
    if signal.is_image:
        im = ax.imshow(signal.as_grid(err).mean(-1).numpy(), cmap="magma", interpolation="nearest")
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks([])
        ax.set_yticks([])
    elif signal.in_features == 1:
        order = torch.argsort(signal.coords[:, 0].cpu())
        ax.plot(signal.coords[order, 0].cpu().numpy(), err[order].mean(-1).numpy(), lw=0.8, color="C3")
        ax.set_xlabel("coordinate")
        ax.set_ylabel("|error|")
    else:
        c = signal.coords.cpu().numpy()
        sc = ax.scatter(c[:, 1], c[:, 0], c=err.mean(-1).numpy(), s=4, cmap="magma")
        ax.figure.colorbar(sc, ax=ax)
    if title:
        ax.set_title(title)
    return ax


def plot_loss(history, ax=None, log_scale: bool = True, label: str | None = None):
    """Training loss per epoch from a :class:`~qlite.fit.FitResult` or its ``history`` dict."""
    ax = _axes(ax)
    h = getattr(history, "history", history)
    if not isinstance(h, dict) or "loss" not in h:
        raise TypeError("plot_loss needs a FitResult or a history dict with 'epoch' and 'loss'")
    epochs = h.get("epoch") or list(range(1, len(h["loss"]) + 1))
    ax.plot(epochs, h["loss"], label=label)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training MSE")
    if label:
        ax.legend()
    return ax


def plot_fit(signal: Signal, prediction: torch.Tensor, axes=None, title: str | None = None):
    """Three panels: reconstruction, ground truth, absolute error. Returns the axes."""
    if axes is None:
        fig, axes = _plt().subplots(1, 3, figsize=(11, 3.4), layout="constrained")
        if title:
            fig.suptitle(title)
    if len(axes) != 3:
        raise ValueError(f"plot_fit draws three panels, got {len(axes)} axes")
    plot_signal(signal, prediction, axes[0], "reconstruction")
    plot_signal(signal, None, axes[1], "ground truth")
    plot_error(signal, prediction, axes[2])
    return axes


def save(fig_or_ax, path, dpi: int = 120) -> None:
    """Save the figure of ``fig_or_ax`` to ``path`` and close it."""
    fig = getattr(fig_or_ax, "figure", fig_or_ax)
    if hasattr(fig_or_ax, "__len__") and not hasattr(fig_or_ax, "savefig"):
        fig = fig_or_ax[0].figure
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
