"""The experiment scripts run end to end in their quick modes (slow tier: about a minute each)."""

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_paper_signals_quick_writes_the_report(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "paper_signals.py"), "--quick", "--seeds", "0,1",
                           "--sound", "none", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    # one task (camera), timed within the whole run (before: a value compared with itself)
    assert set(summary["tasks"]) == {"camera"} and 0 < summary["tasks"]["camera"] <= summary["seconds"]
    md = (tmp_path / "paper_signals.md").read_text()
    for heading in ("## Images", "## Super-resolution", "## The paper's claims, checked", "bilinear interpolation"):
        assert heading in md
    data = json.loads((tmp_path / "paper_signals.json").read_text())
    task = data["tasks"][0]
    rows = {r["model"] for r in task["rows"]}
    assert {"qiren", "tanh", "siren", "siren (tuned)", "siren (tuned for SR)"} <= rows
    assert (tmp_path / "paper_signals_images.png").stat().st_size > 0
    # the numbers: each run's PSNR is its MSE's (data range 2), each row the mean of its seeds' runs, QIREN has the
    # paper's 657 parameters and every baseline fits in that budget, and the report prints the measured means
    for run in task["runs"]:
        m = run["metrics"]
        assert m["psnr"] == pytest.approx(10 * math.log10(4 / m["mse"]), rel=1e-9)
    for r in task["rows"]:
        runs = [x for x in task["runs"] if x["model"] == r["model"]]
        assert len(runs) == r["seeds"] == 2 and {x["seed"] for x in runs} == {0, 1}
        assert r["psnr_mean"] == pytest.approx(statistics.mean(x["metrics"]["psnr"] for x in runs), rel=1e-9)
        assert r["params"] <= task["budget"] == 657
    qiren = next(r for r in task["rows"] if r["model"] == "qiren")
    assert qiren["params"] == 657 and qiren["psnr_mean"] > 15  # 30 epochs: a fit, not a constant (~9 dB)
    assert f"{qiren['psnr_mean']:.4g} ± {qiren['psnr_std']:.2g}" in md
    for mode, v in task["interpolation"].items():
        assert v["psnr"] == pytest.approx(10 * math.log10(4 / v["mse"]), rel=1e-9), mode


@pytest.mark.slow
def test_fit_timing_two_gloo_processes_agree_with_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "experiments" / "fit_timing.py")
    common = ["--size", "16", "--epochs", "8", "--device", "cpu"]
    one = subprocess.run([sys.executable, script, *common, "--out", str(tmp_path / "one.json")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script,
                          *common, "--out", str(tmp_path / "two.json"), "--reference", str(tmp_path / "one.json"),
                          "--md", str(tmp_path / "t.md")], capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    run = json.loads((tmp_path / "two.json").read_text())
    assert run["world_size"] == 2 and run["agreement"]["max_rel_loss_diff"] < 1e-4
    assert "Loss agreement" in (tmp_path / "t.md").read_text()
