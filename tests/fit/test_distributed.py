"""Data parallelism: 2 CPU processes (torchrun, gloo) follow the single-process trajectory.

Tolerance: the two runs differ only in float32 reduction order (each rank sums half the points,
the all-reduces add the halves), a relative rounding of ~1e-7 per reduction. Over these 12-epoch
runs the per-epoch losses agree to ~2e-6 relative (measured: 1.6e-6 QIREN full batch, 5e-7 MLP
mini-batch); the test allows 1e-4, far below any real discrepancy (a missing gradient scaling,
unsynchronised BatchNorm or a wrong shard changes the loss by percent after one epoch).
Parameters are compared through the function they compute: the bias of a Linear feeding a
BatchNorm gets a zero gradient up to rounding, Adam normalises that noise to full-size steps, so it
drifts differently in each run while the BatchNorm mean absorbs it exactly.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qlite.training import fit, predict
from qlite.training.distributed import CPUSyncBatchNorm, convert_sync_batchnorm

from .ddp_worker import case

CASES = ("qiren", "minibatch")


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    if not torch.distributed.is_available():
        pytest.skip("this PyTorch has no torch.distributed")
    prefix = tmp_path_factory.mktemp("ddp") / "run"
    worker = Path(__file__).with_name("ddp_worker.py")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try:
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               str(worker), str(prefix), *CASES], capture_output=True, text=True, env=env, timeout=240)
    except subprocess.TimeoutExpired as e:
        tail = (e.stderr or b"")[-4000:]
        raise AssertionError(f"torchrun timed out; stderr: {tail!r}") from e
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {name: [json.loads(Path(f"{prefix}.{name}.{r}.json").read_text()) for r in (0, 1)] for name in CASES}


@pytest.mark.parametrize("name", CASES)
def test_two_processes_match_one(ddp_results, name):
    ranks = ddp_results[name]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["state"] == ranks[1]["state"]  # DDP keeps the replicas identical
    model, signal, opts = case(name)
    torch.set_num_threads(1)
    single = fit(model, signal, device="cpu", **opts)
    ref = torch.tensor(single.history["loss"], dtype=torch.float64)
    got = torch.tensor(ranks[0]["loss"], dtype=torch.float64)
    assert got.shape == ref.shape
    assert ((got - ref).abs() / ref).max() < 1e-4
    assert ref[-1] < 0.7 * ref[0]  # it trained
    pred = torch.tensor(ranks[0]["prediction"])
    assert (pred - predict(single.model, signal.coords)[:, 0]).abs().max() < 1e-3
    assert ranks[0]["metrics"]["mse"] == pytest.approx(single.metrics["mse"], rel=1e-4)


def test_sync_conversion_copies_and_keeps_keys():
    model, _, _ = case("minibatch")
    synced = convert_sync_batchnorm(model, "cpu")
    assert any(isinstance(m, CPUSyncBatchNorm) for m in synced.modules())
    assert not any(isinstance(m, CPUSyncBatchNorm) for m in model.modules())  # caller's model untouched
    assert list(synced.state_dict()) == list(model.state_dict())
    x = torch.rand(32, 2)
    model.train()
    synced.train()
    assert torch.allclose(synced(x), model(x), atol=1e-6)  # without a process group: plain BatchNorm
