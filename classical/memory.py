"""Resident memory of a model (issue 14, item 2): what the process really holds, beside the bytes
``state_bytes`` counts.

On a CPU the figure is the growth of the process's resident set (RSS, ``/proc/self/statm``) while a
model is built, measured after freed memory has been handed back to the system (``gc`` and glibc's
``malloc_trim``: without it, memory a build freed would still count). On CUDA it is the growth of the
allocated bytes. ``tensor_bytes`` counts every tensor a module holds (non-persistent buffers included),
so a hidden copy -- a dequantized weight cached between calls -- shows up there too.
"""

from __future__ import annotations

import ctypes
import gc
import os
from typing import Callable, TypeVar

import torch
from torch import nn

from .transform import _plain_tensors

T = TypeVar("T")


def release_freed_memory() -> None:
    """Collect garbage and return freed heap pages to the system (glibc ``malloc_trim``; a no-op elsewhere)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_bytes() -> int:
    """Resident set size of this process, in bytes (Linux ``/proc/self/statm``)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError as e:
        raise RuntimeError("rss_bytes needs Linux's /proc/self/statm; measure resident memory another way "
                           "on this system") from e


def resident_delta(build: Callable[[], T], device: str | torch.device = "cpu") -> tuple[T, int]:
    """``(build(), bytes it left resident)``: RSS growth on the CPU, allocated-bytes growth on CUDA,
    each measured after freed memory is released. Keep no other reference to what ``build`` makes."""
    dev = torch.device(device)
    release_freed_memory()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        before = torch.cuda.memory_allocated(dev)
        out = build()
        release_freed_memory()
        torch.cuda.synchronize(dev)
        return out, torch.cuda.memory_allocated(dev) - before
    before = rss_bytes()
    out = build()
    release_freed_memory()
    return out, rss_bytes() - before


def tensor_bytes(module: nn.Module) -> int:
    """Bytes of every distinct storage held by ``module``'s parameters and buffers (persistent or not)
    and by tensors kept as plain module attributes (a wrapper tensor subclass counts what it holds)."""
    seen, total = set(), 0
    for m in module.modules():
        tensors = [*m._parameters.values(), *m._buffers.values()]
        tensors += [v for v in vars(m).values() if isinstance(v, torch.Tensor)]
        for t in tensors:
            if t is None:
                continue
            for p in _plain_tensors(t):  # torchao's wrapper tensors: the tensors they hold
                s = p.untyped_storage()
                if s.data_ptr() in seen:
                    continue
                seen.add(s.data_ptr())
                total += s.nbytes()
    return total
