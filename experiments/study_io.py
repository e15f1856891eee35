"""What every study in experiments/ shares: where it ran (:func:`machine_info`) and how its results
are written (:func:`write_results`: ``<stem>.json`` + ``<stem>.md``, each written atomically).

Import it from a study script as ``from study_io import machine_info, write_results`` (a script's
own folder is on ``sys.path``); tests put ``experiments/`` on the path themselves.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import json
import os
import platform
from pathlib import Path

import torch

# Versions of the optional packages a result may depend on (None when not installed).
PACKAGES = ("transformers", "torchao", "bitsandbytes", "peft", "pennylane", "qiskit", "qiskit-aer", "jax")


def machine_info(device: str | torch.device | None = None) -> dict:
    """Where the figures were measured: date (local, with offset), host, CPU model, cores, torch
    threads, the device asked for, the CUDA card (``cuda_device``, ``None`` without one), versions,
    and the load average at the time of the call."""
    device = torch.device(device) if device is not None else None
    cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
    info = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else ("cuda" if cuda else "cpu"),
        "cuda_device": torch.cuda.get_device_name(device if device is not None and device.index is not None else 0)
        if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "cuda_device_count": torch.cuda.device_count() if cuda else 0,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    for pkg in PACKAGES:
        try:
            info[pkg] = _md.version(pkg)
        except _md.PackageNotFoundError:
            info[pkg] = None
    return info


# Older result files name the same things differently; renderers read them through this.
_ALIASES = {"cpu_count": ("cpu_cores", "cores"), "cuda_device": ("card", "gpu")}


def normalize_machine(m: dict) -> dict:
    """A machine record of any study (old result files included) with :func:`machine_info`'s keys."""
    out = dict(m)
    for key, old in _ALIASES.items():
        if out.get(key) is None:
            out[key] = next((m[k] for k in old if m.get(k) is not None), None)
    for key in ("cpu", "torch", "torch_threads", "date", "device", *PACKAGES):
        out.setdefault(key, None)
    return out


def machine_line(m: dict) -> str:
    """One sentence: date, CPU and cores, torch threads, card, torch version."""
    m = normalize_machine(m)
    card = f", GPU {m['cuda_device']}" if m["cuda_device"] else ", no GPU"
    return (f"Measured {m['date']} on {m['cpu']} ({m['cpu_count']} cores, {m['torch_threads']} torch threads){card}; "
            f"torch {m['torch']}.")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # a killed run leaves the old file, never half a new one


def _jsonable(o):
    """Numbers stay numbers (tensor / numpy scalars), anything else becomes its string (paths...)."""
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)


def write_json(path, data) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, json.dumps(data, indent=1, default=_jsonable))
    return path


def write_results(out, stem: str, markdown: str, data: dict) -> Path:
    """Write ``<out>/<stem>.json`` (``data``) and ``<out>/<stem>.md`` (``markdown``); returns the
    Markdown path. The one results writer of every study."""
    out = Path(out)
    write_json(out / f"{stem}.json", data)
    path = out / f"{stem}.md"
    _atomic_write(path, markdown if markdown.endswith("\n") else markdown + "\n")
    return path
