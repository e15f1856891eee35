"""``qlite spectrum ...``: the sub-commands through add_parser / run (the qlite.cli contract)."""

import argparse
import json

import pytest
import torch

from qlite.cli import spectrum as cli


def _parse(*argv):
    parser = argparse.ArgumentParser(prog="qlite")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_size_circuit_and_model():
    out = cli.run(_parse("spectrum", "size", "--qubits", "3", "--layers", "2", "--scaling", "ternary"))
    assert out["size"] == 53
    out = cli.run(_parse("spectrum", "size", "--qubits", "2", "--layers", "1", "--scaling", "1,0.5"))
    assert out["size"] == 7
    out = cli.run(_parse("spectrum", "circuit", "--qubits", "3", "--layers", "2", "--encoding", "rx"))
    assert out["spectrum"]["0"] == [-2.0, -1.0, 0.0, 1.0, 2.0] and out["sizes"] == {"0": 5, "1": 5, "2": 5}
    out = cli.run(_parse("spectrum", "model", "--in-features", "1", "--qubits", "2", "--layers", "1",
                         "--hidden-layers", "0", "--show", "3"))
    assert out["size"] == 9 and out["enumerated"] and len(out["frequencies"]) == 3
    json.dumps(out)  # the dict is printed as JSON


def test_coefficients_timing():
    out = cli.run(_parse("spectrum", "coefficients", "--qubits", "3", "--hidden-layers", "0", "--degree", "2",
                         "--repeats", "2"))
    assert out["shape"] == [5, 5, 1] and out["points"] == 25 and out["seconds_min"] > 0
    json.dumps(out)


def test_bad_arguments():
    with pytest.raises(SystemExit):
        _parse("spectrum", "size", "--qubits", "3", "--layers", "2", "--scaling", "many")
    with pytest.raises(ValueError, match="layers must be an integer >= 0, got -1"):
        cli.run(_parse("spectrum", "size", "--qubits", "3", "--layers", "-1"))
    with pytest.raises(SystemExit):  # the study lives in experiments/spectrum.py, not in the CLI
        _parse("spectrum", "report", "--quick", "--out", "somewhere")


@pytest.mark.parametrize("flag, value", [("--repeats", "0"), ("--repeats", "-2"), ("--degree", "0"), ("--repeats", "x")])
def test_coefficients_refuses_non_positive_counts(flag, value, capsys):
    """``--repeats 0`` used to time nothing and fail on the median of no runs."""
    with pytest.raises(SystemExit):
        _parse("spectrum", "coefficients", flag, value)
    assert "expected a positive integer" in capsys.readouterr().err


def test_time_call_refuses_zero_repeats():
    from qlite.timing import time_call

    with pytest.raises(ValueError, match=r"repeats must be an integer >= 1 .*, got 0"):
        time_call(lambda: None, "cpu", repeats=0)


# -- `spectrum model --checkpoint`: a model trained by `qlite fit` --------------------------------------
def test_model_from_a_qlite_fit_checkpoint(tmp_path):
    """The frequencies come from the trained weights: the bandwidth per input is, for RZ encoding
    with L re-uploads (circuit frequencies -L..L per qubit), sum_j L |A_ji| with A the Linear folded
    with eval-mode BatchNorm, computed here by hand from the checkpoint's tensors."""
    pytest.importorskip("skimage")
    pytest.importorskip("matplotlib")
    from qlite.cli import main
    from qlite.training import load_checkpoint

    run = tmp_path / "run"
    assert main(["fit", "--data", "image:camera", "--size", "8", "--model", "qiren", "--hidden-features", "2",
                 "--hidden-layers", "0", "--epochs", "3", "--out", str(run)]) == 0
    out = cli.run(_parse("spectrum", "model", "--checkpoint", str(run), "--show", "2"))
    state = load_checkpoint(run).model_state
    w = state["net.0.linear.weight"].double()
    scale = state["net.0.norm.weight"].double() / (state["net.0.norm.running_var"].double() + 1e-5).sqrt()
    expect = (2 * (scale[:, None] * w).abs()).sum(0)
    assert torch.allclose(torch.tensor(out["bandwidth"], dtype=torch.float64), expect, rtol=1e-6)
    assert out["model"] == "qiren" and out["epoch"] == 3 and out["size"] == 25 and out["enumerated"]
    assert out["metrics"]["mse"] > 0 and len(out["frequencies"]) == 2
    fresh = cli.run(_parse("spectrum", "model", "--in-features", "2", "--qubits", "2", "--hidden-layers", "0"))
    assert fresh["bandwidth"] != out["bandwidth"]
    json.dumps(out)


def test_classical_checkpoint_through_qlite_fit(tmp_path):
    """A SIREN fitted with qlite.fit(..., info={"model": spec}) gives its first layer's frequencies."""
    from qlite import data
    from qlite.training import fit, load_checkpoint
    from qlite.models import ModelSpec

    spec = ModelSpec("siren", 4, hidden_layers=1, options={"omega_0": 5.0})
    signal = data.function(lambda x: torch.sin(4 * x[:, 0]), 32)
    fit(spec.build(1, 1, seed=0), signal, epochs=3, progress=False, checkpoint_dir=tmp_path / "s",
        info={"model": spec.to_dict()})
    out = cli.run(_parse("spectrum", "model", "--checkpoint", str(tmp_path / "s")))
    w = load_checkpoint(tmp_path / "s").model_state["net.0.linear.weight"].double()
    assert out["size"] == 9 and out["model"] == "siren(omega_0=5.0)"
    assert out["bandwidth"] == pytest.approx([5 * float(w.abs().max())])
    with pytest.raises(ValueError, match="--order 2 applies to QIREN"):
        cli.run(_parse("spectrum", "model", "--checkpoint", str(tmp_path / "s"), "--order", "2"))
    with pytest.raises(ValueError, match=r"\['--qubits'\] describe a fresh QIREN"):
        cli.run(_parse("spectrum", "model", "--checkpoint", str(tmp_path / "s"), "--qubits", "3"))
    relu = ModelSpec("relu", 4, hidden_layers=0)
    fit(relu.build(1, 1, seed=0), signal, epochs=1, progress=False, checkpoint_dir=tmp_path / "r",
        info={"model": relu.to_dict()})
    with pytest.raises(TypeError, match="activation 'relu', not 'sine'"):
        cli.run(_parse("spectrum", "model", "--checkpoint", str(tmp_path / "r")))
    fit(relu.build(1, 1, seed=0), signal, epochs=1, progress=False, checkpoint_dir=tmp_path / "n")
    with pytest.raises(ValueError, match="stores no model spec"):
        cli.run(_parse("spectrum", "model", "--checkpoint", str(tmp_path / "n")))
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        cli.run(_parse("spectrum", "model", "--checkpoint", str(tmp_path / "missing")))
