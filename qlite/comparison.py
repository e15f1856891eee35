"""Comparative studies: several models, several seeds, one table.

``qlite.compare(models, data, seeds=(0, 1, 2), epochs=300, lr=0.03)`` fits every model with every
seed through :func:`qlite.fit` and returns a :class:`Comparison`: per model the parameter count,
MSE mean and standard deviation over seeds, PSNR, SSIM (images) and seconds -- as Markdown, CSV and
JSON. :func:`select_best` runs a small hyper-parameter sweep and keeps the best entry by a
validation signal, which is how the tuned baselines of the paper study are chosen.

``qlite.compare`` is the function :func:`compare` (re-exported by ``qlite``); this module is
``qlite.comparison``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .data import Signal
from .training import FitConfig, fit
from .models import ModelSpec

log = logging.getLogger(__name__)

METRICS = ("mse", "psnr", "ssim")


@dataclass(frozen=True)
class Candidate:
    """A model to compare and how to train it.

    Args:
        model: a :class:`~qlite.models.ModelSpec` or a factory ``seed -> nn.Module``.
        fit: :class:`~qlite.training.FitConfig` overrides for this model only (e.g. its own ``lr``).
        label: free text for the table (e.g. the chosen hyper-parameters).
    """

    model: ModelSpec | Callable[[int], nn.Module]
    fit: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self):
        if not isinstance(self.model, ModelSpec) and not callable(self.model):
            raise TypeError(f"Candidate.model must be a ModelSpec or a callable seed -> nn.Module, got {type(self.model).__name__}")
        object.__setattr__(self, "fit", dict(self.fit))

    def build(self, signal: Signal, seed: int) -> nn.Module:
        if isinstance(self.model, ModelSpec):
            return self.model.build(signal.in_features, signal.out_features, seed=seed)
        model = self.model(seed)
        if not isinstance(model, nn.Module):
            raise TypeError(f"the model factory returned {type(model).__name__}, not an nn.Module")
        return model

    def describe(self) -> dict:
        spec = self.model.to_dict() if isinstance(self.model, ModelSpec) else getattr(self.model, "__name__", "factory")
        return {"model": spec, "fit": dict(self.fit), "label": self.label}


def _candidate(entry) -> Candidate:
    return entry if isinstance(entry, Candidate) else Candidate(entry)


def _mean_std(xs: Sequence[float | None]) -> tuple[float | None, float | None]:
    vals = [x for x in xs if x is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


@dataclass(frozen=True)
class Comparison:
    """The table of a comparison (``rows``, one per model) and every run behind it (``runs``)."""

    rows: list[dict]
    runs: list[dict]
    meta: dict = field(default_factory=dict)

    def row(self, name: str) -> dict:
        for r in self.rows:
            if r["model"] == name:
                return r
        raise KeyError(f"no model {name!r} in this comparison; have {[r['model'] for r in self.rows]}")

    def columns(self) -> list[str]:
        cols: list[str] = []
        for r in self.rows:
            cols += [k for k in r if k not in cols]
        return cols

    def to_markdown(self, columns: Sequence[str] | None = None, digits: int = 4) -> str:
        """A Markdown table (numbers to ``digits`` significant digits; missing values as ``-``)."""
        cols = list(columns or self.columns())

        def fmt(v):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return "-"
            if isinstance(v, float):
                return f"{v:.{digits}g}"
            return str(v)

        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in self.rows]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns(), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buf.getvalue()

    def to_dict(self) -> dict:
        return {"rows": self.rows, "runs": self.runs, "meta": self.meta}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def __repr__(self) -> str:
        seeds = sorted({r.get("seeds") for r in self.rows if r.get("seeds") is not None})
        return f"Comparison(models={[r['model'] for r in self.rows]}, seeds={seeds[0] if len(seeds) == 1 else seeds}, runs={len(self.runs)})"

    def _repr_html_(self, digits: int = 4) -> str:
        """Notebook display: the same table as :meth:`to_markdown`."""
        from .display import table

        cols = self.columns()
        return table([[r.get(c) for c in cols] for r in self.rows], cols, digits=digits)

    def save(self, directory, stem: str = "compare", *, overwrite: bool = False) -> dict[str, Path]:
        """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.json``; refuses to replace existing files
        unless ``overwrite=True``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {ext: directory / f"{stem}.{ext}" for ext in ("md", "csv", "json")}
        existing = [str(p) for p in paths.values() if p.exists()]
        if existing and not overwrite:
            raise FileExistsError(f"would overwrite {existing}; pass overwrite=True or choose another stem/directory")
        from .training.checkpoint import write_text_atomic

        write_text_atomic(paths["md"], self.to_markdown())
        write_text_atomic(paths["csv"], self.to_csv())
        write_text_atomic(paths["json"], self.to_json())
        return paths


def _summarise(name: str, cand: Candidate, runs: list[dict], has_eval: bool) -> dict:
    row: dict[str, Any] = {"model": name}
    if cand.label:
        row["setting"] = cand.label
    row["params"] = runs[0]["params"]
    row["seeds"] = len(runs)
    for prefix, key in (("", "metrics"), ("eval_", "eval_metrics")) if has_eval else (("", "metrics"),):
        for m in METRICS:
            mean, std = _mean_std([r[key][m] for r in runs])
            if mean is None:
                continue
            row[f"{prefix}{m}_mean"] = mean
            row[f"{prefix}{m}_std"] = std
    row["seconds"] = statistics.fmean(r["seconds"] for r in runs)
    return row


def compare(models: Mapping[str, ModelSpec | Candidate | Callable[[int], nn.Module]], data: Signal, *,
            seeds: Sequence[int] = (0, 1, 2), eval_data: Signal | None = None, reference: str | None = None,
            config: FitConfig | None = None, device="auto",
            on_result: Callable[[str, int, Any], None] | None = None, batched: bool | str = False,
            **fit_overrides) -> Comparison:
    """Fit every model with every seed and tabulate the results.

    Args:
        models: name -> :class:`~qlite.models.ModelSpec`, :class:`Candidate` or factory
            ``seed -> nn.Module``. Each seed builds a fresh model (``ModelSpec.build(seed=...)``).
        data: the training signal.
        seeds: seeds for initialisation (and mini-batch shuffling).
        eval_data: another signal to score (columns ``eval_mse_mean``, ...), e.g. the fine grid of
            a super-resolution pair.
        reference: a model name; adds ``rel_mse`` = mean MSE / the reference's mean MSE (the
            paper's "relative error against the Tanh MLP"), on ``eval_data`` when given.
        config, device, fit_overrides: passed to :func:`qlite.fit` (a candidate's own ``fit``
            overrides come last).
        on_result: called as ``on_result(name, seed, fit_result)`` after every fit (e.g. to keep a
            model's predictions for a figure); the table itself holds no models.
        batched: ``False`` (default): one :func:`qlite.fit` per run. ``True`` or ``"auto"``: runs whose
            models have one architecture and whose settings can step in lockstep train together
            through :func:`qlite.fit_many` (a candidate's seeds, and candidates that differ only in
            ``lr`` / ``betas`` / ``weight_decay`` / schedule, as in a learning-rate sweep); the
            results agree with separate fits to float rounding. ``True`` refuses a candidate whose
            seeds build different architectures (naming the difference); ``"auto"`` fits those apart.
            A run's ``seconds`` is then its batch's wall time.

    Returns:
        A :class:`Comparison`; ``rows`` hold ``model``, ``params``, ``seeds``, ``mse_mean``,
        ``mse_std``, ``psnr_mean``, ``psnr_std``, ``ssim_mean``, ``ssim_std`` (images), ``seconds``.

    Example:
        >>> from qlite.data import image
        >>> from qlite.models import ModelSpec
        >>> table = compare({"siren": ModelSpec("siren", 8)}, image("camera", 16), seeds=(0,), epochs=5)
        >>> table.row("siren")["params"]
        177
    """
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty mapping name -> ModelSpec / Candidate / factory")
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds must be a non-empty sequence of ints, got {seeds!r}")
    if reference is not None and reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models {list(models)}")
    if batched not in (False, True, "auto"):
        raise ValueError(f"batched must be False, True or 'auto', got {batched!r}")
    cands = {name: _candidate(entry) for name, entry in models.items()}
    jobs = [(name, cand, seed) for name, cand in cands.items() for seed in seeds]
    done = _fit_batched(jobs, data, config, eval_data, device, fit_overrides, batched) if batched else {}
    rows, runs = [], []
    for name, cand in cands.items():
        model_runs = []
        for seed in seeds:
            if (name, seed) in done:
                result = done[(name, seed)]
            else:
                model = cand.build(data, seed)
                result = fit(model, data, config, eval_data=eval_data, device=device,
                             **{"seed": seed, **fit_overrides, **cand.fit})
            run = {"model": name, "seed": seed, "params": result.params, "seconds": result.seconds,
                   "metrics": result.metrics, "eval_metrics": result.eval_metrics,
                   "final_loss": result.history["loss"][-1] if result.history["loss"] else None}
            if result.info.get("batched_models"):
                run["batched_models"] = result.info["batched_models"]
            log.info("%s seed %d: %s", name, seed, result.metrics)
            if on_result is not None:
                on_result(name, seed, result)
            model_runs.append(run)
        runs += model_runs
        rows.append(_summarise(name, cand, model_runs, eval_data is not None))
    if reference is not None:
        key = "eval_mse_mean" if eval_data is not None else "mse_mean"
        ref = next(r for r in rows if r["model"] == reference)[key]
        for r in rows:
            r["rel_mse"] = r[key] / ref if ref else None
    meta = {"data": data.describe(), "eval_data": eval_data.describe() if eval_data is not None else None,
            "seeds": seeds, "fit": {**(config.to_dict() if config else {}), **fit_overrides},
            "candidates": {n: c.describe() for n, c in cands.items()}}
    return Comparison(rows, runs, meta)


def _fit_batched(jobs, data: Signal, config, eval_data, device, fit_overrides, batched) -> dict:
    """Fit the runs that can share a batch with :func:`qlite.fit_many`; ``{(name, seed): FitResult}``
    for every run (a run that shares its architecture and lockstep settings with no other is fitted alone)."""
    from .training.common import build_config
    from .training.many import PER_MODEL_FIELDS, fit_many
    from .training.stacked import architecture_difference, check_same_architecture

    built = [(name, seed, cand.build(data, seed), {"seed": seed, **fit_overrides, **cand.fit}) for name, cand, seed in jobs]
    if batched is True:
        for name in dict.fromkeys(n for n, _, _, _ in built):
            try:
                check_same_architecture([m for n, _, m, _ in built if n == name])
            except ValueError as err:
                raise ValueError(f"compare(batched=True): the seeds of {name!r} do not build one architecture ({err}); "
                                 "use batched='auto' to fit such a candidate's seeds apart") from None

    def lockstep(overrides):
        cfg = build_config(config, overrides, None)
        return {k: v for k, v in cfg.to_dict().items() if k not in PER_MODEL_FIELDS}

    groups: list[list] = []
    for job in built:
        key = lockstep(job[3])
        for g in groups:
            if g[0] == key and architecture_difference(job[2], g[1][0][2]) is None:
                g[1].append(job)
                break
        else:
            groups.append([key, [job]])
    out = {}
    for _, members in groups:
        if len(members) < 2:
            name, seed, model, overrides = members[0]
            out[(name, seed)] = fit(model, data, config, eval_data=eval_data, device=device, **overrides)
            continue
        results = fit_many([m for _, _, m, _ in members], data, config, settings=[o for _, _, _, o in members],
                           eval_data=eval_data, device=device)
        for (name, seed, _, _), r in zip(members, results):
            out[(name, seed)] = r
    return out


def select_best(candidates: Mapping[str, ModelSpec | Candidate | Callable[[int], nn.Module]], train: Signal, *,
                validation: Signal | None = None, seeds: Sequence[int] = (0,), metric: str = "mse",
                **fit_kwargs) -> tuple[str, Comparison]:
    """Run a sweep and return the name of the candidate with the lowest mean ``metric`` (MSE) on
    ``validation`` (or on ``train`` itself when ``None``), with the sweep's table.

    For a representation task the training signal is the honest criterion (fitting it is the task);
    for super-resolution, pass a coarser copy as ``train`` and the training grid as ``validation``
    so that the fine ground truth is never used to choose hyper-parameters.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    judged = validation if validation is not None else train
    if metric == "ssim" and (judged.grid_shape is None or len(judged.grid_shape) != 2):
        raise ValueError("metric='ssim' needs an image (a 2-D grid signal); use 'mse' or 'psnr'")
    table = compare(candidates, train, seeds=seeds, eval_data=validation, **fit_kwargs)
    key = f"{'eval_' if validation is not None else ''}{metric}_mean"
    best = (min if metric == "mse" else max)(table.rows, key=lambda r: r[key])
    return best["model"], table
