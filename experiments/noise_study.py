"""How a trained QIREN image model degrades under finite shots and hardware noise.

The study behind ``experiments/noise.py``: train the paper's image QIREN on a small image with
:func:`qlite.training.fit` (full batch, exact BatchNorm statistics at the end), then evaluate the *same*
trained weights with every ``QuantumLayer`` on another backend (:func:`qlite.training.predict`,
:func:`qlite.training.psnr`):

* finite shots: the native shot mode (``get_backend("torch", shots=N)``, exact multinomial sampling,
  every pixel), cross-checked at a few shot numbers by Qiskit Aer's ``SamplerV2``;
* readout error: exact (``NoiseConfig(readout=p)``), every pixel;
* depolarizing noise after every gate (``p`` single-qubit, ``ratio_2q * p`` two-qubit): Aer's
  density-matrix simulation, exact expectation values, on a fixed random subset of pixels (a
  density matrix of 8 qubits costs about 50 ms per point and layer on one CPU core);
* a hardware-like combination (depolarizing + readout + shots) through Aer's sampler.

Each hybrid layer's expectation values are estimated separately and fed, noisy, to the next layer,
as on hardware. PSNR uses ``data_range = 2`` (values normalised to ``[-1, 1]``).
"""

from __future__ import annotations

import copy
import logging
import math
import time

import torch

from qlite.training import predict, psnr

log = logging.getLogger(__name__)


# -- data and training: the library's -------------------------------------------------------------
def load_image(name: str = "camera", size: int = 32) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """``(coords (N, 2), values (N, 1), (size, size))`` of :func:`qlite.data.image` (centre-cropped,
    resized, values in ``[-1, 1]``, coordinates at the pixel centres)."""
    from qlite.data import image

    s = image(name, size=size)
    return s.coords, s.values, tuple(s.grid_shape)


def train_qiren_image(coords: torch.Tensor, values: torch.Tensor, *, hidden_features: int = 8,
                      hidden_layers: int = 2, spectrum_layers: int = 2, steps: int = 500, lr: float = 1e-2,
                      seed: int = 0, device="cpu") -> tuple[torch.nn.Module, list[float]]:
    """A QIREN trained on ``(coords, values)`` by :func:`qlite.training.fit` (full-batch Adam on the MSE, cosine
    learning rate, exact BatchNorm statistics at the end); returns the model in ``eval()`` mode and the
    training PSNR of every epoch."""
    from qlite.training import fit
    from qlite.layers import QIREN

    model = QIREN(coords.shape[1], values.shape[1], hidden_features, hidden_layers, spectrum_layers,
                  generator=torch.Generator().manual_seed(seed))
    res = fit(model, (coords, values), epochs=steps, lr=lr, schedule="cosine", seed=seed, device=device,
              progress=False)
    history = [10 * math.log10(4.0 / max(loss, 1e-30)) for loss in res.history["loss"]]  # data range 2
    return res.model.eval(), history


# -- evaluation on another backend ------------------------------------------------------------------
def with_backend(model: torch.nn.Module, make_backend) -> torch.nn.Module:
    """A deep copy of ``model`` (in ``eval()`` mode) whose ``QuantumLayer`` number ``i`` runs on
    ``make_backend(i)`` (distinct seeds per layer keep their shot noise independent); the caller's
    model is left as it is."""
    from qlite.layers import QuantumLayer

    clone = copy.deepcopy(model).eval()
    layers = [m for m in clone.modules() if isinstance(m, QuantumLayer)]
    for i, layer in enumerate(layers):
        layer.backend = make_backend(i)
    return clone


def _evaluate(model, coords, target, make_backend, repeats: int, seed: int = 0) -> dict:
    """PSNR over ``repeats`` draws; ``make_backend(i, s)`` builds layer ``i``'s backend with a seed
    ``s`` distinct per draw and layer."""
    t0 = time.perf_counter()
    scores = [psnr(predict(with_backend(model, lambda i, r=r: make_backend(i, seed * 1_000_003 + 101 * r + i)),
                           coords), target) for r in range(repeats)]
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((v - mean) ** 2 for v in scores) / (len(scores) - 1)) if len(scores) > 1 else 0.0
    return {"psnr": mean, "psnr_std": std, "repeats": repeats, "pixels": coords.shape[0],
            "seconds": time.perf_counter() - t0}


def noise_sweep(model: torch.nn.Module, coords: torch.Tensor, values: torch.Tensor, *,
                shots=(1, 10, 100, 1000, 10_000, 100_000, 1_000_000), aer_shots=(100, 1000, 10_000),
                readout=(0.005, 0.01, 0.02, 0.05, 0.1), depolarizing=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                ratio_2q: float = 10.0, combined=((1e-4, 0.01, 10_000), (1e-3, 0.02, 1000)), layer_shots: int | None = 1000,
                subset: int | None = 256,
                repeats: int = 3, seed: int = 0, aer: bool = True) -> dict:
    """PSNR of a trained model against shots and noise strength (see the module docstring).

    Args:
        model, coords, values: the trained model (eval mode) and the image it represents.
        shots: shot numbers for the native shot mode (every pixel, ``repeats`` draws each).
        aer_shots: shot numbers repeated with Aer's sampler (statevector) as a cross-check.
        readout: symmetric readout-error probabilities (exact, every pixel).
        depolarizing: single-qubit depolarizing probabilities ``p``; two-qubit gates get
            ``min(1, ratio_2q * p)``; Aer density matrix, exact values, on ``subset`` pixels.
        combined: ``(p, readout, shots)`` hardware-like settings, Aer sampler on ``subset`` pixels.
        layer_shots: shots in one hybrid layer at a time (the others exact), to see which layer's
            noise the model amplifies; ``None`` skips these rows.
        subset: pixels (fixed random choice) for the density-matrix rows; ``None``: all.
        aer: run the Aer rows (needs ``qlite[qiskit]``).

    Returns:
        ``{"rows": [...], "baseline": {...}, "subset_baseline": {...}, "subset_index": [...]}``.
    """
    from qlite.simulators import get_backend
    from qlite.simulators.noise import NoiseConfig

    rows = []
    base = _evaluate(model, coords, values, lambda i, s: get_backend("torch"), 1)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(coords.shape[0], generator=g)[:subset] if subset else torch.arange(coords.shape[0])
    idx = idx.sort().values
    sub_x, sub_y = coords[idx], values[idx]
    sub_base = _evaluate(model, sub_x, sub_y, lambda i, s: get_backend("torch"), 1)
    rows.append({"noise": "none", "backend": "torch (exact)", **base})
    for n in shots:
        r = _evaluate(model, coords, values, lambda i, s, n=n: get_backend("torch", shots=n, seed=s), repeats, seed)
        rows.append({"noise": "shots", "backend": "torch shot mode", "shots": n, **r})
        log.info("shots %d: %.2f dB", n, r["psnr"])
    if layer_shots:
        n_layers = sum(1 for m in model.modules() if hasattr(m, "backend") and hasattr(m, "circuit"))
        for k in range(n_layers):
            r = _evaluate(model, coords, values, lambda i, s, k=k: get_backend(
                "torch", **({"shots": layer_shots, "seed": s} if i == k else {})), repeats, seed)
            rows.append({"noise": "shots in one layer", "backend": "torch shot mode", "layer": k,
                         "shots": layer_shots, **r})
            log.info("shots %d in layer %d only: %.2f dB", layer_shots, k, r["psnr"])
    for p in readout:
        r = _evaluate(model, coords, values, lambda i, s, p=p: get_backend("torch", noise=NoiseConfig(readout=p)), 1)
        rows.append({"noise": "readout", "backend": "torch (exact readout)", "readout": p, **r})
        log.info("readout %.3f: %.2f dB", p, r["psnr"])
    if aer:
        for n in aer_shots:
            r = _evaluate(model, coords, values,
                          lambda i, s, n=n: get_backend("qiskit", shots=n, seed=s, gradient=None), repeats, seed)
            rows.append({"noise": "shots", "backend": "qiskit Aer sampler", "shots": n, **r})
            log.info("Aer shots %d: %.2f dB", n, r["psnr"])
        for p in depolarizing:
            cfg = NoiseConfig(depolarizing=p, depolarizing_2q=min(1.0, ratio_2q * p))
            r = _evaluate(model, sub_x, sub_y, lambda i, s, c=cfg: get_backend("qiskit", noise=c, gradient=None), 1)
            rows.append({"noise": "depolarizing", "backend": "qiskit Aer density matrix", "p1": cfg.depolarizing,
                         "p2": cfg.depolarizing_2q, **r})
            log.info("depolarizing %.4g / %.4g: %.2f dB (%.0f s)", cfg.depolarizing, cfg.depolarizing_2q, r["psnr"],
                     r["seconds"])
        for p, ro, n in combined:
            cfg = NoiseConfig(depolarizing=p, depolarizing_2q=min(1.0, ratio_2q * p), readout=ro)
            r = _evaluate(model, sub_x, sub_y, lambda i, s, c=cfg, n=n: get_backend(
                "qiskit", shots=n, noise=c, method="density_matrix", seed=s, gradient=None), 1, seed)
            rows.append({"noise": "combined", "backend": "qiskit Aer sampler (density matrix)", "p1": cfg.depolarizing,
                         "p2": cfg.depolarizing_2q, "readout": ro, "shots": n, **r})
            log.info("combined %s, %d shots: %.2f dB", cfg, n, r["psnr"])
    mean = {"all": psnr(values.mean(0).expand_as(values), values),
            "subset": psnr(sub_y.mean(0).expand_as(sub_y), sub_y)}  # what a constant prediction scores
    return {"rows": rows, "baseline": base, "subset_baseline": sub_base, "subset_index": idx.tolist(),
            "ratio_2q": ratio_2q, "constant_prediction": mean}


# -- reporting --------------------------------------------------------------------------------------
def _fmt(v, spec=".3g"):
    return "" if v is None else format(v, spec)


def to_markdown(result: dict) -> str:
    """The sweep as Markdown tables (one per kind of noise)."""
    rows, base, sub = result["rows"], result["baseline"], result["subset_baseline"]
    out = [f"- Noiseless (exact) PSNR: {base['psnr']:.2f} dB on all {base['pixels']} pixels, "
           f"{sub['psnr']:.2f} dB on the {sub['pixels']}-pixel subset used for the density-matrix rows."]
    const = result.get("constant_prediction")
    if const:
        out.append(f"- A constant prediction (the image mean) scores {const['all']:.2f} dB ({const['subset']:.2f} dB "
                   "on the subset): rows near it carry no image content.")
    for text, kind, key, ref, pick in (
        ("fewest shots within 1 dB of the exact PSNR", "shots", "shots", base["psnr"], min),
        ("largest readout error within 1 dB", "readout", "readout", base["psnr"], max),
        ("largest one-qubit depolarizing p within 1 dB (subset)", "depolarizing", "p1", sub["psnr"], max),
    ):
        ok = [r[key] for r in rows if r["noise"] == kind and r["backend"] != "qiskit Aer sampler"
              and r["psnr"] >= ref - 1.0]
        have = [r for r in rows if r["noise"] == kind]
        if have:
            out.append(f"- {text}: {_fmt(pick(ok)) if ok else 'none in the sweep'}")
    out.append("")
    sections = [
        ("shots", "Finite shots (per layer, per pixel, per measurement group)", ["backend", "shots"]),
        ("shots in one layer", "Shots in one hybrid layer only (the others exact)", ["layer", "shots"]),
        ("readout", "Readout error (symmetric bit flips, exact expectation values)", ["readout"]),
        ("depolarizing", f"Depolarizing noise after every gate (two-qubit p = {result['ratio_2q']:g} x one-qubit p),"
                         " exact density matrix", ["p1", "p2"]),
        ("combined", "Hardware-like: depolarizing + readout + shots (Aer sampler, density matrix)",
         ["p1", "p2", "readout", "shots"]),
    ]
    for kind, title, cols in sections:
        sel = [r for r in rows if r["noise"] == kind]
        if not sel:
            continue
        out += [f"#### {title}", "", "| " + " | ".join(cols + ["pixels", "PSNR dB", "std (draws)", "draws", "s"]) + " |",
                "|" + "---|" * (len(cols) + 5)]
        for r in sel:
            cells = [str(r.get(c, "")) if c in ("backend", "layer") else _fmt(r.get(c)) for c in cols]
            cells += [str(r["pixels"]), f"{r['psnr']:.2f}", f"{r['psnr_std']:.2f}" if r["repeats"] > 1 else "",
                      str(r["repeats"]), f"{r['seconds']:.1f}"]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def plot_noise(result: dict, axes=None):
    """PSNR against shots (left) and against noise probability (right); returns the two axes."""
    from qlite.simulators._optional import require

    plt = require("matplotlib.pyplot", "plots", "plot_noise")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1, ax2 = axes
    base = result["baseline"]["psnr"]
    for backend, marker in (("torch shot mode", "o-"), ("qiskit Aer sampler", "s--")):
        sel = [r for r in result["rows"] if r["noise"] == "shots" and r["backend"] == backend]
        if sel:
            ax1.errorbar([r["shots"] for r in sel], [r["psnr"] for r in sel], yerr=[r["psnr_std"] for r in sel],
                         fmt=marker, label=backend, capsize=3)
    ax1.axhline(base, color="k", lw=0.8, ls=":", label="exact")
    const = result.get("constant_prediction")
    if const:
        ax1.axhline(const["all"], color="r", lw=0.8, ls="-.", label="constant (image mean)")
    ax1.set(xscale="log", xlabel="shots per expectation value", ylabel="PSNR (dB)", title="Shot noise")
    ax1.legend()
    ro = [r for r in result["rows"] if r["noise"] == "readout"]
    dp = [r for r in result["rows"] if r["noise"] == "depolarizing"]
    if ro:
        ax2.plot([r["readout"] for r in ro], [r["psnr"] for r in ro], "o-", label="readout error p")
    if dp:
        ax2.plot([r["p1"] for r in dp], [r["psnr"] for r in dp], "s-",
                 label=f"depolarizing p (2q: {result['ratio_2q']:g}p), subset")
    ax2.axhline(base, color="k", lw=0.8, ls=":", label="exact (all pixels)")
    ax2.axhline(result["subset_baseline"]["psnr"], color="gray", lw=0.8, ls="--", label="exact (subset)")
    if const:
        ax2.axhline(const["all"], color="r", lw=0.8, ls="-.", label="constant (image mean)")
    ax2.set(xscale="log", xlabel="error probability", ylabel="PSNR (dB)", title="Gate and readout noise")
    ax2.legend(fontsize=8, loc="lower left")
    return axes
