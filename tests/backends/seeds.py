"""Seeds of the randomised test cases: fixed, so a failing case id can be rerun.

``QLITE_TEST_SEED`` (default 20261204) picks another fixed set; ``QLITE_TEST_WIDEN=k`` draws k times
as many cases (a wider search; each case's id still names its seed).
"""

from __future__ import annotations

import os
import random

BASE = int(os.environ.get("QLITE_TEST_SEED", "20261204"))
WIDEN = int(os.environ.get("QLITE_TEST_WIDEN", "1"))


def case_seeds(name: str, count: int) -> list[int]:
    """``count * QLITE_TEST_WIDEN`` seeds for the cases of ``name``, the same on every run."""
    rng = random.Random(f"{BASE}:{name}")
    return [rng.randrange(2**31) for _ in range(count * WIDEN)]


def header() -> str:
    return f"qlite random test cases: QLITE_TEST_SEED={BASE} QLITE_TEST_WIDEN={WIDEN}"
