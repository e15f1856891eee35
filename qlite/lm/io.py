"""Adapter weights apart from the base: ``save_adapters`` / ``load_adapters`` (safetensors + JSON).

The directory holds ``adapters.safetensors`` (every tensor of the qlite.lm modules, without the base
layers they wrap) and ``adapters.json`` (format, the injection records -- config, targets, seed --,
the SHA-256 of the tensor file and a fingerprint of the base model). Loading re-injects the same
configs into a fresh base and refuses a base with another fingerprint: adapters trained on one base
are meaningless on another.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

FORMAT = "qlite-adapters"
VERSION = 1
TENSORS, INDEX = "adapters.safetensors", "adapters.json"
_SAMPLE = 1 << 14  # values hashed per tensor (evenly strided): a fingerprint, not a checksum of every byte


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("saving adapters needs safetensors: pip install 'qlite[data]'") from err
    return st


def base_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's state names, shapes, dtypes and an evenly strided sample of each tensor's values."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        if not isinstance(t, torch.Tensor):
            continue
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        flat = t.detach().reshape(-1)
        if flat.numel():
            # float64: float32 rounds indices above 2**24 (SmolLM2's 28M-entry embedding) past the end
            idx = torch.linspace(0, flat.numel() - 1, min(flat.numel(), _SAMPLE), dtype=torch.float64,
                                 device=flat.device).long()
            sample = flat[idx].to("cpu")
            h.update((sample.float() if sample.is_floating_point() else sample.to(torch.int64)).numpy().tobytes())
    return h.hexdigest()


def _adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    from .inject import adapter_modules

    out = {}
    for name, m in adapter_modules(model).items():
        for k, v in m.state_dict().items():
            if not k.startswith("base."):
                out[f"{name}.{k}" if name else k] = v.detach().cpu().contiguous()
    return out


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_adapters(model: nn.Module, directory, *, overwrite: bool = False) -> Path:
    """Write the adapter weights and configs of an injected ``model`` to ``directory`` (created).

    Refuses a directory that already holds adapters unless ``overwrite=True``; each file is written
    to a temporary name and renamed (the JSON last), so an interrupted save never leaves a mixed pair.
    Returns the path of the JSON index.
    """
    records = getattr(model, "qlite_adapters", None)
    if not records:
        raise ValueError("the model holds no adapters injected by qlite.lm.inject; nothing to save")
    directory = Path(directory)
    if (directory / INDEX).exists() and not overwrite:
        raise FileExistsError(f"{str(directory)!r} already holds adapters ({INDEX}); pass overwrite=True or choose "
                              "another directory (nothing was written)")
    directory.mkdir(parents=True, exist_ok=True)
    st = _safetensors()
    tensors = _adapter_state(model)
    _atomic(directory / TENSORS, lambda tmp: st.save_file(tensors, tmp, metadata={"format": FORMAT}))
    index = {"format": FORMAT, "version": VERSION, "base_fingerprint": model.qlite_base_fingerprint,
             "base_class": type(model).__name__, "records": records, "tensors": sorted(tensors),
             "sha256": _sha256(directory / TENSORS)}
    _atomic(directory / INDEX, lambda tmp: Path(tmp).write_text(json.dumps(index, indent=1)))
    return directory / INDEX


def read_adapter_index(directory) -> dict:
    path = Path(directory) / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"no adapters in {str(directory)!r} ({INDEX} is missing)")
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(path)!r} is not readable JSON: {err}") from err
    if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
        raise ValueError(f"{str(path)!r} is not a qlite adapter index (format {FORMAT} version {VERSION})")
    return index


def load_adapters(model: nn.Module, directory, *, inplace: bool = False, check_base: bool = True) -> nn.Module:
    """Inject the adapters saved in ``directory`` into ``model`` (a fresh base) and load their weights.

    Raises:
        ValueError: the base's fingerprint differs from the one the adapters were trained on (pass
            ``check_base=False`` only if you know why), the tensor file does not match its SHA-256, or
            tensors are missing / of another shape.
    """
    from .configs import config_from_dict
    from .inject import inject

    index = read_adapter_index(directory)
    if getattr(model, "qlite_adapters", None):
        raise ValueError("the model already holds qlite.lm adapters; load onto the base model they were trained on")
    if check_base:
        have = base_fingerprint(model)
        if have != index["base_fingerprint"]:
            raise ValueError(f"the adapters in {str(directory)!r} were trained on another base model (fingerprint "
                             f"{index['base_fingerprint'][:12]}..., this {type(model).__name__} has {have[:12]}...); "
                             "load them onto the same base weights")
    path = Path(directory) / TENSORS
    if not path.is_file() or _sha256(path) != index["sha256"]:
        raise ValueError(f"{str(path)!r} is missing or does not match the SHA-256 recorded in {INDEX}")
    out = model
    for k, rec in enumerate(index["records"]):
        out = inject(out, config_from_dict(rec["config"]), target_modules=rec["targets"], seed=rec["seed"],
                     inplace=inplace or k > 0)
    saved = _safetensors().load_file(str(path))
    current = _adapter_state(out)
    missing, extra = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
    shapes = [f"{k}: saved {tuple(saved[k].shape)} vs model {tuple(v.shape)}" for k, v in current.items()
              if k in saved and saved[k].shape != v.shape]
    if missing or extra or shapes:
        raise ValueError(f"the adapters in {str(directory)!r} do not fit this model: missing {missing[:4]}, unexpected "
                         f"{extra[:4]}, shapes {shapes[:4]}")
    state = out.state_dict()
    with torch.no_grad():
        for k, v in saved.items():
            state[k].copy_(v.to(state[k].device, state[k].dtype))
    return out
