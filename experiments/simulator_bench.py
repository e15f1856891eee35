"""The simulator benchmark: a full QIREN training step with qlite and with PennyLane, side by side.

Case A: the QIREN image model (2 inputs, 8 qubits, 2 hidden layers, 2 re-uploads) at several point
counts, qlite against ``default.qubit`` + ``TorchLayer`` of the identical architecture in the same
run. Case B: qlite alone at other qubit counts. Every row carries the FLOP and byte counts of the
step (``qlite.simulators.cost``) and the floor they give with the ceilings measured in the run.
"""

from __future__ import annotations

import logging

import torch

from bench_common import ceilings, graphed_training_step, quantum_model_cost, training_step
from qlite.layers import QIREN
from qlite.runtime import tune_cpu_allocator
from qlite.timing import time_call
from study_io import machine_info, normalize_machine

log = logging.getLogger(__name__)


def backend_options(spec: str) -> dict:
    """``"auto"`` / ``"dense"`` / ``"factored"`` (unfused), ``"fused:<precision>"`` (the kernels
    ``fused_kernel="auto"`` picks), ``"fused-realry:<precision>"`` / ``"fused-complex:<precision>"``
    (one family of kernels); a ``+graph`` suffix (handled by the caller) replays the step as a CUDA graph."""
    spec = spec.removesuffix("+graph")
    if spec.startswith("fused"):
        head, _, prec = spec.partition(":")
        kernel = head.partition("-")[2] or "auto"
        return {"fused": True, "precision": prec or "tf32x3", "fused_kernel": kernel}
    return {"strategy": spec, "fused": False if spec != "auto" else "auto"}


def _data(points: int, device, generator: torch.Generator):
    x = torch.rand(points, 2, generator=generator) * 2 - 1
    y = torch.rand(points, 1, generator=generator) * 2 - 1
    return x.to(device), y.to(device)


def _row(kind: str, n_qubits: int, points: int, timing: dict, model=None, ceil=None, strategy=None) -> dict:
    row = {"impl": kind, "qubits": n_qubits, "points": points, "strategy": strategy, **timing}
    if model is not None and ceil is not None:
        f, b = quantum_model_cost(model, points)
        total = f + b
        floor = total.floor_seconds(ceil["gemm_flops_per_s"], ceil["copy_bytes_per_s"]) * 1e3
        row.update(gflop=total.flops / 1e9, gbytes=total.bytes / 1e9, floor_ms=floor, over_floor=timing["ms"] / floor)
    return row


def run(points=(1024, 16384, 65536), qubits=(4, 6, 10, 12, 14), qubit_points: int = 65536, device="cpu",
        pennylane: bool = True, pennylane_max_points: int | None = None, repeats: int = 5,
        max_seconds: float = 60.0, strategies=("auto",), seed: int = 0, backends=(),
        backend_points=(1024,)) -> dict:
    """Run both cases, then one row per simulator backend in ``backends`` (``backend_bench``:
    ms per step where the backend trains, per forward otherwise) at ``backend_points``; returns
    ``{"machine": ..., "ceilings": ..., "rows": [...]}``."""
    device = torch.device(device)
    tune_cpu_allocator()  # process-wide, so it applies to the PennyLane rows as well
    g = torch.Generator().manual_seed(seed)
    ceil = ceilings(device)
    rows = []
    for p in points:
        x, y = _data(p, device, g)
        for strategy in strategies:
            torch.manual_seed(seed)
            model = QIREN(2, 1, **backend_options(strategy)).to(device)
            try:
                make = graphed_training_step if strategy.endswith("+graph") else training_step
                t = time_call(make(model, x, y), device, repeats=repeats, warmup=2, max_seconds=max_seconds)
            except Exception as err:  # a benchmark reports a failing variant instead of stopping
                rows.append({"impl": "qlite", "qubits": 8, "points": p, "strategy": strategy,
                             "error": f"{type(err).__name__}: {str(err)[:100]}"})
                log.warning("qlite 8 qubits %d points (%s) failed: %s", p, strategy, err)
                continue
            rows.append(_row("qlite", 8, p, t, model, ceil, strategy))
            log.info("qlite 8 qubits %d points (%s): %.2f ms", p, strategy, t["ms"])
        if pennylane and (pennylane_max_points is None or p <= pennylane_max_points):
            from qlite.reference import pennylane_qiren

            torch.manual_seed(seed)
            ref = pennylane_qiren(2, 1).to(device)
            t = time_call(training_step(ref, x, y), device, repeats=max(1, repeats // 2), warmup=1,
                          max_seconds=max_seconds)
            rows.append(_row("pennylane", 8, p, t))
            log.info("pennylane 8 qubits %d points: %.1f ms", p, t["ms"])
    x, y = _data(qubit_points, device, g)
    for n in qubits:
        for strategy in strategies:
            top = 10 if strategy.startswith("fused-complex") else 12
            if (strategy == "dense" and n > 11) or (strategy.startswith("fused") and not 8 <= n <= top):
                continue  # dense 2**n x 2**n products: not a contender; fused: 8 to 12 (complex: 10) qubits
            torch.manual_seed(seed)
            model = QIREN(2, 1, hidden_features=n, **backend_options(strategy)).to(device)
            try:
                make = graphed_training_step if strategy.endswith("+graph") else training_step
                t = time_call(make(model, x, y), device, repeats=repeats, warmup=1, max_seconds=max_seconds)
            except Exception as err:  # too large for this device, or a failing variant: say so
                rows.append({"impl": "qlite", "qubits": n, "points": qubit_points, "strategy": strategy,
                             "error": f"{type(err).__name__}: {str(err).split(';')[0][:100]}"})
                log.warning("qlite %d qubits (%s) failed: %s", n, strategy, err)
                continue
            rows.append(_row("qlite", n, qubit_points, t, model, ceil, strategy))
            log.info("qlite %d qubits %d points (%s): %.2f ms", n, qubit_points, strategy, t["ms"])
    if backends:
        from backend_bench import backend_rows

        for r in backend_rows(tuple(backends), backend_points, device=device, repeats=max(1, repeats // 2),
                              max_seconds=max_seconds, seed=seed):
            rows.append(r)
            log.info("backend row: %s", {k: r.get(k) for k in ("impl", "points", "mode", "ms", "error")})
    _ratios(rows)
    return {"machine": machine_info(device), "ceilings": ceil, "rows": rows}


def _ratios(rows: list[dict]) -> None:
    ref = {(r["qubits"], r["points"]): r["ms"] for r in rows if r["impl"] == "pennylane"}
    for r in rows:
        key = (r["qubits"], r["points"])
        if (r["impl"] == "qlite" or r.get("mode") == "step") and key in ref and "ms" in r:
            r["speedup_vs_pennylane"] = ref[key] / r["ms"]


def to_markdown(result: dict) -> str:
    m, c = normalize_machine(result["machine"]), result["ceilings"]
    where = m.get("cuda_device") or f"{m['cpu']} ({m['torch_threads']} threads)"
    lines = [
        f"### {where} — {m['date']}",
        "",
        f"torch {m['torch']}; measured ceilings: complex64 GEMM {c['gemm_flops_per_s'] / 1e12:.2f} TFLOP/s, "
        f"copy {c['copy_bytes_per_s'] / 1e9:.0f} GB/s (read + write).",
        "",
        "| impl | strategy | qubits | points | ms / step | speed-up vs PennyLane | GFLOP | GB moved | floor ms | x floor |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['impl']} | {r['strategy']} | {r['qubits']} | {r['points']} | {r['error']} | | | | | |")
            continue
        sp = f"{r['speedup_vs_pennylane']:.1f}x" if "speedup_vs_pennylane" in r else ""
        extra = (f"{r['gflop']:.1f} | {r['gbytes']:.2f} | {r['floor_ms']:.2f} | {r['over_floor']:.1f}"
                 if "gflop" in r else " | | | ")
        lines.append(f"| {r['impl']} | {r['strategy'] or ''} | {r['qubits']} | {r['points']} | {r['ms']:.2f} | {sp} | {extra} |")
    return "\n".join(lines) + "\n"


def strategy_sweep(qubits=range(2, 13), batches=(1024, 65536), device="cpu", chunks=(None,), repeats: int = 5,
                   max_seconds: float = 20.0, seed: int = 0) -> dict:
    """Forward + backward of one re-uploading layer (2 re-uploads, 2 sub-layers) per strategy, to
    place the dense / factored crossover that ``default_strategy`` uses."""
    from qlite.layers import QuantumLayer

    device = torch.device(device)
    tune_cpu_allocator()
    rows = []
    for b in batches:
        for n in qubits:
            x = torch.rand(b, n, device=device, requires_grad=True)
            for strategy, chunk in [("dense", None)] + [("factored", c) for c in chunks]:
                if strategy == "dense" and n > 11:
                    continue
                torch.manual_seed(seed)
                layer = QuantumLayer(n, strategy=strategy, chunk=chunk).to(device)

                def step():
                    layer(x).sum().backward()

                try:
                    t = time_call(step, device, repeats=repeats, warmup=1, max_seconds=max_seconds)
                except (ValueError, torch.OutOfMemoryError) as err:
                    rows.append({"qubits": n, "batch": b, "strategy": strategy, "chunk": chunk, "error": str(err)[:80]})
                    continue
                rows.append({"qubits": n, "batch": b, "strategy": strategy, "chunk": chunk, **t})
                log.info("sweep n=%d B=%d %s chunk=%s: %.3f ms", n, b, strategy, chunk, t["ms"])
    return {"machine": machine_info(device), "rows": rows}


def fused_accuracy(device="cuda", qubits=(8, 9, 10), batch: int = 256, seed: int = 0,
                   precisions=("ieee", "tf32x3", "tf32"), kernels=("complex", "realry")) -> list[dict]:
    """Largest errors of the fused kernels (each precision) and of the unfused float32 path against
    the unfused float64 path: values and gradients of weights and inputs."""
    from qlite.simulators import NativeBackend, reuploading_circuit

    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in qubits:
        c = reuploading_circuit(n, 2, 2, "cz", "rz")
        w64 = (torch.rand(c.n_weights, generator=g, dtype=torch.float64) * 6.283).to(device)
        x64 = (torch.rand(batch, n, generator=g, dtype=torch.float64) * 4 - 2).to(device)
        lw = torch.linspace(0.5, 1.5, n, device=device, dtype=torch.float64)

        def grads(backend, dtype):
            w = w64.to(dtype).requires_grad_()
            x = x64.to(dtype).requires_grad_()
            out = backend(c, w, x)
            gw, gx = torch.autograd.grad((out * lw.to(dtype)).sum() + (out**2).sum(), (w, x))
            return out.double(), gw.double(), gx.double()

        ref = grads(NativeBackend(strategy="factored", fused=False), torch.float64)
        cases = [("unfused", NativeBackend(strategy="factored", fused=False))]
        cases += [(f"fused-{k}:{p}", NativeBackend(fused=True, precision=p, fused_kernel=k)) for k in kernels
                  for p in precisions if k == "realry" or n <= 10]
        for name, backend in cases:
            try:
                got = grads(backend, torch.float32)
            except Exception as err:  # e.g. a kernel that does not fit this card: record it
                rows.append({"qubits": n, "impl": name, "error": f"{type(err).__name__}: {str(err)[:100]}"})
                log.warning("accuracy n=%d %s failed: %s", n, name, err)
                continue
            errs = [float((a - b).detach().abs().max()) for a, b in zip(got, ref)]
            rows.append({"qubits": n, "impl": name, "value_err": errs[0], "grad_w_err": errs[1], "grad_x_err": errs[2]})
            log.info("accuracy n=%d %s: %s", n, name, errs)
    return rows


def tune_fused(device="cuda", qubits=(8,), batch: int = 65536, blocks=(4, 8, 16), back_blocks=(1, 2, 4),
               warps=(4, 8), precision: str = "ieee", repeats: int = 10, kernel: str = "auto") -> list[dict]:
    """Forward and forward + backward of one QIREN layer, fused per (block, backward block, warps),
    and unfused (factored) for comparison."""
    from qlite.layers import QuantumLayer

    rows = []
    for n in qubits:
        x = torch.rand(batch, n, device=device, requires_grad=True)
        configs = [dict(fused=False, strategy="factored")]
        configs += [dict(fused=True, precision=precision, fused_block=bs, fused_back_block=bb, fused_warps=nw,
                         fused_kernel=kernel)
                    for bs in blocks for bb in back_blocks for nw in warps if bb <= bs]
        for cfg in configs:
            torch.manual_seed(0)
            layer = QuantumLayer(n, **cfg).to(device)
            row = {"qubits": n, "batch": batch, **{k: v for k, v in cfg.items() if k != "precision"}}
            try:
                with torch.no_grad():
                    row["fwd_ms"] = time_call(lambda: layer(x), device, repeats=repeats)["ms"]
                row["fwd_bwd_ms"] = time_call(lambda: layer(x).sum().backward(), device, repeats=repeats)["ms"]
            except Exception as err:
                row["error"] = f"{type(err).__name__}: {str(err)[:90]}"
            log.info("tune %s", row)
            rows.append(row)
    return rows


def kernel_profile(spec: str = "fused:ieee", points: int = 65536, device="cuda", rows: int = 15) -> str:
    """The CUDA kernels of one QIREN training step, by total device time (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    g = torch.Generator().manual_seed(0)
    x, y = _data(points, device, g)
    model = QIREN(2, 1, **backend_options(spec)).to(device)
    step = training_step(model, x, y)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            step()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows)
