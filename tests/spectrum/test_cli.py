"""``qlite spectrum ...``: the sub-commands through add_parser / run (the qlite.cli contract)."""

import argparse
import json

import pytest

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
    args = _parse("spectrum", "report", "--quick", "--out", "somewhere")
    assert args.spectrum_command == "report" and args.quick
