"""Issue 17 items 1, 2, 5: activation sparsity, neuron predictor, layer skipping, cross-layer sharing."""

import copy

import pytest
import torch

from qlite.classical import ActivationSparsity, LayerSkip, NeuronPredictor, ShareLayers, compress, state_bytes
from qlite.classical.dynamic import IdentityBlock, SparseMLP, mlp_modules, skip_blocks, threshold_for, topk_mask
from qlite.classical.dynamic.activation import candidates_for_recall, capture_mlp_io


@pytest.fixture
def llm4():
    """A 4-block tiny Llama and three (1, 16) windows."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64)
    g = torch.Generator().manual_seed(1)
    return transformers.LlamaForCausalLM(cfg).eval(), [torch.randint(0, 64, (1, 16), generator=g) for _ in range(3)]


def _params(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_topk_keeps_exactly_k_per_token():
    h = torch.randn(5, 7, 64, generator=torch.Generator().manual_seed(0))
    m = topk_mask(h, 13)
    assert (m.sum(-1) == 13).all()
    # the kept ones are the largest magnitudes: brute force per row
    for row, mr in zip(h.reshape(-1, 64), m.reshape(-1, 64)):
        assert set(row.abs().argsort(descending=True)[:13].tolist()) == set(mr.nonzero().reshape(-1).tolist())


def test_topk_model_keeps_k_per_token(tiny_llm):
    model, calib = tiny_llm
    out = compress(model, [ActivationSparsity(0.25)]).model
    seen = []
    mlp = out.model.layers[0].mlp
    h = mlp.activations(torch.randn(3, 32))
    assert (mlp.mask(None, h).sum(-1) == 48).all()


def test_threshold_reaches_sparsity_on_calibration(tiny_llm):
    model, calib = tiny_llm
    for s in (0.25, 0.5, 0.7):
        res = compress(model, [ActivationSparsity(s, method="threshold")], calib)
        for r in res.report.layers:
            assert abs(r.extra["calib_sparsity"] - s) <= 0.01
        # independently: the switched-off fraction of the dense activations on the calibration data
        acts = []
        hook = model.model.layers[1].mlp.down_proj.register_forward_pre_hook(lambda m, a: acts.append(a[0].reshape(-1)))
        with torch.no_grad():
            for x in calib:
                model(x)
        hook.remove()
        thr = float(res.model.model.layers[1].mlp.threshold)
        assert abs(float((torch.cat(acts).abs() <= thr).float().mean()) - s) <= 0.01


def test_threshold_for_order_statistic():
    v = torch.arange(1, 101, dtype=torch.float32)
    assert threshold_for(v, 0.3) == 30.0
    assert threshold_for(v, 0.0) < 0


@pytest.mark.parametrize("mode", ["topk", "threshold", "predictor", "predictor-2stage"])
def test_sparse_decode_equals_dense_with_same_mask(tiny_llm, mode):
    model, _ = tiny_llm
    mlp = copy.deepcopy(model.model.layers[0].mlp).double()
    with torch.no_grad():  # integer-valued weights and inputs: every sum is exact, so equality is exact
        for lin in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            lin.weight.copy_(torch.randint(-3, 4, lin.weight.shape))
    mlp.act_fn = torch.nn.ReLU()
    g = torch.Generator().manual_seed(0)
    pred = (torch.randn(32, 4, generator=g, dtype=torch.float64), torch.randn(4, 64, generator=g, dtype=torch.float64))
    two = mode == "predictor-2stage"
    mode = "predictor" if two else mode
    sp = SparseMLP(mlp, mode, k=20, threshold=5.0, predictor=pred if mode == "predictor" else None,
                   candidates=40 if two else None)
    for _ in range(5):
        x = torch.randint(-2, 3, (1, 1, 32)).double()
        mask = sp.mask(x)
        assert torch.equal(sp(x), sp.dense_masked(x, mask))  # the one-token path gathers rows
        # and the dense masked computation is the plain MLP with zeroed activations
        h = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
        assert torch.equal(sp.dense_masked(x, mask), mlp.down_proj(h * mask))
        if mode != "threshold":
            assert int(mask.sum()) == 20
        if two:  # the kept set is the 20 largest |h| among the 40 highest scores
            cand = torch.zeros(64, dtype=torch.bool)
            cand[sp.predict(x).reshape(-1).topk(40).indices] = True
            a = h.reshape(-1).abs()
            assert bool(cand[mask.reshape(-1)].all()) and a[mask.reshape(-1)].min() >= a[cand & ~mask.reshape(-1)].max()
    # several tokens: the dense masked path
    x = torch.randint(-2, 3, (2, 3, 32)).double()
    assert torch.equal(sp(x), sp.dense_masked(x, sp.mask(x)))


def test_zero_sparsity_is_the_dense_model(tiny_llm):
    model, calib = tiny_llm
    out = compress(model, [ActivationSparsity(0.0)]).model
    with torch.no_grad():
        torch.testing.assert_close(out(calib[0]).logits, model(calib[0]).logits, rtol=1e-5, atol=1e-5)


def test_predictor_trains_and_reports_recall(tiny_llm):
    model, calib = tiny_llm
    res = compress(model, [NeuronPredictor(rank=8, sparsity=0.5, steps=150)], calib)
    recalls = [r.extra["recall"] for r in res.report.layers]
    assert len(recalls) == 2 and all(0.5 < r <= 1.0 for r in recalls)  # better than chance (0.5)
    mlp = res.model.model.layers[0].mlp
    assert mlp.bytes_read_fraction(mlp.k) < 1.0
    with torch.no_grad():
        g = res.model.generate(calib[0], max_new_tokens=3, do_sample=False)
    assert g.shape == (1, 19)


def test_candidates_for_recall_brute_force():
    g = torch.Generator().manual_seed(0)
    scores, labels = torch.randn(6, 30, generator=g), topk_mask(torch.randn(6, 30, generator=g), 10)
    for target in (0.3, 0.5, 0.9, 1.0):
        def rec(kk):
            c = torch.zeros_like(labels).scatter_(-1, scores.topk(kk, dim=-1).indices, True)
            return int((c & labels).sum())
        want = next(kk for kk in range(10, 31) if rec(kk) >= target * int(labels.sum()) - 1e-9)
        assert candidates_for_recall(scores, labels, target, 10) == want


def test_two_stage_predictor_reaches_recall(tiny_llm):
    model, calib = tiny_llm
    res = compress(model, [NeuronPredictor(rank=4, sparsity=0.5, steps=30, recall=0.95)], calib)
    for r in res.report.layers:
        assert 32 <= r.extra["candidates"] <= 64 and r.extra["candidate_recall"] >= r.extra["recall"] - 1e-9
    mlp = res.model.model.layers[0].mlp
    assert mlp.candidates == res.report.layers[0].extra["candidates"]
    x = torch.randn(1, 1, 32)
    assert int(mlp.mask(x).sum()) == 32  # still K = 32 neurons reach the down projection


def test_capture_keeps_inputs_and_activations_aligned(tiny_llm):
    """max_tokens cutting a window: x and h stay token for token (the window that filled the budget lost h)."""
    model, calib = tiny_llm
    mlps = mlp_modules(model)
    st = capture_mlp_io(model, mlps, calib, want_inputs=True, max_values=10, max_tokens=20,
                        generator=torch.Generator().manual_seed(0))
    for name, m in mlps:
        x, h = st[name]["x"], st[name]["h"]
        assert x.shape[0] == h.shape[0] == 20
        with torch.no_grad():
            torch.testing.assert_close(h, m.act_fn(m.gate_proj(x)) * m.up_proj(x))


def test_static_skip_equals_identity_blocks(llm4):
    model, calib = llm4
    res = compress(model, [LayerSkip(n_layers=2)], calib)
    chosen = [int(r.name.rsplit(".", 1)[1]) for r in res.report.layers]
    assert len(chosen) == 2 and 0 not in chosen
    ref = copy.deepcopy(model)
    for i in chosen:
        ref.model.layers[i] = IdentityBlock()
    with torch.no_grad():
        assert torch.equal(res.model(calib[0]).logits, ref(calib[0]).logits)
        # generation with the KV cache works with empty cache slots
        res.model.generate(calib[0], max_new_tokens=2, do_sample=False)
    # the most similar blocks were chosen
    sims = res.report.layers[0].extra["all_cos"]
    assert min(sims[i] for i in chosen) >= max(sims[i] for i in range(1, 4) if i not in chosen)


def test_dynamic_skip_threshold_extremes(llm4):
    model, calib = llm4
    with torch.no_grad():
        never = compress(model, [LayerSkip(threshold=1.0)]).model(calib[0]).logits
        torch.testing.assert_close(never, model(calib[0]).logits)
        always = compress(model, [LayerSkip(threshold=-1.0)]).model  # every token keeps its input everywhere
        ref = skip_blocks(model, [1, 2, 3])
        ref.model.layers[0] = IdentityBlock()
        torch.testing.assert_close(always(calib[0]).logits, ref(calib[0]).logits)


def test_sharing_counts_bytes_once_and_ties(llm4):
    model, calib = llm4
    res = compress(model, [ShareLayers(2)])
    m = res.model
    L = m.model.layers
    assert L[0].mlp.up_proj.weight is L[1].mlp.up_proj.weight
    assert L[2].self_attn.q_proj.weight is L[3].self_attn.q_proj.weight
    assert L[1].mlp.up_proj.weight is not L[2].mlp.up_proj.weight
    torch.testing.assert_close(L[0].mlp.up_proj.weight,
                               (model.model.layers[0].mlp.up_proj.weight + model.model.layers[1].mlp.up_proj.weight) / 2)
    per_block = sum(p.numel() * 4 for n, p in model.model.layers[0].named_parameters() if "proj" in n)
    assert res.report.bytes_before - res.report.bytes_after == 2 * per_block
    assert state_bytes(m) == res.report.bytes_after
    first = compress(model, [ShareLayers(2, init="first", parts="mlp")]).model
    assert torch.equal(first.model.layers[1].mlp.down_proj.weight, model.model.layers[0].mlp.down_proj.weight)


def test_sharing_heals_by_distillation(llm4):
    model, calib = llm4
    plain = compress(model, [ShareLayers(2)]).model
    healed = compress(model, [ShareLayers(2, heal_steps=15, heal_lr=3e-3)], calib)
    from qlite.classical import kd_loss

    with torch.no_grad():
        def kl(m):
            return sum(float(kd_loss(m(x).logits, model(x).logits)) for x in calib)

        assert kl(healed.model) < kl(plain)
    L = healed.model.model.layers
    assert L[0].mlp.up_proj.weight is L[1].mlp.up_proj.weight  # still tied after training
    assert not torch.equal(L[0].mlp.up_proj.weight, plain.model.layers[0].mlp.up_proj.weight)


def test_sharing_tie_survives_healing_and_memory_matches_bytes(llm4):
    """Every shared linear of every group is one storage after healing, and the healed model holds no more
    than its counted bytes: no gradients left on the parameters (they doubled a healed SmolLM2's resident
    size, 653 vs 326 MB), no untied copies."""
    from qlite.classical.memory import tensor_bytes

    model, calib = llm4
    healed = compress(model, [ShareLayers(2, heal_steps=3, heal_lr=3e-3)], calib)
    m = healed.model
    L = m.model.layers
    names = [n for n, x in L[0].named_modules() if isinstance(x, torch.nn.Linear)]
    assert len(names) == 7  # q, k, v, o, gate, up, down
    for a, b in ((0, 1), (2, 3)):
        for n in names:
            wa, wb = L[a].get_submodule(n).weight, L[b].get_submodule(n).weight
            assert wa.data_ptr() == wb.data_ptr(), f"{n} of blocks {a}, {b} untied after healing"
    for a, b in ((0, 2), (1, 3)):  # different groups stay different
        assert L[a].mlp.up_proj.weight.data_ptr() != L[b].mlp.up_proj.weight.data_ptr()
    assert all(p.grad is None for p in m.parameters()), "healing left gradients on the parameters"
    plain = compress(model, [ShareLayers(2)]).model
    assert state_bytes(m) == state_bytes(plain) == healed.report.bytes_after
    assert tensor_bytes(m) == tensor_bytes(plain)  # (tensor_bytes adds rotary's non-persistent buffers)
    # the unique parameters after healing: 4 blocks' norms + 2 groups' linears + embeddings/final norm
    assert len(list(m.parameters())) == len(list(plain.parameters()))


def test_caller_model_untouched_unless_inplace(llm4):
    model, calib = llm4
    before = _params(model)
    for cfg in (ActivationSparsity(0.5, method="threshold"), NeuronPredictor(rank=4, steps=5), LayerSkip(n_layers=1),
                LayerSkip(threshold=0.5), ShareLayers(2, heal_steps=2)):
        compress(model, [cfg], calib)
        after = model.state_dict()
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
        assert type(model.model.layers[1]).__name__ == "LlamaDecoderLayer"
        assert type(model.model.layers[1].mlp).__name__ == "LlamaMLP"
    compress(model, [LayerSkip(n_layers=1)], calib, inplace=True)
    assert any(isinstance(b, IdentityBlock) for b in model.model.layers)


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, True, "0.5"])
def test_bad_sparsity(bad):
    with pytest.raises(ValueError, match=r"sparsity .*\[0, 1\).*got"):
        ActivationSparsity(bad)
    with pytest.raises(ValueError, match=r"sparsity .*\[0, 1\).*got"):
        NeuronPredictor(sparsity=bad)


def test_k_larger_than_width(tiny_llm):
    model, _ = tiny_llm
    with pytest.raises(ValueError, match=r"k=65 .*\[1, 64\].*smaller k"):
        SparseMLP(model.model.layers[0].mlp, "topk", k=65)
    with pytest.raises(ValueError, match=r"k=100 .*\[1, 64\]"):
        topk_mask(torch.randn(2, 64), 100)


def test_skip_too_many(llm4):
    model, calib = llm4
    with pytest.raises(ValueError, match=r"cannot skip 4 of the model's 4 blocks.*at most 2"):
        compress(model, [LayerSkip(n_layers=4)], calib)
    with pytest.raises(ValueError, match=r"cannot skip 9 of the model's 4 blocks"):
        compress(model, [LayerSkip(n_layers=9)], calib)
    kept = compress(model, [LayerSkip(n_layers=3)], calib).model  # the most there is: the first block stays
    assert [isinstance(b, IdentityBlock) for b in kept.model.layers] == [False, True, True, True]
    with pytest.raises(ValueError, match="exactly one of n_layers"):
        LayerSkip()
    with pytest.raises(ValueError, match="skipping all 4 blocks"):
        skip_blocks(model, [0, 1, 2, 3])


def test_share_bad_groups(llm4):
    model, _ = llm4
    with pytest.raises(ValueError, match="group size 5 exceeds the model's 4 blocks"):
        compress(model, [ShareLayers(5)])
    with pytest.raises(ValueError, match=r"block indices \[7\] do not exist"):
        compress(model, [ShareLayers(((0, 7),))])
    with pytest.raises(ValueError, match="groups must be"):
        ShareLayers(1)


def test_configs_round_trip_json():
    from qlite.classical import CompressionConfig

    for c in (ActivationSparsity(0.7, method="threshold"), NeuronPredictor(rank=16, sparsity=0.25), LayerSkip(n_layers=2),
              LayerSkip(threshold=0.95), ShareLayers(2, heal_steps=3), ShareLayers(((0, 1), (2, 3)), parts=("mlp",))):
        assert CompressionConfig.from_json(c.to_json()) == c


def test_model_without_mlps():
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8))
    with pytest.raises(ValueError, match="found no MLP with up_proj"):
        compress(net, [ActivationSparsity(0.5)])


@pytest.mark.slow
@pytest.mark.llm
def test_smollm2_threshold_and_skip(smollm2):
    from qlite.classical.evaluation import calibration_segments, corpus_tokens, split_halves
    from qlite.paths import data_file

    model, tok = smollm2
    first, _ = split_halves(data_file("wikitext2_test.txt").read_text())
    calib = calibration_segments(corpus_tokens(first, tok), 2, 256, 0)
    res = compress(model, [ActivationSparsity(0.5, method="threshold")], calib)
    assert all(abs(r.extra["calib_sparsity"] - 0.5) <= 0.01 for r in res.report.layers)
    sk = compress(model, [LayerSkip(n_layers=2)], calib)
    assert len(sk.report.layers) == 2
