"""qlite.fit_many against separate qlite.fit calls: 3 seeds x 4 learning rates of one architecture,
the paper_signals setting (camera 32 x 32 = 1,024 points, full batch, QIREN 8 qubits and the
657-parameter Tanh MLP baseline), on the CPU with one thread.

    OMP_NUM_THREADS=1 python experiments/bench_fit_many.py --epochs 5 --out experiments/results/fit_many_cpu.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--models", default="tanh,qiren")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import qlite
    from qlite import data
    from qlite.models import ModelSpec

    sig = data.image("camera", size=32)
    seeds, lrs = [0, 1, 2], [0.003, 0.01, 0.03, 0.1]
    specs = {"qiren": ModelSpec("qiren"), "tanh": ModelSpec("tanh", budget=657)}
    rows = []
    for name in args.models.split(","):
        spec = specs[name]
        factory = lambda s, spec=spec: spec.build(2, 1, seed=s)  # noqa: E731
        t = time.perf_counter()
        sep = [qlite.fit(factory(s), sig, epochs=args.epochs, lr=lr, seed=s, progress=False) for s in seeds for lr in lrs]
        t_sep = time.perf_counter() - t
        t = time.perf_counter()
        many = qlite.fit_many(factory, sig, seeds=seeds, settings=[{"lr": lr} for lr in lrs], epochs=args.epochs,
                              progress=False)
        t_many = time.perf_counter() - t
        dloss = max(abs(a - b) for r, q in zip(sep, many) for a, b in zip(r.history["loss"], q.history["loss"]))
        rows.append({"model": name, "params": sep[0].params, "runs": len(sep), "epochs": args.epochs,
                     "separate_s": round(t_sep, 2), "fit_many_s": round(t_many, 2),
                     "speedup": round(t_sep / t_many, 2), "max_loss_diff_float32": dloss})
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        lines = ["| model | params | runs | epochs | separate fits (s) | fit_many (s) | speed-up | max loss diff (float32) |",
                 "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['params']} | {r['runs']} | {r['epochs']} | {r['separate_s']} | {r['fit_many_s']} | "
                  f"{r['speedup']}x | {r['max_loss_diff_float32']:.2g} |" for r in rows]
        Path(args.out).write_text("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main()
