"""`qlite fit --data text:...`: from-scratch Llamas (classical / quantum FFN), adapters, resume, bad input."""

import json

import pytest

from qlite.cli import main

pytest.importorskip("matplotlib")
pytest.importorskip("transformers")

CORPUS = ("KING RICHARD: Now is the winter of our discontent\nMade glorious summer by this sun of York;\n") * 40
SMALL = ["--hidden-features", "16", "--hidden-layers", "1", "--seqlen", "32", "--batch-size", "4", "--threads", "1"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS)
    return path


def _run(capsys, argv):
    import torch

    threads = torch.get_num_threads()
    try:
        code = main([str(a) for a in argv])
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), err


def test_from_scratch_llama_writes_everything_and_resumes(tmp_path, capsys, corpus):
    out = tmp_path / "run"
    code, r, _ = _run(capsys, ["fit", "--data", f"text:{corpus}", "--model", "llama", *SMALL, "--max-steps", "6",
                               "--eval-every", "3", "--lr", "3e-3", "--out", out])
    assert code == 0
    assert r["model"] == "llama" and r["ffn"] == "classical" and r["adapter"] == "none" and r["steps"] == 6
    assert r["vocab_size"] == len(set(CORPUS)) and r["params"] == r["total_params"]
    assert r["val_tokens"] > 0 and r["test_tokens"] > 0 and r["val_perplexity"] < r["vocab_size"]
    for name in ("checkpoint.json", "loss.png", "result.json"):
        assert (out / name).is_file()
    stored = json.loads((out / "result.json").read_text())
    assert stored["fit"]["history"]["eval_step"] == [3, 6]
    code, again, _ = _run(capsys, ["fit", "--resume", out, "--max-steps", "9"])
    assert code == 0 and again["steps"] == 9 and again["params"] == r["params"]
    code, bad, err = _run(capsys, ["fit", "--resume", out, "--seqlen", "16"])
    assert code == 2 and "--seqlen" in err and bad["command"] == "fit"


def test_quantum_ffn_and_lora(tmp_path, capsys, corpus):
    code, q, _ = _run(capsys, ["fit", "--data", f"text:{corpus}", "--model", "llama", "--ffn", "quantum", "--n-qubits",
                               "2", *SMALL, "--max-steps", "2", "--out", tmp_path / "q"])
    assert code == 0 and q["ffn"] == "quantum"
    code, c, _ = _run(capsys, ["fit", "--data", f"text:{corpus}", "--model", "llama", *SMALL, "--max-steps", "2",
                               "--out", tmp_path / "c"])
    assert code == 0 and q["params"] < c["params"]  # a 2-qubit FFN is far smaller than the SwiGLU MLP
    pytest.importorskip("peft")
    code, lora, _ = _run(capsys, ["fit", "--data", f"text:{corpus}", "--model", "llama", "--adapter", "lora", "--rank", "2",
                                  *SMALL, "--max-steps", "2", "--out", tmp_path / "l"])
    assert code == 0
    # r (d_in + d_out) per target, q_proj and v_proj of 1 block: 2 * (16 + 16) + 2 * (16 + 16) (v: 4 heads x 4 dims)
    assert lora["params"] == 128 and lora["total_params"] == c["total_params"] + 128
    index = json.loads((tmp_path / "l" / "checkpoint.json").read_text())
    assert index["adapter_only"] is True


@pytest.mark.parametrize("argv,match", [
    (["--data", "text:CORPUS", "--model", "qiren"], "text takes --model llama or smollm2"),
    (["--data", "image:camera", "--model", "llama"], "is a language model"),
    (["--data", "image:camera", "--seqlen", "32"], "apply to text"),
    (["--data", "text:CORPUS", "--size", "8"], "apply to images and audio"),
    (["--data", "text:CORPUS", "--rank", "4"], "--rank applies to --adapter"),
    (["--data", "text:CORPUS", "--target-modules", "q_proj"], "--target-modules applies with --adapter"),
    (["--data", "text:CORPUS", "--seqlen", "100000"], "shorter than one window"),
    (["--data", "text:CORPUS", "--split", "0.5,0.5"], "three comma-separated fractions"),
    (["--data", "text:nope/missing.txt"], "neither a shared corpus"),
    (["--data", "text:CORPUS", "--adapter", "lora", "--target-modules", "nothing_here"], "nothing_here"),
])
def test_bad_text_input_exits_2_with_json(tmp_path, capsys, corpus, argv, match):
    argv = ["fit", *[str(corpus) if a == "text:CORPUS" else a for a in argv], "--out", tmp_path / "x"]
    argv = [f"text:{corpus}" if a == str(corpus) else a for a in argv]
    code, last, err = _run(capsys, argv)
    assert code == 2 and match in err, err
    assert last["command"] == "fit" and last["error"]


@pytest.mark.slow
@pytest.mark.llm
def test_smollm2_quantum_lora_adapter_only_checkpoint(tmp_path, capsys, corpus):
    pytest.importorskip("gguf")
    out = tmp_path / "ql"
    code, r, _ = _run(capsys, ["fit", "--data", f"text:{corpus}", "--model", "smollm2", "--adapter", "quantum-lora",
                               "--seqlen", "32", "--batch-size", "2", "--max-steps", "2", "--threads", "1", "--out", out])
    assert code == 0 and r["model"] == "smollm2" and r["vocab_size"] == 49152
    assert r["params"] < 10_000 < 100_000_000 < r["total_params"]
    weights = next(out.glob("weights-*.safetensors"))
    assert weights.stat().st_size < 1_000_000  # adapter weights and their optimiser state only
