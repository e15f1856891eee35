"""PSNR of a trained QIREN image model against shots and noise strength; writes
experiments/results/noise.md (+ .json, .png).

    python experiments/noise.py --quick              # two minutes: small sweep, 64-pixel subset
    python experiments/noise.py                      # the study: ~15 min on a 2-core CPU
    python experiments/noise.py --device cuda        # training on the GPU (evaluation stays on the CPU)
    python experiments/noise.py --from-json experiments/results/noise.json   # re-render .md / .png

The model is the paper's image QIREN (8 qubits, 2 hidden layers, 2 re-uploads) trained on a 32 x 32
``camera`` by full-batch Adam; the depolarizing rows run Aer's density-matrix simulation on a
fixed random subset of pixels (``--subset``), the other rows on every pixel.
"""

import argparse
import json
import logging
from pathlib import Path

from noise_study import load_image, noise_sweep, plot_noise, to_markdown, train_qiren_image
from study_io import machine_info, normalize_machine, write_results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="camera")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--qubits", type=int, default=8, help="qubits per hybrid layer (hidden features)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--subset", type=int, default=256, help="pixels for the density-matrix rows (0: all)")
    ap.add_argument("--repeats", type=int, default=3, help="independent shot draws per shot row")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-aer", action="store_true", help="skip the Qiskit Aer rows")
    ap.add_argument("--quick", action="store_true", help="short training, few settings, 64-pixel subset")
    ap.add_argument("--out", default="experiments/results")
    ap.add_argument("--tag", default="noise", help="file name stem")
    ap.add_argument("--from-json", default=None, help="re-render the report of a saved result, run nothing")
    args = ap.parse_args()
    out = Path(args.out)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        _write_report(result, out, Path(args.from_json).stem)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("qiskit", "jax", "stevedore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    coords, values, shape = load_image(args.image, args.size)
    model, history = train_qiren_image(coords, values, hidden_features=args.qubits,
                                       steps=60 if args.quick else args.steps, lr=args.lr, seed=args.seed,
                                       device=args.device)
    model = model.cpu()  # evaluation: native rows on the CPU like the Aer rows
    sweep = dict(shots=(10, 1000, 100_000), aer_shots=(1000,), readout=(0.01, 0.05), depolarizing=(1e-3,),
                 combined=((1e-3, 0.02, 1000),), subset=64, repeats=2, layer_shots=1000) if args.quick else dict(
        shots=(1, 10, 100, 1000, 10_000, 100_000, 10**6, 10**7, 10**8), subset=args.subset or None,
        repeats=args.repeats)
    result = noise_sweep(model, coords, values, seed=args.seed, aer=not args.no_aer, **sweep)
    result["machine"] = machine_info(args.device)
    result["setup"] = {"image": args.image, "size": list(shape), "qubits": args.qubits, "hidden_layers": 2,
                       "spectrum_layers": 2, "steps": len(history), "lr": args.lr, "seed": args.seed,
                       "train_psnr_final": history[-1], "parameters": sum(p.numel() for p in model.parameters())}
    stem = ("quick_" if args.quick else "") + args.tag
    _write_report(result, out, stem)


def _write_report(result: dict, out: Path, stem: str) -> None:
    m, s = normalize_machine(result["machine"]), result["setup"]
    head = [
        f"# Trained QIREN under shot noise and hardware noise ({m['date']})",
        f"- Machine: {m['cuda_device'] or m['cpu']}, {m['cpu_count']} cores ({m['torch_threads']} torch threads), torch "
        f"{m['torch']}; shared with other jobs, so the seconds are indicative only.",
        f"- Model: QIREN, {s['qubits']} qubits x 3 hybrid layers, 2 re-uploads, {s['parameters']} parameters, trained "
        f"{s['steps']} full-batch Adam steps (lr {s['lr']}, cosine) on `{s['image']}` {s['size'][0]}x{s['size'][1]} "
        f"(values in [-1, 1]); final training PSNR {s['train_psnr_final']:.2f} dB. BatchNorm uses the exact "
        "full-image statistics in every row (eval mode), so rows on a pixel subset see the same model.",
        "- Shot rows: every hybrid layer's <Z_j> are estimated from N shots per pixel and fed, noisy, to the next "
        "layer; each row is the mean (std) over independent draws. Density-matrix rows: a fixed random subset of "
        f"{result['subset_baseline']['pixels']} pixels (an 8-qubit density matrix costs ~0.1 s per pixel for the "
        "3 layers here); compare them with the exact PSNR on the same subset.",
        "- Figure: `" + stem + ".png`; data: `" + stem + ".json`.",
        "",
    ]
    md = head[0] + "\n\n" + "\n".join(head[1:]) + "\n" + to_markdown(result)
    write_results(out, stem, md, result)  # the JSON beside it (rewritten unchanged when re-rendering)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        plot_noise(result, axes)
        fig.tight_layout()
        fig.savefig(out / f"{stem}.png", dpi=120)
    except ImportError:
        logging.warning("matplotlib missing (pip install 'qlite[plots]'): no figure")
    print(md)


if __name__ == "__main__":
    main()
