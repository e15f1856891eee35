"""Text corpora as token windows for language models: :func:`text` -> :class:`TextData`.

The public entry is ``qlite.data.text`` (re-exported there); this module holds the implementation.

Protocol (the one issue 12's study uses):

* The corpus is tokenised once as a whole (no special tokens added, as
  :func:`qlite.classical.evaluation.corpus_tokens` does), then cut *by token position* into
  contiguous train / validation / test parts (default ``split=(0.81, 0.09, 0.10)``: a 90 / 10
  train / test split of Tiny Shakespeare with the last tenth of the 90% held out for validation).
* Each part is cut into non-overlapping windows of ``seqlen`` tokens from its first token; the
  tail shorter than one window is dropped (its length is recorded as ``dropped_tokens``). A model
  scores the ``seqlen - 1`` next-token predictions inside each window, exactly as
  :func:`qlite.classical.evaluation.perplexity` does, so perplexities are comparable with the
  compression results.
* WikiText-2 (the shared ``wikitext2_test.txt``, the raw *test* split) is joined from its rows with
  blank lines as ``corpus_tokens`` joins WikiText rows; by default it is all test data
  (``split=(0, 0, 1)``), the out-of-domain check.

Tokenizers: ``"char"`` builds a :class:`CharTokenizer` from the text's own characters (for
from-scratch models); any Hugging Face tokenizer object (``tokenizer(text,
add_special_tokens=False).input_ids``) is used as it is.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# Shared corpora found through qlite.paths.data_file: name -> (file, default split, how to join rows).
CORPORA: dict[str, tuple[str, tuple[float, float, float]]] = {
    "tinyshakespeare": ("tinyshakespeare.txt", (0.81, 0.09, 0.10)),
    "wikitext2": ("wikitext2_test.txt", (0.0, 0.0, 1.0)),
}
DEFAULT_SPLIT = (0.81, 0.09, 0.10)
SPLITS = ("train", "val", "test")


class CharTokenizer:
    """Character-level tokenizer: one id per distinct character, in sorted order.

    Args:
        chars: the vocabulary (distinct characters); ``CharTokenizer.from_text(text)`` builds it.

    Example:
        >>> tok = CharTokenizer.from_text("hello")
        >>> tok.vocab_size, tok.encode("hole"), tok.decode([1, 3])
        (4, [1, 3, 2, 0], 'ho')
    """

    def __init__(self, chars):
        chars = list(chars)
        if not chars or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise ValueError("CharTokenizer needs a non-empty sequence of single characters")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer characters must be distinct")
        self.chars = tuple(chars)
        self._index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        if not isinstance(text, str) or not text:
            raise ValueError("CharTokenizer.from_text needs a non-empty string")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._index[c] for c in text]
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in this tokenizer's vocabulary of {self.vocab_size} "
                             "characters; build the tokenizer from a text that contains it") from None

    def decode(self, ids) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        try:
            return "".join(self.chars[i] for i in ids)
        except (IndexError, TypeError):
            raise ValueError(f"token ids must be ints in [0, {self.vocab_size}), got {list(ids)[:10]!r}...") from None

    def to_json(self) -> str:
        return json.dumps({"kind": "char", "chars": "".join(self.chars)})

    @classmethod
    def from_json(cls, text: str) -> CharTokenizer:
        d = json.loads(text)
        if not isinstance(d, dict) or d.get("kind") != "char" or not isinstance(d.get("chars"), str):
            raise ValueError("not a CharTokenizer JSON (expected {'kind': 'char', 'chars': ...})")
        return cls(d["chars"])

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and other.chars == self.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def tokenizer_vocab_size(tokenizer) -> int:
    """Number of token ids a tokenizer can produce (``len(tokenizer)`` counts added tokens too)."""
    if isinstance(tokenizer, CharTokenizer):
        return tokenizer.vocab_size
    try:
        return int(len(tokenizer))
    except TypeError:
        size = getattr(tokenizer, "vocab_size", None)
        if isinstance(size, int):
            return size
        raise TypeError(f"cannot tell the vocabulary size of a {type(tokenizer).__name__}; "
                        "pass a CharTokenizer or a Hugging Face tokenizer") from None


def _encode(tokenizer, text: str) -> torch.Tensor:
    if isinstance(tokenizer, CharTokenizer):
        return torch.tensor(tokenizer.encode(text), dtype=torch.long)
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be 'char', a CharTokenizer or a Hugging Face tokenizer, got "
                        f"{type(tokenizer).__name__}")
    out = tokenizer(text, add_special_tokens=False)
    ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else getattr(out, "input_ids", out)
    return torch.as_tensor(ids, dtype=torch.long).reshape(-1)


def _tokenizer_name(tokenizer) -> str:
    if isinstance(tokenizer, CharTokenizer):
        return "char"
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def windows(tokens: torch.Tensor, seqlen: int) -> torch.Tensor:
    """Non-overlapping ``(N, seqlen)`` windows of a 1-D token tensor from its first token (the tail
    shorter than one window is dropped). An empty result has shape ``(0, seqlen)``."""
    n = tokens.numel() // seqlen
    return tokens[: n * seqlen].reshape(n, seqlen).clone()


@dataclass(frozen=True, eq=False)
class TextData:
    """Train / validation / test token windows of one corpus, and the tokenizer that made them.

    Attributes:
        train, val, test: ``(N, seqlen)`` int64 token windows (``N`` may be 0 for an unused split).
        tokenizer: a :class:`CharTokenizer` or the Hugging Face tokenizer given.
        vocab_size: ids the tokenizer can produce (a model's logits must cover them).
        seqlen: tokens per window.
        meta: JSON-able description (source, split fractions, token counts, dropped tails).
    """

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    tokenizer: Any
    vocab_size: int
    seqlen: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in SPLITS:
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.dtype != torch.long or t.dim() != 2 or t.shape[1] != self.seqlen:
                raise ValueError(f"TextData.{name} must be an int64 tensor (N, seqlen={self.seqlen}), got "
                                 f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.vocab_size):
                raise ValueError(f"TextData.{name} holds token ids outside [0, {self.vocab_size})")
        object.__setattr__(self, "meta", dict(self.meta))

    def tokens(self, split: str) -> int:
        """Number of tokens in the windows of ``split`` (``train``, ``val`` or ``test``)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(self, split).numel()

    def fingerprint(self) -> str:
        """SHA-256 of the windows of every split (checkpoints refuse to resume on other text)."""
        h = hashlib.sha256(f"seqlen={self.seqlen};vocab={self.vocab_size}".encode())
        for name in SPLITS:
            t = getattr(self, name).contiguous()
            h.update(f"{name}{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    def describe(self) -> dict:
        """JSON-able summary: sizes per split, tokenizer, vocabulary, source."""
        return {"kind": "text", "seqlen": self.seqlen, "vocab_size": self.vocab_size,
                "windows": {s: getattr(self, s).shape[0] for s in SPLITS},
                "tokens": {s: self.tokens(s) for s in SPLITS}, **self.meta}


def _read_source(source) -> tuple[str, str, tuple[float, float, float]]:
    """``(text, origin, default split)`` of a corpus name, a file path or (text=...) a string."""
    if not isinstance(source, (str, Path)):
        raise TypeError(f"text source must be a corpus name {sorted(CORPORA)} or a file path, got {type(source).__name__}")
    if isinstance(source, str) and source in CORPORA:
        from .paths import data_file

        fname, split = CORPORA[source]
        path = data_file(fname)
        raw = path.read_text(encoding="utf-8")
        if source == "wikitext2":
            # The file holds WikiText-2's rows one per line; join them with blank lines as
            # qlite.classical.evaluation.corpus_tokens does (the GPTQ / AWQ protocol).
            rows = raw.split("\n")
            raw = "\n\n".join(rows[:-1] if rows and rows[-1] == "" else rows)
        return raw, source, split
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"text source {str(source)!r} is neither a shared corpus ({', '.join(CORPORA)}) "
                                "nor an existing file")
    try:
        return path.read_text(encoding="utf-8"), str(path), DEFAULT_SPLIT
    except UnicodeDecodeError as err:
        raise ValueError(f"{str(path)!r} is not UTF-8 text: {err}") from None


def _check_split(split) -> tuple[float, float, float]:
    try:
        fr = tuple(float(x) for x in split)
    except (TypeError, ValueError):
        raise ValueError(f"split must be three fractions (train, val, test), got {split!r}") from None
    if len(fr) != 3 or not all(math.isfinite(x) and x >= 0 for x in fr) or abs(sum(fr) - 1) > 1e-9:
        raise ValueError(f"split must be three non-negative fractions (train, val, test) summing to 1, got {split!r}")
    return fr


def text(source, *, tokenizer="char", seqlen: int = 256, split=None, text_override: str | None = None) -> TextData:
    """Token windows of a corpus for language-model training and evaluation.

    Args:
        source: ``"tinyshakespeare"`` or ``"wikitext2"`` (the shared files, found through
            :func:`qlite.paths.data_file`: ``$QLITE_DATA`` or ``../shared/data``), or a path to a
            UTF-8 text file.
        tokenizer: ``"char"`` (a :class:`CharTokenizer` built from the whole text), a
            :class:`CharTokenizer`, or any Hugging Face tokenizer.
        seqlen: tokens per window (>= 2: a window predicts its tokens after the first).
        split: fractions ``(train, val, test)`` of the token stream, contiguous in that order,
            summing to 1. Default: ``(0.81, 0.09, 0.10)`` (the 90/10 protocol, validation the last
            tenth of the 90%); ``(0, 0, 1)`` for ``"wikitext2"`` (it is WikiText-2's test split).
        text_override: use this string instead of reading ``source`` (``source`` then only names
            it in the metadata); for tests and in-memory corpora.

    Returns:
        A :class:`TextData` whose ``train`` / ``val`` / ``test`` are ``(N, seqlen)`` windows.

    Raises:
        ValueError: ``seqlen`` < 2, bad split fractions, a text shorter than one window, a split
            given a non-zero fraction that holds less than one window, characters the given
            tokenizer does not know.
        FileNotFoundError: an unknown corpus name or missing file (the message says where it looked).

    Example:
        >>> d = text("my.txt", seqlen=64, text_override="to be or not to be " * 100)
        >>> d.train.shape[1], d.vocab_size
        (64, 7)
    """
    if not isinstance(seqlen, int) or isinstance(seqlen, bool) or seqlen < 2:
        raise ValueError(f"seqlen must be an int >= 2 (a window predicts its tokens after the first), got {seqlen!r}")
    if text_override is not None:
        if not isinstance(text_override, str):
            raise TypeError(f"text_override must be a string, got {type(text_override).__name__}")
        raw, origin, default_split = text_override, str(source), DEFAULT_SPLIT
    else:
        raw, origin, default_split = _read_source(source)
    fr = _check_split(default_split if split is None else split)
    if tokenizer == "char":
        tokenizer = CharTokenizer.from_text(raw) if raw else None
    if tokenizer is None or (isinstance(tokenizer, str)):
        if tokenizer is None:
            raise ValueError(f"the text of {origin!r} is empty")
        raise ValueError(f"tokenizer must be 'char', a CharTokenizer or a Hugging Face tokenizer object, got "
                         f"{tokenizer!r}; load a Hugging Face one with transformers.AutoTokenizer.from_pretrained")
    ids = _encode(tokenizer, raw)
    n = ids.numel()
    if n < seqlen:
        raise ValueError(f"the text of {origin!r} has {n} tokens, shorter than one window of seqlen={seqlen}; "
                         "use a smaller seqlen or a longer text")
    cuts = [0, round(fr[0] * n), round((fr[0] + fr[1]) * n), n]
    parts = {s: ids[cuts[i]:cuts[i + 1]] for i, s in enumerate(SPLITS)}
    for s, f in zip(SPLITS, fr):
        if f > 0 and parts[s].numel() < seqlen:
            raise ValueError(f"the {s} split ({f:g} of {n} tokens = {parts[s].numel()}) is shorter than one window of "
                             f"seqlen={seqlen}; use a smaller seqlen, a longer text or another split")
    wins = {s: windows(parts[s], seqlen) for s in SPLITS}
    vocab = tokenizer_vocab_size(tokenizer)
    meta = {"source": origin, "tokenizer": _tokenizer_name(tokenizer), "split": list(fr), "corpus_tokens": n,
            "token_ranges": {s: [cuts[i], cuts[i + 1]] for i, s in enumerate(SPLITS)},
            "dropped_tokens": {s: parts[s].numel() - wins[s].numel() for s in SPLITS}}
    return TextData(wins["train"], wins["val"], wins["test"], tokenizer, vocab, seqlen, meta)
