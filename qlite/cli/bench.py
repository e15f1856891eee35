"""``qlite bench``: how fast qlite trains and predicts on this machine, against PennyLane on the same model.

The paper's image QIREN (2 inputs, ``--qubits`` per hybrid layer, ``--hidden-layers`` + 1 hybrid
layers, ``--layers`` re-uploads) is trained on a ``--size`` x ``--size`` crop of scikit-image's
``camera`` with :func:`qlite.training.fit` (full-batch Adam, the paper's lr 0.03, exact BatchNorm
statistics at the end) once per backend, from the same initial weights. Reported per backend: the
median wall time of an epoch after the first (the first includes compilation and allocator
warm-up, reported apart), the time of :func:`qlite.training.predict` on every pixel, and the PSNR
(:func:`qlite.training.psnr`) of the trained model, which should agree across backends: the same
function is fitted, only the simulator differs. Examples::

    qlite bench                                        # 32 x 32 pixels, 8 qubits: qlite vs PennyLane
    qlite bench --size 16 --qubits 4 --epochs 3        # a quick look
    qlite bench --backends torch --device cuda         # qlite alone, on a GPU

The full simulator study (several sizes, FLOP floors, every backend) is ``experiments/bench_simulator.py``.
"""

from __future__ import annotations

import argparse

BACKENDS = ("torch", "pennylane", "jax", "qiskit")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def _backends(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in BACKENDS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"--backends takes a comma-separated subset of {', '.join(BACKENDS)}; "
                                         f"got {text!r}")
    return names


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="time qlite against PennyLane on this machine (QIREN on an image)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=_int_at_least(2), default=32, help="image side: size x size points (default 32)")
    p.add_argument("--qubits", type=_int_at_least(1), default=8, help="qubits per hybrid layer (default 8)")
    p.add_argument("--layers", type=_int_at_least(1), default=2, help="re-uploads per circuit (default 2)")
    p.add_argument("--hidden-layers", type=_int_at_least(0), default=2, help="hybrid layers after the first (default 2)")
    p.add_argument("--epochs", type=_int_at_least(2), default=5,
                   help="full-batch epochs per backend, the first one a warm-up (default 5, at least 2)")
    p.add_argument("--repeats", type=_int_at_least(1), default=3, help="timed predict calls (default 3)")
    p.add_argument("--backends", type=_backends, default=("torch", "pennylane"),
                   help="comma-separated, from torch (qlite's simulator), pennylane, jax, qiskit (default torch,pennylane)")
    p.add_argument("--device", default="cpu", help="torch device of the model (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="initial weights, the same for every backend (default 0)")
    return p


def _qiren(args, backend: str):
    import torch

    from qlite.layers import QIREN

    return QIREN(2, 1, hidden_features=args.qubits, hidden_layers=args.hidden_layers, spectrum_layers=args.layers,
                 backend=backend, generator=torch.Generator().manual_seed(args.seed))


def _initial_state(args) -> dict:
    """The initial weights every backend starts from. The Linear layers initialise from the global RNG:
    a seeded fork of it, so the weights follow ``--seed`` and the caller's random state is untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(args.seed)
        return _qiren(args, "torch").state_dict()


def _one(name: str, signal, args, init: dict) -> dict:
    import statistics

    from qlite.timing import time_call
    from qlite.training import fit, predict, psnr

    try:
        model = _qiren(args, name)
    except ImportError as err:  # the backend's optional package: report it, time the others
        return {"error": str(err)}
    model.load_state_dict(init)  # the same starting point on every simulator
    res = fit(model, signal, epochs=args.epochs, device=args.device, seed=args.seed, progress=False)
    seconds = res.history["seconds"]  # cumulative, one entry per epoch
    per_epoch = [b - a for a, b in zip(seconds, seconds[1:])]
    timing = time_call(lambda: predict(res.model, signal.coords), args.device, repeats=args.repeats, warmup=1)
    prediction = predict(res.model, signal.coords)
    return {"ms_per_epoch": 1e3 * statistics.median(per_epoch), "first_epoch_ms": 1e3 * seconds[0],
            "predict_ms": timing["ms"], "psnr_db": psnr(prediction, signal.values, signal.data_range),
            "params": res.params, "epochs": res.epochs}


def run(args: argparse.Namespace) -> dict:
    import torch

    from qlite import data

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device} but torch.cuda.is_available() is False; use --device cpu")
    signal = data.image("camera", size=args.size)
    init = _initial_state(args)
    rows = {name: _one(name, signal, args, init) for name in args.backends}
    out = {"command": "bench", "model": f"QIREN(2, 1, hidden_features={args.qubits}, hidden_layers={args.hidden_layers}, "
                                        f"spectrum_layers={args.layers})",
           "points": signal.n_points, "epochs": args.epochs, "device": args.device,
           "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "backends": rows}
    ok = {n: r for n, r in rows.items() if "error" not in r}
    if "torch" in ok:
        out["speedup_vs"] = {n: r["ms_per_epoch"] / ok["torch"]["ms_per_epoch"] for n, r in ok.items() if n != "torch"}
        # the same weights and data on every backend: the fits should agree (float32 rounding apart)
        out["psnr_spread_db"] = max(r["psnr_db"] for r in ok.values()) - min(r["psnr_db"] for r in ok.values())
    return out
