"""Mask primitives, exactly: N:M structure, per-row / per-matrix counts, Wanda's scores by hand,
the bitmask round trip, config validation."""

import pytest
import torch

from qlite.classical import CompressionConfig
from qlite.classical.sparse import (
    Magnitude, NMPattern, SparseGPT, StructuredPrune, Wanda, nm_mask, pack_mask, parse_pattern, unpack_mask,
    unstructured_mask, wanda_scores,
)


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4), (3, 8)])
def test_nm_mask_keeps_the_n_largest_of_every_run(n, m):
    g = torch.Generator().manual_seed(n * 10 + m)
    s = torch.rand(7, 4 * m, generator=g)
    mask = nm_mask(s, NMPattern(n, m))
    runs = mask.reshape(7, 4, m)
    assert (runs.sum(-1) == n).all()
    # Every kept score is >= every removed score of its run.
    sr = s.reshape(7, 4, m)
    kept_min = torch.where(runs, sr, torch.inf).amin(-1)
    gone_max = torch.where(~runs, sr, -torch.inf).amax(-1)
    assert (kept_min >= gone_max).all()


def test_nm_mask_rejects_a_width_that_m_does_not_divide():
    with pytest.raises(ValueError, match="multiple of 4"):
        nm_mask(torch.rand(3, 10), NMPattern(2, 4))


def test_unstructured_mask_counts_per_matrix_and_per_row():
    s = torch.arange(24.0).reshape(4, 6).flip(1)  # row r: 6r+5 ... 6r
    m = unstructured_mask(s, 0.5)
    assert int((~m).sum()) == 12 and (~m[:2]).all() and m[2:].all()  # the 12 smallest are the first two rows
    r = unstructured_mask(s, 0.5, per_row=True)
    assert ((~r).sum(1) == 3).all() and (~r[:, 3:]).all()  # in each row the 3 smallest: the last 3 columns
    assert unstructured_mask(s, 0.0).all()


def test_wanda_scores_match_a_hand_computation():
    W = torch.tensor([[1.0, -2.0, 3.0, -4.0], [4.0, 3.0, -2.0, 1.0]])
    X = torch.tensor([[3.0, 0.0, 1.0, 0.5], [4.0, 1.0, 0.0, 0.5]])  # (tokens, in): ||X_j|| = 5, 1, 1, sqrt(0.5)
    s = wanda_scores(W, (X * X).sum(0))
    r = 0.5**0.5
    expect = torch.tensor([[5.0, 2.0, 3.0, 4 * r], [20.0, 3.0, 2.0, r]])
    torch.testing.assert_close(s, expect)
    # Per output row at 50%: row 0 drops column 1 (2.0) and column 2 (3.0 vs 4r = 2.83 -> column 3 goes);
    # so row 0 drops {1: 2.0, 3: 2.83}, row 1 drops {2: 2.0, 3: 0.71}.
    mask = unstructured_mask(s, 0.5, per_row=True)
    assert mask.tolist() == [[True, False, True, False], [True, True, False, False]]
    # Magnitude alone would keep row 0's columns 2, 3: the activation norms change the decision.
    assert unstructured_mask(W.abs(), 0.5, per_row=True)[0].tolist() == [False, False, True, True]


def test_bitmask_round_trip():
    g = torch.Generator().manual_seed(0)
    m = torch.rand(5, 13, generator=g) > 0.5
    p = pack_mask(m)
    assert p.dtype == torch.uint8 and p.numel() == -(-65 // 8)
    assert torch.equal(unpack_mask(p, (5, 13)), m)


def test_pattern_parsing_and_sparsity_conventions():
    assert parse_pattern("2:4") == NMPattern(2, 4) and NMPattern(2, 4).sparsity == 0.5
    assert Magnitude(pattern="2:4").removed == 0.5 and Magnitude().removed == 0.5
    assert Wanda(pattern="1:4").removed == 0.75
    assert Magnitude(pattern="2:4").pattern == NMPattern(2, 4) == Magnitude(pattern=NMPattern(2, 4)).pattern
    for bad in ("2-4", "4:2", "0:4", "a:b"):
        with pytest.raises(ValueError, match="N:M|0 < N < M"):
            Magnitude(pattern=bad)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, True, "0.5"])
def test_sparsity_outside_0_1_is_refused(bad):
    for cls in (Magnitude, Wanda, SparseGPT):
        with pytest.raises(ValueError, match=r"fraction of weights removed and must lie in \[0, 1\)"):
            cls(bad)


def test_pattern_and_sparsity_that_disagree_are_refused():
    with pytest.raises(ValueError, match="removes 0.5 of the weights but removed=0.6"):
        SparseGPT(0.6, pattern="2:4")
    with pytest.raises(ValueError, match="multiple of M=8"):
        SparseGPT(pattern="4:8", block_size=12)


def test_structured_config_validation_and_json_round_trip():
    with pytest.raises(ValueError, match="fraction of channels removed"):
        StructuredPrune(removed=1.0)
    with pytest.raises(ValueError, match="targets"):
        StructuredPrune(targets=("ffn",))
    with pytest.raises(ValueError, match="importance"):
        StructuredPrune(importance="fisher")
    for c in (SparseGPT(pattern="2:4"), Wanda(0.6), StructuredPrune(0.3, targets=("mlp", "heads"), importance="activation")):
        assert CompressionConfig.from_json(c.to_json()) == c


def test_one_config_style_removed_and_nm_pattern_values():
    """One word for the fraction removed (sparsity and low-rank configs alike), N:M as an NMPattern
    value that survives the JSON round trip as a value."""
    from qlite.classical import LowRank, NMPattern as Top

    assert Top is NMPattern
    assert Magnitude(0.3).removed == StructuredPrune(0.3).removed == LowRank(0.3).removed == 0.3
    for c in (Magnitude, Wanda, SparseGPT, StructuredPrune, LowRank):
        names = {f.name for f in __import__("dataclasses").fields(c)}
        assert "removed" in names and not names & {"sparsity", "ratio"}, c
    d = SparseGPT(pattern=NMPattern(4, 8)).to_dict()
    assert d["pattern"] == {"type": "NMPattern", "n": 4, "m": 8}
    back = CompressionConfig.from_dict(d)
    assert back.pattern == NMPattern(4, 8) and isinstance(back.pattern, NMPattern)
    with pytest.raises(TypeError, match=r"pattern must be an NMPattern such as NMPattern\(2, 4\)"):
        Wanda(pattern=(2, 4))
