"""Data-parallel text training: 2 CPU processes (torchrun, gloo) follow the single-process run.

The windows of each step are sharded over the ranks; the two runs differ only in float32
reduction order (each rank sums the NLL of half the windows), so per-step losses agree to ~1e-6
relative; 1e-4 is far below a real bug (a missing gradient scaling doubles the step size; a wrong
shard trains on other windows and changes the loss at once).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from .ddp_text_worker import case  # noqa: E402


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    if not torch.distributed.is_available():
        pytest.skip("this PyTorch has no torch.distributed")
    prefix = tmp_path_factory.mktemp("ddp_text") / "run"
    worker = Path(__file__).with_name("ddp_text_worker.py")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try:
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               str(worker), str(prefix)], capture_output=True, text=True, env=env, timeout=300)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"torchrun timed out; stderr: {(e.stderr or b'')[-4000:]!r}") from e
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(Path(f"{prefix}.{r}.json").read_text()) for r in (0, 1)], prefix


def test_two_processes_match_one(ranks):
    from qlite.training import fit, read_index

    (r0, r1), prefix = ranks
    assert [r0["world_size"], r1["world_size"]] == [2, 2]
    assert r0["state"] == r1["state"]  # DDP keeps the replicas identical
    assert r0["metrics"] == r1["metrics"]  # the validation sums are all-reduced
    model, text, opts = case()
    torch.set_num_threads(1)
    single = fit(model, text, device="cpu", **opts)
    ref = torch.tensor(single.history["loss"], dtype=torch.float64)
    got = torch.tensor(r0["loss"], dtype=torch.float64)
    assert got.shape == ref.shape == (8,)
    assert ((got - ref).abs() / ref).max() < 1e-4
    assert ref[-1] < 0.9 * ref[0]  # it trained
    assert r0["metrics"]["perplexity"] == pytest.approx(single.metrics["perplexity"], rel=1e-4)
    assert r0["metrics"]["n_tokens"] == single.metrics["n_tokens"]  # every validation window scored once
    assert r0["test"]["perplexity"] == pytest.approx(single.eval_metrics["perplexity"], rel=1e-4)
    assert read_index(f"{prefix}.ckpt")["world_size"] == 2  # rank 0 wrote the checkpoint
