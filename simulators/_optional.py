"""Lazy imports of optional packages, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that says ``pip install 'qlite[extra]'``.

    Args:
        module: the module to import, e.g. ``"qiskit_aer"``.
        extra: the qlite extra that provides it, e.g. ``"qiskit"``.
        what: who needs it, for the message (e.g. ``"backend 'qiskit'"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{what} needs the package {module!r}, which is not installed: pip install 'qlite[{extra}]' ({err})"
        ) from err
