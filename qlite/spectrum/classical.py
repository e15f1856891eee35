"""Frequencies of a classical Fourier first layer (SIREN, random Fourier features)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._encoding import check_int
from .model_spectrum import ModelSpectrum, _unique_rows

# Attribute names looked up, in this order, on the model and then on its submodules.
OMEGA_NAMES = ("omega_0", "first_omega_0", "omega0", "w0")
MATRIX_NAMES = ("B", "frequency_matrix", "frequencies", "b_matrix")
KINDS = ("auto", "siren", "rff")


def _find_attr(module: nn.Module, names: tuple[str, ...]):
    for m in module.modules():
        for name in names:
            v = getattr(m, name, None)
            if v is not None and not callable(v):
                return m, name, v
    return None


def _first_linear(module: nn.Module) -> nn.Linear:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            return m
    raise TypeError(f"{type(module).__name__} has no nn.Linear; a SIREN needs one as its first sine layer")


def classical_spectrum(module: nn.Module, *, kind: str = "auto", in_features: int | None = None,
                       angular: bool | None = None, decimals: int = 8) -> ModelSpectrum:
    r"""The frequency vectors of a SIREN or random-Fourier-feature **first layer**, in the input
    coordinates, as a :class:`ModelSpectrum` comparable with :func:`model_spectrum`.

    * SIREN (Sitzmann et al., NeurIPS 2020): the first layer is :math:`\sin(\omega_0 (W x + b))`,
      so a readout of it is a Fourier series over :math:`\{0\} \cup \{\pm \omega_0 W_i\}`: at most
      :math:`2m + 1` vectors for width :math:`m`.
    * Random Fourier features (Tancik et al., NeurIPS 2020):
      :math:`\gamma(x) = [\cos(2\pi B x), \sin(2\pi B x)]` gives :math:`\{0\} \cup \{\pm 2\pi B_i\}`:
      at most :math:`2m + 1` vectors for :math:`m` features.

    Either way the first-layer spectrum grows **linearly** with width, against :math:`(2L+1)^n` for a
    QIREN layer of :math:`n` qubits (Zhao et al., ICML 2024, Sec. 4). Like a deep QIREN, a deeper
    SIREN or the MLP after the features composes nonlinear functions of these sinusoids, whose
    spectrum is all finite integer combinations of them (infinite); only the first layer is exact.

    Attributes read: SIREN: ``omega_0`` (or ``first_omega_0``, ``omega0``, ``w0``) on the module or a
    submodule, and the first ``nn.Linear`` in ``module.modules()`` order. Fourier features: a tensor
    ``B`` (or ``frequency_matrix``, ``frequencies``, ``b_matrix``) of shape ``(m, in_features)`` --
    ``(in_features, m)`` is accepted when ``in_features`` disambiguates -- in cycles per unit (the
    ``2 pi`` applied in the forward), unless ``angular=True`` or the module has ``angular = True``.

    Args:
        module: the network (any ``nn.Module`` with those attributes).
        kind: ``"siren"``, ``"rff"`` or ``"auto"`` (RFF if a frequency matrix is found, else SIREN).
        in_features: input dimension, to orient a square or transposed ``B``.
        angular: ``B`` already holds angular frequencies (no ``2 pi``).
        decimals: rounding used to merge duplicates.

    Returns:
        ModelSpectrum: enumerated (exact), ``order=1``, ``hybrid_layers=0``, ``directions`` the ``(m, d)`` first-layer
        frequency vectors and ``multi_indices`` the ``+-e_i`` picking each.

    Raises:
        TypeError: no frequency matrix / omega_0 / Linear found for the requested kind.
        ValueError: unknown kind, a matrix that does not match ``in_features``.

    Example:
        >>> from qlite.spectrum import SirenStandIn
        >>> spec = classical_spectrum(SirenStandIn(1, 4, 1, omega_0=30.0))
        >>> spec.size, spec.bound
        (9, 9)
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {KINDS}")
    if not isinstance(module, nn.Module):
        raise TypeError(f"classical_spectrum expects a torch module, got {type(module).__name__}")
    check_int("decimals", decimals, 0)
    found_b = _find_attr(module, MATRIX_NAMES) if kind in ("auto", "rff") else None
    if kind == "rff" and found_b is None:
        raise TypeError(f"{type(module).__name__} has no frequency matrix attribute (looked for {MATRIX_NAMES})")
    if found_b is not None:
        owner, name, mat = found_b
        mat = torch.as_tensor(mat).detach().to(torch.float64).cpu()
        if mat.dim() != 2:
            raise ValueError(f"{name} must be a (n_features, in_features) matrix, got shape {tuple(mat.shape)}")
        if in_features is not None:
            if mat.shape[1] != in_features:
                if mat.shape[0] != in_features:
                    raise ValueError(f"{name} has shape {tuple(mat.shape)}, neither dimension is "
                                     f"in_features={in_features}")
                mat = mat.T
        angular = bool(getattr(owner, "angular", False)) if angular is None else angular
        directions = mat if angular else 2 * math.pi * mat
        what = "random Fourier features"
    else:
        found = _find_attr(module, OMEGA_NAMES)
        if found is None:
            raise TypeError(f"{type(module).__name__}: no Fourier-feature matrix {MATRIX_NAMES} and no SIREN "
                            f"frequency {OMEGA_NAMES} found; pass kind= and give the module one of these attributes")
        omega = float(found[2])
        lin = _first_linear(module)
        if in_features is not None and lin.in_features != in_features:
            raise ValueError(f"the first Linear takes {lin.in_features} inputs, not in_features={in_features}")
        directions = omega * lin.weight.detach().to(torch.float64).cpu()
        what = "SIREN first sine layer"
    m, d = directions.shape
    eye = torch.eye(m, dtype=torch.float64)
    index = torch.cat([torch.zeros(1, m, dtype=torch.float64), eye, -eye])  # (2m+1, m)
    freqs, index = _unique_rows(index @ directions, index, decimals)
    bandwidth = directions.abs().amax(0)
    note = f"exact: {what} ({m} units): {{0}} and +-each unit's frequency vector; deeper layers not included"
    return ModelSpectrum(freqs, index, len(freqs), True, 2 * m + 1, 1, 0, directions,
                         torch.zeros(m, dtype=torch.float64), {}, bandwidth, note)
