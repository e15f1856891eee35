"""The backend benchmark rows and the noise study (experiments/backend_bench.py, noise_study.py), on
tiny models."""

import sys
from pathlib import Path

import pytest
import torch

from qlite import QIREN
from qlite.training import predict, psnr
from qlite.training import recompute_batchnorm as exact_batchnorm_statistics  # the noise study uses the library's

EXPERIMENTS = str(Path(__file__).resolve().parents[2] / "experiments")
if EXPERIMENTS not in sys.path:
    sys.path.insert(0, EXPERIMENTS)

from backend_bench import time_backend  # noqa: E402
from noise_study import noise_sweep, to_markdown, with_backend  # noqa: E402


def test_time_backend_rows():
    row = time_backend("torch", 16, repeats=1, warmup=0, hidden_features=2)
    assert row["impl"] == "backend:torch" and row["mode"] == "step" and row["ms"] > 0 and row["points"] == 16
    pytest.importorskip("qiskit_aer")
    row = time_backend("qiskit", 4, repeats=1, warmup=0, hidden_features=2)
    assert row["mode"] == "forward" and row["strategy"] == "forward"
    with pytest.raises(ValueError, match="mode must be 'step' or 'forward'"):
        time_backend("torch", 4, mode="backward")


def test_time_backend_reports_a_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)
    row = time_backend("jax", 4, repeats=1, hidden_features=2)
    assert "pip install 'qlite[jax]'" in row["error"] and "ms" not in row


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(40, 2, generator=g) * 2 - 1
    y = torch.sin(3 * x[:, :1]) * torch.cos(2 * x[:, 1:])
    model = QIREN(2, 1, hidden_features=2, hidden_layers=1, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model, x, y


def test_exact_batchnorm_statistics_make_eval_equal_train():
    model, x, _ = _tiny_model()
    model.train()
    with torch.no_grad():
        train_out = model(x)
    exact_batchnorm_statistics(model, x)
    assert model.training  # mode restored
    assert (predict(model.eval(), x) - train_out).abs().max() < 1e-5


def test_with_backend_copies_and_leaves_the_model_alone():
    model, x, _ = _tiny_model()
    before = [m.backend for m in model.modules() if hasattr(m, "backend")]
    clone = with_backend(model, lambda i: __import__("qlite.simulators", fromlist=["x"]).get_backend("torch", shots=5, seed=i))
    assert [m.backend for m in model.modules() if hasattr(m, "backend")] == before
    assert [m.backend.name for m in clone.modules() if hasattr(m, "backend")] == ["torch[shots=5]"] * 2


def test_noise_sweep_limits_and_ordering():
    """Huge shot numbers and zero noise give back the exact PSNR; one shot and strong readout
    error are worse; Aer's sampling agrees with the native shot mode at the same shot number; zero
    depolarizing through Aer equals the exact subset PSNR."""
    pytest.importorskip("qiskit_aer")
    model, x, y = _tiny_model()
    exact_batchnorm_statistics(model, x)
    model.eval()
    res = noise_sweep(model, x, y, shots=(1, 1000, 10**9), aer_shots=(1000,), readout=(0.0, 0.3),
                      depolarizing=(0.0, 0.2), combined=((0.0, 0.0, 1000),), subset=16, repeats=4)
    base, sub = res["baseline"]["psnr"], res["subset_baseline"]["psnr"]
    assert base == pytest.approx(psnr(predict(model, x), y))
    by = {(r["noise"], r["backend"], r.get("shots"), r.get("readout"), r.get("p1")): r["psnr"] for r in res["rows"]}
    assert by[("shots", "torch shot mode", 1, None, None)] < base - 1
    assert by[("shots", "torch shot mode", 10**9, None, None)] == pytest.approx(base, abs=0.05)
    native, aer = ([r for r in res["rows"] if r["noise"] == "shots" and r["backend"] == b and r["shots"] == 1000][0]
                   for b in ("torch shot mode", "qiskit Aer sampler"))
    spread = (native["psnr_std"] ** 2 + aer["psnr_std"] ** 2) ** 0.5 / 2  # std of the difference of 4-draw means
    assert abs(native["psnr"] - aer["psnr"]) < 5 * spread + 0.1 and native["psnr"] < base
    assert by[("readout", "torch (exact readout)", None, 0.0, None)] == pytest.approx(base, abs=1e-9)
    assert by[("readout", "torch (exact readout)", None, 0.3, None)] < base - 1
    dep = {r["p1"]: r["psnr"] for r in res["rows"] if r["noise"] == "depolarizing"}
    assert dep[0.0] == pytest.approx(sub, abs=1e-4) and dep[0.2] < sub - 1
    one = [r for r in res["rows"] if r["noise"] == "shots in one layer"]
    assert [r["layer"] for r in one] == [0, 1] and all(r["psnr"] < base for r in one)
    assert "#### Depolarizing noise" in to_markdown(res) and "#### Shots in one hybrid layer" in to_markdown(res)


def test_study_code_is_out_of_the_library():
    """Studies and their report writers live in experiments/ (issue 15); the library keeps what a user
    calls from a notebook, and every study shares one machine record and one results writer."""
    import importlib.util

    for gone in ("qlite.noise_study", "qlite.bench", "qlite.bench_simulator", "qlite.bench_backends",
                 "qlite.spectrum.study", "qlite.spectrum._study_report", "qlite.classical.study",
                 "qlite.classical.benchmark"):
        assert importlib.util.find_spec(gone) is None, gone
    import noise_study

    assert noise_study.psnr is psnr and noise_study.predict is predict  # the library's, not copies
    assert not hasattr(noise_study, "exact_batchnorm_statistics")


def test_one_machine_record_and_results_writer(tmp_path):
    import study_io

    m = study_io.machine_info("cpu")
    assert {"date", "cpu", "cpu_count", "torch_threads", "torch", "device", "cuda_device"} <= set(m)
    assert m["device"] == "cpu" and m["cpu_count"] >= 1
    # old result files spelled some keys differently; renderers read them through normalize_machine
    old = study_io.normalize_machine({"cpu_cores": 2, "card": "H200", "cpu": "x", "torch_threads": 1})
    assert old["cpu_count"] == 2 and old["cuda_device"] == "H200"
    path = study_io.write_results(tmp_path / "r", "s", "# title", {"x": torch.tensor(1.5), "p": tmp_path})
    assert path.read_text() == "# title\n"
    import json

    data = json.loads((tmp_path / "r" / "s.json").read_text())
    assert data["x"] == 1.5 and data["p"] == str(tmp_path)
    assert not list((tmp_path / "r").glob("*.tmp"))  # written atomically, nothing left behind
