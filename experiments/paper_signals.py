"""Reproduce the QIREN paper's sound / image / super-resolution studies with fair baselines.

    python experiments/paper_signals.py                      # 3 seeds, full sweeps, writes experiments/results/
    python experiments/paper_signals.py --seeds 0 --timing   # the one-seed timing run (no report files)
    python experiments/paper_signals.py --quick --out /tmp/q # a pipeline check in about a minute
    python experiments/paper_signals.py --device cuda --seeds 0 --timing   # GPU timing

See ``experiments/paper_study.py`` for the settings and ``experiments/results/paper_signals.md``
for the results.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the study helpers next to this script


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--images", default="astronaut,camera,coffee")
    p.add_argument("--sound", default=None, help="gt_bach.wav (default: the shared data file; 'none' to skip)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="30 epochs, small sweeps, camera only")
    p.add_argument("--timing", action="store_true", help="run and print the time; write no report")
    p.add_argument("--separate", action="store_true",
                   help="one qlite.fit per run (default: seeds and lr sweeps of one architecture batched by qlite.fit_many)")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--stem", default="paper_signals")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s")

    import torch
    from paper_study import StudyConfig, run_study

    from qlite.paths import data_file

    if args.threads:
        torch.set_num_threads(args.threads)
    sound = None if args.sound == "none" else (args.sound or str(data_file("gt_bach.wav")))
    seeds = tuple(int(s) for s in args.seeds.split(","))
    cfg = StudyConfig(seeds=seeds, epochs=30 if args.quick else args.epochs,
                      images=("camera",) if args.quick else tuple(args.images.split(",")), sound=sound,
                      device=args.device, tune_seeds=seeds[:1], sweep="quick" if args.quick else "full",
                      batched=False if args.separate else "auto")
    t0 = time.perf_counter()
    results = run_study(cfg)
    summary = {"seconds": time.perf_counter() - t0, "seeds": list(seeds), "device": args.device,
               "tasks": {t["name"]: round(t["seconds"], 1) for t in results["tasks"]}, "machine": results["machine"]}
    if not args.timing:
        from paper_report import write_report

        summary["written"] = [str(x) for x in write_report(results, args.out, args.stem)]
    print(json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    main()
