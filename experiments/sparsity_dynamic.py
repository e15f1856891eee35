"""Dynamic and structural sparsity of SmolLM2-135M on WikiText-2 (issue 17, items 1, 2, 5), with the protocol
and helpers of experiments/sparsity_lowrank.py: activation sparsity (top-K, calibrated thresholds, a low-rank
neuron predictor), static layer skipping, block-wise weight sharing with and without healing, and a batch-1
decode timing of one MLP (dense vs the sparse decode path). Writes experiments/results/sparsity_dynamic.{md,json}.

    python experiments/sparsity_dynamic.py --quick                       # minutes: checks the pipeline
    python experiments/sparsity_dynamic.py --windows 4 --calib 8 --threads 1   # the CPU run in results/
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch

from qlite.classical import ActivationSparsity, LayerSkip, NeuronPredictor, ShareLayers, compress
from qlite.classical.dynamic import SparseMLP, kept_count, mlp_modules
from qlite.classical.evaluation import calibration_segments, corpus_tokens, split_halves
from qlite.classical.models import load_causal_lm
from qlite.paths import _REPO, data_file

from compression_study import write_study_results
from compression_suite import Entry, check_targets, run_suite
from study_io import machine_info

SPARSITIES = (0.25, 0.5, 0.7)
TARGETS = [
    ("threshold 50%: ppl at most +5% of FP32", "threshold 50%", None, "relative", 0.05),
    ("predictor 50%: ppl at most +5% of FP32", "predictor 50%", None, "relative", 0.05),
    ("static skip 2 of 30 blocks: ppl at most +10%", "skip 2 blocks", None, "relative", 0.10),
]


def time_mlp(model, sparsity: float, mode: str, reps: int, generator) -> dict:
    """Batch-1 decode time of block 0's MLP: dense nn.Module vs SparseMLP's decode path (median of ``reps``)."""
    name, mlp = mlp_modules(model)[len(mlp_modules(model)) // 2]
    width = mlp.up_proj.out_features
    k = kept_count(width, sparsity)
    hidden = mlp.up_proj.in_features
    pred = (torch.randn(hidden, 64, generator=generator), torch.randn(64, width, generator=generator))
    sp = SparseMLP(mlp, mode, k=k, predictor=pred if mode == "predictor" else None) if mode != "threshold" else \
        SparseMLP(mlp, "threshold", threshold=0.0)
    if mode == "threshold":  # a threshold that keeps k neurons of this input, so the row compares like with like
        x0 = torch.randn(1, 1, hidden, generator=generator)
        sp.threshold.fill_(float(sp.activations(x0).abs().reshape(-1).sort(descending=True).values[k]))
    xs = [torch.randn(1, 1, hidden, generator=generator) for _ in range(reps)]

    def bench(f):
        for x in xs[:20]:
            f(x)
        ts = []
        for x in xs:
            t0 = time.perf_counter()
            f(x)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    with torch.no_grad():
        d, s = bench(mlp), bench(sp)
    return {"mlp": name, "mode": mode, "sparsity": sparsity, "k": k, "dense_us": 1e6 * d, "sparse_us": 1e6 * s,
            "speedup": d / s, "bytes_read_fraction": sp.bytes_read_fraction(k)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-wheel")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--calib", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--decode-tokens", type=int, default=8)
    p.add_argument("--heal-steps", type=int, default=20)
    p.add_argument("--predictor-steps", type=int, default=300)
    p.add_argument("--mlp-reps", type=int, default=300)
    p.add_argument("--only", default="")
    p.add_argument("--out", default=str(_REPO / "experiments" / "results" / "sparsity_dynamic"))
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.quick:
        a.windows, a.calib, a.heal_steps, a.predictor_steps, a.mlp_reps = 1, 2, 2, 20, 30
    model, tok = load_causal_lm(a.model)
    first, second = split_halves(data_file("wikitext2_test.txt").read_text())
    eval_tokens, calib_tokens = corpus_tokens(second, tok), corpus_tokens(first, tok)
    wiki = f"wikitext2 first half, {a.calib}x{a.seqlen}"
    calib_sets = {wiki: calibration_segments(calib_tokens, a.calib, a.seqlen, 0)}
    details: dict[str, dict] = {}

    def via(label, cfg):
        def build(m, calib):
            res = compress(m, [cfg], calib)
            recs = res.report.layers
            d = {}
            for key in ("recall", "calib_sparsity", "bytes_read_fraction", "cos_in_out", "heal_loss_first", "heal_loss_last"):
                vals = [r.extra[key] for r in recs if key in r.extra]
                if vals:
                    d[key] = sum(vals) / len(vals) if key in ("recall", "calib_sparsity", "bytes_read_fraction") else vals
            if isinstance(cfg, LayerSkip):
                d["skipped_blocks"] = [r.name for r in recs]
            details[label] = d
            return res.model
        return Entry(label, [cfg], wiki if cfg.requires_calibration else None, build=build)

    entries = [Entry("FP32", [])]
    for s in SPARSITIES:
        pct = f"{round(100 * s)}%"
        entries += [via(f"topk {pct}", ActivationSparsity(s, method="topk")),
                    via(f"threshold {pct}", ActivationSparsity(s, method="threshold")),
                    via(f"predictor {pct}", NeuronPredictor(rank=64, sparsity=s, steps=a.predictor_steps))]
    entries += [via(f"skip {n} blocks", LayerSkip(n_layers=n)) for n in (2, 4, 6)]
    entries += [via("share 2-block groups", ShareLayers(2)),
                via(f"share 2-block groups + healing {a.heal_steps} steps", ShareLayers(2, heal_steps=a.heal_steps))]
    if a.only:
        keep = {x.strip() for x in a.only.split(",")} | {"FP32"}
        entries = [e for e in entries if e.label in keep]
    g = torch.Generator().manual_seed(0)
    mlp_rows = [time_mlp(model, s, mode, a.mlp_reps, g) for s in SPARSITIES for mode in ("topk", "threshold", "predictor")]
    logging.info("MLP timing: %s", [(r["mode"], r["sparsity"], round(r["speedup"], 2)) for r in mlp_rows])
    machine = machine_info()

    def publish(suite, final=False):
        rows = [*suite.rows]
        for r in rows:
            r.setdefault("details", details.get(r["label"], {}))
        tbl = ["| MLP | mode | sparsity | K | dense us | sparse us | speedup | weight bytes read vs dense |",
               "|---|---|---:|---:|---:|---:|---:|---:|"]
        tbl += [f"| {r['mlp']} | {r['mode']} | {r['sparsity']:g} | {r['k']} | {r['dense_us']:.0f} | {r['sparse_us']:.0f} | "
                f"{r['speedup']:.2f} | {r['bytes_read_fraction']:.3f} |" for r in mlp_rows]
        det = ["| row | mean predictor recall (held-out) | calib sparsity reached | bytes read vs dense MLP | skipped | heal KL first -> last |",
               "|---|---:|---:|---:|---|---|"]
        for r in rows:
            d = r["details"]
            heal = f"{d['heal_loss_first'][0]:.3f} -> {d['heal_loss_last'][0]:.3f}" if "heal_loss_first" in d else ""
            det.append(f"| {r['label']} | {d.get('recall', float('nan')):.3f} | {d.get('calib_sparsity', float('nan')):.4f} | "
                       f"{d.get('bytes_read_fraction', float('nan')):.3f} | {', '.join(d.get('skipped_blocks', []))} | {heal} |")
        speed = [r for r in mlp_rows if r["sparsity"] == 0.5 and r["mode"] in ("threshold", "predictor")]
        targets = check_targets(rows, TARGETS) + [
            {"target": f"50% {r['mode']}: batch-1 MLP decode >= 1.3x dense", "value": r["speedup"], "limit": 1.3,
             "met": r["speedup"] >= 1.3, "detail": f"{r['sparse_us']:.0f} vs {r['dense_us']:.0f} us, bytes read "
             f"{r['bytes_read_fraction']:.2f} of dense"} for r in speed]
        pr = next((r for r in rows if r["label"] == "predictor 50%"), None)
        if pr is not None:
            rec = pr["details"].get("recall")
            targets.append({"target": "predictor recall at 50% >= 0.9", "value": rec, "limit": 0.9,
                            "met": None if rec is None else rec >= 0.9, "detail": "mean over the 30 MLPs, held-out calibration tokens"})
        setup = {
            "machine": "2-core CPU, torch 2.13, 1 thread (shared with other engineers' jobs: timings are noisy)",
            "model": f"{a.model} (SmolLM2-135M-Instruct, the wheel's GGUF dequantized to float32 = the FP32 row)",
            "perplexity": f"wikitext2_test.txt second half, {a.windows} non-overlapping windows of {a.seqlen} tokens",
            "calibration": wiki,
            "latency": f"prompt 128 eval tokens, batch 1, {a.decode_tokens} greedy decode tokens with KV cache, median of {a.repeats}",
            "MLP timing": f"one SmolLM2 MLP (576 -> 1536 -> 576), batch 1, median of {a.mlp_reps} calls, random inputs",
            "rows": f"{len(rows) + len(suite.failures)} of {len(entries)}" + ("" if final else " (run in progress)"),
            "command": "python experiments/sparsity_dynamic.py " + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if k not in ("out", "quick", "only") and v not in ("", None)),
        }
        notes = [
            "Activation sparsity: per token K = (1 - sparsity) x 1536 intermediate neurons pass to down_proj. topk: the K "
            "largest |h| (Q-Sparse); threshold: one |h| threshold per MLP placed at the sparsity quantile of calibration "
            "activations (TEAL-style, on the MLP's intermediate activations rather than TEAL's projection inputs); "
            "predictor: rank-64 (x A) B scores trained 1 x BCE on the calibration tokens, top-K of its scores.",
            "Speed labels: SparseMLP's batch-1 decode path gathers the kept rows (index_select) of down_proj^T (all methods) and of "
            "gate/up (predictor only), so weight bytes read per token fall; topk / threshold still read all of gate and up "
            "(the mask needs h). Prompts (several tokens) compute densely and multiply by the mask.",
            "Layer skipping is static (blocks replaced by identities, importance 1 - cos(in, out) on calibration tokens; the "
            "first block is always kept). The dynamic per-token variant (LayerSkip(threshold=...)) exists in the library "
            "but saves no compute and has no row here.",
            "Sharing: adjacent blocks (0,1), (2,3), ... share their attention and MLP linear weights (mean init); norms stay "
            "per block. Bytes count each shared tensor once (state_bytes). Healing: forward-KL distillation from the FP32 "
            "model on the calibration segments, AdamW lr 1e-4.",
            "The machine is shared by 4 engineers (2 cores): compare latencies as ratios within this run.",
        ]
        write_study_results(a.out, title="Dynamic and structural sparsity of SmolLM2-135M on WikiText-2 (issue 17)",
                            setup=setup, suite=type(suite)(rows, suite.failures), kv_rows=[], targets=targets, notes=notes,
                            machine=machine, extra={"Per-row details": "\n".join(det),
                                                    "Batch-1 decode of one MLP (dense vs sparse path)": "\n".join(tbl)})

    suite = run_suite(model, entries, calib_sets, eval_tokens, device="cpu", on_row=publish,
                      eval_kw=dict(seqlen=a.seqlen, n_windows=a.windows, prompt_len=128, decode_tokens=a.decode_tokens,
                                   repeats=a.repeats))
    publish(suite, final=True)


if __name__ == "__main__":
    main()
