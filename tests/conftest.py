import pytest

from qlite.paths import data_dir


@pytest.fixture
def shared_data():
    """The shared data folder; skips (with the reason) where it is absent."""
    d = data_dir()
    if not d.is_dir():
        pytest.skip(f"shared data folder {d} not present (set QLITE_DATA)")
    return d
