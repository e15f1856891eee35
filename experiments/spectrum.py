"""Spectrum study: sizes, coefficient distributions, the coefficients speed target, an image fit
with the error split by frequency band, and the frequencies a trained QIREN carries.

    python experiments/spectrum.py                 # full run on CPU (~ minutes), writes experiments/results/spectrum*
    python experiments/spectrum.py --quick         # smoke run
    python experiments/spectrum.py --device cuda --image-size 64 --epochs 1000
"""

import argparse
import json
import logging
from pathlib import Path

from spectrum_study import StudyConfig, run_study


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int)
    p.add_argument("--epochs", type=int, help="full-batch epochs per image model (default 300)")
    p.add_argument("--audio-epochs", type=int, help="full-batch epochs per audio model (default 300)")
    p.add_argument("--timing-repeats", type=int)
    p.add_argument("--audio-file")
    p.add_argument("--threads", type=int, help="torch threads (1 is far faster on a loaded shared CPU)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    overrides = {k: v for k, v in dict(image_size=args.image_size, epochs=args.epochs, audio_epochs=args.audio_epochs,
                                        timing_repeats=args.timing_repeats, audio_file=args.audio_file,
                                        threads=args.threads).items()
                 if v is not None}
    base = dict(device=args.device, seed=args.seed, **overrides)
    cfg = StudyConfig.quick_config(**base) if args.quick else StudyConfig(**base)
    summary = run_study(cfg, args.out)
    print(json.dumps(dict(out=args.out, figures=summary["figures"], seconds=round(summary["seconds"], 1),
                          timing={k: v for k, v in summary["timing"].items() if k.startswith("threads_")})))


if __name__ == "__main__":
    main()
