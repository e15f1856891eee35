"""Training implicit neural representations: ``qlite.fit(model, data, epochs=..., lr=...)``.

* :func:`fit` -> :class:`FitResult`; configuration in :class:`FitConfig`.
* :func:`predict`, :func:`evaluate`: eval-mode output and metrics on any coordinates.
* :func:`recompute_batchnorm`: exact BatchNorm statistics on the training coordinates.
* :func:`load_checkpoint`, :func:`read_index`: safetensors + JSON checkpoints.
* :mod:`.metrics`: ``mse``, ``psnr``, ``ssim``.

``qlite.fit`` is both this package and the function: the module is callable
(``qlite.fit(model, data)`` calls :func:`fit`), because importing a submodule such as
``qlite.fit.metrics`` makes Python bind the package to the attribute ``qlite.fit``, which would
otherwise hide the function that ``qlite/__init__.py`` exposes under that name.
"""

from __future__ import annotations

import sys
import types

from .batchnorm import recompute_batchnorm
from .checkpoint import load_checkpoint, read_index
from .config import FitConfig, FitResult
from .device import resolve_device
from .loop import evaluate, fit, predict
from .metrics import mse, psnr, ssim

__all__ = ["FitConfig", "FitResult", "evaluate", "fit", "load_checkpoint", "mse", "predict", "psnr",
           "read_index", "recompute_batchnorm", "resolve_device", "ssim"]


class _CallableModule(types.ModuleType):
    """The ``qlite.fit`` package, callable as :func:`fit` (see the module docstring)."""

    def __call__(self, *args, **kwargs):
        return fit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
