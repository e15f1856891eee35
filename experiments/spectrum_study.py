"""The spectrum study behind ``experiments/spectrum.py``.

It measures, on real signals (scikit-image's ``camera``, the paper's Bach clip, both loaded with
:mod:`qlite.data`; models from :mod:`qlite.models`, trained with :func:`qlite.fit`, so BatchNorm
statistics are exact on the training coordinates):

1. spectrum sizes against brute force, and first-layer spectrum size against parameter count for
   QIREN, SIREN and random Fourier features (also at equal parameter budgets);
2. the distribution of a small layer's Fourier coefficients over random initialisations;
3. the speed target: coefficients of the paper's 2-input, 8-qubit QIREN at degree 16 (33 x 33);
4. an image fit (QIREN against SIREN and RFF sized to QIREN's parameter count): power spectra, the
   error split into low and high frequencies (the paper's Figure 7), and the QIREN's first-layer
   frequencies before and after training;
5. which frequencies a trained QIREN carries: the exact series of a one-hybrid-layer QIREN fitted to
   the audio clip, and how much of a two-hybrid-layer QIREN the order-M sets explain.

Results go to ``<out>/spectrum.md``, ``spectrum.json`` and ``spectrum_*.png``.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from qlite.spectrum import (
    classical_spectrum, coefficients, compare_spectra, hybrid_coefficients, least_squares_coefficients, model_spectrum,
    power_spectrum, spectrum_size,
)
from qlite.timing import time_call
from study_io import machine_info, write_results

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyConfig:
    """Settings of :func:`run_study` (``quick`` shrinks every part for tests and smoke runs).

    Training is full batch (``qlite.fit``'s default), so an epoch is one Adam step. QIREN uses the
    paper's learning rate (0.03); SIREN and RFF the settings tuned on ``camera`` in
    ``experiments/results/paper_signals.md`` (SIREN omega_0 30, lr 3e-3; RFF scale 1, lr 0.03).
    """

    quick: bool = False
    seed: int = 0
    device: str = "cpu"
    image_size: int = 32
    epochs: int = 300
    audio_epochs: int = 300
    n_inits: int = 50
    timing_repeats: int = 20
    cutoff: float = 0.5
    qiren_lr: float = 0.03
    siren_lr: float = 3e-3
    rff_lr: float = 0.03
    siren_omega: float = 30.0
    rff_scale: float = 1.0  # sigma of the Fourier frequencies, cycles / unit
    audio_file: str | None = None
    threads: int | None = None  # torch threads for the run (None: torch's default); timing tries 1 and all

    def __post_init__(self):
        for name in ("image_size", "epochs", "audio_epochs", "n_inits", "timing_repeats"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.image_size < 2:
            raise ValueError(f"image_size must be at least 2 (a grid with a spacing), got {self.image_size}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"threads must be None or an integer >= 1, got {self.threads!r}")
        if not 0 < self.cutoff <= 2**0.5:
            raise ValueError(f"cutoff must be in (0, sqrt(2)], got {self.cutoff}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:k]', got {self.device!r}")

    @classmethod
    def quick_config(cls, **overrides) -> StudyConfig:
        base = dict(quick=True, image_size=16, epochs=20, audio_epochs=20, n_inits=8, timing_repeats=3)
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _spacing(signal) -> float:
    """Grid spacing of a regular grid signal (the last axis varies fastest; square grids)."""
    return float(signal.coords[1, -1] - signal.coords[0, -1])


def _train(model, signal, epochs: int, lr: float, cfg: StudyConfig, device: torch.device):
    from qlite.training import fit

    result = fit(model, signal, epochs=epochs, lr=lr, seed=cfg.seed, device=device, progress=False)
    hist = result.history
    every = max(1, len(hist["loss"]) // 20)
    history = [(e, loss) for e, loss in zip(hist["epoch"], hist["loss"]) if e % every == 0 or e == len(hist["loss"])]
    log.info("trained %s for %d epochs in %.1f s: %s", type(model).__name__, epochs, result.seconds, result.metrics)
    return result, history


# -- 1. sizes -------------------------------------------------------------------------------------
def _sizes(cfg: StudyConfig) -> dict:
    from qlite.models import ModelSpec, count_parameters

    def brute(weights, L):
        return len({round(sum(w * k for w, k in zip(weights, ks)), 8)
                    for ks in itertools.product(range(-L, L + 1), repeat=len(weights))})

    table = []
    for d, L in itertools.product(range(1, 5), range(1, 4)):
        row = dict(d=d, L=L, unit=spectrum_size(d, L), ternary=spectrum_size(d, L, "ternary"),
                   bound=spectrum_size(d, L, "bound"))
        row["brute_force_agrees"] = (row["unit"] == brute([1] * d, L) and row["ternary"] == brute(
            [3**i for i in range(d)], L) and row["bound"] == brute([2**0.5, 3**0.5, 5**0.5, 7**0.5][:d], L))
        table.append(row)

    def classical_row(family: str, spec: ModelSpec) -> dict:
        model = spec.build(2, 1, seed=cfg.seed)
        first = classical_spectrum(model)
        return dict(family=family, width=spec.width(2, 1), parameters=count_parameters(model), size=first.size,
                    enumerated=True, bound=first.bound)

    g = torch.Generator().manual_seed(cfg.seed)
    rows, budget_rows = [], []
    for n in range(2, 6 if cfg.quick else 11):
        model = ModelSpec("qiren", n).build(2, 1, seed=cfg.seed).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # n = 10: 5**10 vectors, sampled; recorded as a bound
            spec = model_spectrum(model, n_samples=1000, generator=g)
        budget = count_parameters(model)
        rows.append(dict(family="QIREN", width=n, parameters=budget, size=spec.size,
                         enumerated=spec.enumerated, bound=spec.bound))
        siren = classical_row("SIREN", ModelSpec("siren", budget=budget))
        rff = classical_row("RFF", ModelSpec("rff", budget=budget))
        budget_rows.append(dict(qubits=n, budget=budget, qiren=spec.size, qiren_enumerated=spec.enumerated,
                                siren_width=siren["width"], siren_parameters=siren["parameters"], siren=siren["size"],
                                rff_width=rff["width"], rff_parameters=rff["parameters"], rff=rff["size"]))
    for m in (8, 16, 32, 64) if cfg.quick else (8, 16, 32, 64, 128, 256):
        rows.append(classical_row("SIREN", ModelSpec("siren", m)))
        rows.append(classical_row("RFF", ModelSpec("rff", m)))
    return dict(table=table, size_vs_parameters=rows, equal_budget=budget_rows)


# -- 2. coefficient distributions ----------------------------------------------------------------------
def _distribution(cfg: StudyConfig) -> tuple[dict, torch.Tensor]:
    from qlite.layers import QuantumLayer

    g = torch.Generator().manual_seed(cfg.seed + 1)
    stack = []
    for _ in range(cfg.n_inits):
        layer = QuantumLayer(2, spectrum_layers=2, sublayers=2, entangler="cnot", generator=g).double()
        stack.append(coefficients(layer, 2, 2)[..., 0])
    c = torch.stack(stack)  # (S, 5, 5)
    mags = torch.fft.fftshift(c.abs().mean(0), dim=(0, 1))
    return dict(layer="QuantumLayer(2, spectrum_layers=2, sublayers=2, entangler='cnot'), output <Z_0>",
                n_inits=cfg.n_inits, mean_abs_centred=mags.tolist()), c


# -- 3. timing -------------------------------------------------------------------------------------
def _timing(cfg: StudyConfig, device: torch.device) -> dict:
    from qlite.models import build_model

    model = build_model("qiren", 2, 1, seed=cfg.seed).to(device).eval()
    out = dict(model="QIREN(2, 1): 8 qubits, 3 hybrid layers, 2 re-uploads", degree=16, grid="33 x 33",
               points=33 * 33, device=str(device))
    before = torch.get_num_threads()
    threads = (1, os.cpu_count() or 1) if device.type == "cpu" else (before,)
    try:
        for nt in dict.fromkeys(threads):
            torch.set_num_threads(nt)
            t = time_call(lambda: coefficients(model, 2, 16), device, repeats=cfg.timing_repeats, warmup=1)
            out[f"threads_{nt}"] = dict(median_s=t["ms"] / 1e3, min_s=t["ms_min"] / 1e3, max_s=t["ms_max"] / 1e3,
                                        repeats=t["runs"])
        # comparator: the same function point by point (PennyLane's loop without broadcasting), on one
        # thread: tiny calls on two threads of a shared CPU measure contention, not the loop
        torch.set_num_threads(1)
        t = time_call(lambda: coefficients(lambda p: model(p[None])[0], 2, 16, batched=False, dtype=torch.float32,
                                           device=device), device, repeats=1 if cfg.quick else 3, warmup=0)
        out["point_by_point_s"] = t["ms_min"] / 1e3
    finally:
        torch.set_num_threads(before)
    out["load_average_after"] = list(os.getloadavg())
    return out


# -- 4. image --------------------------------------------------------------------------------------------
def _image(cfg: StudyConfig, device: torch.device):
    from qlite import data
    from qlite.training import predict, recompute_batchnorm
    from qlite.models import ModelSpec, count_parameters

    signal = data.image("camera", size=cfg.image_size)
    shape, target = signal.grid_shape, signal.as_grid()[..., 0]
    qiren = ModelSpec("qiren").build(2, 1, seed=cfg.seed + 2)
    budget = count_parameters(qiren)
    specs = {"SIREN": (ModelSpec("siren", budget=budget, options={"omega_0": cfg.siren_omega}), cfg.siren_lr),
             "RFF": (ModelSpec("rff", budget=budget, options={"scale": cfg.rff_scale}), cfg.rff_lr)}
    models = {"QIREN": (qiren, cfg.qiren_lr, "qiren (paper settings)")}
    for name, (spec, lr) in specs.items():
        models[name] = (spec.build(2, 1, seed=cfg.seed + 2), lr, f"{spec.label()}, width {spec.width(2, 1)}")
    # the function the untrained QIREN computes on these coordinates: exact BatchNorm statistics
    at_init = copy.deepcopy(qiren)
    recompute_batchnorm(at_init, signal.coords)
    g = torch.Generator().manual_seed(cfg.seed + 2)
    init_spec = model_spectrum(at_init.eval(), n_samples=20000, generator=g)
    spacing = _spacing(signal)
    results, comparisons, preds = {}, {}, {}
    for name, (model, lr, label) in models.items():
        fit, history = _train(model, signal, cfg.epochs, lr, cfg, device)
        pred = predict(model, signal.coords).cpu().reshape(shape)
        preds[name] = pred
        cmp = compare_spectra(target, pred, spacing=spacing, cutoff=cfg.cutoff)
        comparisons[name] = cmp
        results[name] = dict(model=label, parameters=fit.params, psnr_db=fit.metrics["psnr"],
                             ssim=fit.metrics.get("ssim"), **cmp.to_dict(), train_seconds=fit.seconds,
                             epochs=fit.epochs, lr=lr, loss_history=history)
    trained_spec = model_spectrum(qiren.cpu().eval(), n_samples=20000, generator=g)
    nyquist = torch.pi / spacing
    frac = lambda s: float((s.frequencies.abs() <= nyquist).all(1).double().mean())  # noqa: E731
    spectra = dict(
        nyquist_rad_per_unit=nyquist,
        init=dict(size=init_spec.size, enumerated=init_spec.enumerated, bandwidth=init_spec.bandwidth.tolist(),
                  inside_nyquist_fraction=frac(init_spec)),
        trained=dict(size=trained_spec.size, enumerated=trained_spec.enumerated,
                     bandwidth=trained_spec.bandwidth.tolist(), inside_nyquist_fraction=frac(trained_spec),
                     note=trained_spec.note),
        siren_first_layer=classical_spectrum(models["SIREN"][0].cpu()).to_dict(),
        rff_first_layer=classical_spectrum(models["RFF"][0].cpu()).to_dict(),
    )
    return dict(size=cfg.image_size, spacing=spacing, budget=budget, models=results, qiren_first_layer=spectra), \
        comparisons, preds, (init_spec, trained_spec), target


# -- 5. audio --------------------------------------------------------------------------------------------
def _audio(cfg: StudyConfig, device: torch.device):
    from qlite import data
    from qlite.models import ModelSpec
    from qlite.paths import data_file

    path = Path(cfg.audio_file) if cfg.audio_file else data_file("gt_bach.wav")
    signal = data.audio(path, 20000, 25000, 5)  # the paper's protocol: 1,000 samples
    t, y = signal.coords, signal.values
    n_qubits = 4 if cfg.quick else 8
    single = ModelSpec("qiren", n_qubits, hidden_layers=0).build(1, 1, seed=cfg.seed + 3)
    fit, _ = _train(single, signal, cfg.audio_epochs, cfg.qiren_lr, cfg, device)
    single = single.cpu().double().eval()
    w, c = hybrid_coefficients(single)
    with torch.no_grad():
        series = (torch.polar(torch.ones(len(t), len(w), dtype=torch.float64), t.double() @ w.T) @ c).real
        err = float((series - single(t.double())).abs().max())
    spacing = _spacing(signal)
    bandwidth = float(w.abs().max())
    sig = power_spectrum(y[:, 0].double(), spacing=spacing)
    centred = sig.power.clone()
    centred[sig.axes[0] == 0] = 0.0  # the mean is no detail
    reach = float(centred[sig.axes[0].abs() <= bandwidth].sum() / centred.sum())
    single_out = dict(qubits=n_qubits, parameters=fit.params, mse=fit.metrics["mse"], train_seconds=fit.seconds,
                      frequencies=len(w), series_max_abs_error=err, bandwidth=bandwidth,
                      signal_power_within_bandwidth=reach, nyquist_rad_per_unit=torch.pi / spacing)
    # a two-hybrid-layer QIREN: how much the order-M sets explain, on a wide window
    deep_spec = ModelSpec("qiren", 3, hidden_layers=1, options={"spectrum_layers": 1})
    deep = deep_spec.build(1, 1, seed=cfg.seed + 4)
    deep_fit, _ = _train(deep, signal, cfg.audio_epochs, cfg.qiren_lr, cfg, device)
    deep = deep.cpu().double().eval()
    window = torch.linspace(-30, 30, 4000, dtype=torch.float64)[:, None]
    orders = []
    for order in (1, 2, 3) if cfg.quick else (1, 2, 3, 4):
        spec = model_spectrum(deep, order=order)
        lsq = least_squares_coefficients(deep, spec.frequencies, window)
        orders.append(dict(order=order, size=spec.size, explained=float(lsq.explained),
                           residual_rms=float(lsq.residual_rms), rank=lsq.rank))
    return dict(file=path.name, points=signal.n_points, single_layer=single_out, deep=dict(
        model="QIREN(1, 1, hidden_features=3, hidden_layers=1, spectrum_layers=1)", mse=deep_fit.metrics["mse"],
        window="[-30, 30], 4000 points", orders=orders)), (w, c, t, y)


def run_study(config: StudyConfig, out_dir) -> dict:
    """Run the study and write ``spectrum.md``, ``spectrum.json`` and ``spectrum_*.png`` into ``out_dir``
    (created if needed; existing files of these names are replaced, nothing else is touched).

    Returns the JSON summary as a dict.
    """
    if not isinstance(config, StudyConfig):
        raise TypeError(f"config must be a StudyConfig, got {type(config).__name__}")
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch.cuda.is_available() is False; run with --device cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _run(config, device, out)
    finally:
        torch.set_num_threads(threads_before)


def _run(config: StudyConfig, device: torch.device, out: Path) -> dict:
    from spectrum_report import markdown, write_figures

    summary = dict(config=config.to_dict(), machine=dict(machine_info(device), load_average_start=list(os.getloadavg())))
    t0 = time.perf_counter()
    summary["sizes"] = _sizes(config)
    summary["distribution"], dist = _distribution(config)
    summary["timing"] = _timing(config, device)
    summary["image"], comparisons, preds, qspecs, target = _image(config, device)
    try:
        summary["audio"], audio = _audio(config, device)
    except FileNotFoundError as err:
        log.warning("audio part skipped: %s", err)
        summary["audio"], audio = dict(skipped=str(err)), None
    summary["seconds"] = time.perf_counter() - t0
    summary["machine"]["load_average_end"] = list(os.getloadavg())
    summary["figures"] = write_figures(out, summary, dist, comparisons, preds, qspecs, target, audio)
    write_results(out, "spectrum", markdown(summary), summary)
    return summary
