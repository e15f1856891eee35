"""Plots of spectra and Fourier coefficients (matplotlib, imported on first use: ``qlite[plots]``).

Every function draws on the axes it is given and returns them, in the style of
``qml.fourier.visualize``. Coefficient plots take coefficients in the layout of :func:`coefficients`
(numpy FFT order), either one set ``(2d_1+1, ..., 2d_N+1)`` or a stack over random initialisations
``(S, 2d_1+1, ..., 2d_N+1)``, and draw real parts on ``ax[0]`` and imaginary parts on ``ax[1]``.

Example:
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt, torch
    >>> from qlite.spectrum import visualize
    >>> fig, ax = plt.subplots(1, 2)
    >>> ax = visualize.violin(torch.randn(20, 3, dtype=torch.complex128), 1, ax)
    >>> len(ax[0].get_xticklabels())
    3
"""

from __future__ import annotations

import itertools

import torch

KINDS = ("violin", "box", "bar")


def _plt():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"plots need matplotlib: pip install 'qlite[plots]' ({err})") from err
    return plt


def _two_axes(ax, polar: bool = False):
    axes = list(ax.flat) if hasattr(ax, "flat") else list(ax) if isinstance(ax, (list, tuple)) else [ax]
    if len(axes) != 2:
        raise ValueError(f"coefficient plots draw real and imaginary parts on two axes, got {len(axes)}; "
                         f"use plt.subplots(1, 2)")
    if polar and any(a.name != "polar" for a in axes):
        raise ValueError("radial_box needs polar axes: plt.subplots(1, 2, subplot_kw={'polar': True})")
    return axes


def _samples(coeffs, n_inputs: int) -> torch.Tensor:
    """``(S, *grid)`` complex128 with every grid side odd (``2d + 1``)."""
    if isinstance(n_inputs, bool) or not isinstance(n_inputs, int) or n_inputs < 1:
        raise ValueError(f"n_inputs must be an integer >= 1, got {n_inputs!r}")
    if isinstance(coeffs, (list, tuple)):
        coeffs = torch.stack([torch.as_tensor(c) for c in coeffs])
    c = torch.as_tensor(coeffs).to(torch.complex128)
    if c.dim() > n_inputs and c.shape[-1] == 1:
        c = c[..., 0]  # a one-output model's coefficients carry a trailing output axis: (2d+1, ..., 1)
    if c.dim() == n_inputs:
        c = c[None]
    if c.dim() != n_inputs + 1:
        raise ValueError(f"expected coefficients of a {n_inputs}-input function, (S, 2d_1+1, ...) or (2d_1+1, ...), "
                         f"got shape {tuple(c.shape)}")
    if any(n % 2 == 0 for n in c.shape[1:]):
        raise ValueError(f"coefficient axes must have odd length 2d + 1 (as coefficients() returns), got "
                         f"{tuple(c.shape[1:])}; stack several sets on a leading axis")
    return c


def _flatten(c: torch.Tensor):
    """Labels ``"(n1, n2)"`` from ``-d`` to ``d`` and the real/imag parts as ``(S, P)`` arrays."""
    ranges = [range(-(n // 2), n // 2 + 1) for n in c.shape[1:]]
    nvecs = list(itertools.product(*ranges))
    idx = torch.tensor([[k % n for k, n in zip(v, c.shape[1:])] for v in nvecs])  # (P, N)
    flat = c[(slice(None), *idx.T)]  # (S, P)
    labels = [str(v[0]) if len(v) == 1 else str(v).replace(" ", "") for v in nvecs]
    return labels, flat.real.numpy(), flat.imag.numpy()


def coefficient_distribution(coeffs, n_inputs: int, ax, kind: str = "violin", *, show_freqs: bool = True,
                             colour: str = "C0"):
    """Distribution of each Fourier coefficient over a stack of sets (random initialisations):
    ``kind="violin"``, ``"box"`` or ``"bar"`` (mean with one standard deviation).

    Args:
        coeffs: ``(S, 2d_1+1, ...)`` or one set ``(2d_1+1, ...)`` complex, numpy FFT order (or a list
            of sets).
        n_inputs: number of inputs of the function (grid axes), as in PennyLane.
        ax: two matplotlib axes (real, imaginary).
        kind: the plot type.
        show_freqs: label each frequency on the x axis.
        colour: matplotlib colour.

    Returns:
        the two axes.

    Raises:
        ValueError: an unknown kind, a shape that does not fit ``n_inputs``, even axis lengths, or not
            two axes.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {KINDS}")
    axes = _two_axes(ax)
    labels, re, im = _flatten(_samples(coeffs, n_inputs))
    pos = list(range(len(labels)))
    for a, data, name in zip(axes, (re, im), ("real", "imag")):
        if kind == "violin":
            parts = a.violinplot(data, positions=pos, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor(colour)
                body.set_alpha(0.5)
        elif kind == "box":
            a.boxplot(data, positions=pos, showfliers=False)
        else:
            a.bar(pos, data.mean(0), yerr=data.std(0) if len(data) > 1 else None, color=colour, alpha=0.7)
        a.axhline(0.0, color="0.6", linewidth=0.6)
        a.set_ylabel(f"{name}(c_n)")
        a.set_xticks(pos)
        a.set_xticklabels(labels if show_freqs else [""] * len(pos), rotation=90 if len(labels) > 5 else 0,
                          fontsize="small")
        a.set_xlabel("frequency n")
    return ax


def violin(coeffs, n_inputs, ax, **kwargs):
    """:func:`coefficient_distribution` with ``kind="violin"``."""
    return coefficient_distribution(coeffs, n_inputs, ax, "violin", **kwargs)


def box(coeffs, n_inputs, ax, **kwargs):
    """:func:`coefficient_distribution` with ``kind="box"``."""
    return coefficient_distribution(coeffs, n_inputs, ax, "box", **kwargs)


def bar(coeffs, n_inputs, ax, **kwargs):
    """:func:`coefficient_distribution` with ``kind="bar"``."""
    return coefficient_distribution(coeffs, n_inputs, ax, "bar", **kwargs)


def radial_box(coeffs, n_inputs, ax, *, show_freqs: bool = True, colour: str = "C3"):
    """Box plots of each coefficient around a circle (as ``qml.fourier.visualize.radial_box``):
    frequency 0 at the top, negative frequencies on the left. ``ax``: two polar axes."""
    import numpy as np

    axes = _two_axes(ax, polar=True)
    labels, re, im = _flatten(_samples(coeffs, n_inputs))
    n = len(labels)
    # frequency 0 at the top, positive frequencies clockwise, negative ones on the left
    angles = np.mod(2 * np.pi * (np.arange(n) - n // 2) / n, 2 * np.pi)
    width = 2 * np.pi / n / 2
    for a, data in zip(axes, (re, im)):
        a.set_theta_zero_location("N")
        a.set_theta_direction(-1)
        a.boxplot(data, positions=angles, widths=width, showfliers=False, patch_artist=True,
                  boxprops={"facecolor": colour, "alpha": 0.4}, manage_ticks=False)
        a.set_xlim(0, 2 * np.pi)  # boxplot would autoscale theta to the boxes' span
        a.set_xticks(angles)
        a.set_xticklabels(labels if show_freqs else [""] * n, fontsize="small")
    axes[0].set_title("real")
    axes[1].set_title("imag")
    return ax


def spectrum_image(power, ax, *, axes=None, log: bool = True, cmap: str = "magma", floor: float = 1e-12):
    """A 2-D power spectrum as an image, frequency 0 at the centre, in angular frequency units.

    Args:
        power: a :class:`PowerSpectrum` (its ``power`` and ``axes`` are used) or a 2-D tensor.
        ax: one matplotlib axes.
        axes: the two frequency axes when ``power`` is a tensor (default: index units).
        log: colour by ``log10(power + floor)``.

    Returns:
        the axes.
    """
    if hasattr(power, "power"):
        axes = power.axes if axes is None else axes
        power = power.power
    p = torch.as_tensor(power, dtype=torch.float64)
    if p.dim() != 2:
        raise ValueError(f"spectrum_image draws a 2-D power spectrum, got shape {tuple(p.shape)}")
    img = torch.log10(p + floor) if log else p
    if axes is None:
        extent = None
    else:
        w0, w1 = axes
        extent = [float(w1[0]), float(w1[-1]), float(w0[0]), float(w0[-1])]
    im = ax.imshow(img.numpy(), origin="lower", extent=extent, cmap=cmap, aspect="auto")
    ax.figure.colorbar(im, ax=ax, label="log10 power" if log else "power")
    ax.set_xlabel("w_2 (rad / unit)")
    ax.set_ylabel("w_1 (rad / unit)")
    return ax


def frequency_scatter(spectrum, ax, *, max_points: int = 20000, label: str | None = None, colour: str = "C0",
                      size: float = 2.0):
    """The frequency vectors of a :class:`ModelSpectrum`: a scatter in the plane for 2 inputs, a
    histogram for 1 input (only the first two coordinates are drawn for more). Above ``max_points``
    vectors, an evenly strided subset is drawn (the set is sorted, so its head would be one-sided)."""
    f = spectrum.frequencies
    if len(f) > max_points:
        f = f[torch.linspace(0, len(f) - 1, max_points).round().long()]
    if label is None:
        label = f"exact set ({spectrum.size:,})" if spectrum.enumerated else f"sample (bound {spectrum.size:,})"
    if f.shape[1] == 1:
        ax.hist(f[:, 0].numpy(), bins=min(200, max(10, len(f) // 20)), color=colour, alpha=0.6, label=label)
        ax.set_xlabel("w (rad / unit)")
        ax.set_ylabel("count")
    else:
        ax.scatter(f[:, 1].numpy(), f[:, 0].numpy(), s=size, color=colour, alpha=0.6, label=label, linewidths=0)
        ax.set_xlabel("w_2 (rad / unit)")
        ax.set_ylabel("w_1 (rad / unit)")
    ax.legend(loc="upper right", fontsize="small")
    return ax


def size_vs_parameters(rows, ax):
    """Spectrum size against parameter count, one series per ``family``.

    Args:
        rows: dicts with ``family`` (e.g. ``"QIREN"``), ``parameters``, ``size`` and ``enumerated`` (a
            bound is drawn hollow).
        ax: one matplotlib axes (log-log).

    Returns:
        the axes.
    """
    families: dict[str, list] = {}
    for r in rows:
        families.setdefault(r["family"], []).append(r)
    for i, (fam, rs) in enumerate(sorted(families.items())):
        rs = sorted(rs, key=lambda r: r["parameters"])
        xs, ys = [r["parameters"] for r in rs], [r["size"] for r in rs]
        ax.plot(xs, ys, "-", color=f"C{i}", label=fam, linewidth=1)
        for r in rs:
            ax.plot(r["parameters"], r["size"], "o", color=f"C{i}",
                    markerfacecolor=f"C{i}" if r.get("enumerated", True) else "none")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("first-layer spectrum size")
    ax.legend(fontsize="small")
    return ax


def radial_profile(comparisons: dict, ax, *, which: str = "error"):
    """Radial power profiles (``target``, ``model`` or ``error``) of several
    :class:`SpectrumComparison` s, keyed by label; log scale."""
    if which not in ("target", "model", "error"):
        raise ValueError(f"which must be 'target', 'model' or 'error', got {which!r}")
    for i, (name, cmp) in enumerate(comparisons.items()):
        r = cmp.radial
        ax.semilogy(r["radius"].numpy(), r[which].numpy() + 1e-16, label=name, color=f"C{i}")
        ax.axvline(cmp.cutoff, color="0.5", linestyle=":", linewidth=0.8)
    ax.set_xlabel("radius / Nyquist")
    ax.set_ylabel(f"{which} power in ring")
    ax.legend(fontsize="small")
    return ax


def error_split(comparisons: dict, ax):
    """Stacked bars of each model's MSE split into low- and high-frequency parts."""
    names = list(comparisons)
    low = [comparisons[n].mse_low for n in names]
    high = [comparisons[n].mse_high for n in names]
    pos = list(range(len(names)))
    ax.bar(pos, low, color="C0", label="low band")
    ax.bar(pos, high, bottom=low, color="C3", label="high band")
    ax.set_xticks(pos)
    ax.set_xticklabels(names)
    ax.set_ylabel("MSE")
    ax.legend(fontsize="small")
    return ax
