"""Progress defaults: a bar on a terminal and in a Jupyter kernel, none on a pipe; progress= wins."""

import io
import os

import pytest

from qlite.training import device
from qlite.training.device import Progress, in_notebook, is_kernel_stream, progress_enabled


class OutStream(io.StringIO):
    """Stands in for ipykernel.iostream.OutStream: same module, not a terminal."""

    def isatty(self):
        return False


OutStream.__module__ = "ipykernel.iostream"


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def pipe():
    r, w = os.pipe()
    with os.fdopen(r, "r") as rf, os.fdopen(w, "w") as wf:
        yield wf


def test_kernel_stream_is_recognised_by_type():
    assert is_kernel_stream(OutStream()) and not is_kernel_stream(io.StringIO())
    assert in_notebook(OutStream(), OutStream()) and not in_notebook(io.StringIO(), io.StringIO())


def test_defaults_pipe_off_kernel_on_terminal_on(pipe):
    assert not pipe.isatty()
    assert progress_enabled(None, pipe, pipe) is False
    assert progress_enabled(None, OutStream(), OutStream()) is True
    assert progress_enabled(None, FakeTTY(), FakeTTY()) is True
    assert progress_enabled(None, FakeTTY(), pipe) is False  # stderr piped: stays clean


def test_explicit_argument_wins(pipe):
    assert progress_enabled(True, pipe, pipe) is True
    assert progress_enabled(False, OutStream(), OutStream()) is False


def test_kernel_gets_the_notebook_bar_and_a_pipe_none(monkeypatch, pipe):
    pytest.importorskip("tqdm")
    pytest.importorskip("ipywidgets")
    from tqdm.notebook import tqdm as notebook_tqdm
    from tqdm.std import tqdm as text_tqdm

    assert device._tqdm_class(True) is notebook_tqdm and device._tqdm_class(False) is text_tqdm
    monkeypatch.setattr("sys.stdout", pipe)
    monkeypatch.setattr("sys.stderr", pipe)
    assert Progress(10, 0, progress_enabled(None)).bar is None


def test_fit_on_a_pipe_draws_nothing(monkeypatch, pipe):
    import torch

    import qlite
    from qlite import data

    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)  # a StringIO is not a terminal: same as a pipe
    qlite.fit(qlite.SIREN(1, 1, hidden_features=4, hidden_layers=1), data.function(torch.sin, 16), epochs=3, lr=1e-3)
    assert err.getvalue() == ""
    qlite.fit(qlite.SIREN(1, 1, hidden_features=4, hidden_layers=1), data.function(torch.sin, 16), epochs=3, lr=1e-3,
              progress=True)
    assert "3/3" in err.getvalue()
