"""The qlite command line: registry, `qlite fit` (incl. resume), `qlite compare`, errors, demo."""

import importlib
import json
import subprocess
import sys

import numpy as np
import pytest

from qlite.cli import COMMANDS, main

pytest.importorskip("matplotlib")


def _run(capsys, argv):
    import torch

    threads = torch.get_num_threads()
    try:
        code = main(argv)
    finally:
        torch.set_num_threads(threads)  # --threads sets a process-wide torch setting
    out, err = capsys.readouterr()
    return code, out, err


def test_registry_is_a_plain_mapping_of_modules():
    assert COMMANDS["fit"] == "qlite.cli.fit" and COMMANDS["compare"] == "qlite.cli.compare"
    for path in COMMANDS.values():
        mod = importlib.import_module(path)
        assert callable(mod.add_parser) and callable(mod.run)


def test_fit_writes_everything_and_prints_json_last(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = _run(capsys, ["fit", "--data", "image:camera", "--size", "12", "--model", "qiren",
                                    "--hidden-features", "3", "--epochs", "3", "--lr", "0.03", "--seed", "1", "--threads", "1",
                                    "--out", str(out)])
    assert code == 0
    result = json.loads(stdout.strip().splitlines()[-1])
    assert {"model", "params", "epochs", "mse", "psnr", "seconds"} <= set(result)
    assert result["model"] == "qiren" and result["epochs"] == 3 and result["ssim"] is not None
    for name in ("checkpoint.json", "reconstruction.png", "loss.png", "result.json"):
        assert (out / name).is_file()
    code, stdout, _ = _run(capsys, ["fit", "--resume", str(out), "--epochs", "5"])
    assert code == 0
    resumed = json.loads(stdout.strip().splitlines()[-1])
    assert resumed["epochs"] == 5 and resumed["params"] == result["params"]
    assert json.loads((out / "result.json").read_text())["epochs"] == 5


def test_baselines_default_to_qirens_budget(tmp_path, capsys):
    code, stdout, _ = _run(capsys, ["fit", "--data", "image:camera", "--size", "12", "--model", "siren",
                                    "--omega-0", "10", "--epochs", "2", "--out", str(tmp_path / "s")])
    assert code == 0
    assert json.loads(stdout.strip().splitlines()[-1])["params"] == 609  # widest SIREN within QIREN's 657


def test_super_resolution_eval_size(tmp_path, capsys):
    code, stdout, _ = _run(capsys, ["fit", "--data", "image:camera", "--size", "8", "--eval-size", "16",
                                    "--model", "tanh", "--epochs", "2", "--out", str(tmp_path / "sr")])
    assert code == 0
    r = json.loads(stdout.strip().splitlines()[-1])
    assert "eval_mse" in r and "eval_psnr" in r


def test_audio(tmp_path, capsys):
    from scipy.io import wavfile

    wavfile.write(tmp_path / "tone.wav", 8000, (3000 * np.sin(np.arange(2000) / 7)).astype(np.int16))
    code, stdout, _ = _run(capsys, ["fit", "--data", f"audio:{tmp_path / 'tone.wav'}", "--start", "0", "--stop",
                                    "1000", "--step", "5", "--model", "relu", "--epochs", "2", "--out", str(tmp_path / "a")])
    assert code == 0
    r = json.loads(stdout.strip().splitlines()[-1])
    assert r["ssim"] is None and r["params"] <= 649


@pytest.mark.parametrize("argv,match", [
    (["fit", "--data", "camera", "--out", "X"], "image:NAME_OR_PATH"),
    (["fit", "--data", "image:camera"], "--out DIR is required"),
    (["fit", "--data", "image:camera", "--start", "3", "--out", "X"], "--start applies to audio"),
    (["fit", "--data", "image:nope-not-here", "--out", "X"], "neither an existing file"),
    (["fit", "--data", "image:camera", "--lr", "-1", "--epochs", "1", "--out", "X"], "lr must be a positive"),
    (["fit", "--data", "image:camera", "--epochs", "-2", "--out", "X"], "epochs must be a non-negative"),
    (["compare", "--data", "image:camera", "--models", "qiren,gpt"], "--models must list"),
    (["fit", "--data", "image:camera", "--size", "0", "--out", "X"], "size"),
    (["fit", "--data", "image:camera", "--size", "8", "--model", "tanh", "--lr", "1e30", "--epochs", "3", "--out", "X"],
     "lower the learning rate"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, argv, match):
    argv = [a if a != "X" else str(tmp_path / "x") for a in argv]
    code, stdout, stderr = _run(capsys, argv)
    assert code == 2 and match in stderr
    last = json.loads(stdout.strip().splitlines()[-1])  # the last line stays machine-readable on errors too
    assert last["command"] == argv[0] and last["error"]


def test_existing_output_and_resume_conflicts(tmp_path, capsys):
    out = tmp_path / "r"
    assert _run(capsys, ["fit", "--data", "image:camera", "--size", "8", "--model", "tanh", "--epochs", "1",
                         "--out", str(out)])[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = _run(capsys, ["fit", "--data", "image:camera", "--size", "8", "--model", "tanh", "--out", str(out)])
    assert code == 2 and "already holds" in err
    code, _, err = _run(capsys, ["fit", "--resume", str(out), "--lr", "0.1"])
    assert code == 2 and "--lr" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_compare_writes_the_table(tmp_path, capsys):
    code, stdout, _ = _run(capsys, ["compare", "--data", "image:camera", "--size", "12", "--models", "tanh,siren",
                                    "--seeds", "0,1", "--epochs", "3", "--reference", "tanh", "--out", str(tmp_path)])
    assert code == 0
    result = json.loads(stdout.strip().splitlines()[-1])
    assert [r["model"] for r in result["rows"]] == ["tanh", "siren"] and result["rows"][0]["rel_mse"] == 1.0
    assert "| model |" in stdout
    assert (tmp_path / "compare.md").is_file() and (tmp_path / "compare.csv").is_file()


def test_console_entry_and_demo_run_as_programs(tmp_path):
    help_text = subprocess.run([sys.executable, "-m", "qlite.cli", "--help"], capture_output=True, text=True, check=True)
    assert "fit" in help_text.stdout and "compare" in help_text.stdout
    demo = subprocess.run([sys.executable, "-m", "qlite.demo", "--epochs", "2", "--size", "12"],
                          capture_output=True, text=True, check=True)
    last = json.loads(demo.stdout.strip().splitlines()[-1])
    assert last["model"] == "qiren" and last["epochs"] == 2 and last["params"] == 657
