"""Where the shared real data lives.

Library functions take explicit paths; this helper is for tests, experiments and the CLI, which
look for the workplace's shared files (``gt_bach.wav``, ``tinyshakespeare.txt``,
``wikitext2_test.txt``) in ``$QLITE_DATA`` first and in ``../shared/data`` (relative to the
repository) otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The shared data folder: ``$QLITE_DATA`` if set, else ``<repo>/../shared/data``."""
    env = os.environ.get("QLITE_DATA")
    return Path(env) if env else _REPO.parent / "shared" / "data"


def data_file(name: str) -> Path:
    """Path of a shared data file; raises FileNotFoundError naming where it looked and the fix."""
    path = data_dir() / name
    if not path.is_file():
        raise FileNotFoundError(
            f"shared data file {name!r} not found at {path}; set QLITE_DATA to the folder that holds it"
        )
    return path
