"""Configs: validation on construction, JSON round trip, value-type granularities."""

import dataclasses

import pytest

from qlite.classical import (
    AWQ, GPTQ, RTN, AngleQuant, CompressionConfig, LLMInt8, PerChannel, PerGroup, PerTensor, SmoothQuant,
    recipe_from_json, recipe_to_json,
)

ALL = [
    RTN(8), RTN(4, group_size=128, symmetric=False), RTN(3, granularity=PerTensor()), RTN(8, act_bits=8),
    RTN(4, granularity=PerGroup(128, ragged=True)), LLMInt8(), LLMInt8(threshold=float("inf")), LLMInt8(keep_outlier_weights=True), SmoothQuant(alpha=0.8),
    GPTQ(4), GPTQ(3, group_size=None, act_order=False, static_groups=True), AWQ(4, search_rows=0), AngleQuant(5),
    RTN(4, skip=("head", "*.fc")),
]


@pytest.mark.parametrize("cfg", ALL, ids=lambda c: c.name)
def test_json_round_trip(cfg):
    back = CompressionConfig.from_json(cfg.to_json())
    assert back == cfg and type(back) is type(cfg)


def test_recipe_round_trip():
    assert recipe_from_json(recipe_to_json(ALL)) == ALL


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RTN(4).bits = 3


def test_group_size_and_granularity_agree():
    assert RTN(4, group_size=64).granularity == PerGroup(64)
    assert RTN(4).granularity == PerChannel()
    assert GPTQ(4, granularity=PerGroup(32)).group_size == 32
    with pytest.raises(ValueError, match="contradicts"):
        RTN(4, group_size=64, granularity=PerGroup(128))
    with pytest.raises(TypeError, match="granularity must be"):
        RTN(4, granularity="per-group")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: RTN(1), r"RTN: bits must be an integer in \[2, 8\], got 1"),
        (lambda: RTN(9), r"RTN: bits must be an integer in \[2, 8\], got 9"),
        (lambda: RTN(4.0), "got 4.0"),
        (lambda: RTN(8, act_bits=16), "act_bits"),
        (lambda: GPTQ(bits=1), r"GPTQ: bits must be an integer in \[2, 8\]"),
        (lambda: AWQ(bits=9), r"AWQ: bits must be an integer in \[2, 8\]"),
        (lambda: SmoothQuant(bits=3), r"SmoothQuant: bits must be an integer in \[4, 8\]"),
        (lambda: AngleQuant(0), r"AngleQuant: bits must be an integer in \[1, 8\]"),
        (lambda: RTN(4, group_size=1), "group_size must be an integer >= 2"),
        (lambda: PerGroup(0), "PerGroup size must be an integer >= 2"),
        (lambda: SmoothQuant(alpha=1.5), r"alpha must be in \[0, 1\], got 1.5"),
        (lambda: LLMInt8(threshold=-1), "threshold must be a positive number"),
        (lambda: GPTQ(damp=0), r"damp must be in \(0, 1\)"),
        (lambda: GPTQ(granularity=PerTensor(), group_size=None), "per-tensor"),
        (lambda: AWQ(n_grid=0), "n_grid"),
        (lambda: AWQ(granularity=PerTensor(), group_size=None), "per-tensor"),
    ],
)
def test_bad_config_values(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_skip_must_be_a_tuple_of_patterns():
    with pytest.raises(TypeError, match="skip must be a tuple"):
        RTN(4, skip="lm_head")


def test_unknown_type_in_json():
    with pytest.raises(ValueError, match="unknown config type 'Nope'"):
        CompressionConfig.from_dict({"type": "Nope"})
    with pytest.raises(ValueError, match="RTN has no field 'foo'"):
        CompressionConfig.from_dict({"type": "RTN", "foo": 1})


def test_names_are_readable():
    assert RTN(4, group_size=128).name == "RTN(bits=4, group_size=128)"
    assert GPTQ(3).name == "GPTQ(bits=3)"


def test_group_size_is_a_strict_alias_that_cannot_silently_lose():
    """Before: GPTQ(group_size=128, granularity=PerGroup(64)) quietly used 64 (128 was the default)."""
    with pytest.raises(ValueError, match=r"group_size=128 contradicts granularity=PerGroup\(size=64"):
        GPTQ(4, group_size=128, granularity=PerGroup(64))
    with pytest.raises(ValueError, match="contradicts"):
        AWQ(4, group_size=128, granularity=PerChannel())
    with pytest.raises(ValueError, match="contradicts"):
        RTN(4, group_size=None, granularity=PerGroup(64))
    assert GPTQ(4, group_size=64, granularity=PerGroup(64)).granularity == PerGroup(64)
    assert GPTQ(4).granularity == PerGroup(128) and GPTQ(4, granularity=PerChannel()).group_size is None
    assert RTN(4, group_size=None, granularity=PerTensor()).granularity == PerTensor()
    # JSON holds the granularity only; old logs with both fields (agreeing) still read back
    d = GPTQ(4, group_size=64).to_dict()
    assert "group_size" not in d and d["granularity"] == {"type": "PerGroup", "size": 64}
    assert CompressionConfig.from_dict({**d, "group_size": 64}) == GPTQ(4, group_size=64)
