import os

import pytest
import torch

# The fused kernels are tested on CPUs through Triton's interpreter, which must be chosen before
# anything imports triton (transformers / torchao / torch's compiler may import it during collection).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from qlite.paths import data_dir


@pytest.fixture
def shared_data():
    """The shared data folder; skips (with the reason) where it is absent."""
    d = data_dir()
    if not d.is_dir():
        pytest.skip(f"shared data folder {d} not present (set QLITE_DATA)")
    return d
