"""qlite.compare: one table over models and seeds, in Markdown, CSV and JSON; select_best."""

import csv
import io
import json
import statistics

import pytest
import torch

import qlite
from qlite import data
from qlite.comparison import Candidate, Comparison, compare, select_best
from qlite.models import MLP, ModelSpec


@pytest.fixture(scope="module")
def table():
    pair = data.super_resolution("camera", low=16, high=32)
    models = {
        "tanh": ModelSpec("tanh", hidden_features=6),
        "siren": Candidate(ModelSpec("siren", hidden_features=6, options={"omega_0": 5.0}), {"lr": 0.01}, "omega 5"),
        "factory": lambda seed: MLP(2, 1, 4, generator=torch.Generator().manual_seed(seed)),
    }
    return compare(models, pair.train, seeds=(0, 1, 2), eval_data=pair.eval, reference="tanh", epochs=15)


def test_rows_summarise_the_runs(table):
    assert [r["model"] for r in table.rows] == ["tanh", "siren", "factory"]
    assert len(table.runs) == 9
    for row in table.rows:
        runs = [r for r in table.runs if r["model"] == row["model"]]
        mses = [r["metrics"]["mse"] for r in runs]
        assert row["mse_mean"] == pytest.approx(statistics.fmean(mses))
        assert row["mse_std"] == pytest.approx(statistics.stdev(mses))
        assert row["eval_mse_mean"] == pytest.approx(statistics.fmean(r["eval_metrics"]["mse"] for r in runs))
        assert row["seeds"] == 3 and row["ssim_mean"] is not None
    assert table.row("tanh")["rel_mse"] == pytest.approx(1.0)
    assert table.row("siren")["rel_mse"] == pytest.approx(table.row("siren")["eval_mse_mean"] / table.row("tanh")["eval_mse_mean"])
    assert table.row("siren")["setting"] == "omega 5"
    seeds = {(r["model"], r["seed"]): r["metrics"]["mse"] for r in table.runs}
    assert seeds[("tanh", 0)] != seeds[("tanh", 1)]  # seeds build different models


def test_formats(table, tmp_path):
    md = table.to_markdown()
    assert md.splitlines()[0].startswith("| model | params |") and len(md.splitlines()) == 5
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert [r["model"] for r in rows] == ["tanh", "siren", "factory"]
    assert float(rows[1]["mse_mean"]) == pytest.approx(table.rows[1]["mse_mean"])
    back = json.loads(table.to_json())
    assert back["rows"] == json.loads(json.dumps(table.rows)) and back["meta"]["seeds"] == [0, 1, 2]
    paths = table.save(tmp_path)
    assert sorted(p.name for p in paths.values()) == ["compare.csv", "compare.json", "compare.md"]
    with pytest.raises(FileExistsError, match="overwrite"):
        table.save(tmp_path)
    assert isinstance(Comparison(table.rows, table.runs), Comparison)


def test_select_best_uses_the_validation_signal():
    pair = data.super_resolution("camera", low=8, high=16)
    sweep = {f"siren-{w}": ModelSpec("siren", hidden_features=8, options={"omega_0": w}) for w in (1.0, 10.0)}
    best, table = select_best(sweep, pair.train, validation=pair.eval, epochs=10, lr=0.01)
    assert best == min(table.rows, key=lambda r: r["eval_mse_mean"])["model"]


def test_bad_input():
    s = data.function(lambda x: x[:, 0], 8)
    with pytest.raises(ValueError, match="non-empty mapping"):
        compare({}, s)
    with pytest.raises(ValueError, match="reference"):
        compare({"a": ModelSpec("tanh", 2)}, s, reference="b")
    with pytest.raises(ValueError, match="seeds"):
        compare({"a": ModelSpec("tanh", 2)}, s, seeds=[])
    with pytest.raises(TypeError, match="Candidate.model"):
        Candidate("tanh")
    with pytest.raises(ValueError, match="metric='ssim' needs an image"):
        select_best({"a": ModelSpec("tanh", 2)}, s, metric="ssim")
    assert callable(qlite.compare)
