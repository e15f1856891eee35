"""Run a list of recipes against one model with the library's evaluation protocol
(:func:`qlite.classical.evaluate`), check targets, and write the JSON + Markdown results (the
compression studies: ``quantization.py``, ``sparsity_lowrank.py``)."""

from __future__ import annotations

import copy
import gc
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from qlite.classical import CompressionConfig, compress, evaluate, state_bytes
from qlite.classical.evaluation import results_markdown
from qlite.classical.memory import resident_delta
import study_io
from study_io import machine_info, normalize_machine

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One row: a label, a recipe (empty: the uncompressed model), the calibration set it uses, and an
    optional post-step turning the compressed model into a real-kernel one (e.g. a torchao export)."""

    label: str
    recipe: list[CompressionConfig]
    calib: str | None = None
    post: Callable[[nn.Module], nn.Module] | None = None
    build: Callable[[nn.Module, list | None], nn.Module] | None = None  # a reference library's own pipeline
    note: str = ""
    kernels: bool = True  # compress(kernels=...): real CPU kernels where a layer has one, else simulated


@dataclass
class Suite:
    rows: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)


def run_suite(model: nn.Module, entries: list[Entry], calib_sets: dict[str, list], tokens: torch.Tensor, *,
              eval_kw: dict, device=None, offload: bool = False, on_row: Callable[["Suite"], None] | None = None) -> Suite:
    """Compress (a copy of) ``model`` with each entry and evaluate it; a failing entry is recorded with
    its error instead of stopping the run. ``on_row(suite)`` is called after every entry (e.g. to write
    partial results)."""
    suite = Suite()
    ref_bytes = state_bytes(model)
    _warm_up()
    for e in entries:
        log.info("=== %s", e.label)
        t0, c0 = time.perf_counter(), time.process_time()
        times = {}
        try:
            calib = calib_sets.get(e.calib) if e.calib else None

            def build():
                if e.build is not None:
                    m, report = e.build(model, calib), None
                elif e.recipe:
                    res = compress(model, e.recipe, calib, device=device, offload=offload, kernels=e.kernels)
                    m, report = res.model, res.report
                else:
                    m, report = copy.deepcopy(model), None  # a copy, so its resident size is measured too
                times["seconds"] = time.perf_counter() - t0
                times["cpu"] = time.process_time() - c0  # CPU time of this process: robust to a shared machine
                return (m if e.post is None else e.post(m)), report

            # resident size of the model as built: RSS growth on the CPU (freed memory handed back first)
            (m, report), resident = resident_delta(build, device or "cpu")
            seconds, cpu_seconds = times["seconds"], times["cpu"]
            r = evaluate(m, tokens, label=e.label, reference_bytes=ref_bytes, resident_bytes=resident,
                         **eval_kw).to_dict()
            r["compress_seconds"] = seconds
            r["compress_cpu_seconds"] = cpu_seconds
            r["recipe"] = [c.to_dict() for c in e.recipe]
            r["calib"] = e.calib
            r["note"] = e.note
            if report is not None:
                errs = [x.output_rel_error for x in report.layers if x.output_rel_error is not None]
                r["mean_layer_output_rel_error"] = sum(errs) / len(errs) if errs else None
            suite.rows.append(r)
            log.info("%s: ppl %.3f, %d bytes, %.1fs compress", e.label, r["perplexity"], r["bytes"], seconds)
        except Exception as ex:  # record and go on: one backend failing must not lose the run
            log.warning("%s failed: %s", e.label, ex)
            suite.failures.append({"label": e.label, "error": f"{type(ex).__name__}: {ex}"[:400]})
        finally:
            m = None
            gc.collect()
        if on_row is not None:
            on_row(suite)
    return suite


def _warm_up() -> None:
    """The first quantization, kernel and matmul calls of a process load code and tables (~9 MB of RSS on the
    2-core CPU): done once before the rows, so no row's resident size carries it."""
    from qlite.classical import RTN

    for recipe in (RTN(4, group_size=32), RTN(8)):
        with torch.no_grad():
            for kernels in (True, False):
                compress(nn.Sequential(nn.Linear(64, 32)), recipe, kernels=kernels).model(torch.randn(2, 64))


def _row(rows, label):
    return next((r for r in rows if r["label"] == label), None)


def check_targets(rows: list[dict], targets: list[tuple]) -> list[dict]:
    """Evaluate targets of the form ``(name, method, baseline, kind, limit)``:

    * ``kind="increase_ratio"``: ``(ppl(method) - ppl(FP32)) / (ppl(baseline) - ppl(FP32)) <= limit``;
    * ``kind="relative"``: ``ppl(method) / ppl(FP32) - 1 <= limit``;
    * ``kind="worse_than"``: ``ppl(baseline) > ppl(method)`` (e.g. naive W8A8 worse than SmoothQuant).
    """
    fp = _row(rows, "FP32")
    out = []
    for name, method, baseline, kind, limit in targets:
        m, b = _row(rows, method), _row(rows, baseline) if baseline else None
        if fp is None or m is None or (baseline and b is None):
            out.append({"target": name, "value": None, "limit": limit, "met": None, "detail": "row missing"})
            continue
        if kind == "increase_ratio":
            inc_m, inc_b = m["perplexity"] - fp["perplexity"], b["perplexity"] - fp["perplexity"]
            v = inc_m / inc_b if inc_b > 0 else float("inf")
            detail = f"+{inc_m:.3f} vs +{inc_b:.3f}"
            met = v <= limit
        elif kind == "relative":
            v = m["perplexity"] / fp["perplexity"] - 1
            detail = f"{m['perplexity']:.3f} vs {fp['perplexity']:.3f}"
            met = v <= limit
        else:
            v = b["perplexity"] - m["perplexity"]
            detail = f"{baseline} {b['perplexity']:.3f} vs {method} {m['perplexity']:.3f}"
            met = v > 0
        out.append({"target": name, "value": v, "limit": limit, "met": met, "detail": detail})
    return out


def check_speed(rows: list[dict], targets: list[tuple]) -> list[dict]:
    """Speed targets ``(name, method, latency key, min ratio)``: ``method's key / FP32's key >= ratio``
    (keys of the latency record, e.g. ``decode_tokens_per_s``); rows of one run, one machine."""
    fp, out = _row(rows, "FP32"), []
    for name, method, key, limit in targets:
        m = _row(rows, method)
        if fp is None or m is None or key not in (m.get("latency") or {}) or key not in (fp.get("latency") or {}):
            out.append({"target": name, "value": None, "limit": limit, "met": None, "detail": "not run"})
            continue
        v = m["latency"][key] / fp["latency"][key]
        out.append({"target": name, "value": v, "limit": round(limit, 3), "met": v >= limit,
                    "detail": f"{method} {m['latency'][key]:.1f} vs FP32 {fp['latency'][key]:.1f} {key} ({m['kernel']})"})
    return out


def check_agreement(rows: list[dict], pairs: list[tuple]) -> list[dict]:
    """Cross-checks ``(ours, theirs, tolerance, why)``: ``|ppl_ours / ppl_theirs - 1| <= tolerance``."""
    out = []
    for ours, theirs, tol, why in pairs:
        a, b = _row(rows, ours), _row(rows, theirs)
        if a is None or b is None:
            out.append({"ours": ours, "theirs": theirs, "tolerance": tol, "value": None, "met": None, "why": why,
                        "detail": "did not run here (see failures)"})
            continue
        v = abs(a["perplexity"] / b["perplexity"] - 1)
        out.append({"ours": ours, "theirs": theirs, "tolerance": tol, "value": v, "met": v <= tol, "why": why,
                    "detail": f"{a['perplexity']:.3f} vs {b['perplexity']:.3f}"})
    return out


def write_results(stem: str | Path, *, title: str, setup: dict, suite: Suite, targets: list[dict],
                  agreement: list[dict], backends: dict, notes: list[str], extra: dict | None = None,
                  machine: dict | None = None) -> None:
    """Write ``stem.json`` and ``stem.md`` (``machine``: the record of where the rows were measured;
    default: this machine, now)."""
    stem = Path(stem)
    meta = normalize_machine(machine or machine_info())
    payload = {"title": title, "machine": meta, "setup": setup, "rows": suite.rows, "failures": suite.failures,
               "targets": targets, "crosschecks": agreement, "backends": backends, "notes": notes, **(extra or {})}
    L = [f"# {title}", "", f"Measured {meta['date']} on {meta['cpu']} ({meta['cpu_count']} cores, "
         f"{meta['torch_threads']} torch threads)" + (f", GPU {meta['cuda_device']}" if meta["cuda_device"] else ", no GPU")
         + f"; torch {meta['torch']}, transformers {meta['transformers']}, torchao {meta['torchao']}, "
         f"bitsandbytes {meta['bitsandbytes']}.", "", "## Setup", ""]
    L += [f"- {k}: {v}" for k, v in setup.items()]
    L += ["", "## Results", "", results_markdown(suite.rows, reference="FP32"), ""]
    L += ["Compression time (wall clock, and CPU time of the process) and calibration per row:", "",
          "| method | calibration | compress s | compress CPU s | mean layer output rel. err | note |", "|---|---|---:|---:|---:|---|"]
    for r in suite.rows:
        me = r.get("mean_layer_output_rel_error")
        cpu = r.get("compress_cpu_seconds")
        L.append(f"| {r['label']} | {r['calib'] or '-'} | {r['compress_seconds']:.1f} | {'' if cpu is None else f'{cpu:.1f}'} | "
                 f"{'' if me is None else f'{me:.4g}'} | {r['note']} |")
    L += ["", "## Targets (issues 5 and 14)", "", "| target | value | limit | met | detail |", "|---|---:|---:|---|---|"]
    for t in targets:
        v = "" if t["value"] is None else f"{t['value']:.3f}"
        L.append(f"| {t['target']} | {v} | {t['limit']} | {t['met']} | {t['detail']} |")
    L += ["", "## Cross-checks against the reference libraries", "", "| ours | theirs | abs. rel. ppl diff | tolerance | met | detail | why this tolerance |", "|---|---|---:|---:|---|---|---|"]
    for a in agreement:
        v = "" if a["value"] is None else f"{a['value']:.4f}"
        L.append(f"| {a['ours']} | {a['theirs']} | {v} | {a['tolerance']} | {a['met']} | {a['detail']} | {a['why']} |")
    L += ["", "## Real-kernel backends on this machine", ""] + [f"- {k}: {v}" for k, v in backends.items()]
    if suite.failures:
        L += ["", "## Rows that did not run here", ""] + [f"- {f['label']}: {f['error']}" for f in suite.failures]
    if extra:
        for k, v in extra.items():
            L += ["", f"## {k}", "", "```", json.dumps(v, indent=1, default=str), "```"]
    L += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    study_io.write_results(stem.parent, stem.name, "\n".join(L), payload)
