"""The spectrum study behind ``experiments/spectrum.py`` and ``qlite spectrum report``.

It measures, on real signals (scikit-image's ``camera``, the paper's Bach clip):

1. spectrum sizes against brute force, and first-layer spectrum size against parameter count for
   QIREN, SIREN and random Fourier features;
2. the distribution of a small layer's Fourier coefficients over random initialisations;
3. the speed target: coefficients of the paper's 2-input, 8-qubit QIREN at degree 16 (33 x 33);
4. an image fit (QIREN against SIREN and RFF stand-ins): power spectra, the error split into low and
   high frequencies (the paper's Figure 7), and the QIREN's first-layer frequencies before and after
   training;
5. which frequencies a trained QIREN carries: the exact series of a one-hybrid-layer QIREN fitted to
   the audio clip, and how much of a two-hybrid-layer QIREN the order-M sets explain.

Results go to ``<out>/spectrum.md``, ``spectrum.json`` and ``spectrum_*.png``.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import logging
import os
import platform
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ._study_data import bach, camera, psnr, train_adam
from .classical import classical_spectrum
from .coefficients import coefficients
from .compare import compare_spectra
from .hybrid_coefficients import hybrid_coefficients
from .least_squares import least_squares_coefficients
from .model_spectrum import model_spectrum
from .power import power_spectrum
from .spectrum_size import spectrum_size
from .standins import FourierFeatureStandIn, SirenStandIn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyConfig:
    """Settings of :func:`run_study` (``quick`` shrinks every part for tests and smoke runs)."""

    quick: bool = False
    seed: int = 0
    device: str = "cpu"
    image_size: int = 32
    steps: int = 300
    audio_steps: int = 300
    n_inits: int = 50
    timing_repeats: int = 20
    cutoff: float = 0.5
    qiren_lr: float = 1e-2
    siren_lr: float = 1e-3
    rff_lr: float = 1e-2
    siren_omega: float = 30.0
    rff_scale: float = 1.0  # sigma of B in cycles / unit; best of {1, 2, 4} x lr {1e-3, 3e-3, 1e-2} at 32 px
    audio_file: str | None = None
    threads: int | None = None  # torch threads for the run (None: torch's default); timing tries 1 and all

    def __post_init__(self):
        for name in ("image_size", "steps", "audio_steps", "n_inits", "timing_repeats"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"threads must be None or an integer >= 1, got {self.threads!r}")
        if not 0 < self.cutoff <= 2**0.5:
            raise ValueError(f"cutoff must be in (0, sqrt(2)], got {self.cutoff}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:k]', got {self.device!r}")

    @classmethod
    def quick_config(cls, **overrides) -> "StudyConfig":
        base = dict(quick=True, image_size=16, steps=20, audio_steps=20, n_inits=8, timing_repeats=3)
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _machine(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = dict(cpu=cpu, cores=os.cpu_count(), torch=torch.__version__, python=platform.python_version(),
                date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                load_average_start=list(os.getloadavg()), device=str(device))
    if device.type == "cuda":
        info["card"] = torch.cuda.get_device_name(device)
    return info


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# -- 1. sizes -------------------------------------------------------------------------------------
def _sizes(cfg: StudyConfig) -> dict:
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
    from qlite.layers import QIREN

    g = torch.Generator().manual_seed(cfg.seed)
    rows = []
    for n in range(2, 6 if cfg.quick else 11):
        model = QIREN(2, 1, hidden_features=n, generator=g).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # n = 10: 5**10 vectors, sampled; recorded as a bound
            spec = model_spectrum(model, n_samples=1000, generator=g)
        rows.append(dict(family="QIREN", width=n, parameters=_n_params(model), size=spec.size,
                         enumerated=spec.enumerated, bound=spec.bound))
    for m in (8, 16, 32, 64) if cfg.quick else (8, 16, 32, 64, 128, 256):
        siren = SirenStandIn(2, m, 1, hidden_layers=2, generator=g)
        rows.append(dict(family="SIREN", width=m, parameters=_n_params(siren), size=classical_spectrum(siren).size,
                         enumerated=True, bound=2 * m + 1))
        rff = FourierFeatureStandIn(2, m, m, 1, hidden_layers=1, generator=g)
        rows.append(dict(family="RFF", width=m, parameters=_n_params(rff), size=classical_spectrum(rff).size,
                         enumerated=True, bound=2 * m + 1))
    return dict(table=table, size_vs_parameters=rows)


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
    from qlite.layers import QIREN

    model = QIREN(2, 1, generator=torch.Generator().manual_seed(cfg.seed)).to(device).eval()
    out = dict(model="QIREN(2, 1): 8 qubits, 3 hybrid layers, 2 re-uploads", degree=16, grid="33 x 33",
               points=33 * 33, device=str(device))
    before = torch.get_num_threads()
    threads = (1, os.cpu_count() or 1) if device.type == "cpu" else (before,)
    try:
        for nt in dict.fromkeys(threads):
            torch.set_num_threads(nt)
            coefficients(model, 2, 16)  # warm-up: compile the circuits, allocate
            times = []
            for _ in range(cfg.timing_repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                coefficients(model, 2, 16)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - t0)
            out[f"threads_{nt}"] = dict(median_s=statistics.median(times), min_s=min(times), max_s=max(times),
                                        repeats=len(times))
        # comparator: the same function point by point (PennyLane's loop without broadcasting)
        reps = 1 if cfg.quick else 3
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            coefficients(lambda p: model(p[None])[0], 2, 16, batched=False, dtype=torch.float32, device=device)
            times.append(time.perf_counter() - t0)
        out["point_by_point_s"] = min(times)
    finally:
        torch.set_num_threads(before)
    out["load_average_after"] = list(os.getloadavg())
    return out


# -- 4. image --------------------------------------------------------------------------------------------
def _image(cfg: StudyConfig, device: torch.device):
    from qlite.layers import QIREN

    x, y, shape = camera(cfg.image_size)
    g = torch.Generator().manual_seed(cfg.seed + 2)
    models = {
        "QIREN": (QIREN(2, 1, generator=g), cfg.qiren_lr),
        "SIREN": (SirenStandIn(2, 16, 1, hidden_layers=2, omega_0=cfg.siren_omega, generator=g), cfg.siren_lr),
        "RFF": (FourierFeatureStandIn(2, 8, 16, 1, hidden_layers=1, scale=cfg.rff_scale, generator=g), cfg.rff_lr),
    }
    spacing = 2 / (cfg.image_size - 1)
    init_spec = model_spectrum(models["QIREN"][0].eval(), n_samples=20000, generator=g)
    results, comparisons, preds = {}, {}, {}
    for name, (model, lr) in models.items():
        fit = train_adam(model, x, y, cfg.steps, lr, device=device)
        with torch.no_grad():
            pred = model(x.to(device)).cpu()
        preds[name] = pred.reshape(shape)
        cmp = compare_spectra(y.reshape(shape), pred.reshape(shape), spacing=spacing, cutoff=cfg.cutoff)
        comparisons[name] = cmp
        results[name] = dict(parameters=_n_params(model), psnr_db=psnr(fit["mse"]), **cmp.to_dict(),
                             train_seconds=fit["seconds"], steps=fit["steps"], lr=lr, loss_history=fit["history"])
    qiren = models["QIREN"][0].cpu()
    trained_spec = model_spectrum(qiren, n_samples=20000, generator=g)
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
    return dict(size=cfg.image_size, models=results, qiren_first_layer=spectra), comparisons, preds, (
        init_spec, trained_spec), y.reshape(shape)


# -- 5. audio --------------------------------------------------------------------------------------------
def _audio(cfg: StudyConfig, device: torch.device):
    from qlite.layers import QIREN
    from qlite.paths import data_file

    path = Path(cfg.audio_file) if cfg.audio_file else data_file("gt_bach.wav")
    t, y = bach(path)
    g = torch.Generator().manual_seed(cfg.seed + 3)
    n_qubits = 4 if cfg.quick else 8
    single = QIREN(1, 1, hidden_features=n_qubits, hidden_layers=0, generator=g)
    fit = train_adam(single, t, y, cfg.audio_steps, cfg.qiren_lr, device=device)
    single = single.cpu().double().eval()
    w, c = hybrid_coefficients(single)
    with torch.no_grad():
        series = (torch.polar(torch.ones(len(t), len(w), dtype=torch.float64), t.double() @ w.T) @ c).real
        err = float((series - single(t.double())).abs().max())
    spacing = 2 / (len(t) - 1)
    bandwidth = float(w.abs().max())
    sig = power_spectrum(y[:, 0].double(), spacing=spacing)
    centred = sig.power.clone()
    centred[sig.axes[0] == 0] = 0.0  # the mean is no detail
    reach = float(centred[sig.axes[0].abs() <= bandwidth].sum() / centred.sum())
    single_out = dict(qubits=n_qubits, parameters=_n_params(single), mse=fit["mse"], train_seconds=fit["seconds"],
                      frequencies=len(w), series_max_abs_error=err, bandwidth=bandwidth,
                      signal_power_within_bandwidth=reach, nyquist_rad_per_unit=torch.pi / spacing)
    # a two-hybrid-layer QIREN: how much the order-M sets explain, on a wide window
    deep = QIREN(1, 1, hidden_features=3, hidden_layers=1, spectrum_layers=1, generator=g)
    train_adam(deep, t, y, cfg.audio_steps, cfg.qiren_lr, device=device)
    deep = deep.cpu().double().eval()
    window = torch.linspace(-30, 30, 4000, dtype=torch.float64)[:, None]
    orders = []
    for order in (1, 2, 3) if cfg.quick else (1, 2, 3, 4):
        spec = model_spectrum(deep, order=order)
        lsq = least_squares_coefficients(deep, spec.frequencies, window)
        orders.append(dict(order=order, size=spec.size, explained=float(lsq.explained),
                           residual_rms=float(lsq.residual_rms), rank=lsq.rank))
    return dict(file=path.name, points=len(t), single_layer=single_out, deep=dict(
        model="QIREN(1, 1, hidden_features=3, hidden_layers=1, spectrum_layers=1)", window="[-30, 30], 4000 points",
        orders=orders)), (w, c, t, y)


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
    torch.manual_seed(config.seed)
    threads_before = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _run(config, device, out)
    finally:
        torch.set_num_threads(threads_before)


def _run(config: StudyConfig, device: torch.device, out: Path) -> dict:
    from ._study_report import write_figures, write_markdown

    summary = dict(config=config.to_dict(), machine=_machine(device))
    summary["machine"]["torch_threads"] = torch.get_num_threads()
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
    (out / "spectrum.json").write_text(json.dumps(summary, indent=1, default=float))
    write_markdown(out / "spectrum.md", summary)
    return summary
