"""``qlite compare``: several models, several seeds, one table (Markdown, CSV, JSON).

    qlite compare --data image:camera --models qiren,siren,relu,tanh,rff --seeds 0,1,2 \\
        --epochs 300 --reference tanh --out runs/camera-table

Baselines are sized to QIREN's parameter count on the same data unless ``--hidden-features`` or
``--budget`` says otherwise. Without ``--lr`` each family trains at its own default rate (the best
of the paper study's tuning grid: siren 0.003, the others the paper's 0.03); the
table's ``setting`` column says which rate each row used and whether it was the family default. ``--out`` receives ``compare.md``, ``compare.csv`` and ``compare.json``
(existing files are refused).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .fit import (
    MODEL_CHOICES,
    add_data_args,
    add_fit_args,
    add_model_args,
    check_model_options,
    data_spec,
    family_lr,
    load_data,
    model_spec,
    set_threads,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("compare", help="compare several models over seeds",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    g = p.add_argument_group("models")
    g.add_argument("--models", default="qiren,siren,relu,tanh,rff",
                   help=f"comma-separated kinds from {', '.join(MODEL_CHOICES)}")
    g.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    g.add_argument("--reference", help="model whose MSE divides the others' (column rel_mse)")
    add_model_args(p, multiple=True)
    add_fit_args(p)
    p.add_argument("--out", help="directory for compare.md/.csv/.json (default: print only)")
    return p


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--{what} must be comma-separated integers, got {text!r}") from None


def run(args) -> dict:
    from qlite.comparison import compare
    from qlite.models import ModelSpec

    from qlite.comparison import Candidate

    set_threads(args)
    if args.seed is not None:
        raise ValueError("--seed does nothing in `qlite compare`: give the seeds to run with --seeds (e.g. --seeds 0,1,2)")
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    bad = [k for k in kinds if k not in MODEL_CHOICES]
    if not kinds or bad:
        raise ValueError(f"--models must list kinds from {MODEL_CHOICES}, got {args.models!r}")
    if len(set(kinds)) != len(kinds):
        twice = sorted({k for k in kinds if kinds.count(k) > 1})
        raise ValueError(f"--models lists {twice} more than once; each model runs once per seed (use --seeds for repeats)")
    check_model_options(args, kinds)
    if args.reference is not None and args.reference not in kinds:
        raise ValueError(f"--reference {args.reference!r} is not among --models {kinds}")
    out = Path(args.out) if args.out else None
    if out is not None:
        taken = [p.name for p in (out / f"compare.{e}" for e in ("md", "csv", "json")) if p.exists()]
        if taken:
            raise FileExistsError(f"{str(out)!r} already holds {taken}; choose a new --out (nothing was overwritten)")
    dspec = data_spec(args)
    signal, eval_signal = load_data(dspec)
    models = {}
    for k in kinds:
        lr = family_lr(args, k)
        label = f"lr {lr:g}" + (" (family default)" if args.lr is None else " (--lr)")
        models[k] = Candidate(ModelSpec.from_dict(model_spec(args, k, signal)), fit={"lr": lr}, label=label)
    overrides = {"epochs": 300 if args.epochs is None else args.epochs,
                 "batch_size": args.batch_size, "schedule": args.schedule or "constant"}
    if args.progress is not None:
        overrides["progress"] = args.progress
    table = compare(models, signal, seeds=_ints(args.seeds, "seeds"), eval_data=eval_signal,
                    reference=args.reference, device=args.device, **overrides)
    if out is not None:
        table.save(out)
    print(table.to_markdown(), end="")
    return {"data": dspec, "rows": table.rows, "out": str(out) if out else None}
