"""Device selection and the self-muting progress bar (text on a terminal, a widget in a notebook)."""

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


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed or stream-like objects without isatty
        return False


def is_kernel_stream(stream) -> bool:
    """Whether ``stream`` is a Jupyter kernel's output stream (ipykernel's ``OutStream``, which
    forwards writes to the notebook front-end). Decided by the stream's type, so nothing is
    imported: a terminal run never loads IPython."""
    return any(c.__module__.split(".")[0] == "ipykernel" for c in type(stream).__mro__)


def in_notebook(stdout=None, stderr=None) -> bool:
    """True inside a Jupyter kernel whose output reaches the notebook (stdout or stderr is the
    kernel's stream; a kernel that redirected both elsewhere is treated as a pipe)."""
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    return is_kernel_stream(stdout) or is_kernel_stream(stderr)


def progress_enabled(requested: bool | None, stdout=None, stderr=None) -> bool:
    """``None`` means: when both stdout and stderr are terminals (the bar draws on stderr), or in
    a Jupyter kernel (tqdm's notebook bar); a redirected or piped run stays clean. ``True`` /
    ``False`` always win."""
    if requested is not None:
        return requested
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    return (_is_tty(stdout) and _is_tty(stderr)) or in_notebook(stdout, stderr)


def _tqdm_class(notebook: bool):
    """tqdm's widget bar in a notebook (it needs ipywidgets: ``pip install 'qlite[notebooks]'``;
    without it the text bar, which a notebook shows as plain stderr lines), else the text bar."""
    if notebook:
        try:
            import ipywidgets  # noqa: F401 - tqdm.notebook needs it to draw
            from tqdm.notebook import tqdm
            return tqdm
        except ImportError:
            log.info("notebook progress bar needs ipywidgets: pip install 'qlite[notebooks]'; using the text bar")
    from tqdm.std import tqdm
    return tqdm


class Progress:
    """A tqdm bar over epochs (or steps) when enabled (and tqdm is installed), otherwise nothing."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str = "fit", unit: str = "epoch"):
        self.bar = None
        if enabled and total > initial:
            try:
                tqdm = _tqdm_class(in_notebook())
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
