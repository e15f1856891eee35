"""qlite.spectrum stays light (matplotlib and PennyLane only on use), its lazy names resolve, and its
docstring examples run."""

import doctest
import importlib
import subprocess
import sys

import pytest

MODULES = ["circuit_spectrum", "model_spectrum", "spectrum_size", "coefficients", "least_squares", "power",
           "compare", "classical", "hybrid_coefficients", "visualize"]


def test_import_spectrum_does_not_import_plotting_or_pennylane():
    code = ("import sys, qlite.spectrum, qlite.spectrum.visualize, qlite.cli.spectrum; "
            "print(','.join(m for m in ('matplotlib', 'pennylane', 'skimage', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_lazy_names_on_qlite():
    import qlite
    from qlite.spectrum import circuit_spectrum, model_spectrum, spectrum_size

    assert qlite.circuit_spectrum is circuit_spectrum and qlite.model_spectrum is model_spectrum
    assert qlite.spectrum_size(2, 1) == spectrum_size(2, 1) == 5


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    if name == "visualize":
        pytest.importorskip("matplotlib")
    module = importlib.import_module(f"qlite.spectrum.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
