"""Classical INR baselines: parameter counts, initialisation, Fourier features, budgets and specs."""

import math

import pytest
import torch

from qlite.models import (
    MLP,
    MODEL_KINDS,
    SIREN,
    FourierFeatures,
    ModelSpec,
    RFFNet,
    build_model,
    count_parameters,
    widest_within_budget,
)


@pytest.mark.parametrize("h", [1, 7, 15, 16])
def test_parameter_counts_follow_the_closed_forms(h):
    # in=2, out=1, two hidden layers; BN adds 2 per channel.
    assert count_parameters(MLP(2, 1, h)) == 2 * h * h + 12 * h + 1
    assert count_parameters(MLP(2, 1, h, batch_norm=False)) == 2 * h * h + 6 * h + 1
    assert count_parameters(SIREN(2, 1, h)) == 2 * h * h + 6 * h + 1
    assert count_parameters(SIREN(1, 1, h)) == 2 * h * h + 5 * h + 1
    if h % 2 == 0:
        assert count_parameters(RFFNet(2, 1, h)) == 2 * h * h + 7 * h + 1


def test_mlp_layer_is_linear_batchnorm_scale_activation():
    torch.manual_seed(0)
    m = MLP(2, 1, 5, hidden_layers=0, activation="tanh", omega_0=2.0).eval()
    layer = m.net[0]
    x = torch.randn(10, 2)
    expect = torch.tanh(2.0 * layer.norm(layer.linear(x)))
    assert torch.allclose(layer(x), expect)
    assert isinstance(layer.norm, torch.nn.BatchNorm1d)
    assert isinstance(MLP(2, 1, 5, batch_norm=False).net[0].norm, torch.nn.Identity)


def test_siren_initialisation_bounds_and_unit_preactivations():
    omega = 30.0
    m = SIREN(2, 1, 256, 2, omega, omega, generator=torch.Generator().manual_seed(0))
    first, hidden, final = m.net[0].linear, m.net[1].linear, m.net[-1]
    assert first.weight.abs().max() <= 1 / 2
    bound = math.sqrt(6 / 256) / omega
    assert hidden.weight.abs().max() <= bound and final.weight.abs().max() <= bound
    assert hidden.weight.abs().max() > 0.95 * bound  # uniform over the whole interval
    # Sitzmann et al. 2020, Thm 1.8: with inputs ~ arcsine(-1, 1) (variance 1/2), omega * W x has
    # variance omega^2 * n * (2 / (n omega^2)) * 1/2 = 1.
    x = torch.sin(torch.rand(20000, 256) * 2 * math.pi)
    pre = omega * (x @ hidden.weight.T)
    assert pre.std().item() == pytest.approx(1.0, rel=0.05)


def test_generator_makes_initialisation_reproducible():
    a = SIREN(2, 1, 8, generator=torch.Generator().manual_seed(3))
    b = SIREN(2, 1, 8, generator=torch.Generator().manual_seed(3))
    c = SIREN(2, 1, 8, generator=torch.Generator().manual_seed(4))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    ma, mb = MLP(2, 1, 4, generator=torch.Generator().manual_seed(1)), MLP(2, 1, 4, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(p, q) for p, q in zip(ma.parameters(), mb.parameters()))


def test_fourier_features_are_fixed_cos_sin_of_gaussian_projections():
    ff = FourierFeatures(2, 5, scale=3.0, generator=torch.Generator().manual_seed(0))
    x = torch.rand(7, 2)
    b = ff.frequencies
    expect = torch.cat([torch.cos(2 * math.pi * x @ b.T), torch.sin(2 * math.pi * x @ b.T)], 1)
    assert torch.allclose(ff(x), expect, atol=1e-6)
    assert "frequencies" in ff.state_dict() and count_parameters(ff) == 0
    big = FourierFeatures(1, 20000, scale=3.0, generator=torch.Generator().manual_seed(0))
    assert big.frequencies.std().item() == pytest.approx(3.0, rel=0.03)


@pytest.mark.parametrize("kind", ["siren", "relu", "tanh", "rff"])
@pytest.mark.parametrize("budget,in_features", [(657, 2), (649, 1), (1000, 1), (100, 2)])
def test_widest_within_budget_matches_brute_force(kind, budget, in_features):
    build, _, _ = MODEL_KINDS[kind]
    lo = 2 if kind == "rff" else 1
    counts = {w: count_parameters(build(in_features, 1, w, 2)) for w in range(lo, 60)}
    expect = max(w for w, c in counts.items() if c <= budget)
    assert widest_within_budget(lambda w: build(in_features, 1, w, 2), budget, min_width=lo) == expect
    spec = ModelSpec(kind, budget=budget)
    assert count_parameters(spec.build(in_features, 1)) <= budget


def test_budget_sizes_match_the_paper_setting():
    assert ModelSpec("siren", budget=657).width(2, 1) == 16
    assert ModelSpec("relu", budget=657).width(2, 1) == 15
    assert ModelSpec("rff", budget=657).width(2, 1) == 16
    assert ModelSpec("siren", budget=649).width(1, 1) == 16
    with pytest.raises(ValueError, match="above the budget"):
        widest_within_budget(lambda w: SIREN(2, 1, w), 5)


def test_spec_build_is_seeded_and_leaves_the_callers_rng_alone():
    spec = ModelSpec("qiren", hidden_features=3)
    torch.manual_seed(123)
    a = spec.build(2, 1, seed=7)
    after = torch.rand(3)
    torch.manual_seed(123)
    b = spec.build(2, 1, seed=7)
    assert torch.equal(torch.rand(3), after)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = spec.build(2, 1, seed=8)
    assert not torch.equal(a.net[0].quantum.weights, c.net[0].quantum.weights)
    assert count_parameters(ModelSpec("qiren").build(2, 1)) == 657


def test_spec_round_trip_and_errors():
    spec = ModelSpec("siren", None, 3, {"omega_0": 10.0}, budget=500)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert spec.label() == "siren(omega_0=10.0)"
    model = build_model(spec, 2, 1, seed=0)
    assert model.net[0].omega_0 == 10.0 and len(model.net) == 5
    with pytest.raises(ValueError, match="unknown model kind"):
        ModelSpec("transformer")
    with pytest.raises(ValueError, match="do not apply"):
        ModelSpec("relu", options={"omega": 3})
    with pytest.raises(ValueError, match="classical baselines"):
        ModelSpec("qiren", budget=100)
    with pytest.raises(ValueError, match="hidden_features"):
        SIREN(2, 1, 0)
    with pytest.raises(ValueError, match="activation"):
        MLP(2, 1, 4, activation="gelu")


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_every_kind_maps_coordinates_to_values_with_finite_gradients(kind):
    model = build_model(kind, 2, 3, hidden_features=4, seed=0)
    x = torch.rand(16, 2) * 2 - 1
    y = model(x)
    assert y.shape == (16, 3)
    y.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
