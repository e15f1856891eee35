"""``qlite bench``: qlite against PennyLane on the same model, through the library's fit / predict / psnr."""

import json

import pytest

from qlite.cli import main

TINY = ["bench", "--size", "4", "--qubits", "2", "--hidden-layers", "0", "--layers", "1", "--epochs", "3",
        "--repeats", "1"]


def _run(argv, capsys):
    code = main(argv)
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bench_times_both_backends_on_the_same_fit(capsys):
    pytest.importorskip("pennylane")
    pytest.importorskip("skimage")
    code, out = _run(TINY, capsys)
    assert code == 0 and out["command"] == "bench" and out["points"] == 16 and out["epochs"] == 3
    t, p = out["backends"]["torch"], out["backends"]["pennylane"]
    for r in (t, p):
        assert r["ms_per_epoch"] > 0 and r["predict_ms"] > 0 and r["epochs"] == 3
    assert t["params"] == p["params"]  # the same QIREN on both simulators
    # the same initial weights, data and optimiser: the two simulators fit the same function
    assert abs(t["psnr_db"] - p["psnr_db"]) < 0.05 and out["psnr_spread_db"] < 0.05
    assert out["speedup_vs"]["pennylane"] == pytest.approx(p["ms_per_epoch"] / t["ms_per_epoch"])


def test_bench_reports_a_missing_backend_and_refuses_bad_options(capsys, monkeypatch):
    pytest.importorskip("skimage")
    import sys

    monkeypatch.setitem(sys.modules, "jax", None)
    code, out = _run([*TINY, "--backends", "torch,jax"], capsys)
    assert code == 0 and "qlite[jax]" in out["backends"]["jax"]["error"] and "ms_per_epoch" in out["backends"]["torch"]
    assert out["speedup_vs"] == {}
    for bad, match in ((["--epochs", "1"], "expected an integer >= 2"), (["--backends", "cirq"], "subset of torch"),
                       (["--size", "x"], "expected an integer >= 2")):
        code, out = _run([*TINY, *bad], capsys)
        assert code == 2 and match in out["error"], out
