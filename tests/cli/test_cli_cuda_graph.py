"""`qlite fit --cuda-graph` and the fit-path benchmark's CPU quick mode."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qlite.cli import main

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("matplotlib")

FIT = ["fit", "--data", "image:camera", "--size", "8", "--hidden-features", "3", "--epochs", "2", "--device", "cpu"]


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), err


def test_cuda_graph_off_and_auto_train_eagerly_on_the_cpu(tmp_path, capsys):
    code, result, _ = _run(capsys, [*FIT, "--cuda-graph", "off", "--out", str(tmp_path / "off")])
    assert code == 0 and result["step_mode"] == "eager (cuda_graph=False)"
    stored = json.loads((tmp_path / "off" / "checkpoint.json").read_text())["config"]
    assert stored["cuda_graph"] is False
    code, result, _ = _run(capsys, [*FIT, "--out", str(tmp_path / "auto")])
    assert code == 0 and result["step_mode"].startswith("eager (the model trains on cpu")
    # --cuda-graph may change on resume (like --device): it changes how, not what, is trained
    code, result, _ = _run(capsys, ["fit", "--resume", str(tmp_path / "off"), "--epochs", "3", "--cuda-graph", "auto"])
    assert code == 0 and result["epochs"] == 3


def test_cuda_graph_on_refuses_on_the_cpu_with_the_reason(tmp_path, capsys):
    code, result, err = _run(capsys, [*FIT, "--cuda-graph", "on", "--out", str(tmp_path / "on")])
    assert code == 2
    assert "cuda_graph=True, but" in result["error"] and "trains on cpu" in result["error"]
    assert "cuda_graph='auto'" in err


def test_bad_cuda_graph_value_is_an_argument_error(tmp_path, capsys):
    code, result, err = _run(capsys, [*FIT, "--cuda-graph", "yes", "--out", str(tmp_path / "x")])
    assert code == 2 and "invalid choice: 'yes'" in result["error"] and "'auto', 'on', 'off'" in err


def test_bench_fit_path_quick_on_the_cpu(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "bench_fit_path.py"), "--device", "cpu", "--quick",
                           "--sizes", "4", "--epochs", "4", "--repeats", "2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "bench_fit_path_cpu_quick.json").read_text())
    paths = [r["path"] for r in doc["rows"]]
    assert paths == ["(a) qlite.fit default", "(b) qlite.fit cuda_graph=False", "(c) plain PyTorch loop",
                     "(d) graphed step auto"]
    a, b, c, d = doc["rows"]
    assert a["ms_per_epoch"] > 0 and b["ms_per_epoch"] > 0 and c["ms_per_epoch"] > 0
    assert a["final_loss"] == b["final_loss"]  # on the CPU both fits are the same eager run
    assert d["error"] == "CUDA graphs need a CUDA device"
    assert doc["machine"]["date"] and "bench_fit_path.py" in doc["command"]
    assert "| 4 | 16 | (a) qlite.fit default |" in (tmp_path / "bench_fit_path_cpu_quick.md").read_text()
