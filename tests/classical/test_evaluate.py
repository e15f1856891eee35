"""The evaluation protocol on models with analytic perplexity."""


import pytest
import torch
from torch import nn

from qlite.classical import RTN, compress
from qlite.classical.evaluation import (
    calibration_segments, corpus_tokens, evaluate, kernel_label, perplexity, results_markdown, split_halves,
)


class Uniform(nn.Module):
    """Logits all equal: every next token has probability 1/V, so ppl = V exactly."""

    def __init__(self, V=50):
        super().__init__()
        self.V = V
        self.lin = nn.Linear(4, 4)
        self.calls = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        return torch.zeros(*x.shape, self.V)


class Oracle(nn.Module):
    """Knows the next token is (t + 1) mod V with probability p: ppl = exp(-log p) on such a stream."""

    def __init__(self, V=10, p=0.5):
        super().__init__()
        self.V, self.p = V, p
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        probs = torch.full((*x.shape, self.V), (1 - self.p) / (self.V - 1))
        probs.scatter_(-1, ((x + 1) % self.V)[..., None], self.p)
        return probs.log()


def test_uniform_model_has_perplexity_vocab_size():
    m = Uniform(V=50)
    r = perplexity(m, torch.arange(1000) % 50, seqlen=100, n_windows=3)
    assert r["perplexity"] == pytest.approx(50.0, rel=1e-6)
    assert r["n_windows"] == 3 and r["n_tokens"] == 3 * 99 and r["windows_available"] == 10
    assert m.calls == [(1, 100)] * 3  # non-overlapping windows of seqlen, batch 1


def test_oracle_perplexity_is_analytic():
    toks = torch.arange(2000) % 10
    r = perplexity(Oracle(p=0.8), toks, seqlen=50)
    assert r["perplexity"] == pytest.approx(1 / 0.8, rel=1e-5)
    assert r["n_windows"] == 40


def test_window_errors():
    with pytest.raises(ValueError, match="do not fill one window"):
        perplexity(Uniform(), torch.arange(10), seqlen=100)
    with pytest.raises(ValueError, match="n_windows=20 but the tokens hold 10 windows"):
        perplexity(Uniform(), torch.arange(1000), seqlen=100, n_windows=20)
    with pytest.raises(ValueError, match="seqlen must be an integer >= 2"):
        perplexity(Uniform(), torch.arange(1000), seqlen=1)


class CharTok:
    """A stand-in tokenizer: one id per character."""

    def __call__(self, text, add_special_tokens=False, return_tensors=None):
        class Out:
            input_ids = torch.tensor([[ord(c) for c in text]])

        return Out()


def test_texts_are_joined_with_blank_lines_and_tokenised_once():
    ids = corpus_tokens(["ab", "c"], CharTok())
    assert "".join(map(chr, ids.tolist())) == "ab\n\nc"


def test_halves_and_calibration_segments():
    a, b = split_halves("r1\nr2\nr3\nr4")
    assert (a, b) == ("r1\nr2", "r3\nr4")
    toks = torch.arange(1000)
    s1 = calibration_segments(toks, 5, 64, seed=3)
    s2 = calibration_segments(toks, 5, 64, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(s1, s2)) and s1[0].shape == (1, 64)
    assert all(torch.equal(x[0], torch.arange(x[0, 0], x[0, 0] + 64)) for x in s1)  # contiguous windows
    with pytest.raises(ValueError, match="need more than seqlen=64 tokens"):
        calibration_segments(torch.arange(64), 1, 64)


def test_evaluate_records_protocol_size_and_speed_labels():
    m = Oracle(p=0.5)
    r = evaluate(m, torch.arange(400) % 10, label="oracle", seqlen=40, n_windows=5, prompt_len=8, decode_tokens=2,
                 repeats=1, reference_bytes=100)
    assert r.perplexity == pytest.approx(2.0, rel=1e-5)
    assert (r.seqlen, r.n_windows, r.seed) == (40, 5, 0)
    assert r.bytes == (2 * 2 + 2) * 4 and r.compression_ratio == pytest.approx(100 / 24)
    assert r.kernel == "dense" and r.latency["kv_cache"] is False and r.latency["decode_ms_per_token"] > 0
    md = results_markdown([r.to_dict()], reference="oracle")
    assert "| oracle | 2.000 | +0.000 |" in md and "dense" in md


def test_kernel_label_says_simulated_for_dequantizing_layers():
    net = nn.Sequential(nn.Linear(8, 8))
    assert kernel_label(net) == "dense"
    assert kernel_label(compress(net, RTN(8), kernels=False).model) == "simulated"
    assert kernel_label(compress(net, RTN(3)).model) == "simulated"  # 3-bit: no kernel
    assert kernel_label(compress(net, RTN(8)).model) == "real-kernel"  # int8 weight-only CPU kernel
    two = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    assert kernel_label(compress(two, RTN(3)).model) == "simulated"
    half = compress(two, RTN(8), kernels=False).model
    half[0].use_kernel()
    assert kernel_label(half) == "mixed (real-kernel + simulated)"


class _Noisy(nn.Module):
    """A model that samples in eval mode (as a quantum layer with shots does): its perplexity depends
    on the global RNG it draws from."""

    def __init__(self, V=10):
        super().__init__()
        self.V = V
        self.lin = nn.Linear(1, 1)

    def forward(self, x):
        return torch.randn(*x.shape, self.V)


def test_evaluate_leaves_the_global_rng_and_the_mode_alone():
    m = _Noisy().train()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = evaluate(m, torch.arange(200) % 10, seqlen=20, n_windows=3, latency=False)
    assert torch.equal(torch.rand(3), expected)  # before the fix evaluate called torch.manual_seed(0)
    assert m.training  # restored
    b = evaluate(m, torch.arange(200) % 10, seqlen=20, n_windows=3, latency=False)
    assert a.perplexity == b.perplexity and a.seed == b.seed == 0  # no generator: reproducible
    g = torch.Generator().manual_seed(7)
    c = evaluate(m, torch.arange(200) % 10, seqlen=20, n_windows=3, latency=False, generator=g)
    d = evaluate(m, torch.arange(200) % 10, seqlen=20, n_windows=3, latency=False,
                 generator=torch.Generator().manual_seed(7))
    assert c.perplexity == d.perplexity != a.perplexity and c.seed == d.seed != 0
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        evaluate(m, torch.arange(200) % 10, seqlen=20, latency=False, generator=7)


def test_latency_runner_compiled_decodes_the_same_tokens_as_eager(tiny_llm):
    """The compiled path (StaticCache, one graph for every step) against the eager DynamicCache path on a
    tiny Llama: the same greedy ids. The 'eager' dynamo backend traces without inductor's codegen, so this
    checks the cache and position plumbing in seconds; inductor itself is exercised by serving_export.py."""
    from qlite.classical.evaluation import latency_runner, measure_latency

    model, windows = tiny_llm
    prompt = windows[0][:, :8]
    eager = latency_runner(model, prompt, decode_tokens=6)()
    comp = latency_runner(model, prompt, decode_tokens=6, compiled=True, backend="eager")
    first, again = comp(), comp()  # the cache is reset between runs
    assert len(eager["tokens"]) == 7 and eager["tokens"] == first["tokens"] == again["tokens"]
    with torch.no_grad():  # and both equal a decode without any cache
        seq = prompt
        for _ in range(7):
            seq = torch.cat([seq, model(seq).logits[:, -1:].argmax(-1)], dim=1)
    assert seq[0, 8:].tolist() == eager["tokens"]
    assert len(set(eager["tokens"])) > 1  # not a constant stream that any bug would reproduce
    lat = measure_latency(Oracle(), torch.arange(8).reshape(1, -1), decode_tokens=2, repeats=1)
    assert lat["compiled"] is False and lat["kv_cache"] is False


def test_compiled_latency_needs_a_cached_causal_lm():
    from qlite.classical.evaluation import latency_runner

    with pytest.raises(ValueError, match="no cache argument"):
        latency_runner(Oracle(), torch.arange(8).reshape(1, -1), compiled=True)
