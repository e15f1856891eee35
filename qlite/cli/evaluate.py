"""``qlite evaluate DIR``: perplexity, bytes, resident memory and speed of a folder written by
``qlite compress`` (the implementation and options live in :mod:`qlite.cli.compress`)."""

from __future__ import annotations

from .compress import add_evaluate_parser as add_parser  # noqa: F401
from .compress import run  # noqa: F401
