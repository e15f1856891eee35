"""W4 g128 weight-only decode of a Llama-7B-shaped block on one GPU against FP16 (issue 14, target 3).

One decoder block with Llama-2-7B's shapes (hidden 4096, 32 heads of 128, MLP 11008, RMSNorm, RoPE,
a KV cache of ``--ctx`` positions), random weights (seeded), batch 1-16, one new token per sequence:

* FP16 (and BF16 for reference): ``F.linear`` on dense weights;
* W4 g128: qlite's RTN W4 g128 asymmetric codes (``compress(..., RTN(4, group_size=128,
  symmetric=False), kernels=False)``) packed as they are -- no re-quantization -- into PyTorch's CUDA
  tinygemm layout (``_convert_weight_to_int4pack`` + ``_weight_int4pack_mm``, bfloat16 activations):
  per group a scale ``s`` and an offset ``m`` with ``w = (q - 8) * s + m``, i.e. ``m = s * (8 - z)`` for
  qlite's ``w = s * (q - z)`` (the same mapping as qlite's CPU kernel layout).

Before timing, the packed weights are checked against qlite's dequantized weights (the kernel applied to
an identity matrix returns ``W.T``) and the W4 block's output against a dense block using qlite's
dequantized weights. Each configuration is timed replaying a CUDA graph of the block (launch overhead
out: at batch 1 the W4 block is tens of microseconds), also eagerly for reference. Results are written
to ``$OUT`` (or ``--out``) after every batch size: ``int4_block.json`` and ``int4_block.md``.

    python experiments/gpu_int4_block.py                       # on the GPU machine, ~2 minutes
    python experiments/gpu_int4_block.py --device cpu --small  # logic check here (CPU int4 kernel, tiny shapes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from qlite.classical import RTN, compress

NAMES = ("q", "k", "v", "o", "gate", "up", "down")


def shapes(hidden: int, inter: int) -> dict[str, tuple[int, int]]:
    """``(out, in)`` of each linear layer of one block (multi-head attention: k / v as wide as q)."""
    return {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "o": (hidden, hidden),
            "gate": (inter, hidden), "up": (inter, hidden), "down": (hidden, inter)}


def qlite_codes(weights: dict[str, torch.Tensor], group_size: int) -> dict:
    """qlite's RTN W4 codes of each weight: ``{name: QuantizedLinear}`` (packed layout, CPU)."""
    layers = nn.ModuleDict({n: nn.Linear(w.shape[1], w.shape[0], bias=False) for n, w in weights.items()})
    with torch.no_grad():
        for n, w in weights.items():
            layers[n].weight.copy_(w)
    q = compress(layers, RTN(4, group_size=group_size, symmetric=False), kernels=False).model
    return {n: q[n] for n in weights}


def tinygemm_scales(q, kernel_group: int) -> torch.Tensor:
    """``(K / kernel_group, N, 2)`` scale and offset of qlite layer ``q`` for the tinygemm kernels (CUDA's
    ``_weight_int4pack_mm`` and the CPU one read the same ``w = (q - 8) * s + m``)."""
    scale, zero = q.scale.float(), q.zero().float()  # (N, G)
    assert q.group_size == kernel_group, (q.group_size, kernel_group)
    return torch.stack([scale, scale * (8 - zero)], dim=-1).transpose(0, 1).contiguous()


def pack_nibbles(codes: torch.Tensor, high_first: bool) -> torch.Tensor:
    """``(N, K)`` codes 0..15 as ``(N, K / 2)`` uint8: columns 2j and 2j+1 share a byte (``high_first``:
    column 2j in the high nibble, torchao's order for ``_convert_weight_to_int4pack``)."""
    c = codes.to(torch.uint8)
    a, b = c[:, ::2], c[:, 1::2]
    return ((a << 4) | b) if high_first else ((b << 4) | a)


class Int4Weight:
    """A weight in the device's int4 kernel layout, and ``__call__(x) = x @ W.T`` for ``(M, K)`` bfloat16 ``x``."""

    def __init__(self, q, device: torch.device, group: int, high_first: bool = True, inner_k_tiles: int = 8):
        self.group, self.N, self.K = group, q.out_features, q.in_features
        codes = q.codes()
        self.sz = tinygemm_scales(q, group).to(device=device, dtype=torch.bfloat16)
        if device.type == "cuda":
            self.w = torch.ops.aten._convert_weight_to_int4pack(pack_nibbles(codes, high_first).to(device), inner_k_tiles)
            self.op = torch.ops.aten._weight_int4pack_mm
        else:
            self.w = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 1)
            self.op = torch.ops.aten._weight_int4pack_mm_for_cpu

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x, self.w, self.group, self.sz)

    def dense(self) -> torch.Tensor:
        """``(N, K)`` float32 weight the kernel computes with: the kernel applied to the identity."""
        eye = torch.eye(self.K, device=self.sz.device, dtype=torch.bfloat16)
        return self(eye).float().t()


def rope(x: torch.Tensor, pos: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotary embedding (rotate-half form) of ``(B, H, 1, D)`` at position ``pos``."""
    D = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D)
    ang = pos * inv
    cos, sin = torch.cat([ang.cos(), ang.cos()]).to(x.dtype), torch.cat([ang.sin(), ang.sin()]).to(x.dtype)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def rms_norm(x, w, eps=1e-5):
    return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def block_step(lin: dict, norms, x, kc, vc, heads: int):
    """One decode step of a Llama block for ``x`` ``(B, hidden)``: the new token's k / v written at the last
    cache position of ``kc`` / ``vc`` ``(B, H, ctx, D)``, attention over the whole cache."""
    B, Hd = x.shape
    D = Hd // heads
    pos = kc.shape[2] - 1
    h = rms_norm(x, norms[0])
    q = rope(lin["q"](h).view(B, heads, 1, D), pos)  # (B, H, 1, D)
    k = rope(lin["k"](h).view(B, heads, 1, D), pos)
    v = lin["v"](h).view(B, heads, 1, D)
    kc[:, :, pos:] = k
    vc[:, :, pos:] = v
    a = F.scaled_dot_product_attention(q, kc, vc).reshape(B, Hd)
    x = x + lin["o"](a)
    h = rms_norm(x, norms[1])
    return x + lin["down"](F.silu(lin["gate"](h)) * lin["up"](h))


def time_us(fn, device, *, graph: bool, iters: int, trials: int = 5) -> float:
    """Median microseconds of one ``fn()`` over ``trials`` runs of ``iters`` calls (a CUDA graph of one call
    replayed when ``graph``)."""
    if device.type != "cuda":
        fn()
        ts = []
        for _ in range(trials):
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            ts.append((time.perf_counter() - t0) / iters)
        return 1e6 * statistics.median(ts)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    run = fn
    if graph:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        run = g.replay
    ts = []
    for _ in range(trials):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        e0.record()
        for _ in range(iters):
            run()
        e1.record()
        torch.cuda.synchronize()
        ts.append(e0.elapsed_time(e1) * 1e3 / iters)
    return statistics.median(ts)


def write(out: Path, res: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "int4_block.json.tmp"
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, out / "int4_block.json")
    L = [f"# W4 g128 weight-only decode of a Llama-7B-shaped block: {res['device_name']}", "",
         f"{res['date']}; torch {res['torch']}; hidden {res['hidden']}, MLP {res['inter']}, {res['heads']} heads, "
         f"KV cache {res['ctx']} positions; qlite RTN W4 g{res['group']} asymmetric codes in "
         f"{res['int4_op']} (nibble order {res['nibble_order']}), bfloat16 activations; CUDA-graph replay "
         "(eager in brackets); weights {:.0f} MB FP16, {:.0f} MB W4.".format(res["fp16_weight_mb"], res["w4_weight_mb"]),
         "", "Checks: " + "; ".join(f"{k} {v:.2e}" for k, v in res["checks"].items()), "",
         "| batch | FP16 block us | BF16 block us | W4 block us | W4 speed-up vs FP16 | FP16 linears us | W4 linears us "
         "| linears speed-up | >= 2x |", "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in res["rows"]:
        L.append(f"| {r['batch']} | {r['fp16_us']:.1f} ({r['fp16_eager_us']:.1f}) | {r['bf16_us']:.1f} | "
                 f"{r['w4_us']:.1f} ({r['w4_eager_us']:.1f}) | {r['speedup']:.2f} | {r['fp16_linears_us']:.1f} | "
                 f"{r['w4_linears_us']:.1f} | {r['linears_speedup']:.2f} | {r['speedup'] >= 2} |")
    (out / "int4_block.md").write_text("\n".join(L) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--small", action="store_true", help="tiny shapes (a logic check on the CPU)")
    p.add_argument("--batches", default="1,2,4,8,16")
    p.add_argument("--ctx", type=int, default=1024, help="KV cache positions")
    p.add_argument("--group", type=int, default=128)
    p.add_argument("--iters", type=int, default=200, help="calls per timed trial")
    p.add_argument("--out", default=os.environ.get("OUT", "experiments/results/gpu_int4_block"))
    a = p.parse_args()
    dev = torch.device(a.device)
    hidden, inter, heads = (256, 768, 4) if a.small else (4096, 11008, 32)
    ctx, iters = (64, 3) if a.small else (a.ctx, a.iters)
    out = Path(a.out)
    torch.manual_seed(0)
    t0 = time.time()
    weights = {n: torch.randn(o, i) / i ** 0.5 for n, (o, i) in shapes(hidden, inter).items()}
    codes = qlite_codes(weights, a.group)  # qlite's codes: packed as they are below, never re-quantized
    log = lambda *m: print(f"[{time.time() - t0:6.1f}s]", *m, flush=True)  # noqa: E731
    log("quantized", {n: tuple(q.codes().shape) for n, q in codes.items()})

    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": platform.node(), "torch": torch.__version__,
           "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
           "hidden": hidden, "inter": inter, "heads": heads, "ctx": ctx, "group": a.group, "rows": [], "checks": {},
           "int4_op": "_weight_int4pack_mm" if dev.type == "cuda" else "_weight_int4pack_mm_for_cpu"}
    # The nibble order of the CUDA packing: the one whose kernel reproduces qlite's weight (checked on q).
    ref_q = codes["q"].dequantized_weight()
    order = None
    for high_first in ((True, False) if dev.type == "cuda" else (True,)):
        w = Int4Weight(codes["q"], dev, a.group, high_first)
        err = float((w.dense().cpu() - ref_q).abs().max() / ref_q.abs().max())
        res["checks"][f"q_proj kernel weight vs qlite dequantized, max rel ({'high' if high_first else 'low'} first)"] = err
        if err < 1e-2:
            order = high_first
            break
    if order is None:
        write(out, {**res, "nibble_order": "none matched", "fp16_weight_mb": 0, "w4_weight_mb": 0})
        raise SystemExit(f"the int4 kernel does not reproduce qlite's weights: {res['checks']}")
    res["nibble_order"] = "high nibble first" if order else "low nibble first"
    w4 = {n: Int4Weight(q, dev, a.group, order) for n, q in codes.items()}
    ref_d = codes["down"].dequantized_weight()
    res["checks"]["down_proj kernel weight vs qlite dequantized, max rel"] = float(
        (w4["down"].dense().cpu() - ref_d).abs().max() / ref_d.abs().max())
    dense = {dt: {n: q.dequantized_weight().to(dev, dt) for n, q in codes.items()} for dt in (torch.float16, torch.bfloat16)}
    fp16 = {n: w.to(dev, torch.float16) for n, w in weights.items()}  # the float weights themselves
    res["fp16_weight_mb"] = sum(w.numel() * 2 for w in fp16.values()) / 1e6
    res["w4_weight_mb"] = sum(w.w.numel() * w.w.element_size() + w.sz.numel() * 2 for w in w4.values()) / 1e6
    lin = {
        "fp16": {n: (lambda x, w=w: F.linear(x, w)) for n, w in fp16.items()},
        "bf16": {n: (lambda x, w=w: F.linear(x, w)) for n, w in dense[torch.bfloat16].items()},
        "w4": w4,
        "deq_bf16": {n: (lambda x, w=w: F.linear(x, w)) for n, w in dense[torch.bfloat16].items()},
    }
    log("packed; checks", res["checks"])
    write(out, res)
    for B in [int(b) for b in a.batches.split(",")]:
        row = {"batch": B}
        for kind, dt in (("fp16", torch.float16), ("bf16", torch.bfloat16), ("w4", torch.bfloat16)):
            g = torch.Generator(device="cpu").manual_seed(B)
            x = torch.randn(B, hidden, generator=g).to(dev, dt)
            kc = torch.randn(B, heads, ctx, hidden // heads, generator=g).to(dev, dt)
            vc = torch.randn(B, heads, ctx, hidden // heads, generator=g).to(dev, dt)
            norms = (torch.ones(hidden, device=dev, dtype=dt), torch.ones(hidden, device=dev, dtype=dt))
            f = lambda lin_=lin[kind]: block_step(lin_, norms, x, kc, vc, heads)  # noqa: E731
            if kind == "w4":  # the W4 block against a dense block of qlite's dequantized weights, same inputs
                y, y_ref = f(), block_step(lin["deq_bf16"], norms, x, kc.clone(), vc.clone(), heads)
                row["w4_vs_dequantized_rel"] = float((y.float() - y_ref.float()).norm() / y_ref.float().norm())
            row[f"{kind}_us"] = time_us(f, dev, graph=dev.type == "cuda", iters=iters)
            row[f"{kind}_eager_us"] = time_us(f, dev, graph=False, iters=iters)
            h = torch.randn(B, hidden, generator=g).to(dev, dt)
            hm = torch.randn(B, inter, generator=g).to(dev, dt)
            lin_only = lambda lin_=lin[kind]: [lin_[n](hm if n == "down" else h) for n in NAMES]  # noqa: E731
            row[f"{kind}_linears_us"] = time_us(lin_only, dev, graph=dev.type == "cuda", iters=iters)
        row["speedup"] = row["fp16_us"] / row["w4_us"]
        row["linears_speedup"] = row["fp16_linears_us"] / row["w4_linears_us"]
        res["rows"].append(row)
        log(row)
        write(out, res)
    res["seconds"] = time.time() - t0
    write(out, res)
    log("wrote", out / "int4_block.md")
    print((out / "int4_block.md").read_text())


if __name__ == "__main__":
    main()
