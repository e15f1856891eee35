"""``qlite compress`` / ``qlite evaluate`` (issue 14, item 5): a tiny Llama folder, a JSON recipe."""

import json

import pytest
import torch

from qlite.cli import main

transformers = pytest.importorskip("transformers")


def _run(argv, capsys):
    code = main(argv)
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture
def tiny(tmp_path):
    from qlite.classical import GPTQ, RTN, recipe_to_json

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                   max_position_embeddings=64, tie_word_embeddings=True)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "tiny")
    (tmp_path / "gptq.json").write_text(recipe_to_json([GPTQ(4, group_size=32, symmetric=True, act_order=False)]))
    (tmp_path / "rtn3.json").write_text(recipe_to_json([RTN(3, group_size=32)]))
    return tmp_path


def test_compress_saves_exports_and_evaluate_reads_it_back(tiny, capsys):
    pytest.importorskip("gguf")
    pytest.importorskip("compressed_tensors")
    out = tiny / "run"
    code, res = _run(["compress", "--model", str(tiny / "tiny"), "--recipe", str(tiny / "gptq.json"), "--calib",
                      "random:4x16", "--out", str(out), "--export", "gguf", "--export", "compressed-tensors"], capsys)
    assert code == 0 and res["command"] == "compress" and res["compression_ratio"] > 3
    assert "real CPU kernel: 14 quantized layer(s)" in res["notes"]
    assert (out / "model.gguf").is_file() and (out / "compressed-tensors" / "model.safetensors").is_file()
    assert not (tiny / "run.partial").exists()  # written aside, renamed at the end
    report = json.loads((out / "report.json").read_text())
    assert report["calib"] == "random:4x16" and report["recipe"][0]["type"] == "GPTQ"
    code, ev = _run(["evaluate", str(out), "--data", "random:4x16", "--decode-tokens", "2", "--repeats", "1"], capsys)
    assert code == 0 and ev["command"] == "evaluate" and ev["kernel"] == "real-kernel"
    assert ev["bytes"] == res["bytes_after"] and ev["resident_bytes"] > 0 and ev["n_windows"] == 4
    assert json.loads((out / "evaluation.json").read_text())["perplexity"] == ev["perplexity"]


def test_bad_input_is_refused_before_work_and_out_is_kept(tiny, capsys):
    base = ["compress", "--model", str(tiny / "tiny"), "--recipe", str(tiny / "gptq.json")]
    code, res = _run(base + ["--out", str(tiny / "x")], capsys)
    assert code == 2 and "needs calibration data" in res["error"]
    (tiny / "keep").mkdir()
    code, res = _run(base + ["--calib", "random:2x16", "--out", str(tiny / "keep")], capsys)
    assert code == 2 and "--overwrite" in res["error"]
    code, res = _run(["compress", "--model", str(tiny / "tiny"), "--recipe", str(tiny / "rtn3.json"),
                      "--out", str(tiny / "y"), "--export", "gguf"], capsys)
    assert code == 2 and "3-bit" in res["error"] and "Q4_0" in res["error"] and not (tiny / "y").exists()
    code, res = _run(base + ["--calib", "wikitext2:2", "--out", str(tiny / "z")], capsys)
    assert code == 2 and "NAME:NxL" in res["error"]
    code, res = _run(["evaluate", str(tiny / "nothing")], capsys)
    assert code == 2 and "model.pt" in res["error"]
