"""GGUF export (issue 14, item 4): qlite's codes in Q8_0 / Q4_0 / Q4_1 blocks, read back by the gguf
package and by transformers' GGUF loader."""

import pytest
import torch

from qlite.classical import AWQ, GPTQ, RTN, compress

pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")
from qlite.classical.gguf_export import _qk_perm, export_gguf, gguf_type, read_gguf_weights  # noqa: E402


@pytest.fixture
def llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                   max_position_embeddings=64, tie_word_embeddings=True)
    g = torch.Generator().manual_seed(1)
    return transformers.LlamaForCausalLM(cfg).eval(), torch.randint(0, 64, (1, 16), generator=g)


@pytest.mark.parametrize("recipe,kind,exact", [
    (RTN(8, group_size=32), "Q8_0", True),
    (RTN(4, group_size=32), "Q4_0", True),
    (GPTQ(4, group_size=32, symmetric=True, act_order=False), "Q4_0", True),
    (RTN(4, group_size=32, symmetric=False), "Q4_1", False),  # m = -d * z in float16
])
def test_codes_round_trip_and_transformers_runs_the_file(tmp_path, llama, recipe, kind, exact):
    model, x = llama
    calib = [x] if recipe.requires_calibration else None
    m = compress(model, recipe, calib).model
    assert gguf_type("down", m.model.layers[0].mlp.down_proj) == kind
    path = export_gguf(m, tmp_path / "m.gguf")
    w = read_gguf_weights(path)
    down = m.model.layers[0].mlp.down_proj.dequantized_weight()
    q = m.model.layers[1].self_attn.q_proj.dequantized_weight()[_qk_perm(64, 4)]  # llama.cpp's q row order
    if exact:
        assert torch.equal(w["blk.0.ffn_down.weight"], down) and torch.equal(w["blk.1.attn_q.weight"], q)
    else:
        err = (w["blk.0.ffn_down.weight"] - down).abs()
        assert 0 < float(err.max()) <= float(down.abs().max()) * 2**-10
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf").eval()
    sim = compress(model, recipe, calib, kernels=False).model
    with torch.no_grad():
        a, b = sim(x).logits, hf(x).logits
    tol = 1e-5 if exact else 2e-3
    assert float((a - b).abs().max()) <= tol * max(1.0, float(a.abs().max()))


def test_what_gguf_cannot_hold_is_refused(tmp_path, llama):
    model, x = llama
    cases = [
        (RTN(3, group_size=32, symmetric=False), "3-bit"),
        (RTN(8, group_size=32, symmetric=False), "8-bit asymmetric"),
        (RTN(4, group_size=16), "groups of 16"),
        (RTN(4, group_size=None), "per-channel"),
        (RTN(8), "per-channel"),
        (RTN(8, group_size=32, act_bits=8), "activations"),
        (AWQ(4, group_size=32), "input scale"),
        (GPTQ(4, group_size=32, symmetric=True), "static_groups=True"),  # act_order: a g_idx
    ]
    for recipe, why in cases:
        m = compress(model, recipe, [x] if recipe.requires_calibration else None).model
        with pytest.raises(ValueError, match=why):
            export_gguf(m, tmp_path / "bad.gguf")
        assert not (tmp_path / "bad.gguf").exists()


def test_an_existing_file_needs_overwrite(tmp_path, llama):
    model, _ = llama
    m = compress(model, RTN(8, group_size=32)).model
    p = tmp_path / "m.gguf"
    p.write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_gguf(m, p)
    assert p.read_text() == "mine"
    export_gguf(m, p, overwrite=True)
    assert p.stat().st_size > 1000
    with pytest.raises(ValueError, match="Llama"):
        export_gguf(torch.nn.Sequential(torch.nn.Linear(4, 4)), tmp_path / "x.gguf")
