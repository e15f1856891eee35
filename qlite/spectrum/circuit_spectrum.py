"""The frequency spectrum of a data re-uploading circuit, read off its encoding gates."""

from __future__ import annotations

from ._encoding import as_circuit, check_int, integer_spectra


def circuit_spectrum(layer_or_circuit, *, decimals: int = 8) -> dict[int, list[float]]:
    r"""Frequencies that each encoded input of a circuit can contribute to its Fourier series.

    A circuit whose input :math:`x_j` enters only through one-angle gates
    :math:`\exp(-i\, s_g x_j G_g)` computes expectation values of the form

    .. math::

        f(x) = \sum_{\omega_1 \in \Omega_1} \cdots \sum_{\omega_N \in \Omega_N}
               c_{\omega}\, e^{i \omega \cdot x},

    where :math:`\Omega_j` is the set of sums, over every gate :math:`g` that encodes :math:`x_j`,
    of one difference of eigenvalues of :math:`s_g G_g` (Schuld, Sweke & Meyer, PRA 103, 032430
    (2021), eq. (5); Vidal & Theis, arXiv:1901.11434). A Pauli rotation has eigenvalues
    :math:`\pm 1/2`, so :math:`L` re-uploads of :math:`x_j` with scale 1 give
    :math:`\Omega_j = \{-L, \dots, L\}`. The answer is the one of PennyLane's
    ``qml.fourier.circuit_spectrum`` (for unit scales) and ``qml.fourier.qnode_spectrum`` (which also
    folds in the scales), checked in ``tests/spectrum``. It depends only on the encoding gates, not on
    the trainable angles; particular angles can give some of these frequencies a zero coefficient.

    Args:
        layer_or_circuit: a :class:`~qlite.simulators.Circuit`, a :class:`~qlite.QuantumLayer` or a
            :class:`~qlite.HybridLayer` (its circuit, in the circuit's own input coordinates; for the
            model's input coordinates see :func:`model_spectrum`).
        decimals: frequencies are rounded to this many decimals (as in PennyLane).

    Returns:
        dict[int, list[float]]: for every circuit input ``j`` in ``0..n_inputs-1``, the sorted,
        symmetric list :math:`\Omega_j` (always containing 0; ``[0.0]`` for an input no gate uses).

    Raises:
        TypeError: the argument is not a circuit or quantum layer.
        ValueError: the circuit has no encoding gate, or takes an input through a multi-angle gate
            (``Rot``), which is not of the form :math:`\exp(-i x G)`.

    Example:
        >>> from qlite.simulators import reuploading_circuit
        >>> circuit_spectrum(reuploading_circuit(2, spectrum_layers=2))
        {0: [-2.0, -1.0, 0.0, 1.0, 2.0], 1: [-2.0, -1.0, 0.0, 1.0, 2.0]}
    """
    check_int("decimals", decimals, 0)
    return integer_spectra(as_circuit(layer_or_circuit), decimals)
