"""Which activation dtype makes PyTorch's low-bit CPU kernels fast (issue 14): one linear product of a
decode step (batch 1) and of a prefill (128 tokens) at SmolLM2's shapes, dense float32 against the
packed int4 kernel (``_weight_int4pack_mm_for_cpu``) and the int8 weight-only kernel
(``_weight_int8pack_mm``) fed float32, bfloat16 or float16 activations and scales. The fastest dtype is
what ``qlite.classical.quant.kernels.CPU_COMPUTE_DTYPE`` uses. A second table sweeps the token count for
the int8 weights: the int8 kernel against a transient bfloat16 copy of the int8 values through the
bfloat16 GEMM (``int8 -> bf16 GEMM``), whose crossover sets ``kernels.INT8_GEMM_MIN_TOKENS``. Writes
results/int_kernels_cpu.{md,json}.

    python experiments/bench_int_kernels.py --threads 1     # about a minute
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from qlite.timing import time_call
from study_io import machine_info, machine_line, write_results

def us(f, inner: int = 20) -> float:
    """Median microseconds of one call (``inner`` calls per timed run: one product is ~50 us)."""
    return 1e3 * time_call(lambda: [f() for _ in range(inner)], "cpu", repeats=5, warmup=1, max_seconds=5)["ms"] / inner


SHAPES = [(576, 576), (576, 1536), (1536, 576)]  # (in, out): attention, gate/up, down


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    rows = []
    for K, N in SHAPES:
        w = torch.randn(N, K, generator=g)
        codes = torch.randint(0, 16, (N, K), generator=g, dtype=torch.int32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
        w8 = torch.randint(-128, 128, (N, K), generator=g, dtype=torch.int8)
        for M in (1, 128):
            x32 = torch.randn(M, K, generator=g)
            inner = 20 if M == 1 else 1
            row = {"in": K, "out": N, "tokens": M, "dense float32 us": us(lambda: torch.nn.functional.linear(x32, w), inner)}
            # the prefill shape only for bfloat16: float32 / float16 are already 10-30x slower at one token
            for dt in (torch.float32, torch.bfloat16, torch.float16) if M == 1 else (torch.bfloat16,):
                x, name = x32.to(dt), str(dt).replace("torch.", "")
                sz = torch.rand(K // 64, N, 2, generator=g).to(dt)
                s8 = torch.rand(N, generator=g).to(dt)
                row[f"int4 g64 {name} us"] = us(lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, 64, sz), inner)
                row[f"int8 {name} us"] = us(lambda: torch.ops.aten._weight_int8pack_mm(x, w8, s8), inner)
            rows.append(row)
    sweep = []
    for K, N in SHAPES:
        w8 = torch.randint(-128, 128, (N, K), generator=g, dtype=torch.int8)
        s8 = torch.rand(N, generator=g).to(torch.bfloat16)
        w = torch.randn(N, K, generator=g)
        for M in (1, 4, 8, 16, 32, 128):
            x32 = torch.randn(M, K, generator=g)
            x, inner = x32.to(torch.bfloat16), 20 if M < 32 else 2
            sweep.append({"in": K, "out": N, "tokens": M,
                          "dense float32 us": us(lambda: torch.nn.functional.linear(x32, w), inner),
                          "int8 kernel bf16 us": us(lambda: torch.ops.aten._weight_int8pack_mm(x, w8, s8), inner),
                          "int8 -> bf16 GEMM us": us(lambda: torch.nn.functional.linear(x, w8.to(torch.bfloat16)) * s8, inner)})
    m = machine_info("cpu")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    L = ["# Low-bit CPU kernels by activation dtype", "", machine_line(m) + f"; load average {m['load_average']}.", "",
         "Median time of one product (qlite.timing.time_call), microseconds; the machine is shared.", "",
         "| " + " | ".join(keys) + " |", "|" + "---:|" * len(keys)]
    L += ["| " + " | ".join(f"{r[k]:.1f}" if isinstance(r.get(k), float) else str(r.get(k, "-")) for k in keys) + " |" for r in rows]
    keys = list(sweep[0])
    L += ["", "int8 weights by token count (bfloat16 activations): the int8 kernel against the int8 values cast to a "
          "transient bfloat16 weight (exact: |v| <= 128) through the bfloat16 GEMM, scale applied to the output.", "",
          "| " + " | ".join(keys) + " |", "|" + "---:|" * len(keys)]
    L += ["| " + " | ".join(f"{r[k]:.1f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |" for r in sweep]
    write_results(a.out, "int_kernels_cpu", "\n".join(L), {"machine": m, "rows": rows, "int8_token_sweep": sweep})
    print("\n".join(L))


if __name__ == "__main__":
    main()
