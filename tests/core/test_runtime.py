"""The explicit allocator tuning: applied through glibc's mallopt, idempotent, never at import."""

import subprocess
import sys

import pytest


def test_tuning_applies_on_glibc_and_is_idempotent():
    from qlite.runtime import tune_cpu_allocator

    if sys.platform != "linux":
        pytest.skip("glibc only")
    assert tune_cpu_allocator() is True
    assert tune_cpu_allocator() is True


def test_import_does_not_tune():
    code = "import qlite, qlite.runtime as r; print(r._tuned)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
