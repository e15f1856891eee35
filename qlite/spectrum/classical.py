"""Frequencies of a classical Fourier first layer (SIREN, random Fourier features)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ._encoding import check_int, folded_affine
from .model_spectrum import ModelSpectrum, _unique_rows

# Frequency-matrix attribute names looked up, in this order, on the module and its submodules
# (qlite.models.FourierFeatures stores ``frequencies``; Tancik et al.'s code calls it ``B``).
MATRIX_NAMES = ("frequencies", "B", "frequency_matrix", "b_matrix")
KINDS = ("auto", "siren", "rff")


def _find_matrix(module: nn.Module):
    for m in module.modules():
        for name in MATRIX_NAMES:
            v = getattr(m, name, None)
            if isinstance(v, torch.Tensor):
                return m, name, v
    return None


def _first_sine_layer(module: nn.Module):
    """The first submodule shaped like ``qlite.models.SineLayer`` (a ``.linear`` ``nn.Linear`` and a
    numeric ``.omega_0``), its folded ``(A, b)`` and ``omega_0``; ``None`` if there is none.

    Layers of that shape with ``activation`` other than ``"sine"`` (the ReLU / Tanh layers of
    ``qlite.models.MLP``) have no finite Fourier series: when the first one is such a layer, or
    another ``nn.Linear`` is registered before it, the model is no SIREN and ``TypeError`` says so.
    """
    first_linear = next((m for m in module.modules() if isinstance(m, nn.Linear)), None)
    for m in module.modules():
        lin, omega = getattr(m, "linear", None), getattr(m, "omega_0", None)
        if not isinstance(lin, nn.Linear) or isinstance(omega, bool) or not isinstance(omega, (int, float)):
            continue
        activation = getattr(m, "activation", "sine")
        if activation != "sine":
            raise TypeError(f"the first Linear + omega_0 layer of {type(module).__name__} ({type(m).__name__}) has "
                            f"activation {activation!r}, not 'sine': its output is no finite Fourier series")
        if lin is not first_linear:
            raise TypeError(f"{type(module).__name__} registers an nn.Linear before its first sine layer "
                            f"({type(m).__name__}); classical_spectrum reads SIREN-shaped first layers only")
        norm = getattr(m, "norm", None)
        if isinstance(norm, nn.Identity):
            norm = None
        if norm is not None and not isinstance(norm, _BatchNorm):
            raise TypeError(f"{type(m).__name__}.norm is a {type(norm).__name__}; only BatchNorm (eval mode, "
                            f"folded into the Linear) or nn.Identity can sit between the Linear and the sine")
        a, _ = folded_affine(lin, norm)
        return m, a, float(omega)
    return None


def classical_spectrum(module: nn.Module, *, kind: str = "auto", in_features: int | None = None,
                       angular: bool | None = None, decimals: int = 8) -> ModelSpectrum:
    r"""The frequency vectors of a SIREN or random-Fourier-feature **first layer**, in the input
    coordinates, as a :class:`ModelSpectrum` comparable with :func:`model_spectrum`.

    * SIREN (Sitzmann et al., NeurIPS 2020): the first layer is :math:`\sin(\omega_0 (W x + b))`,
      so a readout of it is a Fourier series over :math:`\{0\} \cup \{\pm \omega_0 W_i\}`: at most
      :math:`2m + 1` vectors for width :math:`m`. With an eval-mode BatchNorm between the Linear
      and the sine (the QIREN paper code's ``SineLayer_bn``), :math:`W` becomes
      :math:`\mathrm{diag}(\gamma / \sqrt{\sigma^2 + \epsilon}) W`.
    * Random Fourier features (Tancik et al., NeurIPS 2020):
      :math:`\gamma(x) = [\cos(2\pi B x), \sin(2\pi B x)]` gives :math:`\{0\} \cup \{\pm 2\pi B_i\}`:
      at most :math:`2m + 1` vectors for :math:`m` features.

    Either way the first-layer spectrum grows **linearly** with width, against :math:`(2L+1)^n` for a
    QIREN layer of :math:`n` qubits (Zhao et al., ICML 2024, Sec. 4). Like a deep QIREN, a deeper
    SIREN or the MLP after the features composes nonlinear functions of these sinusoids, whose
    spectrum is all finite integer combinations of them (infinite); only the first layer is exact.

    Structure read (that of :class:`qlite.models.SIREN` and :class:`qlite.models.RFFNet`; any module
    built the same way works):

    * SIREN: the first submodule (``module.modules()`` order) with an ``nn.Linear`` ``linear`` and a
      number ``omega_0`` -- :class:`qlite.models.SineLayer`, or ``qlite.models.MLP``'s layer with
      ``activation="sine"`` -- and its ``norm`` if any (BatchNorm, read in eval mode).
    * Fourier features: a tensor ``frequencies`` (or ``B``, ``frequency_matrix``, ``b_matrix``) of shape
      ``(m, in_features)`` -- ``(in_features, m)`` is accepted when ``in_features`` disambiguates --
      in cycles per unit (the ``2 pi`` applied in the forward, as :class:`qlite.models.FourierFeatures`
      does), unless ``angular=True`` or the module holding it has ``angular = True``.

    Args:
        module: the network (any ``nn.Module`` with that structure).
        kind: ``"siren"``, ``"rff"`` or ``"auto"`` (RFF if a frequency matrix is found, else SIREN).
        in_features: input dimension, to orient a square or transposed frequency matrix.
        angular: the matrix already holds angular frequencies (no ``2 pi``).
        decimals: rounding used to merge duplicates.

    Returns:
        ModelSpectrum: enumerated (exact), ``order=1``, ``hybrid_layers=0``, ``directions`` the ``(m, d)``
        first-layer frequency vectors and ``multi_indices`` the ``+-e_i`` picking each.

    Raises:
        TypeError: no frequency matrix / sine layer found for the requested kind, or a first layer
            that is no sine layer (a ReLU / Tanh MLP, a QIREN: use :func:`model_spectrum`).
        ValueError: unknown kind, a matrix that does not match ``in_features``, a BatchNorm without
            running statistics.

    Example:
        >>> from qlite.models import SIREN
        >>> spec = classical_spectrum(SIREN(1, 1, hidden_features=4))
        >>> spec.size, spec.bound
        (9, 9)
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {KINDS}")
    if not isinstance(module, nn.Module):
        raise TypeError(f"classical_spectrum expects a torch module, got {type(module).__name__}")
    check_int("decimals", decimals, 0)
    found_b = _find_matrix(module) if kind in ("auto", "rff") else None
    if kind == "rff" and found_b is None:
        raise TypeError(f"{type(module).__name__} has no frequency matrix attribute (looked for {MATRIX_NAMES})")
    if found_b is not None:
        owner, name, mat = found_b
        mat = mat.detach().to(torch.float64).cpu()
        if mat.dim() != 2:
            raise ValueError(f"{name} must be a (n_features, in_features) matrix, got shape {tuple(mat.shape)}")
        if in_features is not None and mat.shape[1] != in_features:
            if mat.shape[0] != in_features:
                raise ValueError(f"{name} has shape {tuple(mat.shape)}, neither dimension is in_features={in_features}")
            mat = mat.T
        angular = bool(getattr(owner, "angular", False)) if angular is None else angular
        directions = mat if angular else 2 * math.pi * mat
        what = "random Fourier features"
    else:
        found = _first_sine_layer(module)
        if found is None:
            raise TypeError(f"{type(module).__name__}: no Fourier-feature matrix {MATRIX_NAMES} and no SIREN sine "
                            f"layer (a submodule with an nn.Linear `linear` and a number `omega_0`, as "
                            f"qlite.models.SineLayer) found; for a hybrid model use model_spectrum")
        layer, a, omega = found
        if in_features is not None and a.shape[1] != in_features:
            raise ValueError(f"the first sine layer takes {a.shape[1]} inputs, not in_features={in_features}")
        directions = omega * a
        what = f"SIREN first sine layer ({type(layer).__name__})"
    m, d = directions.shape
    eye = torch.eye(m, dtype=torch.float64)
    index = torch.cat([torch.zeros(1, m, dtype=torch.float64), eye, -eye])  # (2m+1, m)
    freqs, index = _unique_rows(index @ directions, index, decimals)
    bandwidth = directions.abs().amax(0)
    note = f"exact: {what} ({m} units): {{0}} and +-each unit's frequency vector; deeper layers not included"
    return ModelSpectrum(freqs, index, len(freqs), True, 2 * m + 1, 1, 0, directions,
                         torch.zeros(m, dtype=torch.float64), {}, bandwidth, note)
