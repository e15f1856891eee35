"""Frequency vectors of a hybrid model in its own input coordinates (through Linear and BatchNorm)."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ._encoding import check_int, folded_affine, integer_spectra, minkowski_sum

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpectrum:
    """The frequency vectors of a model, as returned by :func:`model_spectrum`.

    Attributes:
        frequencies: ``(K, in_features)`` float64 angular frequencies :math:`w` of terms
            :math:`c_w e^{i w \\cdot x}`; the whole set if ``enumerated``, else a uniform sample of it.
        multi_indices: ``(K, n_inputs)`` float64; row ``k`` is a circuit frequency vector
            :math:`\\omega` with ``frequencies[k] = directions.T @ omega``.
        size: the number of distinct vectors if ``enumerated``, else the upper bound ``bound``.
        enumerated: whether the set was enumerated in full (then ``size`` is an exact count).
        bound: :math:`\\prod_j |\\Omega_j|`, the size when no two vectors coincide.
        order: sums of at most this many first-layer frequencies (1: the first layer itself).
        hybrid_layers: number of hybrid layers found in the model.
        directions: ``(n_inputs, in_features)`` float64 :math:`A`; circuit input ``j`` is
            ``A[j] @ x + offsets[j]`` (Linear with eval-mode BatchNorm folded in).
        offsets: ``(n_inputs,)`` float64 :math:`b`; they only shift phases.
        circuit_spectra: per circuit input, the frequency set :math:`\\Omega_j` used (already
            summed ``order`` times).
        bandwidth: ``(in_features,)`` float64, the largest :math:`|w_i|` over the whole set, per input
            coordinate (exact even when the set is sampled).
        note: what is exact and what is a bound, in words.
    """

    frequencies: torch.Tensor
    multi_indices: torch.Tensor
    size: int
    enumerated: bool
    bound: int
    order: int
    hybrid_layers: int
    directions: torch.Tensor
    offsets: torch.Tensor
    circuit_spectra: dict
    bandwidth: torch.Tensor
    note: str

    def to_dict(self, max_frequencies: int = 0) -> dict:
        """JSON-ready summary (the first ``max_frequencies`` vectors only)."""
        return dict(size=self.size, enumerated=self.enumerated, bound=self.bound, order=self.order,
                    hybrid_layers=self.hybrid_layers, in_features=int(self.directions.shape[1]),
                    bandwidth=self.bandwidth.tolist(), note=self.note,
                    frequencies=self.frequencies[:max_frequencies].tolist())

    def __repr__(self) -> str:
        kind = "exact" if self.enumerated else f"sampled {len(self.frequencies):,} of <="
        return (f"ModelSpectrum({kind} {self.size:,} frequency vectors in {int(self.directions.shape[1])}-d, "
                f"order {self.order}, {self.hybrid_layers} hybrid layer(s))")

    def _repr_html_(self) -> str:
        """Notebook display: size, bound, bandwidth per input coordinate and what is exact, and for
        two input coordinates a scatter of the vectors (w_2 across, w_1 up, as ``frequency_scatter``)."""
        from qlite.display import scatter_svg, table

        rows = [["frequency vectors", self.size], ["counted", "exactly (enumerated)" if self.enumerated else
                                                   f"upper bound; {len(self.frequencies):,} sampled"],
                ["bound (no coincidences)", self.bound], ["order", self.order],
                ["hybrid layers", self.hybrid_layers], ["circuit inputs", int(self.directions.shape[0])]]
        rows += [[f"bandwidth |w_{i}| max", float(b)] for i, b in enumerate(self.bandwidth.tolist())]
        rows.append(["note", self.note])
        plot = scatter_svg(self.frequencies[:, [1, 0]].tolist()) if self.frequencies.shape[1] == 2 else ""
        return f"<div>{table(rows, ['', 'value'], caption='model spectrum')}{plot}</div>"


def _find_front(model: nn.Module):
    """(A, b, circuit, number of hybrid layers) for a HybridLayer, a QuantumLayer or a model of them."""
    from qlite.layers import HybridLayer, QuantumLayer

    if not isinstance(model, nn.Module):
        raise TypeError(f"model_spectrum expects a torch module (HybridLayer, QIREN, ...), got {type(model).__name__}")
    hybrids = [m for m in model.modules() if isinstance(m, HybridLayer)]
    if hybrids:
        first = hybrids[0]
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if linears[0] is not first.linear:  # frequencies are in the model's input coordinates
            raise TypeError(
                f"the input of this {type(model).__name__} reaches another layer before the first HybridLayer; "
                "model_spectrum needs the hybrid layer first (pass the HybridLayer itself to analyse it alone)")
        inside = set(first.modules())
        tail = [m for m in model.modules() if m not in inside and not list(m.children())]
        # exact only if nothing but linear maps follows the one hybrid layer
        linear_tail = all(isinstance(m, (nn.Linear, nn.Identity)) for m in tail)
        a, b = folded_affine(first.linear, first.norm)
        return a, b, first.quantum.circuit, len(hybrids), linear_tail
    if isinstance(model, QuantumLayer):
        n = model.circuit.n_inputs
        return torch.eye(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64), model.circuit, 1, True
    raise TypeError(
        f"{type(model).__name__} holds no HybridLayer or QuantumLayer; model_spectrum analyses hybrid models "
        f"(use qlite.spectrum.classical_spectrum for SIREN / random-Fourier-feature networks)"
    )


def _unique_rows(freqs: torch.Tensor, index: torch.Tensor, decimals: int):
    """Rows of ``freqs`` that differ after rounding (sorted by the rounded key), each the unrounded
    first occurrence with its multi-index: rounding is only the merge key, so that the returned
    frequencies stay exact to float64 (least squares on them is then exact to ~1e-13)."""
    key = torch.round(freqs, decimals=decimals) + 0.0
    uniq, inverse = torch.unique(key, dim=0, return_inverse=True)
    pos = torch.arange(len(key))
    first = torch.full((len(uniq),), len(key), dtype=torch.long).scatter_reduce(0, inverse, pos, "amin")
    return freqs[first] + 0.0, index[first]


def _enumerate(spectra: list[list[float]], a: torch.Tensor, max_size: int, decimals: int):
    """Iterated Minkowski sum ``{sum_j omega_j a_j}`` with duplicates merged after every input, so
    coincidences (commensurate directions) keep the set small. None once it would pass max_size."""
    n, d = a.shape
    freqs = torch.zeros(1, d, dtype=torch.float64)
    index = torch.zeros(1, n, dtype=torch.float64)
    for j, spec in enumerate(spectra):
        om = torch.tensor(spec, dtype=torch.float64)  # (S,)
        if len(freqs) * len(om) > max_size:
            return None
        cand = (freqs[:, None, :] + om[None, :, None] * a[j]).reshape(-1, d)  # (K*S, d)
        idx = index[:, None, :].repeat(1, len(om), 1)
        idx[:, :, j] = om
        freqs, index = _unique_rows(cand, idx.reshape(-1, n), decimals)
    return freqs, index


def _sample(spectra: list[list[float]], a: torch.Tensor, n_samples: int, generator, decimals: int):
    cols = []
    for spec in spectra:
        om = torch.tensor(spec, dtype=torch.float64)
        cols.append(om[torch.randint(len(om), (n_samples,), generator=generator)])
    index = torch.stack(cols, 1)  # (n_samples, n)
    return _unique_rows(index @ a, index, decimals)


def model_spectrum(model: nn.Module, *, order: int = 1, max_size: int = 2**21, n_samples: int = 4096,
                   generator: torch.Generator | None = None, decimals: int = 8) -> ModelSpectrum:
    r"""Frequency vectors a hybrid model can express, in the model's input coordinates.

    A hybrid layer maps :math:`x \in \mathbb{R}^d` to circuit inputs :math:`h = A x + b` (a
    ``Linear`` and an eval-mode ``BatchNorm1d`` folded into one affine map), and its circuit is a
    Fourier series :math:`\sum_{\omega} c_\omega e^{i \omega \cdot h}` over
    :math:`\omega \in \Omega_1 \times \dots \times \Omega_n` (:func:`circuit_spectrum`). Hence

    .. math::

        f(x) = \sum_{\omega} \big(c_\omega e^{i \omega \cdot b}\big)\, e^{i (A^\top \omega) \cdot x},
        \qquad \mathcal{F}_1 = \{A^\top \omega = \textstyle\sum_j \omega_j a_j\},

    which is the QIREN paper's argument (Zhao et al., ICML 2024, Sec. 4): the linear layer turns the
    :math:`(2L+1)^n` integer vectors into as many distinct real frequency vectors unless directions
    :math:`a_j` are commensurate. For **one hybrid layer** (and any final ``Linear``) the set
    :math:`\mathcal{F}_1` is **exact** in PennyLane's sense of a spectrum: every frequency of the output
    lies in it, and none outside it can appear; the circuit's structure or particular weights can still
    leave some coefficients zero (on two wires a CZ ring cancels itself, so ``<Z_0>`` ignores the
    second circuit input). :func:`hybrid_coefficients` gives the coefficients themselves.

    **Deeper layers.** The second layer's circuit inputs :math:`h^{(2)} = A_2 y^{(1)} + b_2` are
    themselves Fourier series over :math:`\mathcal{F}_1`, and :math:`e^{i \nu \cdot h^{(2)}}` expands
    (Jacobi-Anger / Taylor) into powers of them, so the output's spectrum lies in the set of all
    finite sums of first-layer frequencies, :math:`\{A_1^\top m : m \in \Omega^{(\infty)}\}` -- an
    **infinite** set (a lattice image). The part that needs more than :math:`M` summands comes from
    the terms :math:`(i\, \nu \cdot (h^{(2)} - b_2))^k / k!` with :math:`k > M`; it is bounded by the
    tail :math:`\sum_{k > M} t^k / k!` of an exponential series (:math:`t` the amplitude of the
    deeper encoded angles), which decays factorially once :math:`M > t`.

    With ``order=M`` this function returns the sums of at most :math:`M` first-layer frequencies,
    :math:`A_1^\top(\Omega^{(M)}_1 \times \dots \times \Omega^{(M)}_n)` with :math:`\Omega^{(M)}_j`
    the :math:`M`-fold sum set: the frequencies reachable by the expansion up to order :math:`M`.
    That set is neither exact nor an upper bound for a deep model: the tail beyond order :math:`M` is
    never zero and, for a trained model, not always small (``experiments/spectrum.py`` measures it
    with :func:`least_squares_coefficients`).

    When the set is larger than ``max_size`` it is not enumerated: a ``UserWarning`` says so, ``size``
    is then the bound :math:`\prod_j |\Omega^{(M)}_j|`, and ``frequencies`` is a uniform sample of
    ``n_samples`` multi-indices (duplicates merged).

    Args:
        model: a :class:`~qlite.HybridLayer`, a :class:`~qlite.QIREN`, any module containing hybrid
            layers (the first one found is the input layer; hybrid layers are assumed to be composed in
            sequence, as in QIREN), or a bare :class:`~qlite.QuantumLayer` (identity preprocessing).
        order: :math:`M \ge 1`; values above 1 need a model with several hybrid layers.
        max_size: largest number of candidate vectors enumerated.
        n_samples: number of multi-indices drawn when the set is too large.
        generator: random generator for the sample (keyword only).
        decimals: frequencies are rounded to this many decimals before merging duplicates.

    Returns:
        ModelSpectrum: frequencies ``(K, in_features)``, their multi-indices ``(K, n)``, size, bound,
        bandwidth and a note on exactness.

    Raises:
        TypeError: ``model`` is not a module or holds no hybrid / quantum layer.
        ValueError: bad ``order`` / ``max_size`` / ``n_samples``; ``order > 1`` for a single hybrid
            layer; a BatchNorm without running statistics; a circuit with no encoding gate.

    Example:
        >>> import torch
        >>> from qlite import HybridLayer
        >>> layer = HybridLayer(1, 2, spectrum_layers=1).eval()
        >>> with torch.no_grad():
        ...     _ = layer.linear.weight.copy_(torch.tensor([[1.0], [0.25]]))
        >>> spec = model_spectrum(layer)
        >>> spec.size, [round(w, 4) for w in spec.frequencies.flatten().tolist()]  # k1 * 1 + k2 * 0.25, BN eps
        (9, [-1.25, -1.0, -0.75, -0.25, 0.0, 0.25, 0.75, 1.0, 1.25])
    """
    check_int("order", order, 1)
    check_int("max_size", max_size, 1)
    check_int("n_samples", n_samples, 1)
    check_int("decimals", decimals, 0)
    a, b, circuit, n_hybrid, linear_tail = _find_front(model)
    if order > 1 and n_hybrid == 1:
        raise ValueError(
            f"order={order} asks for sums of first-layer frequencies, which only deeper hybrid layers create; "
            f"this model has one hybrid layer, whose spectrum is exact at order=1"
        )
    base = integer_spectra(circuit, decimals, rounded=False)
    spectra = []
    for j in range(circuit.n_inputs):
        spec = base[j]
        for _ in range(order - 1):
            spec = minkowski_sum(spec, base[j], decimals)
        spectra.append(spec)
    bound = math.prod(len(s) for s in spectra)
    # max_i |sum_j a_ji omega_j| over the box: each omega_j at its extreme with the sign of a_ji.
    bandwidth = (a.abs() * torch.tensor([max(abs(v) for v in s) for s in spectra], dtype=torch.float64)[:, None]).sum(0)

    found = _enumerate(spectra, a, max_size, decimals)
    if found is not None:
        (freqs, index), enumerated, size = found, True, len(found[0])
    else:
        warnings.warn(
            f"the frequency set has up to {bound:,} vectors, more than max_size={max_size:,}: not enumerated; "
            f"returning a uniform sample of {n_samples} multi-indices and size={bound:,} as an upper bound "
            f"(raise max_size to enumerate)", UserWarning, stacklevel=2)
        freqs, index = _sample(spectra, a, n_samples, generator, decimals)
        enumerated, size = False, bound
    if n_hybrid == 1 and not linear_tail:
        note = ("the first hybrid layer's spectrum; nonlinear layers after it make the model's spectrum larger "
                "(this set is neither exact nor an upper bound for the model)")
    elif n_hybrid == 1:
        note = ("exact: one hybrid layer; every output frequency lies in this set"
                if enumerated else "one hybrid layer; size is an upper bound (not enumerated), frequencies a sample")
    else:
        note = (f"{n_hybrid} hybrid layers: the full spectrum (all finite sums of first-layer frequencies) is "
                f"infinite; this is the order-{order} truncation (sums of at most {order} first-layer frequencies), "
                f"neither exact nor an upper bound for the model"
                + ("" if enumerated else f"; size {bound:,} bounds the truncation, frequencies are a sample"))
    log.info("model_spectrum: %s (size %d, bound %d)", note, size, bound)
    return ModelSpectrum(freqs, index, size, enumerated, bound, order, n_hybrid, a, b,
                         {j: s for j, s in enumerate(spectra)}, bandwidth, note)
