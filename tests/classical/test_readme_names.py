"""The README's names for the compression toolkit are the code's: every `Name(arg, ...)` it quotes in
its "Classical compression" section exists in qlite.classical and takes a first argument of that name."""

import inspect
import re
from pathlib import Path

import qlite.classical as qc

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text()
    start = text.index("## Classical compression")
    return text[start:text.index("\n## ", start + 3)]


def test_readme_calls_match_the_code():
    calls = re.findall(r"`(?:qlite\.classical\.)?([A-Za-z_][A-Za-z0-9_]*)\(([A-Za-z_][A-Za-z0-9_]*)?", _section())
    assert len(calls) >= 8, calls  # the section quotes the configs and factories it describes
    for name, first in calls:
        assert hasattr(qc, name), f"README quotes {name}(...), which qlite.classical does not have"
        if first and first not in ("model",):
            params = list(inspect.signature(getattr(qc, name)).parameters)
            assert first in params, f"README writes {name}({first}, ...), but its arguments are {params}"


def test_readme_backticked_names_exist():
    for name in re.findall(r"`([A-Z][A-Za-z0-9]+)`", _section()):
        assert hasattr(qc, name), f"README names {name}, which qlite.classical does not have"
