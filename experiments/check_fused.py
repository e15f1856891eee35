"""Accuracy of the fused Triton kernels on a GPU against the float64 unfused path.

    python experiments/check_fused.py --device cuda
"""

import argparse
import json
import logging

from simulator_bench import fused_accuracy
from study_io import machine_info, write_results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--qubits", type=int, nargs="+", default=[8, 9, 10])
    ap.add_argument("--precisions", nargs="+", default=["ieee", "tf32x3", "tf32"])
    ap.add_argument("--kernels", nargs="+", default=["complex", "realry"])
    ap.add_argument("--out", default="experiments/results")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = fused_accuracy(args.device, tuple(args.qubits), precisions=tuple(args.precisions), kernels=tuple(args.kernels))
    m = machine_info(args.device)
    lines = [f"### {m.get('cuda_device') or m['cpu']} — {m['date']}", "",
             "Largest absolute error against the unfused float64 path (QIREN layer, 2 re-uploads, 256 points).", "",
             "| qubits | implementation (float32) | values | d/d weights | d/d inputs |", "|---:|---|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['qubits']} | {r['impl']} | {r['error']} | | |")
            continue
        lines.append(f"| {r['qubits']} | {r['impl']} | {r['value_err']:.1e} | {r['grad_w_err']:.1e} | {r['grad_x_err']:.1e} |")
    write_results(args.out, "fused_accuracy", "\n".join(lines), {"machine": m, "rows": rows})
    print("\n".join(lines))
    print(json.dumps({"rows": len(rows)}))


if __name__ == "__main__":
    main()
