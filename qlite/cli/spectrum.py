"""``qlite spectrum ...``: spectrum sizes, circuit and model spectra, coefficient timing.

Contract of ``qlite.cli``: ``add_parser(subparsers)`` registers the ``spectrum`` command and
``run(args) -> dict`` does the work; ``qlite.cli.main`` prints the dict as the last line of stdout
(JSON). Examples::

    qlite spectrum size --qubits 8 --layers 2 --scaling ternary
    qlite spectrum circuit --qubits 3 --layers 2 --encoding rx
    qlite spectrum model --in-features 2 --qubits 8 --layers 2 --hidden-layers 2
    qlite spectrum model --checkpoint runs/camera          # a model trained by `qlite fit`
    qlite spectrum coefficients --in-features 2 --qubits 8 --degree 16 --repeats 5

The study that tabulates all of these (figures and ``spectrum.md``) is ``python experiments/spectrum.py``.
"""

from __future__ import annotations

import argparse

COMMANDS = ("size", "circuit", "model", "coefficients")


def _scaling(text: str):
    """``unit`` / ``ternary`` / ``bound`` or a comma-separated list of weights."""
    if text in ("unit", "ternary", "bound"):
        return text
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--scaling takes unit, ternary, bound or comma-separated weights such as 1,0.5,0.25; got {text!r}"
        ) from None


def _positive_int(text: str) -> int:
    """An integer >= 1 (``--repeats 0`` would time nothing and report a median of no runs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (at least 1), got {value}")
    return value


# The options of a fresh QIREN and their defaults (None in the parser, so that `model --checkpoint`
# can refuse them instead of ignoring them).
QIREN_DEFAULTS = {"in_features": 2, "qubits": 8, "layers": 2, "hidden_layers": 2}


def _add_qiren_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--in-features", type=int, help="model inputs (default 2: an image)")
    p.add_argument("--qubits", type=int, help="qubits per hybrid layer (default 8)")
    p.add_argument("--layers", type=int, help="re-uploads per circuit (default 2)")
    p.add_argument("--hidden-layers", type=int, help="hybrid layers after the first (default 2)")
    p.add_argument("--seed", type=int, default=0, help="initialisation of a fresh QIREN and the sampling of "
                                                       "huge frequency sets (default 0)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``spectrum`` and its sub-commands on an ``argparse`` sub-parser collection."""
    parser = subparsers.add_parser("spectrum", help="Fourier spectra of circuits and hybrid models",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="spectrum_command", required=True, metavar="{" + ",".join(COMMANDS) + "}")

    p = sub.add_parser("size", help="number of frequencies of one input on d weighted qubits")
    p.add_argument("--qubits", type=int, required=True)
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--scaling", type=_scaling, default="unit", help="unit, ternary, bound or weights w1,w2,...")

    p = sub.add_parser("circuit", help="per-input frequencies of the QIREN circuit")
    p.add_argument("--qubits", type=int, default=8)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--sublayers", type=int, default=2)
    p.add_argument("--entangler", default="cz", choices=("cz", "cnot"))
    p.add_argument("--encoding", default="rz", choices=("rz", "rx", "ry"))

    p = sub.add_parser("model", help="frequency vectors of a QIREN (fresh, or trained: --checkpoint) or of a "
                                     "SIREN / RFF first layer (--checkpoint) in its input coordinates")
    _add_qiren_args(p)
    p.add_argument("--checkpoint", metavar="DIR", help="analyse the trained model of a `qlite fit` run directory "
                                                       "(its checkpoint.json + weights) instead of a fresh QIREN")
    p.add_argument("--order", type=int, default=1, help="sums of at most this many first-layer frequencies")
    p.add_argument("--max-size", type=int, default=2**21, help="largest set enumerated (else sampled)")
    p.add_argument("--show", type=int, default=10, help="frequency vectors to print")

    p = sub.add_parser("coefficients", help="time coefficients() of a QIREN on the standard grid")
    _add_qiren_args(p)
    p.add_argument("--degree", type=_positive_int, default=16, help="frequencies -degree..degree per input")
    p.add_argument("--repeats", type=_positive_int, default=5, help="timed runs after the warm-up (at least 1)")
    p.add_argument("--device", default="cpu")

    return parser


def _qiren(args):
    import torch

    from qlite import QIREN

    o = {k: QIREN_DEFAULTS[k] if getattr(args, k) is None else getattr(args, k) for k in QIREN_DEFAULTS}
    return QIREN(o["in_features"], 1, hidden_features=o["qubits"], hidden_layers=o["hidden_layers"],
                 spectrum_layers=o["layers"], generator=torch.Generator().manual_seed(args.seed)).eval()


def _trained_model(directory):
    """``(model in eval mode, ModelSpec, checkpoint index)`` from a ``qlite fit`` run directory.

    ``qlite fit`` stores the :class:`~qlite.models.ModelSpec` under ``info.cli.model`` of
    ``checkpoint.json`` and the signal's sizes under ``data``; a checkpoint written by
    ``qlite.fit(..., info={"model": spec.to_dict()})`` is read too. The weights (with BatchNorm
    statistics recomputed by the fit, and RFF's fixed frequencies, which are buffers) come from the
    safetensors file, verified against its SHA-256 by ``load_checkpoint``.
    """
    from qlite.training import load_checkpoint
    from qlite.models import ModelSpec

    ckpt = load_checkpoint(directory)
    info = ckpt.info.get("info") or {}
    stored = (info.get("cli") or {}).get("model") or info.get("model")
    if not isinstance(stored, dict) or "kind" not in stored:
        raise ValueError(f"the checkpoint in {str(directory)!r} stores no model spec (info.cli.model, as `qlite fit` "
                         f"writes, or info.model); rebuild the model yourself, load the weights with "
                         f"qlite.training.load_checkpoint and call qlite.spectrum.model_spectrum on it")
    spec = ModelSpec.from_dict(stored)
    sizes = ckpt.info.get("data") or {}
    if not {"in_features", "out_features"} <= set(sizes):
        raise ValueError(f"the checkpoint in {str(directory)!r} does not record the data's in/out features")
    model = spec.build(sizes["in_features"], sizes["out_features"], seed=0)  # every weight is then replaced
    model.load_state_dict(ckpt.model_state)
    return model.eval(), spec, ckpt.info


def _model_command(args) -> dict:
    import torch

    from qlite import spectrum

    generator = torch.Generator().manual_seed(args.seed)
    if args.checkpoint is None:
        spec = spectrum.model_spectrum(_qiren(args), order=args.order, max_size=args.max_size, generator=generator)
        return dict(command="spectrum model", **spec.to_dict(max_frequencies=args.show))
    given = [f"--{k.replace('_', '-')}" for k in QIREN_DEFAULTS if getattr(args, k) is not None]
    if given:
        raise ValueError(f"{given} describe a fresh QIREN; with --checkpoint the model comes from the checkpoint")
    model, mspec, index = _trained_model(args.checkpoint)
    if mspec.kind == "qiren":
        spec = spectrum.model_spectrum(model, order=args.order, max_size=args.max_size, generator=generator)
    elif args.order != 1:
        raise ValueError(f"--order {args.order} applies to QIREN; a {mspec.kind} checkpoint has its first layer's "
                         f"spectrum only (order 1)")
    else:
        spec = spectrum.classical_spectrum(model)  # TypeError for relu / tanh: no finite Fourier first layer
    return dict(command="spectrum model", checkpoint=str(args.checkpoint), model=mspec.label(),
                epoch=index.get("epoch"), metrics=(index.get("metrics") or {}).get("train"),
                **spec.to_dict(max_frequencies=args.show))


def run(args: argparse.Namespace) -> dict:
    """Run the sub-command in ``args.spectrum_command``; returns a JSON-ready dict."""
    from qlite import spectrum

    cmd = args.spectrum_command
    if cmd == "size":
        return dict(command="spectrum size", qubits=args.qubits, layers=args.layers,
                    scaling=args.scaling, size=spectrum.spectrum_size(args.qubits, args.layers, args.scaling))
    if cmd == "circuit":
        from qlite.simulators import reuploading_circuit

        circuit = reuploading_circuit(args.qubits, args.layers, args.sublayers, args.entangler, args.encoding)
        spec = spectrum.circuit_spectrum(circuit)
        return dict(command="spectrum circuit", spectrum={str(k): v for k, v in spec.items()},
                    sizes={str(k): len(v) for k, v in spec.items()})
    if cmd == "model":
        return _model_command(args)
    if cmd == "coefficients":
        import torch

        from qlite.timing import time_call

        model = _qiren(args).to(args.device)
        n_in = model.net[0].linear.in_features
        c = spectrum.coefficients(model, n_in, args.degree)  # also the warm-up
        t = time_call(lambda: spectrum.coefficients(model, n_in, args.degree), args.device, repeats=args.repeats,
                      warmup=0)
        return dict(command="spectrum coefficients", shape=list(c.shape), points=(2 * args.degree + 1) ** n_in,
                    seconds_min=t["ms_min"] / 1e3, seconds_median=t["ms"] / 1e3, repeats=t["runs"],
                    threads=torch.get_num_threads(), device=args.device)
    raise ValueError(f"unknown spectrum command {cmd!r}; choose one of {COMMANDS}")
