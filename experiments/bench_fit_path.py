"""Is the user's path the fast path? (issue 13, item 4.) QIREN (8 qubits, 3 hybrid layers) fitted
to an image, ms per epoch (= per full-batch Adam step) of:

  (a) ``qlite.fit`` as a user calls it (default: the step is replayed from a CUDA graph on CUDA),
  (b) ``qlite.fit(..., cuda_graph=False)`` (eager steps),
  (c) a plain PyTorch loop over ``QIREN(2, 1).cuda()`` with Adam (``bench_common.training_step``),
  (d) the best graphed step (``bench_common.graphed_training_step``, for each ``--strategies``),

and the first epoch (kernel compilation) of each. The target: (a) and (c) within 1.3x of (d).

    python experiments/bench_fit_path.py --device cuda                        # 32, 128, 256 px
    python experiments/bench_fit_path.py --device cpu --quick                 # a CPU smoke test

Writes ``<out>/bench_fit_path_<device>[_quick].json`` and ``.md`` after every row (machine, card,
date and command included). The rows of one size run in the order a-b-c-d in one process, so only
the first of them pays the kernel compilation for that size; each row says so where it applies.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import graphed_training_step, training_step  # noqa: E402
from simulator_bench import backend_options  # noqa: E402
from study_io import machine_info, machine_line, write_results  # noqa: E402

log = logging.getLogger("bench_fit_path")
TARGET = 1.3


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _model(seed: int, dev, strategy: str = "auto"):
    from qlite import QIREN

    torch.manual_seed(seed)
    opts = {} if strategy == "auto" else backend_options(strategy)
    return QIREN(2, 1, **opts).to(dev)  # 8 qubits, 2 hidden layers after the first: 3 hybrid layers


def _fit_row(signal, dev, epochs: int, seed: int, lr: float, **kw) -> dict:
    import qlite

    r = qlite.fit(_model(seed, dev), signal, epochs=epochs, lr=lr, device=dev, progress=False, **kw)
    t = r.history["seconds"]
    per = [b - a for a, b in zip([0.0] + t[:-1], t)]
    steady = per[len(per) // 2:] or per  # the second half: past warm-up and capture
    return {"ms_per_epoch": 1e3 * statistics.median(steady), "ms_per_epoch_min": 1e3 * min(steady),
            "first_epoch_s": per[0], "epochs": epochs, "step_mode": r.step_mode,
            "final_loss": r.history["loss"][-1], "psnr": r.metrics["psnr"]}


def _step_row(make, signal, dev, seed: int, lr: float, repeats: int, strategy: str = "auto") -> dict:
    model = _model(seed, dev, strategy)
    x = signal.coords.to(dev)
    y = signal.values.to(dev)
    _sync(dev)
    t0 = time.perf_counter()
    step = make(model, x, y, lr=lr)  # the graphed maker runs its warm-up steps and the capture here
    step()
    _sync(dev)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        _sync(dev)  # one step per "epoch", synchronised as the loop of a user reading the loss would be
        times.append(time.perf_counter() - t0)
    return {"ms_per_epoch": 1e3 * statistics.median(times), "ms_per_epoch_min": 1e3 * min(times),
            "first_epoch_s": first, "epochs": repeats + 1, "strategy": strategy}


def _markdown(doc: dict) -> str:
    lines = ["# qlite.fit path against the best graphed step (issue 13, item 4)", "",
             machine_line(doc["machine"]), "", f"Command: `{doc['command']}`", "",
             "QIREN (8 qubits, 3 hybrid layers, 2 re-uploads), full-batch Adam (lr 0.03) on the camera image; "
             "ms per epoch = median over the second half of the epochs (fits) or over the timed steps, each "
             "synchronised. 'x best' = ms / the best graphed step of that size (target <= "
             f"{TARGET}x for (a) and (c)).", "",
             "| size | points | path | ms / epoch | min | first epoch s | x best | step mode / strategy |",
             "|---|---|---|---|---|---|---|---|"]
    for size in doc["sizes"]:
        rows = [r for r in doc["rows"] if r["size"] == size]
        best = min((r["ms_per_epoch"] for r in rows if r["path"].startswith("(d)") and "ms_per_epoch" in r),
                   default=None)
        for r in rows:
            if "error" in r:
                lines.append(f"| {size} | {size * size} | {r['path']} | - | - | - | - | {r['error']} |")
                continue
            ratio = f"{r['ms_per_epoch'] / best:.2f}" if best else "-"
            mode = r.get("step_mode") or r.get("strategy") or ""
            lines.append(f"| {size} | {size * size} | {r['path']} | {r['ms_per_epoch']:.3f} | "
                         f"{r['ms_per_epoch_min']:.3f} | {r['first_epoch_s']:.2f} | {ratio} | {mode} |")
    lines += ["", "Rows of one size run a-b-c-d in one process: only the first row of the first size pays the "
              "whole kernel compilation (later rows find the kernels compiled; Triton also caches them on disk "
              "between processes). A fit's first epoch includes moving the data and, for (a), nothing of the "
              "capture (that happens at epoch 4); (d)'s first-epoch figure includes its 3 warm-up steps and the capture."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", type=int, nargs="+", help="image sides (default 32 128 256; --quick: 8)")
    ap.add_argument("--epochs", type=int, help="epochs of the fit rows (default 60; --quick: 8)")
    ap.add_argument("--repeats", type=int, help="timed steps of the step rows (default 30; --quick: 3)")
    ap.add_argument("--strategies", nargs="+", default=["auto"],
                    help="simulator options of the graphed rows (d), as in bench_simulator.py: auto, fused:ieee, "
                         "fused:tf32x3, ...; the best of them is the reference")
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few epochs (a smoke test, e.g. on a CPU)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from qlite import data

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is available (use --device cpu --quick)")
    sizes = args.sizes or ([8] if args.quick else [32, 128, 256])
    epochs = args.epochs or (8 if args.quick else 60)
    repeats = args.repeats or (3 if args.quick else 30)
    stem = f"bench_fit_path_{dev.type}" + ("_quick" if args.quick else "")
    doc = {"machine": machine_info(dev), "command": " ".join([Path(sys.executable).name, *sys.argv]),
           "sizes": sizes, "epochs": epochs, "repeats": repeats, "target_ratio": TARGET, "rows": []}

    def add(row):
        doc["rows"].append(row)
        write_results(args.out, stem, _markdown(doc), doc)
        log.info("%s", row)

    for size in sizes:
        signal = data.image("camera", size=size)
        cases = [("(a) qlite.fit default", lambda: _fit_row(signal, dev, epochs, args.seed, args.lr)),
                 ("(b) qlite.fit cuda_graph=False",
                  lambda: _fit_row(signal, dev, epochs, args.seed, args.lr, cuda_graph=False)),
                 ("(c) plain PyTorch loop", lambda: _step_row(training_step, signal, dev, args.seed, args.lr, repeats))]
        for strategy in args.strategies:
            cases.append((f"(d) graphed step {strategy}",
                          lambda s=strategy: _step_row(graphed_training_step, signal, dev, args.seed, args.lr,
                                                       repeats, s)))
        for name, run in cases:
            if name.startswith("(d)") and dev.type != "cuda":
                add({"size": size, "path": name, "error": "CUDA graphs need a CUDA device"})
                continue
            try:
                add({"size": size, "path": name, **run()})
            except Exception as err:  # a benchmark reports a failing row instead of stopping
                log.exception("%s at %d px failed", name, size)
                add({"size": size, "path": name, "error": f"{type(err).__name__}: {str(err)[:200]}"})
    print(Path(args.out) / f"{stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
