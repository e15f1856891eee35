"""The runnable examples in the backends' docstrings stay correct."""

import doctest
import importlib

import pytest

MODULES = {
    "qlite.simulators.shots": None, "qlite.simulators.backends": None, "qlite.simulators.noise": None,
    "qlite.simulators.export": "qiskit", "qlite.simulators.qiskit_backend": "qiskit_aer",
    "qlite.simulators.pennylane_backend": "pennylane", "qlite.simulators.jax_backend": "jax",
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_docstring_examples(name):
    if MODULES[name]:
        pytest.importorskip(MODULES[name])
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
