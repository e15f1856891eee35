"""Device selection and the self-muting progress bar."""

from __future__ import annotations

import logging
import sys

import torch

log = logging.getLogger(__name__)


def resolve_device(device="auto", local_rank: int | None = None) -> torch.device:
    """``"auto"``: CUDA when available (``cuda:<local_rank>`` under torchrun), else CPU; or any
    ``torch.device`` spelling. Raises ``ValueError`` for CUDA on a machine without it."""
    if isinstance(device, torch.device):
        dev = device
    elif not isinstance(device, str):
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}")
    elif device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"unknown device {device!r}: {err}; use 'auto', 'cpu' or 'cuda[:N]'") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available here; use device='cpu'")
        if dev.index is None:
            dev = torch.device("cuda", local_rank or 0)
        if dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {dev} does not exist ({torch.cuda.device_count()} CUDA devices)")
    return dev


def progress_enabled(requested: bool | None) -> bool:
    """``None`` means: only when both stdout and stderr are terminals (the bar draws on stderr;
    a redirected or piped run stays clean)."""
    if requested is not None:
        return requested
    return bool(getattr(sys.stdout, "isatty", lambda: False)() and getattr(sys.stderr, "isatty", lambda: False)())


class Progress:
    """A tqdm bar over epochs (or steps) when enabled (and tqdm is installed), otherwise nothing."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str = "fit", unit: str = "epoch"):
        self.bar = None
        if enabled and total > initial:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - tqdm is in the data extra
                log.info("progress bar needs tqdm: pip install 'qlite[data]'")
                return
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)

    def update(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3g}", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
