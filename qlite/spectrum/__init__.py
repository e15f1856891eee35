"""qlite.spectrum: which frequencies a circuit and a hybrid model can express, which ones a model
carries, and how they compare with a signal's own spectrum.

One public function per module, in the style of PennyLane's ``qml.fourier``:

* :func:`circuit_spectrum` -- per circuit input, the frequencies its encoding gates reach;
* :func:`model_spectrum` -- frequency vectors of a hybrid model in its input coordinates;
* :func:`spectrum_size` -- how many frequencies one input on ``d`` weighted qubits reaches;
* :func:`coefficients` -- Fourier coefficients on the standard grid, one batched evaluation;
* :func:`hybrid_coefficients` -- the exact series of a one-hybrid-layer model in its input coordinates;
* :func:`least_squares_coefficients` -- coefficients on a known, real frequency set;
* :func:`power_spectrum` / :func:`compare_spectra` -- signal against model, error by band;
* :func:`classical_spectrum` -- SIREN / Fourier-feature first layers, for comparison;
* :func:`adapter_spectrum` -- the series a trained ``qlite.lm`` QuantumAdapter / QuantumFFN circuit
  carries, with the directions back to its layer's inputs (lives in ``qlite.lm.spectrum``);
* ``qlite.spectrum.visualize`` -- plots (matplotlib, imported on use).
"""

from .circuit_spectrum import circuit_spectrum
from .classical import classical_spectrum
from .coefficients import coefficients
from .compare import SpectrumComparison, compare_spectra
from .hybrid_coefficients import hybrid_coefficients
from .least_squares import FourierFit, least_squares_coefficients
from .model_spectrum import ModelSpectrum, model_spectrum
from .power import PowerSpectrum, power_spectrum
from .spectrum_size import spectrum_size



def __getattr__(name):
    # qlite.lm builds on this package, so its spectrum entry point is re-exported lazily (no import cycle)
    if name in ("adapter_spectrum", "AdapterSpectrum"):
        from ..lm import spectrum as _lm_spectrum

        return getattr(_lm_spectrum, name)
    raise AttributeError(f"module 'qlite.spectrum' has no attribute {name!r}")


__all__ = [
    "AdapterSpectrum",
    "FourierFit",
    "ModelSpectrum",
    "PowerSpectrum",
    "SpectrumComparison",
    "adapter_spectrum",
    "circuit_spectrum",
    "classical_spectrum",
    "coefficients",
    "compare_spectra",
    "hybrid_coefficients",
    "least_squares_coefficients",
    "model_spectrum",
    "power_spectrum",
    "spectrum_size",
]
