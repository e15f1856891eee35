"""Tune the fused kernels' block size and warps on a GPU, and show where a training step's device
time goes.

    python experiments/tune_fused.py --device cuda
"""

import argparse
import json
import logging

from simulator_bench import kernel_profile, tune_fused
from study_io import machine_info, write_results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--qubits", type=int, nargs="+", default=[8, 9])
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--blocks", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--back-blocks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--warps", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--precision", default="ieee")
    ap.add_argument("--kernel", default="auto", choices=["auto", "realry", "complex"])
    ap.add_argument("--profile", nargs="*", default=["fused:ieee", "factored"])
    ap.add_argument("--out", default="experiments/results")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = tune_fused(args.device, tuple(args.qubits), args.batch, args.blocks, args.back_blocks, args.warps,
                      args.precision, kernel=args.kernel)
    m = machine_info(args.device)
    lines = [f"### {m.get('cuda_device') or m['cpu']} — {m['date']}", "",
             f"One QIREN layer (2 re-uploads), {args.batch} points, precision {args.precision}, kernels {args.kernel}.", "",
             "| qubits | path | forward block | backward block | warps | forward ms | forward + backward ms |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        path = f"fused ({r['fused_kernel']})" if r["fused"] else "unfused (factored)"
        cfg = f"| {r['qubits']} | {path} | {r.get('fused_block', '')} | {r.get('fused_back_block', '')} | {r.get('fused_warps', '')}"
        if "error" in r:
            lines.append(f"{cfg} | {r['error']} | |")
        else:
            lines.append(f"{cfg} | {r['fwd_ms']:.2f} | {r['fwd_bwd_ms']:.2f} |")
    for spec in args.profile:
        lines += ["", f"Kernels of one training step ({spec}, {args.batch} points, 3 steps):", "", "```",
                  kernel_profile(spec, args.batch, args.device), "```"]
    write_results(args.out, "tune_fused", "\n".join(lines), {"machine": m, "rows": rows})
    print("\n".join(lines))
    print(json.dumps({"rows": len(rows)}))


if __name__ == "__main__":
    main()
