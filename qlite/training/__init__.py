"""Training: what ``qlite.fit(model, data, ...)`` runs, for signals and for text.

``qlite.fit`` is the function :func:`fit` (re-exported by ``qlite``); this package holds it and
its parts (it is called ``training`` so that no module shadows that function):

* :func:`fit` -> :class:`FitResult`; configuration in :class:`FitConfig`.
* :func:`fit_many`: seeds and settings of one architecture as one batched model (:mod:`.stacked`).
* :func:`predict`, :func:`evaluate`: eval-mode output and metrics on any coordinates.
* :func:`recompute_batchnorm`: exact BatchNorm statistics on the training coordinates.
* :func:`load_checkpoint`, :func:`read_index`: safetensors + JSON checkpoints.
* :mod:`.metrics`: ``mse``, ``psnr``, ``ssim``; :mod:`.text_loop`: causal language models on
  :class:`~qlite.data.TextData` (``score_windows`` for perplexity).
"""

from __future__ import annotations

from .batchnorm import recompute_batchnorm
from .checkpoint import load_checkpoint, read_index
from .config import FitConfig, FitResult
from .device import resolve_device
from .loop import evaluate, fit, predict
from .many import fit_many
from .metrics import mse, psnr, ssim

__all__ = ["FitConfig", "FitResult", "evaluate", "fit", "fit_many", "load_checkpoint", "mse", "predict", "psnr",
           "read_index", "recompute_batchnorm", "resolve_device", "ssim"]
