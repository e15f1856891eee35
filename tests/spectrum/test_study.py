"""The study in quick mode writes its report, figures and JSON, with the numbers it claims."""

import json
import sys
from pathlib import Path

import pytest

EXPERIMENTS = str(Path(__file__).resolve().parents[2] / "experiments")
if EXPERIMENTS not in sys.path:
    sys.path.insert(0, EXPERIMENTS)

from spectrum_study import StudyConfig, run_study  # noqa: E402


def test_quick_study_writes_report(tmp_path, shared_data):
    pytest.importorskip("matplotlib")
    pytest.importorskip("skimage")
    pytest.importorskip("scipy")
    cfg = StudyConfig.quick_config(timing_repeats=1, audio_file=str(shared_data / "gt_bach.wav"))
    summary = run_study(cfg, tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"spectrum.md", "spectrum.json", "spectrum_sizes.png", "spectrum_coefficients.png",
            "spectrum_image_fit.png", "spectrum_error.png", "spectrum_audio.png"} <= names
    saved = json.loads((tmp_path / "spectrum.json").read_text())
    assert saved["config"]["quick"] is True
    assert all(r["brute_force_agrees"] for r in summary["sizes"]["table"])
    image = summary["image"]
    for r in image["models"].values():
        assert abs(r["mse_low"] + r["mse_high"] - r["mse"]) < 1e-6 * max(r["mse"], 1e-12)
    # SIREN and RFF are the widest qlite.models networks within QIREN's parameter count
    assert image["models"]["QIREN"]["parameters"] == image["budget"] == 657
    assert all(image["models"][k]["parameters"] <= image["budget"] for k in ("SIREN", "RFF"))
    for r in summary["sizes"]["equal_budget"]:
        assert max(r["siren_parameters"], r["rff_parameters"]) <= r["budget"] and r["qiren"] > r["siren"]
    assert summary["audio"]["single_layer"]["series_max_abs_error"] < 1e-10
    explained = [o["explained"] for o in summary["audio"]["deep"]["orders"]]
    assert explained == sorted(explained)
    text = (tmp_path / "spectrum.md").read_text()
    assert "What is exact and what is a bound" in text and "load average" in text.lower()
    assert "stand-in" not in text and "qlite.fit" in text
    _numbers_are_right(summary, saved, text)


def _numbers_are_right(summary, saved, text):
    """The figures themselves, against closed forms and against each other (the JSON, the report)."""
    import math

    # spectrum sizes: the closed forms of the three scalings (Schuld et al. 2021; Shin et al. 2023)
    for r in summary["sizes"]["table"]:
        d, L = r["d"], r["L"]
        assert (r["unit"], r["ternary"], r["bound"]) == (2 * d * L + 1, (3**d - 1) * L + 1, (2 * L + 1) ** d)
    # a real output: c_{-k} = conj(c_k), so the mean |c| over initialisations is point-symmetric
    mags = summary["distribution"]["mean_abs_centred"]
    n = len(mags)
    assert n == 5 and all(abs(mags[i][j] - mags[n - 1 - i][n - 1 - j]) < 1e-6 for i in range(n) for j in range(n))
    assert mags[2][2] < max(max(row) for row in mags)  # not a constant: the layer carries frequencies
    for r in summary["image"]["models"].values():
        assert r["psnr_db"] == pytest.approx(10 * math.log10(4 / r["mse"]), rel=1e-9)  # data range 2
        assert 0 < r["mse_low"] and 0 < r["mse_high"] and r["psnr_db"] > 10  # trained, not a constant
        assert f"| {r['psnr_db']:.2f} |" in text  # the report prints the measured value
        assert r["loss_history"][-1][1] < r["loss_history"][0][1]
    for k, t in summary["timing"].items():
        if k.startswith("threads_"):
            assert t["min_s"] <= t["median_s"] <= t["max_s"] and t["median_s"] > 0
            assert f"{t['median_s']:.4f}" in text
    assert saved["image"]["models"]["QIREN"]["psnr_db"] == summary["image"]["models"]["QIREN"]["psnr_db"]


def test_config_validation():
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        StudyConfig(epochs=0)
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda"):
        StudyConfig(device="tpu")
    with pytest.raises(TypeError, match="config must be a StudyConfig"):
        run_study({"quick": True}, "/nonexistent")
