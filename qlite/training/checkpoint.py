"""Checkpoints: tensors in safetensors (never pickle), everything else in JSON, written atomically.

A checkpoint directory holds ``checkpoint.json`` and one ``weights-<epoch>-<n>.safetensors``. Each
file is written under a temporary name, flushed, fsync-ed and renamed into place; the JSON, which
names the weights file and its SHA-256, is renamed last. A crash at any moment (``kill -9``
included) therefore leaves the previous complete checkpoint readable: the previous weights file is
deleted only after the new JSON is in place. What an interrupted save can leave behind (a
temporary file, or a weights file no index names yet) is removed by the next save: qlite weights
files are recognised by the ``format`` entry of their safetensors header, so a user's file that only
looks like ours is left alone.

Integrity: the JSON carries ``sha256`` (of the weights file) and ``index_sha256`` (of the JSON's own
content, canonical form without that field); an edited epoch, learning rate or history is refused
on loading instead of being used silently.

The weights file holds the model's ``state_dict`` (``model.<name>``), the optimiser's tensor state
(``optim.<param>.<name>``) and RNG states (``rng.<name>``, uint8). The JSON holds the format
version, the epoch, the model's class and (optional) spec, the fit configuration, the optimiser's
hyper-parameters and scalar state, the training history and whatever the caller adds under
``info``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

FORMAT = "qlite-checkpoint"
VERSION = 1
INDEX = "checkpoint.json"


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("checkpoints need safetensors: pip install 'qlite[data]'") from err
    return st


def _atomic_write(path: Path, write) -> None:
    """Write through ``write(file_path)`` to a temporary sibling, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass


def write_text_atomic(path, text: str) -> None:
    """``path.write_text(text)`` that never leaves a half-written file (temporary file, then rename)."""
    path = Path(path)
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def has_checkpoint(directory) -> bool:
    return (Path(directory) / INDEX).is_file()


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the JSON index and the tensors, split by role."""

    info: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict | None
    rng: dict[str, torch.Tensor]


def _split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, entry in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(directory, *, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    rng: dict[str, torch.Tensor], info: dict[str, Any],
                    state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a checkpoint of ``model`` (and ``optimizer``) after ``epoch`` into ``directory``.

    ``state``: the tensors to store instead of the whole ``model.state_dict()`` (e.g. only the
    adapter weights of a model whose base is frozen). Returns the path of the JSON index.
    """
    st = _safetensors()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict() if state is None else state
    tensors = {f"model.{k}": v.detach().cpu().clone().contiguous() for k, v in state.items()}
    opt_meta = None
    if optimizer is not None:
        opt_tensors, opt_meta = _split_optimizer_state(optimizer.state_dict())
        tensors.update({k: v.detach().cpu().clone().contiguous() for k, v in opt_tensors.items()})
    tensors.update({f"rng.{k}": v.detach().cpu().clone().contiguous() for k, v in rng.items()})
    # Only the weights file named by the current index is ever deleted (after the new index is in
    # place): other files in the directory, even ones that look like ours, are left alone.
    previous = None
    if (directory / INDEX).is_file():
        try:
            previous = json.loads((directory / INDEX).read_text()).get("weights")
        except (OSError, json.JSONDecodeError, AttributeError):
            previous = None
    taken = {p.name for p in directory.glob("weights-*.safetensors")}
    n = 0
    while (name := f"weights-{epoch:06d}-{n}.safetensors") in taken:
        n += 1
    weights = directory / name
    _atomic_write(weights, lambda tmp: st.save_file(tensors, tmp, metadata={"format": FORMAT, "epoch": str(epoch)}))
    index = {"format": FORMAT, "version": VERSION, "epoch": epoch, "weights": name, "sha256": _sha256(weights),
             "model_class": type(model).__name__, "optimizer": opt_meta, **info}
    index = json.loads(json.dumps(index, default=_json_default))  # the form a reader sees (tuples -> lists, ...)
    index["index_sha256"] = _index_hash(index)
    text = json.dumps(index, indent=1)
    _atomic_write(directory / INDEX, lambda tmp: Path(tmp).write_text(text))
    if previous and previous != name and Path(previous).name == previous:
        (directory / previous).unlink(missing_ok=True)
    _remove_stale(directory, keep=name)
    return directory / INDEX


def _index_hash(index: dict) -> str:
    body = {k: v for k, v in index.items() if k != "index_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _is_qlite_weights(path: Path) -> bool:
    """A safetensors file whose header metadata says it is a qlite checkpoint's weights."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n < 100_000_000:
                return False
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return False
    return isinstance(header, dict) and (header.get("__metadata__") or {}).get("format") == FORMAT


def _remove_stale(directory: Path, keep: str) -> None:
    """Delete what interrupted saves left: our temporary files and qlite weights files that the
    index (just written, naming ``keep``) does not name."""
    for p in directory.glob(".weights-*.tmp"):
        p.unlink(missing_ok=True)
    for p in directory.glob(f".{INDEX}.*.tmp"):
        p.unlink(missing_ok=True)
    for p in directory.glob("weights-*.safetensors"):
        if p.name != keep and _is_qlite_weights(p):
            p.unlink(missing_ok=True)


def _json_default(obj):
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint's JSON")


def read_index(directory) -> dict[str, Any]:
    """The JSON index of the checkpoint in ``directory``.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: the JSON is unreadable or not a qlite checkpoint.
    """
    path = Path(directory) / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint in {str(directory)!r} ({INDEX} is missing)")
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"checkpoint index {str(path)!r} is unreadable: {err}") from err
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a qlite checkpoint (format {info.get('format') if isinstance(info, dict) else None!r})")
    if info.get("version") != VERSION:
        raise ValueError(f"checkpoint {str(path)!r} has version {info.get('version')!r}; this qlite reads version {VERSION}")
    if "index_sha256" not in info:
        raise ValueError(f"checkpoint index {str(path)!r} has no integrity hash (index_sha256): it was written by an "
                         "older qlite or edited by hand; start a new run (its settings cannot be trusted)")
    if _index_hash(info) != info["index_sha256"]:
        raise ValueError(f"checkpoint index {str(path)!r} does not match its index_sha256: it was edited or is corrupt "
                         "(a changed epoch, lr or history would be used silently); restore it or start a new run")
    for key in ("weights", "sha256", "epoch"):
        if key not in info:
            raise ValueError(f"checkpoint index {str(path)!r} lacks the {key!r} field; it is not a complete qlite checkpoint")
    return info


def load_checkpoint(directory, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and verify (SHA-256) the checkpoint in ``directory``."""
    st = _safetensors()
    info = read_index(directory)
    weights = Path(directory) / info["weights"]
    if not weights.is_file():
        raise ValueError(f"checkpoint in {str(directory)!r} names {info['weights']!r}, which is missing")
    if _sha256(weights) != info["sha256"]:
        raise ValueError(f"{str(weights)!r} does not match the SHA-256 recorded in {INDEX}; the checkpoint is corrupt")
    tensors = st.load_file(str(weights), device=str(map_location))
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
    opt = None
    if info.get("optimizer") is not None:
        opt = _join_optimizer_state({k: v for k, v in tensors.items() if k.startswith("optim.")}, info["optimizer"])
    return Checkpoint(info, model, opt, rng)


def model_signature(model: torch.nn.Module) -> str:
    """The module tree as ``repr`` prints it (layer kinds, activations, omega_0, encodings...), with the
    simulator backend left out: a layer may resume on another backend."""
    return re.sub(r",? ?backend='[^']*'", "", repr(model))


def signature_difference(stored: str, current: str, limit: int = 3) -> str:
    """The lines where two model signatures differ, as ``checkpoint: ... / this model: ...``
    (only the differing settings, not the whole model)."""
    import difflib

    a, b = stored.splitlines(), current.splitlines()
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        old = " | ".join(x.strip() for x in a[i1:i2]) or "(nothing)"
        new = " | ".join(x.strip() for x in b[j1:j2]) or "(nothing)"
        out.append(f"checkpoint: {old[:200]} / this model: {new[:200]}")
        if len(out) == limit:
            break
    return "; ".join(out)


def check_compatible(model: torch.nn.Module, ckpt: Checkpoint, directory,
                     state: dict[str, torch.Tensor] | None = None) -> None:
    """Raise ``ValueError`` naming the difference when ``model`` is not the model that wrote ``ckpt``
    (``state``: the subset of the model's tensors such a checkpoint stores, see :func:`save_checkpoint`)."""
    want_class = ckpt.info.get("model_class")
    state = model.state_dict() if state is None else state
    problems = []
    if want_class != type(model).__name__:
        problems.append(f"it was written by a {want_class}, this model is a {type(model).__name__}")
    elif ckpt.info.get("model_repr") not in (None, model_signature(model)):
        problems.append("the layers differ in their settings: "
                        + signature_difference(ckpt.info["model_repr"], model_signature(model)))
    missing = sorted(set(ckpt.model_state) - set(state))
    extra = sorted(set(state) - set(ckpt.model_state))
    if missing or extra:
        problems.append(f"tensors only in the checkpoint: {missing[:5]}, only in the model: {extra[:5]}")
    shapes = [f"{k}: {tuple(ckpt.model_state[k].shape)} vs {tuple(v.shape)}" for k, v in state.items()
              if k in ckpt.model_state and ckpt.model_state[k].shape != v.shape]
    if shapes:
        problems.append("shapes differ (checkpoint vs model): " + "; ".join(shapes[:5]))
    if problems:
        raise ValueError(f"the checkpoint in {str(directory)!r} does not belong to this model: " + "; ".join(problems)
                         + ". Build the same model (see its JSON) or use a new checkpoint directory.")
