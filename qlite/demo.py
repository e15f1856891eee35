"""``python -m qlite.demo`` (``make demo``): fit QIREN to scikit-image's camera at 32 x 32.

The paper's model (8 qubits, 2 hidden layers, 2 re-uploads; 657 parameters) trained full batch
with Adam at lr 0.03, fewer epochs than the paper's 300 so it finishes in well under a minute on a
2-core CPU. Prints a few lines of progress, then the metrics as one JSON line (the last line).
"""

from __future__ import annotations

import argparse
import json
import logging
import time


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m qlite.demo", description=__doc__)
    p.add_argument("--image", default="camera", help="scikit-image name or image file (default camera)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a busy 2-core machine two threads ran 5-10x slower)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch

    torch.set_num_threads(args.threads)

    from qlite import data
    from qlite.training import fit
    from qlite.models import ModelSpec

    t0 = time.perf_counter()
    signal = data.image(args.image, size=args.size)
    model = ModelSpec("qiren").build(signal.in_features, signal.out_features, seed=args.seed)
    print(f"fitting QIREN ({sum(p.numel() for p in model.parameters())} parameters) to {args.image} "
          f"at {args.size}x{args.size} for {args.epochs} epochs ...", flush=True)
    result = fit(model, signal, epochs=args.epochs, lr=0.03, seed=args.seed)
    every = max(1, args.epochs // 4)
    for e, loss in zip(result.history["epoch"], result.history["loss"]):
        if e % every == 0 or e == 1:
            print(f"  epoch {e:4d}  training MSE {loss:.5f}", flush=True)
    m = result.metrics
    print(f"MSE {m['mse']:.5f}  PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.3f}  ({result.seconds:.1f} s training)")
    summary = {"model": "qiren", "image": args.image, "size": args.size, "params": result.params,
               "epochs": result.epochs, **m, "seconds": result.seconds, "total_seconds": time.perf_counter() - t0,
               "device": result.device}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
