"""The real-RY CPU algebra (``strategy="realry"``) against the factored and dense strategies and PennyLane.

    OMP_NUM_THREADS=1 python experiments/bench_realry_cpu.py                  # QIREN steps + crossover
    OMP_NUM_THREADS=1 python experiments/bench_realry_cpu.py --pennylane-points 1024

Part A: the full QIREN training step (8 qubits, 3 hybrid layers, forward + MSE + backward + Adam) at
each point count, every strategy timed in turn within each repeat (interleaved, so a load change on
a shared machine hits them alike); medians. Part B: one QuantumLayer forward + backward per qubit
count, for the strategy ``auto`` should pick. Writes
``experiments/results/bench_simulator_cpu_realry.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from qlite.layers import QIREN, QuantumLayer
from qlite.runtime import tune_cpu_allocator
from qlite.simulators import NativeBackend, reuploading_circuit
from qlite.simulators.cost import run_cost
from study_io import machine_info, write_results

STRATEGIES = ("factored", "dense", "realry")
# QIREN-step variants: the strategies as auto would run them (batch tiles on the CPU), and the two
# contenders in one pass over the whole batch (what the tiles gain)
VARIANTS = {"factored": {"strategy": "factored"}, "dense": {"strategy": "dense"}, "realry": {"strategy": "realry"},
            "factored untiled": {"strategy": "factored", "cpu_tile": None},
            "realry untiled": {"strategy": "realry", "cpu_tile": None}}


def _step(model, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    return step


def _interleaved(fns: dict, repeats: int, warmup: int = 2) -> dict:
    for f in fns.values():
        for _ in range(warmup):
            f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(1e3 * (time.perf_counter() - t0))
    return {k: {"ms": statistics.median(v), "min_ms": min(v), "all_ms": v} for k, v in times.items()}


def qiren_steps(points, repeats: int, pennylane_points, seed: int = 0) -> list[dict]:
    rows = []
    for p in points:
        g = torch.Generator().manual_seed(seed)
        x, y = torch.rand(p, 2, generator=g) * 2 - 1, torch.rand(p, 1, generator=g) * 2 - 1
        fns = {}
        for name, options in VARIANTS.items():
            if "untiled" in name and p < 4096:
                continue  # no tiles below 2 tiles' worth of points anyway
            model = QIREN(2, 1, fused=False, generator=torch.Generator().manual_seed(seed), **options)
            fns[name] = _step(model, x, y)
        if p in pennylane_points:
            from qlite.reference import pennylane_qiren

            fns["pennylane"] = _step(pennylane_qiren(2, 1), x, y)
        reps = repeats if p <= 4096 else max(3, repeats // 3)
        timed = _interleaved({k: f for k, f in fns.items() if k != "pennylane"}, reps)
        if "pennylane" in fns:
            timed["pennylane"] = _interleaved({"pennylane": fns["pennylane"]}, 3 if p <= 4096 else 1, warmup=1)["pennylane"]
        for k, t in timed.items():
            rows.append({"case": "qiren_step", "points": p, "impl": k, **t})
            print(json.dumps({"points": p, "impl": k, "ms": round(t["ms"], 2)}), flush=True)
    return rows


def layer_crossover(qubits, points: int, repeats: int, seed: int = 0) -> list[dict]:
    rows = []
    for n in qubits:
        x = torch.rand(points, n, generator=torch.Generator().manual_seed(seed), requires_grad=True)
        fns = {}
        for s in STRATEGIES:
            if s == "dense" and n > 10:
                continue
            layer = QuantumLayer(n, strategy=s, fused=False, generator=torch.Generator().manual_seed(seed))
            fns[s] = (lambda layer=layer: layer(x).sum().backward())
        for k, t in _interleaved(fns, repeats).items():
            rows.append({"case": "layer_fwd_bwd", "qubits": n, "points": points, "impl": k, **t})
            print(json.dumps({"qubits": n, "impl": k, "ms": round(t["ms"], 2)}), flush=True)
    return rows


def to_markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"### Real-RY CPU algebra — {m.get('cpu')} ({m.get('torch_threads')} thread) — {m.get('date')}", "",
             f"torch {m.get('torch')}; load average at the start {m.get('load_average')}; the machine was shared "
             f"with other jobs, so each repeat times every variant in turn and the tables give medians.", "",
             "Strategies: `factored` (complex Kronecker chunks, CZ rings folded in), `dense` (one matrix per "
             "static segment), `realry` (merged diagonal phases and real RY chunks, `simulators/realry.py`); all "
             "unfused, with the CPU batch tiles of 2**18 amplitudes (`cpu_tile`, the default) unless marked "
             "`untiled`. PennyLane: `default.qubit` + `TorchLayer`, identical architecture, same run.", "",
             "**QIREN training step** (8 qubits, 3 hybrid layers, full Adam step):", "",
             "| points | impl | median ms | min ms | vs PennyLane | vs factored |", "|---:|---|---:|---:|---:|---:|"]
    steps = [r for r in result["rows"] if r["case"] == "qiren_step"]
    for p in sorted({r["points"] for r in steps}):
        by = {r["impl"]: r for r in steps if r["points"] == p}
        for k, r in by.items():
            pl = f"{by['pennylane']['ms'] / r['ms']:.1f}x" if "pennylane" in by and k != "pennylane" else ""
            fa = f"{by['factored']['ms'] / r['ms']:.2f}x" if k != "pennylane" else ""
            lines.append(f"| {p} | {k} | {r['ms']:.1f} | {r['min_ms']:.1f} | {pl} | {fa} |")
    lines += ["", "Arithmetic of the batch pass of one step (forward + backward, three 8-qubit layers; "
              "`qlite.simulators.cost.run_cost` on each strategy's plan):", ""]
    for p in sorted({r["points"] for r in steps}):
        counts = {s: 3 * sum(c.flops for c in run_cost(NativeBackend(strategy=s).plan(reuploading_circuit(8, 2, 2),
                                                                                        batch=p), 8, p, 8)) / 1e9
                  for s in ("factored", "realry")}
        lines.append(f"- {p} points: factored {counts['factored']:.2f} GFLOP, realry {counts['realry']:.2f} GFLOP "
                     f"({counts['realry'] / counts['factored']:.2f}x)")
    layer = [r for r in result["rows"] if r["case"] == "layer_fwd_bwd"]
    for pts in sorted({r["points"] for r in layer}):
        part = [r for r in layer if r["points"] == pts]
        lines += ["", f"**One QuantumLayer forward + backward at {pts} points** (median ms):", "",
                  "| qubits | " + " | ".join(STRATEGIES) + " | fastest |", "|---:|" + "---:|" * len(STRATEGIES) + "---|"]
        for n in sorted({r["qubits"] for r in part}):
            by = {r["impl"]: r["ms"] for r in part if r["qubits"] == n}
            cells = [f"{by[s]:.2f}" if s in by else "-" for s in STRATEGIES]
            lines.append(f"| {n} | " + " | ".join(cells) + f" | {min(by, key=by.get)} |")
    if result.get("notes"):
        lines += ["", "**Reading.** " + result["notes"]]
    return "\n".join(lines) + "\n"


def rewrite(path: str, notes: str | None = None) -> None:
    """Re-render the Markdown of an existing result file (no new measurement), optionally with a
    reading of the figures stored beside them."""
    from pathlib import Path

    data = json.loads(Path(path).read_text())
    if notes is not None:
        data["notes"] = notes
        Path(path).write_text(json.dumps(data, indent=1))
    Path(path).with_suffix(".md").write_text(to_markdown(data))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, nargs="+", default=[1024, 16384])
    ap.add_argument("--pennylane-points", type=int, nargs="*", default=[1024, 16384])
    ap.add_argument("--qubits", type=int, nargs="*", default=[4, 5, 6, 7, 8, 9, 10, 11, 12])
    ap.add_argument("--layer-points", type=int, default=1024)
    ap.add_argument("--large-qubits", type=int, nargs="*", default=[6, 7, 8, 10],
                    help="qubit counts also timed per layer at --large-points")
    ap.add_argument("--large-points", type=int, default=16384)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", default="experiments/results")
    ap.add_argument("--stem", default="bench_simulator_cpu_realry")
    args = ap.parse_args()
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1 for one-thread figures")
    tune_cpu_allocator()  # as qlite.fit does on CPU; the PennyLane rows get it too
    machine = machine_info("cpu")
    rows = qiren_steps(args.points, args.repeats, set(args.pennylane_points))
    rows += layer_crossover(args.qubits, args.layer_points, args.repeats)
    rows += layer_crossover(args.large_qubits, args.large_points, max(3, args.repeats // 3))
    result = {"machine": machine, "load_average_end": os.getloadavg(), "rows": rows}
    md = to_markdown(result)
    print(md)
    print(write_results(args.out, args.stem, md, result))


if __name__ == "__main__":
    main()
