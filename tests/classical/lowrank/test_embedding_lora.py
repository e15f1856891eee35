"""Tensorised embeddings (tensorly) and LoRA recovery through peft."""

import pytest
import torch
from torch import nn

from qlite.classical import compress

pytest.importorskip("tensorly")


def test_tt_and_tucker_reconstruct_exactly_at_full_rank_and_look_up_rows():
    from qlite.classical.lowrank import factorize_embedding

    torch.manual_seed(0)
    emb = nn.Embedding(100, 24)
    for method, rank in (("tt", 200), ("tucker", 100)):
        t = factorize_embedding(emb, method=method, rank=rank)
        torch.testing.assert_close(t.weight, emb.weight, rtol=0, atol=1e-5)
        ids = torch.randint(0, 100, (3, 7))
        torch.testing.assert_close(t(ids), emb(ids), rtol=0, atol=1e-5)
        small = factorize_embedding(emb, method=method, rank=3)
        assert sum(p.numel() for p in small.parameters()) < 0.3 * emb.weight.numel()
        torch.testing.assert_close(small(ids), small.weight[ids])
        with pytest.raises(IndexError, match=r"token ids must lie in \[0, 100\)"):
            small(torch.tensor([3, 100]))


def test_tt_rank_error_shrinks_with_rank():
    from qlite.classical.lowrank import factorize_embedding

    torch.manual_seed(1)
    emb = nn.Embedding(64, 27)
    with torch.no_grad():
        errs = [float((factorize_embedding(emb, method="tt", rank=r).weight - emb.weight).norm()) for r in (1, 4, 16)]
    assert errs[0] > errs[1] > errs[2]


def test_factorized_embedding_config_and_bad_input():
    from qlite.classical.lowrank import FactorizedEmbedding, TensorizedEmbedding, factorize_embedding

    net = nn.Sequential(nn.Embedding(50, 12), nn.Linear(12, 4))
    res = compress(net, FactorizedEmbedding("tucker", rank=4, n_factors=2))
    assert isinstance(res.model[0], TensorizedEmbedding) and isinstance(net[0], nn.Embedding)
    assert res.report.bytes_after < res.report.bytes_before
    with pytest.raises(ValueError, match="no nn.Embedding"):
        compress(nn.Sequential(nn.Linear(3, 3)), FactorizedEmbedding())
    with pytest.raises(ValueError, match="tuple of 2 positive ints"):
        factorize_embedding(nn.Embedding(50, 12), method="tt", rank=(2, 2, 2), n_factors=3)
    with pytest.raises(ValueError, match="'tt' or 'tucker'"):
        factorize_embedding(nn.Embedding(50, 12), method="cp")


def test_lora_recovery_trains_only_adapters_and_keeps_sparsity(tiny_llm):
    pytest.importorskip("peft")
    from qlite.classical.lowrank import lora_recover
    from qlite.classical.sparse import Magnitude, SparseLinear

    model, calib = tiny_llm
    sparse = compress(model, Magnitude(0.5)).model
    base = {n: p.detach().clone() for n, p in sparse.named_parameters()}
    rec, hist = lora_recover(sparse, calib, loss="forward", teacher=model, r=4, steps=12, lr=3e-3)
    assert hist[-1] < hist[0]
    assert all(torch.equal(base[n], p) for n, p in sparse.named_parameters())  # the caller's student untouched
    lin = [m for m in rec.modules() if isinstance(m, SparseLinear)]
    assert lin and all((m.effective_weight()[~m.mask] == 0).all() for m in lin)
    with pytest.raises(ValueError, match="sparse / 4-bit base"):
        lora_recover(sparse, calib, r=4, steps=1, merge=True)


def test_lora_merge_on_a_lowrank_model(tiny_llm):
    pytest.importorskip("peft")
    from qlite.classical.lowrank import LowRank, LowRankLinear, lora_recover

    model, calib = tiny_llm
    lr = compress(model, LowRank(0.3)).model
    merged, hist = lora_recover(lr, calib, r=2, steps=3, lr=1e-3, merge=True)
    assert any(isinstance(m, LowRankLinear) for m in merged.modules())
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_qlora_on_a_bitsandbytes_nf4_base(tiny_llm):
    pytest.importorskip("peft")
    pytest.importorskip("bitsandbytes")
    from qlite.classical.export import export_bitsandbytes
    from qlite.classical.lowrank import lora_recover

    model, calib = tiny_llm
    q = export_bitsandbytes(model, "nf4")
    assert type(q.model.layers[0].mlp.down_proj).__name__ == "Linear4bit"
    rec, hist = lora_recover(q, calib, teacher=model, loss="reverse", r=4, steps=3, lr=1e-3)
    trainable = [n for n, p in rec.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable) and len(hist) == 3
    with pytest.raises(ValueError, match="sparse / 4-bit base"):
        lora_recover(q, calib, r=4, steps=1, merge=True)


def test_lora_recovery_as_a_recipe_step_with_a_json_log(tiny_llm):
    """LoRARecover in a recipe: adapters trained after the pruning step, distilling from the model
    given to compress; the recipe (and so the report) round-trips through JSON."""
    pytest.importorskip("peft")
    from qlite.classical import CompressionConfig, LoRARecover, Magnitude, recipe_from_json, recipe_to_json
    from qlite.classical.sparse import SparseLinear

    model, calib = tiny_llm
    recipe = [Magnitude(0.5), LoRARecover(r=4, steps=12, lr=3e-3, loss="forward")]  # as the test above
    assert recipe_from_json(recipe_to_json(recipe)) == recipe
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = compress(model, recipe, calib=calib)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())  # the teacher, untouched
    lora = [r for r in res.report.layers if r.method.startswith("LoRARecover")]
    assert lora and lora[0].extra["loss_last"] < lora[0].extra["loss_first"]
    assert any("lora_A" in n for n, _ in res.model.named_parameters())
    lin = [m for m in res.model.modules() if isinstance(m, SparseLinear)]
    assert lin and all((m.effective_weight()[~m.mask] == 0).all() for m in lin)  # still sparse
    import json

    logged = json.loads(res.report.to_json())["recipe"]  # the experiment log holds the recipe that ran
    assert recipe_from_json(json.dumps(logged)) == recipe and CompressionConfig.from_dict(logged[1]) == recipe[1]
    with pytest.raises(ValueError, match="loss must be one of"):
        LoRARecover(loss="kl")
    with pytest.raises(ValueError, match="r must be a positive integer"):
        LoRARecover(r=0)
    with pytest.raises(ValueError, match="needs calibration data"):
        compress(model, LoRARecover())
