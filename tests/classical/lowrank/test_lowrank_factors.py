"""Low-rank primitives against exact identities: SVD-LLM's whitening (full-rank reconstruction and
``||(W - W')X||^2 = sum of truncated sigma^2``), optimality against plain SVD on correlated inputs,
ASVD's scaling, the ratio -> rank rule, and the LowRank transform."""

import copy

import pytest
import torch
from torch import nn

from qlite.classical import CompressionConfig, compress
from qlite.classical.lowrank import (
    LowRank, LowRankLinear, asvd_factors, rank_for_ratio, svd_factors, whitened_svd_factors,
)


def _layer(seed, out=24, n=40, rows=400):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, n, generator=g, dtype=torch.float64)
    X = torch.randn(rows, 6, generator=g, dtype=torch.float64) @ torch.randn(6, n, generator=g, dtype=torch.float64)
    X += 0.05 * torch.randn(rows, n, generator=g, dtype=torch.float64)
    X *= torch.logspace(-1, 1, n, dtype=torch.float64)  # channels of very different scales
    return W, X


def test_whitened_svd_reconstructs_at_full_rank_and_its_error_is_the_truncated_spectrum():
    W, X = _layer(0)
    H = X.t() @ X
    A, B, s = whitened_svd_factors(W, H, min(W.shape))
    torch.testing.assert_close(A @ B, W, rtol=0, atol=1e-9)
    for k in (1, 5, 12):
        A, B, s = whitened_svd_factors(W, H, k)
        err = ((W - A @ B) @ X.t()).pow(2).sum()
        torch.testing.assert_close(err, s[k:].pow(2).sum(), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("k", [2, 6, 12])
def test_svd_llm_output_error_is_at_most_plain_svds(k):
    for seed in range(3):
        W, X = _layer(seed + 1)
        A, B = svd_factors(W, k)
        Aw, Bw, _ = whitened_svd_factors(W, X.t() @ X, k)
        A2, B2 = asvd_factors(W, X.abs().mean(0), k)
        e = {name: float(((W - a @ b) @ X.t()).norm()) for name, (a, b) in
             {"svd": (A, B), "svd-llm": (Aw, Bw), "asvd": (A2, B2)}.items()}
        assert e["svd-llm"] <= e["svd"] + 1e-9 and e["svd-llm"] <= e["asvd"] + 1e-9, e
        # Plain SVD is the weight-space optimum instead.
        assert float((W - A @ B).norm()) <= float((W - Aw @ Bw).norm()) + 1e-9


def test_asvd_with_alpha_zero_is_plain_svd_and_scaling_is_undone():
    W, X = _layer(4)
    A, B = svd_factors(W, 7)
    A0, B0 = asvd_factors(W, X.abs().mean(0), 7, alpha=0.0)
    torch.testing.assert_close(A0 @ B0, A @ B)
    A1, B1 = asvd_factors(W, X.abs().mean(0), min(W.shape), alpha=0.5)
    torch.testing.assert_close(A1 @ B1, W, rtol=0, atol=1e-9)


def test_rank_for_ratio_counts_parameters_removed():
    assert rank_for_ratio(576, 576, 0.2) == 230  # 230 * 1152 = 264,960 <= 0.8 * 331,776 = 265,420.8
    k = rank_for_ratio(1536, 576, 0.4)
    assert k * (1536 + 576) <= 0.6 * 1536 * 576 < (k + 1) * (1536 + 576)
    assert rank_for_ratio(10, 10, 0.0) == 5


def test_rank_larger_than_the_matrix_is_refused():
    with pytest.raises(ValueError, match=r"rank must be an integer in \[1, 24\]"):
        svd_factors(torch.randn(24, 40), 25)
    net = nn.Sequential(nn.Linear(16, 8))
    with pytest.raises(ValueError, match=r"layer '0': rank 9 is larger than its \(8, 16\) matrix allows"):
        compress(net, LowRank(rank=9))
    for bad in (-0.1, 1.0, True):
        with pytest.raises(ValueError, match="fraction of parameters removed"):
            LowRank(removed=bad)
    with pytest.raises(ValueError, match="method"):
        LowRank(method="tucker")


@pytest.mark.parametrize("method", ["svd", "asvd", "svd-llm"])
def test_lowrank_transform_shrinks_layers_and_leaves_the_callers_model(method):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 32))
    before = copy.deepcopy(net.state_dict())
    g = torch.Generator().manual_seed(0)
    calib = [torch.randn(128, 64, generator=g) for _ in range(2)]
    res = compress(net, LowRank(0.4, method=method), calib=calib)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    first = res.model[0]
    assert isinstance(first, LowRankLinear) and first.rank == rank_for_ratio(96, 64, 0.4)
    n0 = 64 * 96
    assert first.rank * (64 + 96) <= 0.6 * n0
    assert res.report.bytes_after < 0.62 * res.report.bytes_before
    x = torch.randn(4, 64)
    torch.testing.assert_close(first(x), x @ first.effective_weight().t() + net[0].bias)
    assert CompressionConfig.from_json(LowRank(0.4, method=method).to_json()) == LowRank(0.4, method=method)


def test_svd_llm_beats_svd_on_a_real_layer_output_through_compress():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(48, 48))
    g = torch.Generator().manual_seed(1)
    mix = torch.randn(8, 48, generator=g)
    calib = [(torch.randn(256, 8, generator=g) @ mix) * torch.logspace(-1, 1, 48) for _ in range(2)]
    x = torch.cat(calib)
    with torch.no_grad():
        ref = net(x)
        err = {m: float((compress(net, LowRank(0.5, method=m), calib=calib).model(x) - ref).norm()) for m in ("svd", "svd-llm")}
    assert err["svd-llm"] < 0.5 * err["svd"]


def _weights_kept(records) -> float:
    """Fraction of the targeted weight parameters left (a rank-k layer keeps k * (in + out))."""
    before = sum(r.shape[0] * r.shape[1] for r in records)
    after = sum(r.extra["rank"] * sum(r.shape) if r.extra.get("rank") else r.shape[0] * r.shape[1] for r in records)
    return after / before


def test_sensitivity_rank_search_on_a_language_model_meets_the_budget(tiny_llm):
    """ASVD's rank search with the next-token loss: ranks differ by layer and the budget holds."""
    from qlite.classical.lowrank.allocation import CalibrationLoss

    model, calib = tiny_llm
    assert CalibrationLoss(model, calib).lm
    res = compress(model, LowRank(0.3, method="asvd", allocation="sensitivity"), calib=calib)
    ranks = {n: m.rank for n, m in res.model.named_modules() if isinstance(m, LowRankLinear)}
    assert len(set(ranks.values())) > 1
    assert _weights_kept(res.report.layers) <= 0.7
    assert not any(isinstance(m, LowRankLinear) for m in model.modules())  # the caller's model is kept


def test_sensitivity_search_gives_ranks_where_they_matter_and_bad_input():
    """One nearly rank-2 layer and one full-rank layer: the search cuts the first and spares the second,
    so the output error is far below a uniform cut of the same total size."""
    from qlite.classical.lowrank.allocation import CalibrationLoss

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32))
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(32, 2) @ torch.randn(2, 32) / 4 + 1e-3 * torch.randn(32, 32))
    calib = [torch.randn(64, 32) for _ in range(2)]
    res = {a: compress(net, LowRank(0.4, method="svd", allocation=a), calib=calib) for a in ("uniform", "sensitivity")}
    ref = CalibrationLoss(net, calib)  # relative output change against the unmodified network
    err = {}
    for a, r in res.items():
        ref.model = r.model
        err[a] = ref()
    ranks = [rec.extra["rank"] for rec in res["sensitivity"].report.layers]
    assert ranks[0] is not None and (ranks[1] is None or ranks[1] > ranks[0])
    assert err["sensitivity"] < 0.5 * err["uniform"], err
    assert _weights_kept(res["sensitivity"].report.layers) <= 0.6
    with pytest.raises(ValueError, match="allocation must be"):
        LowRank(0.2, allocation="greedy")
    with pytest.raises(ValueError, match="give removed, not rank"):
        LowRank(rank=4, allocation="sensitivity")
    with pytest.raises(ValueError, match="calibration"):
        compress(net, LowRank(0.4, allocation="sensitivity"))


def test_lowrank_ratio_zero_is_refused():
    """removed=0 promises to remove nothing, yet the largest rank it allows still truncates the spectrum
    (before the fix it built rank-k factors and added error); it is refused with the alternatives."""
    from qlite.classical import LowRank

    with pytest.raises(ValueError, match="removed=0 removes no parameters.*leave LowRank out of the recipe"):
        LowRank(0.0)
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\), got 1.0"):
        LowRank(1.0)
    assert LowRank(rank=4).removed is None  # an explicit rank is still accepted


def test_lowrank_before_structured_pruning_is_refused_before_any_work(tiny_llm):
    """The README's order rule: reshape (StructuredPrune, GQA) first, then factorise / quantize."""
    import torch
    from torch import nn

    from qlite.classical import GQA, RTN, LowRank, StructuredPrune, compress

    model, calib = tiny_llm
    for recipe in ([LowRank(0.5), StructuredPrune(0.5, importance="activation")], [RTN(8), GQA(1)],
                   [LowRank(0.5), GQA(1)]):
        with pytest.raises(ValueError, match=r"comes after .* put (StructuredPrune|GQA) first in the recipe"):
            compress(model, recipe, calib=calib)
    # the same rule on a network whose blocks are single layers: two calls, the second refused
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 16))
    x = [torch.randn(4, 16)]
    with pytest.raises(ValueError, match="comes after"):
        compress(net, [LowRank(0.5), StructuredPrune(0.5, importance="activation")], calib=x)
    low = compress(net, LowRank(0.5)).model
    with pytest.raises(ValueError, match="StructuredPrune: 0 is a LowRankLinear, not a plain linear layer"):
        compress(low, StructuredPrune(0.5, importance="activation"), calib=x)
    # the right order still works
    ok = compress(model, [StructuredPrune(0.5, importance="activation"), LowRank(0.5)], calib=calib)
    assert any(r.method.startswith("LowRank") for r in ok.report.layers)
