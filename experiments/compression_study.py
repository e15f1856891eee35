"""The issue-6 study (sparsity, low-rank, KV cache, GQA, distillation) on one model: the KV-cache
rows and the JSON + Markdown results (used by ``experiments/sparsity_lowrank.py``). The weight-
compression rows go through :func:`compression_suite.run_suite` like the quantization study."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from torch import nn

from compression_suite import Suite
from qlite.classical.evaluation import results_markdown
from qlite.classical.kvcache import h2o_cache, sink_cache, streaming_perplexity
from study_io import machine_info, normalize_machine, write_results

log = logging.getLogger(__name__)


def kv_cache_rows(model: nn.Module, tokens: torch.Tensor, *, seqlen: int, n_windows: int,
                  budgets: tuple[float, ...] = (0.2, 0.5), sinks: int = 4) -> list[dict]:
    """Perplexity, peak cache bytes and per-token decode time of the full cache, H2O and attention sinks
    at each ``budget`` (a fraction of ``seqlen``), every window decoded token by token.

    All rows prefill the same first ``min(budgets) * seqlen`` tokens in one forward (nothing is evicted
    before the budget is reached, so this changes no logit) and decode the rest one token at a time, so
    their decode times compare like for like."""
    p = max(1, int(min(budgets) * seqlen))
    plans = [("full cache", None, None)]
    for b in budgets:
        n = int(b * seqlen)
        plans += [(f"H2O {b:.0%}", lambda n=n: h2o_cache(n), n), (f"sinks {b:.0%}", lambda n=n: sink_cache(n, sinks=sinks), n)]
    rows = []
    for label, make, n in plans:
        t0 = time.perf_counter()
        r = streaming_perplexity(model, tokens, seqlen=seqlen, n_windows=n_windows, make_cache=make, prefill=p)
        dt = time.perf_counter() - t0
        r.update(label=label, budget_tokens=n, prefill=p, seconds=dt,
                 decode_ms_per_token=1e3 * dt / (n_windows * (seqlen - p)))
        rows.append(r)
        log.info("%s: ppl %.3f, cache %d bytes, %.1fs", label, r["perplexity"], r["cache_bytes"], dt)
    return rows


def kv_markdown(rows: list[dict]) -> str:
    full = next((r for r in rows if r["label"] == "full cache"), None)
    L = ["| cache | budget (tokens) | ppl | Δppl vs full | peak cache bytes | cache vs full | decode ms/token (wall, incl. prefill) |",
         "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        d = "" if full is None else f"{r['perplexity'] - full['perplexity']:+.3f}"
        ratio = "" if full is None else f"{r['cache_bytes'] / full['cache_bytes']:.2f}"
        L.append(f"| {r['label']} | {r['budget_tokens'] or 'all'} | {r['perplexity']:.3f} | {d} | {r['cache_bytes']:,} | "
                 f"{ratio} | {r['decode_ms_per_token']:.1f} |")
    return "\n".join(L)


def kernel_markdown(rows: list[dict]) -> str:
    """The 2:4 semi-structured MLP timing rows of :func:`~qlite.classical.sparse.benchmark_semi_structured_mlp`."""
    L = ["| hidden -> intermediate | tokens | dtype | 2:4 kernel | gate x | up x | down x | MLP dense / 2:4 ms (eager) | "
         "MLP x (eager) | MLP dense / 2:4 ms (CUDA graph) | MLP x (graph) | max abs diff |",
         "|---|---:|---|---|---:|---:|---:|---|---:|---|---:|---:|"]
    errors: dict[tuple, list[str]] = {}  # one line per distinct failure, not one per row
    for r in rows:
        head = f"| {r['hidden']} -> {r['intermediate']} | {r['tokens']} | {r['dtype']} | {r.get('kernel', 'cusparselt')} |"
        if "error" in r:
            errors.setdefault((r.get("kernel"), r["error"]), []).append(f"{r['hidden']}x{r['intermediate']}/{r['tokens']}/{r['dtype']}")
            continue
        def ms(k):
            return f"{r[k]['dense_ms']:.4f} / {r[k]['sparse_ms']:.4f}"

        graph = (ms("mlp_graph"), f"{r['mlp_graph']['speedup']:.2f}") if "mlp_graph" in r else ("", "")
        L.append(head + " " + " | ".join(f"{r[k]['speedup']:.2f}" for k in ("gate", "up", "down")) +
                 f" | {ms('mlp')} | {r['mlp']['speedup']:.2f} | {graph[0]} | {graph[1]} | {r['max_abs_diff']:.2e} |")
    for (kernel, err), where in errors.items():
        L.append(f"\n{kernel} failed in {len(where)} of the rows ({where[0]} ... {where[-1]}): {err}")
    return "\n".join(L)


def write_study_results(stem: str | Path, *, title: str, setup: dict, suite: Suite, kv_rows: list[dict],
                        targets: list[dict], notes: list[str], extra: dict | None = None,
                        machine: dict | None = None) -> None:
    """Write ``stem.json`` and ``stem.md``: the compression rows, the KV-cache rows, the targets, notes."""
    stem = Path(stem)
    meta = normalize_machine(machine or machine_info())
    payload = {"title": title, "machine": meta, "setup": setup, "rows": suite.rows, "failures": suite.failures,
               "kv_cache": kv_rows, "targets": targets, "notes": notes, **(extra or {})}
    L = [f"# {title}", "", f"Measured {meta['date']} on {meta['cpu']} ({meta['cpu_count']} cores, "
         f"{meta['torch_threads']} torch threads)" + (f", GPU {meta['cuda_device']}" if meta["cuda_device"] else ", no GPU")
         + f"; torch {meta['torch']}, transformers {meta['transformers']}.", "", "## Setup", ""]
    L += [f"- {k}: {v}" for k, v in setup.items()]
    L += ["", "## Weight compression", "", results_markdown(suite.rows, reference="FP32"), "",
          "Compression time and calibration per row:", "",
          "| method | calibration | compress s | compress CPU s | mean layer output rel. err | note |", "|---|---|---:|---:|---:|---|"]
    for r in suite.rows:
        me = r.get("mean_layer_output_rel_error")
        L.append(f"| {r['label']} | {r['calib'] or '-'} | {r['compress_seconds']:.1f} | {r.get('compress_cpu_seconds', 0):.1f} | "
                 f"{'' if me is None else f'{me:.4g}'} | {r['note']} |")
    if kv_rows:
        L += ["", "## KV cache (token-by-token decoding of each window)", "", kv_markdown(kv_rows)]
    L += ["", "## Targets (issue 6)", "", "| target | value | limit | met | detail |", "|---|---:|---:|---|---|"]
    for t in targets:
        v = "" if t["value"] is None else f"{t['value']:.3f}"
        L.append(f"| {t['target']} | {v} | {t['limit']} | {t['met']} | {t['detail']} |")
    if suite.failures:
        L += ["", "## Rows that did not run here", ""] + [f"- {f['label']}: {f['error']}" for f in suite.failures]
    for k, v in (extra or {}).items():
        L += ["", f"## {k}", "", v if isinstance(v, str) else "```\n" + json.dumps(v, indent=1, default=str) + "\n```"]
    L += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    write_results(stem.parent, stem.name, "\n".join(L), payload)


def write_kernel_results(stem: str | Path, rows: list[dict], *, setup: dict, machine: dict | None = None,
                         notes: list[str] = ()) -> None:
    """``stem.json`` / ``stem.md`` for the 2:4 kernel timing (a GPU run)."""
    stem = Path(stem)
    meta = normalize_machine(machine or machine_info())
    payload = {"machine": meta, "setup": setup, "rows": rows, "notes": list(notes)}
    L = ["# 2:4 semi-structured sparse kernels: SwiGLU MLP matmuls, dense vs 2:4", "",
         f"Measured {meta['date']} on GPU {meta['cuda_device']} (host CPU {meta['cpu']}); torch {meta['torch']}.", "",
         "Random weights of the given shapes (SmolLM2-135M's, and larger models' for context) pruned 2:4 by magnitude (no model file needed); median of CUDA-event "
         "timings; speed-up (x) = dense / 2:4 (> 1 means the sparse kernel is faster). "
         "Eager columns time each call as a model runs it (host overhead included); the CUDA-graph columns replay the "
         "whole MLP, so they time the kernels alone.", ""]
    L += [f"- {k}: {v}" for k, v in setup.items()]
    L += ["", kernel_markdown(rows), ""]
    if notes:
        L += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    write_results(stem.parent, stem.name, "\n".join(L), payload)
