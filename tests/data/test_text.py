"""qlite.data.text: windows cover each split without overlap, the tokenizers, the shared corpora, bad input."""

import json

import pytest
import torch

from qlite import data
from qlite.data import CharTokenizer, TextData

CORPUS = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40


def test_windows_cover_each_split_without_overlap():
    d = data.text("mem", seqlen=16, split=(0.7, 0.1, 0.2), text_override=CORPUS)
    ids = torch.tensor(d.tokenizer.encode(CORPUS))
    n = ids.numel()
    assert d.meta["corpus_tokens"] == n
    ranges = d.meta["token_ranges"]
    assert ranges["train"][0] == 0 and ranges["train"][1] == ranges["val"][0]
    assert ranges["val"][1] == ranges["test"][0] and ranges["test"][1] == n  # contiguous, cover the corpus
    assert ranges["train"][1] == round(0.7 * n) and ranges["val"][1] == round(0.8 * n)
    for split in ("train", "val", "test"):
        lo, hi = ranges[split]
        w = getattr(d, split)
        # the windows are the split's tokens in order, back to back: no overlap, no gap, tail < seqlen dropped
        assert torch.equal(w.reshape(-1), ids[lo:lo + w.numel()])
        assert 0 <= (hi - lo) - w.numel() == d.meta["dropped_tokens"][split] < d.seqlen
    assert d.describe()["windows"] == {s: getattr(d, s).shape[0] for s in ("train", "val", "test")}


def test_char_tokenizer_round_trips():
    tok = CharTokenizer.from_text(CORPUS)
    assert tok.vocab_size == len(set(CORPUS)) and list(tok.chars) == sorted(set(CORPUS))
    assert tok.decode(tok.encode("Speak, speak.")) == "Speak, speak."
    again = CharTokenizer.from_json(tok.to_json())
    assert again == tok and again.encode(CORPUS[:50]) == tok.encode(CORPUS[:50])
    assert json.loads(tok.to_json())["kind"] == "char"
    with pytest.raises(ValueError, match="'Z' is not in this tokenizer"):
        tok.encode("Zebra")
    with pytest.raises(ValueError, match="not a CharTokenizer JSON"):
        CharTokenizer.from_json('{"kind": "bpe"}')


def test_a_given_tokenizer_is_used_and_fingerprints_differ():
    tok = CharTokenizer.from_text(CORPUS + "XYZ")
    d = data.text("mem", tokenizer=tok, seqlen=16, text_override=CORPUS)
    assert d.tokenizer is tok and d.vocab_size == tok.vocab_size == len(set(CORPUS)) + 3
    other = data.text("mem", tokenizer=tok, seqlen=8, text_override=CORPUS)
    assert d.fingerprint() != other.fingerprint()
    assert d.fingerprint() == data.text("mem", tokenizer=tok, seqlen=16, text_override=CORPUS).fingerprint()


class _WordTokenizer:
    """A minimal stand-in for a Hugging Face tokenizer: callable, returns input_ids, has a length."""

    def __init__(self, words):
        self.vocab = {w: i for i, w in enumerate(sorted(set(words)))}
        self.name_or_path = "words"

    def __len__(self):
        return len(self.vocab)

    def __call__(self, text, add_special_tokens=True):
        assert add_special_tokens is False  # the protocol adds no BOS/EOS tokens
        return {"input_ids": [self.vocab[w] for w in text.split()]}


def test_hugging_face_style_tokenizer():
    tok = _WordTokenizer(CORPUS.split())
    d = data.text("mem", tokenizer=tok, seqlen=8, text_override=CORPUS)
    assert d.vocab_size == len(tok) and d.meta["tokenizer"] == "words"
    assert d.meta["corpus_tokens"] == len(CORPUS.split())


def test_shared_corpora():
    from qlite.paths import data_dir

    if not (data_dir() / "tinyshakespeare.txt").is_file() or not (data_dir() / "wikitext2_test.txt").is_file():
        pytest.skip(f"shared data folder {data_dir()} lacks the corpora (set QLITE_DATA)")
    ts = data.text("tinyshakespeare", seqlen=256)
    raw = (data_dir() / "tinyshakespeare.txt").read_text()
    assert ts.vocab_size == 65 and ts.meta["corpus_tokens"] == len(raw)
    assert ts.meta["split"] == [0.81, 0.09, 0.1]  # 90/10 with a validation tenth of the 90%
    assert ts.meta["token_ranges"]["test"][0] == round(0.9 * len(raw))
    assert ts.tokenizer.decode(ts.train[0]) == raw[:256]
    wiki = data.text("wikitext2", seqlen=256)
    assert wiki.train.shape[0] == wiki.val.shape[0] == 0 and wiki.test.shape[0] > 1000
    rows = (data_dir() / "wikitext2_test.txt").read_text().split("\n")
    assert wiki.tokenizer.decode(wiki.test[0]) == "\n\n".join(rows)[:256]  # rows joined by blank lines


@pytest.mark.parametrize("kwargs,err,match", [
    ({"seqlen": 1}, ValueError, "seqlen must be an int >= 2"),
    ({"seqlen": 10_000}, ValueError, "shorter than one window of seqlen=10000"),
    ({"split": (0.5, 0.5)}, ValueError, "three non-negative fractions"),
    ({"split": (0.9, 0.2, -0.1)}, ValueError, "three non-negative fractions"),
    ({"split": (0.998, 0.001, 0.001), "seqlen": 16}, ValueError, "the val split .* shorter than one window"),
    ({"tokenizer": "gpt2"}, ValueError, "AutoTokenizer.from_pretrained"),
    ({"tokenizer": 3}, TypeError, "tokenizer must be"),
])
def test_bad_input(kwargs, err, match):
    with pytest.raises(err, match=match):
        data.text("mem", text_override=CORPUS, **kwargs)


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a shared corpus"):
        data.text(tmp_path / "missing.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81" * 100)
    with pytest.raises(ValueError, match="not UTF-8"):
        data.text(tmp_path / "bin.txt")
    with pytest.raises(ValueError, match="is empty"):
        data.text("mem", text_override="")
    (tmp_path / "short.txt").write_text("tiny")
    with pytest.raises(ValueError, match="has 4 tokens, shorter than one window"):
        data.text(tmp_path / "short.txt", seqlen=8)
    with pytest.raises(ValueError, match="int64 tensor"):
        TextData(torch.zeros(2, 4), torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 4, dtype=torch.long), None, 5, 4)
    with pytest.raises(ValueError, match="outside"):
        TextData(torch.full((2, 4), 7), torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 4, dtype=torch.long), None, 5, 4)
