"""Timing a call: warm up, synchronise the device around the timed region, repeat and report the
median (and the spread), so that run-time compilation and allocator growth stay out of the figure.
Used by ``qlite spectrum coefficients`` and the benchmarks in ``experiments/``."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device, repeats: int = 10, warmup: int = 2,
              max_seconds: float | None = None) -> dict:
    """Median / min / max milliseconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs.

    ``max_seconds`` stops early (after at least one timed run) when a case is slow.
    """
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1 (the median of no runs is undefined), got {repeats!r}")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(1e3 * (time.perf_counter() - t0))
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    return {"ms": statistics.median(times), "ms_min": min(times), "ms_max": max(times), "runs": len(times)}
