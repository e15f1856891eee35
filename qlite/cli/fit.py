"""``qlite fit``: fit one model to an image, a sound or a text and write checkpoint, figures and metrics.

    qlite fit --data image:camera --size 32 --model qiren --epochs 300 --lr 0.03 --seed 0 --out runs/camera
    qlite fit --data audio:gt_bach.wav --start 20000 --stop 25000 --step 5 --model siren --out runs/bach
    qlite fit --resume runs/camera --epochs 600
    qlite fit --data text:tinyshakespeare --model llama --ffn quantum --max-steps 500 --out runs/ts
    qlite fit --data text:tinyshakespeare --model smollm2 --adapter quantum-lora --out runs/ql

Text runs (language models) are described in :mod:`qlite.cli.fit_text`.

``--out`` receives the checkpoint (``checkpoint.json`` + safetensors), ``reconstruction.png``
(reconstruction / ground truth / error map), ``loss.png`` and ``result.json``; a directory that
already holds any of them is refused. Baselines are sized by default to QIREN's parameter count on
the same data (``--budget qiren``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .fit_text import TEXT_MODELS, add_text_args

MODEL_CHOICES = ("qiren", "siren", "relu", "tanh", "rff")
# Learning rate of each family when --lr is not given. The paper's 0.03 for every family made SIREN
# (omega_0 30) collapse to a grey image: camera 32 x 32, PSNR 11.3 at 0.03 against 35.7 at 0.003, the
# best rate of the paper study's tuning grid (experiments/results/paper_signals.md, 2026-11-26). For
# the other families that grid's best rates on the images were 0.01-0.03 within one standard
# deviation of each other, so they keep the paper's 0.03.
DEFAULT_LR = {"qiren": 0.03, "siren": 0.003, "relu": 0.03, "tanh": 0.03, "rff": 0.03}
# Model options and the families they apply to (anything else is refused: it would do nothing).
_OPTION_KINDS = {"omega_0": ("siren",), "scale": ("rff",), "spectrum_layers": ("qiren",)}
OUTPUT_FILES = ("checkpoint.json", "reconstruction.png", "loss.png", "result.json")
# Options that define a run; with --resume they come from the checkpoint instead.
_RUN_OPTIONS = ("data", "size", "color", "start", "stop", "step", "eval_size", "model", "hidden_features",
                "hidden_layers", "budget", "omega_0", "scale", "spectrum_layers", "lr", "batch_size", "schedule", "seed",
                "seqlen", "split", "adapter", "ffn", "rank", "n_qubits", "target_modules", "eval_every")
_TEXT_ONLY = ("seqlen", "split", "adapter", "ffn", "rank", "n_qubits", "target_modules", "max_steps", "eval_every")


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", help="image:NAME_OR_PATH (scikit-image name or file), audio:PATH (WAV) or "
                                  "text:NAME_OR_PATH (tinyshakespeare, wikitext2 or a UTF-8 file; `qlite fit` only)")
    g.add_argument("--size", type=int, help="image side after centre crop and resize (default 32)")
    g.add_argument("--color", action="store_true", default=None, help="keep RGB instead of converting to gray")
    g.add_argument("--eval-size", type=int, help="images: train on --size, also score the --eval-size grid "
                                                 "(super-resolution; a multiple of --size)")
    g.add_argument("--start", type=int, help="audio: first sample")
    g.add_argument("--stop", type=int, help="audio: end sample (exclusive)")
    g.add_argument("--step", type=int, help="audio: sample step (default 1)")


def add_model_args(p: argparse.ArgumentParser, multiple: bool = False) -> None:
    g = p.add_argument_group("model")
    if not multiple:
        g.add_argument("--model", choices=MODEL_CHOICES + TEXT_MODELS, help="default qiren (text: llama)")
    g.add_argument("--hidden-features", type=int, help="width (qubits for qiren); default: from --budget")
    g.add_argument("--hidden-layers", type=int, help="hidden layers after the first (default 2)")
    g.add_argument("--budget", help="baselines: at most this many parameters, or 'qiren' (default) for "
                                    "QIREN's count on the same data")
    g.add_argument("--omega-0", type=float, help="siren: omega_0 of every layer (default 30)")
    g.add_argument("--scale", type=float, help="rff: standard deviation of the Fourier frequencies (default 1)")
    g.add_argument("--spectrum-layers", type=int, help="qiren: re-uploads per circuit (default 2)")


def add_fit_args(p: argparse.ArgumentParser, cuda_graph: bool = False) -> None:
    g = p.add_argument_group("training")
    if cuda_graph:  # `qlite fit` only: `qlite compare` (qlite.compare) does not graph its fits
        g.add_argument("--cuda-graph", choices=("auto", "on", "off"),
                       help="replay the training step from a CUDA graph: auto (default: on CUDA when the step can be "
                            "captured, else eager with the reason logged), on (graph or refuse), off (eager)")
    g.add_argument("--epochs", type=int, help="total epochs (default 300; with --resume: the new total)")
    g.add_argument("--lr", type=float, help="Adam learning rate (default per family: siren 0.003, the others 0.03 as in "
                                            "the paper; text 1e-3)")
    g.add_argument("--batch-size", type=int, help="points per batch (default: full batch)")
    g.add_argument("--schedule", choices=("constant", "cosine"), help="learning-rate schedule (default constant)")
    g.add_argument("--seed", type=int, help="seed of initialisation and shuffling (default 0)")
    g.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: only on a terminal)")
    g.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; on a busy 2-core "
                                               "machine 1 thread ran QIREN 5-10x faster than 2)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("fit", help="fit one model to an image or a sound",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    add_model_args(p)
    add_fit_args(p, cuda_graph=True)
    add_text_args(p)
    g = p.add_argument_group("output")
    g.add_argument("--out", help="new directory for checkpoint, figures and result.json")
    g.add_argument("--checkpoint-every", type=int, help="also checkpoint every N epochs (text: steps)")
    g.add_argument("--checkpoint-seconds", type=float, default=60.0,
                   help="also checkpoint after this many seconds of training since the last save (default 60; "
                        "0 turns it off), so a killed run loses at most that much: continue it with --resume")
    g.add_argument("--resume", metavar="DIR", help="continue the run in DIR up to --epochs in total")
    return p


# -- shared with `qlite compare` ------------------------------------------------------------
def data_spec(args) -> dict:
    """The data options as a JSON-able dict (stored in checkpoints to rebuild the signal)."""
    if not args.data:
        raise ValueError("--data is required: image:NAME_OR_PATH or audio:PATH")
    kind, sep, source = args.data.partition(":")
    text_given = [f"--{o.replace('_', '-')}" for o in _TEXT_ONLY if getattr(args, o, None) is not None]
    if text_given and kind != "text":
        raise ValueError(f"{text_given} apply to text (--data text:...), not to {args.data!r}")
    if kind == "text":
        raise ValueError("text data trains one language model: use `qlite fit --data text:... --model llama|smollm2`")
    if getattr(args, "model", None) in TEXT_MODELS:
        raise ValueError(f"--model {args.model} is a language model; it trains on --data text:NAME_OR_PATH")
    if not sep or kind not in ("image", "audio") or not source:
        raise ValueError(f"--data must look like image:NAME_OR_PATH or audio:PATH, got {args.data!r}")
    if kind == "image":
        for opt in ("start", "stop", "step"):
            if getattr(args, opt) is not None:
                raise ValueError(f"--{opt} applies to audio, not to {args.data!r}")
        return {"kind": "image", "source": source, "size": 32 if args.size is None else args.size, "gray": not args.color,
                "eval_size": args.eval_size}
    for opt in ("size", "color", "eval_size"):
        if getattr(args, opt) is not None:
            raise ValueError(f"--{opt.replace('_', '-')} applies to images, not to {args.data!r}")
    return {"kind": "audio", "source": source, "start": args.start, "stop": args.stop, "step": 1 if args.step is None else args.step}


def _audio_path(source: str) -> str:
    """An existing file as given, else the shared data folder's file of that name (``$QLITE_DATA``)."""
    if Path(source).is_file():
        return source
    from qlite.paths import data_dir, data_file

    try:
        return str(data_file(source))
    except FileNotFoundError:
        raise FileNotFoundError(f"audio file {source!r} is neither an existing path nor in the shared data folder "
                                f"{data_dir()} (set QLITE_DATA to the folder that holds it)") from None


def load_data(spec: dict):
    """``(train, eval_or_None)`` signals from a :func:`data_spec` dict."""
    from qlite import data

    if spec["kind"] == "image":
        if spec.get("eval_size"):
            pair = data.super_resolution(spec["source"], low=spec["size"], high=spec["eval_size"], gray=spec["gray"])
            return pair.train, pair.eval
        return data.image(spec["source"], size=spec["size"], gray=spec["gray"]), None
    return data.audio(_audio_path(spec["source"]), spec["start"], spec["stop"], spec["step"]), None


def model_spec(args, kind: str, signal) -> dict:
    """A :class:`~qlite.models.ModelSpec` dict for ``kind`` from the model options."""
    from qlite.models import ModelSpec, count_parameters

    options = {}
    if kind == "siren" and args.omega_0 is not None:
        options["omega_0"] = args.omega_0
    if kind == "rff" and args.scale is not None:
        options["scale"] = args.scale
    if kind == "qiren" and args.spectrum_layers is not None:
        options["spectrum_layers"] = args.spectrum_layers
    layers = 2 if args.hidden_layers is None else args.hidden_layers
    budget = None
    if kind != "qiren" and args.hidden_features is None:
        if args.budget in (None, "qiren"):
            qiren = ModelSpec("qiren", hidden_layers=layers).build(signal.in_features, signal.out_features, seed=0)
            budget = count_parameters(qiren)
        else:
            try:
                budget = int(args.budget)
            except ValueError:
                raise ValueError(f"--budget must be an int or 'qiren', got {args.budget!r}") from None
    spec = ModelSpec(kind, args.hidden_features, layers, options, budget)
    return spec.to_dict()


def check_model_options(args, kinds) -> None:
    """Refuse model options that none of ``kinds`` uses (they would silently do nothing)."""
    for opt, users in _OPTION_KINDS.items():
        if getattr(args, opt, None) is not None and not set(kinds) & set(users):
            raise ValueError(f"--{opt.replace('_', '-')} applies to {' / '.join(users)}, not to {', '.join(kinds)}")
    if getattr(args, "budget", None) is not None:
        if set(kinds) == {"qiren"}:
            raise ValueError("--budget sizes the classical baselines; QIREN's size is --hidden-features (qubits)")
        if args.hidden_features is not None:
            raise ValueError("--budget and --hidden-features both set the width; give one of them")


def family_lr(args, kind: str) -> float:
    return DEFAULT_LR[kind] if args.lr is None else args.lr


# -- qlite fit ------------------------------------------------------------------------------
def _fit_overrides(args) -> dict:
    out = {"epochs": 300 if args.epochs is None else args.epochs, "lr": family_lr(args, args.model or "qiren")}
    for opt, default in (("batch_size", None), ("schedule", "constant"), ("seed", 0)):
        v = getattr(args, opt)
        out[opt] = default if v is None else v
    if args.progress is not None:
        out["progress"] = args.progress
    out.update(graph_override(args))
    return out


def graph_override(args) -> dict:
    """``--cuda-graph`` as a FitConfig field (absent: the config's, i.e. 'auto' or the stored run's)."""
    return {} if getattr(args, "cuda_graph", None) is None else {"cuda_graph": args.cuda_graph}


def checkpoint_overrides(args) -> dict:
    """``--checkpoint-every`` / ``--checkpoint-seconds`` as FitConfig fields."""
    out = {}
    if args.checkpoint_every is not None:
        if args.checkpoint_every < 1:
            raise ValueError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
        out["checkpoint_every"] = args.checkpoint_every
    if args.checkpoint_seconds is not None:
        if not args.checkpoint_seconds >= 0:
            raise ValueError(f"--checkpoint-seconds must be >= 0 (0: off), got {args.checkpoint_seconds}")
        out["checkpoint_seconds"] = args.checkpoint_seconds or None
    return out


def require_plots() -> None:
    """The figures are written after training: make sure they can be, before it starts."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("`qlite fit` writes figures and needs matplotlib: pip install 'qlite[plots]'") from None


def _refuse_existing(out: Path, names=OUTPUT_FILES) -> None:
    taken = [name for name in names if (out / name).exists()]
    if taken:
        raise FileExistsError(f"{str(out)!r} already holds {taken}; use --resume {out} to continue that run "
                              f"or choose a new --out (nothing was overwritten)")


def write_figures(out: Path, signal, prediction, history, title: str) -> None:
    from qlite import plots

    plots.save(plots.plot_fit(signal, prediction, title=title), out / "reconstruction.png")
    ax = plots.plot_loss(history)
    ax.set_title(title)
    plots.save(ax, out / "loss.png")


def set_threads(args) -> None:
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)


def run(args) -> dict:
    import os

    from qlite.training import fit, predict, read_index

    set_threads(args)
    from qlite.models import ModelSpec

    main_rank = int(os.environ.get("RANK", "0")) == 0
    if args.resume:
        given = [f"--{o.replace('_', '-')}" for o in _RUN_OPTIONS if getattr(args, o, None) is not None]
        if given or args.out:
            raise ValueError(f"--resume continues the stored run; {given + (['--out'] if args.out else [])} "
                             f"cannot change it (only --epochs, --max-steps, --device, --cuda-graph and --progress apply)")
        out = Path(args.resume)
        stored = read_index(out).get("info", {}).get("cli")
        if not stored:
            raise ValueError(f"the checkpoint in {str(out)!r} was not written by `qlite fit`; resume it with qlite.fit()")
        overrides = {"epochs": args.epochs} if args.epochs is not None else {}
        if args.progress is not None:
            overrides["progress"] = args.progress
        overrides.update(checkpoint_overrides(args))
        overrides.update(graph_override(args))
        require_plots()
        if "text" in stored:
            from . import fit_text

            if args.max_steps is not None:
                overrides["max_steps"] = args.max_steps
            return fit_text.run(args, out, stored, overrides, stored["seed"])
        if args.max_steps is not None:
            raise ValueError("--max-steps applies to text runs; a signal run continues up to --epochs")
        dspec, mspec, seed = stored["data"], stored["model"], stored["seed"]
    elif (args.data or "").startswith("text:"):
        from . import fit_text

        if not args.out:
            raise ValueError("--out DIR is required (a new directory for the run)")
        out = Path(args.out)
        _refuse_existing(out, fit_text.TEXT_OUTPUT_FILES)
        overrides = {"epochs": 1 if args.epochs is None else args.epochs, "lr": 1e-3 if args.lr is None else args.lr,
                     "batch_size": 8 if args.batch_size is None else args.batch_size,
                     "schedule": args.schedule or "constant", "seed": 0 if args.seed is None else args.seed,
                     "max_steps": args.max_steps, "eval_every": args.eval_every or 0, **checkpoint_overrides(args),
                     **graph_override(args)}
        if args.progress is not None:
            overrides["progress"] = args.progress
        require_plots()
        return fit_text.run(args, out, None, overrides, overrides["seed"])
    else:
        if not args.out:
            raise ValueError("--out DIR is required (a new directory for the run)")
        out = Path(args.out)
        _refuse_existing(out)
        dspec = data_spec(args)
        check_model_options(args, [args.model or "qiren"])
        overrides = {**_fit_overrides(args), **checkpoint_overrides(args)}
        seed = overrides["seed"]
        require_plots()
    signal, eval_signal = load_data(dspec)
    if not args.resume:
        mspec = model_spec(args, args.model or "qiren", signal)
    spec = ModelSpec.from_dict(mspec)
    model = spec.build(signal.in_features, signal.out_features, seed=seed)
    info = {"cli": {"data": dspec, "model": mspec, "seed": seed}}
    # The CLI owns its process, so it asks for the faster CPU allocator setting (qlite.runtime).
    result = fit(model, signal, eval_data=eval_signal, device=args.device, checkpoint_dir=out,
                 resume=bool(args.resume), info=info, tune_allocator=True, **overrides)
    summary = {"model": spec.kind, "params": result.params, "epochs": result.epochs, **result.metrics,
               "seconds": result.seconds, "seconds_per_epoch": result.seconds_per_epoch, "device": result.device,
               "world_size": result.world_size, "step_mode": result.step_mode, "out": str(out)}
    if result.eval_metrics is not None:
        summary.update({f"eval_{k}": v for k, v in result.eval_metrics.items()})
    if main_rank:
        shown, pred_on = (eval_signal, eval_signal) if eval_signal is not None else (signal, signal)
        write_figures(out, shown, predict(result.model, pred_on.coords).cpu(), result.history,
                      f"{spec.label()} on {dspec['source']} ({result.params} parameters)")
        from qlite.training.checkpoint import write_text_atomic

        write_text_atomic(out / "result.json", json.dumps({**summary, "fit": result.to_dict()}, indent=1, default=str))
    return summary
