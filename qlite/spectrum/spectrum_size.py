"""How many distinct frequencies one input fed to every qubit, with per-qubit weights, can reach."""

from __future__ import annotations

import math

import numpy as np

from ._encoding import check_int, merge_close

SCALINGS = ("unit", "ternary", "bound")


def _count_integer(weights: list[int], layers: int) -> int:
    """Exact count for integer weights: the reachable sums form a subset of a bounded integer range,
    so a boolean indicator over that range and one shifted-OR per qubit enumerate it."""
    span = layers * sum(abs(w) for w in weights)
    reach = np.zeros(2 * span + 1, dtype=bool)
    reach[span] = True
    for w in weights:
        new = np.zeros_like(reach)
        for k in range(-layers, layers + 1):
            shift = k * w
            if shift >= 0:
                new[shift:] |= reach[: len(reach) - shift]
            else:
                new[:shift] |= reach[-shift:]
        reach = new
    return int(reach.sum())


def spectrum_size(n_qubits: int, layers: int, scaling="unit", *, decimals: int = 8,
                  max_size: int = 10**7) -> int:
    r"""Number of distinct frequencies of :math:`f(x)` when one input :math:`x` is encoded on each of
    :math:`d` qubits with weight :math:`w_i`, by :math:`L` Pauli-rotation re-uploads per qubit.

    Each qubit then contributes :math:`w_i k_i` with :math:`k_i \in \{-L, \dots, L\}`, so the
    spectrum is :math:`\Omega = \{\sum_i w_i k_i\}` (Schuld, Sweke & Meyer, PRA 103, 032430 (2021),
    Sec. IV; Shin, Teo & Jeong, PRR 5, 023218 (2023) for exponential encodings). Its size is

    * ``"unit"`` (:math:`w_i = 1`): :math:`2dL + 1`;
    * ``"ternary"`` (:math:`w_i = 3^{i-1}`): :math:`(3^d - 1)L + 1` -- every integer in
      :math:`[-L(3^d-1)/2, L(3^d-1)/2]` is reached (balanced-ternary digits with carries);
    * ``"bound"``: the general maximum :math:`(2L+1)^d`, reached when the weights are rationally
      independent (e.g. the directions a trained ``Linear`` produces, see :func:`model_spectrum`);
    * an explicit sequence of :math:`d` weights: counted exactly (integer weights on an integer
      range; other weights by enumerating sums rounded to ``decimals``).

    Args:
        n_qubits: :math:`d \ge 1`, the number of qubits that encode ``x``.
        layers: :math:`L \ge 0`, the number of re-uploads per qubit.
        scaling: ``"unit"``, ``"ternary"``, ``"bound"`` or a sequence of ``n_qubits`` real weights.
        decimals: rounding used to merge equal sums of non-integer weights.
        max_size: largest set enumerated for non-integer weights.

    Returns:
        int: the number of distinct frequencies, 0 included.

    Raises:
        ValueError: ``n_qubits < 1``, ``layers < 0``, an unknown scaling, weights of the wrong length or
            not finite, or non-integer weights whose set would exceed ``max_size`` (use ``"bound"``).

    Example:
        >>> spectrum_size(3, 2), spectrum_size(3, 2, "ternary"), spectrum_size(3, 2, "bound")
        (13, 53, 125)
        >>> spectrum_size(2, 1, [1.0, 0.3]), spectrum_size(2, 1, [1.0, 0.5])  # 0.5 + 0.5 = 1.0 + 0.0
        (9, 7)
    """
    check_int("n_qubits", n_qubits, 1)
    check_int("layers", layers, 0)
    if isinstance(scaling, str):
        if scaling == "unit":
            return 2 * n_qubits * layers + 1
        if scaling == "ternary":
            return (3**n_qubits - 1) * layers + 1
        if scaling == "bound":
            return (2 * layers + 1) ** n_qubits
        raise ValueError(f"unknown scaling {scaling!r}; choose one of {SCALINGS} or pass a list of {n_qubits} weights")
    try:
        weights = [float(w) for w in scaling]
    except TypeError:
        raise TypeError(f"scaling must be 'unit', 'ternary', 'bound' or a sequence of {n_qubits} weights, "
                        f"got {scaling!r}") from None
    if len(weights) != n_qubits:
        raise ValueError(f"scaling has {len(weights)} weights for n_qubits={n_qubits}; give one weight per qubit")
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"weights must be finite, got {weights}")
    if all(w == round(w) for w in weights):
        ints = [int(round(w)) for w in weights]
        g = math.gcd(*ints)  # sums of g * k_i: the same count as for the weights divided by g
        ints = [w // g for w in ints] if g > 1 else ints
        span = layers * sum(abs(w) for w in ints)
        if 2 * span + 1 > max_size:
            raise ValueError(
                f"counting the sums of these integer weights scans a range of {2 * span + 1} values, more than "
                f"max_size={max_size}; raise max_size or use scaling='bound' ({(2 * layers + 1) ** n_qubits}) as the bound"
            )
        return _count_integer(ints, layers)
    spec = [0.0]
    ks = range(-layers, layers + 1)
    for i, w in enumerate(weights):
        if len(spec) * len(ks) > max_size:
            raise ValueError(
                f"counting the sums of {n_qubits} non-integer weights needs more than max_size={max_size} candidates "
                f"after {i} qubits; raise max_size or use scaling='bound' ({(2 * layers + 1) ** n_qubits}) as the bound"
            )
        spec = merge_close((s + k * w for s in spec for k in ks), decimals)
    return len(spec)
