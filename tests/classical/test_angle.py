"""AngleQuant on a stand-in module implementing the periodic-parameter protocol."""

import math

import pytest
import torch
from torch import nn

from qlite.classical import AngleQuant, compress
from qlite.classical.quant.angle import angle_codes, angle_values, circular_distance


class RotationStandIn(nn.Module):
    """A stand-in for a quantum layer: outputs depend on its angles only through cos/sin, so only
    their values modulo 2*pi matter. Implements ``periodic_parameters()``."""

    def __init__(self, n=6, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weights = nn.Parameter(torch.rand(2, n, generator=g) * 6 * math.pi - 2 * math.pi)  # beyond one turn
        self.head = nn.Linear(n, 3)

    def periodic_parameters(self):
        return {"weights": (self.weights, 2 * math.pi)}

    def forward(self, x):  # (B, n) -> (B, 3)
        return self.head(torch.cos(x + self.weights[0]) * torch.sin(self.weights[1]))


def test_codes_are_wrap_around_aware():
    P = 2 * math.pi
    theta = torch.tensor([0.0, P - 1e-4, -1e-4, P, 3 * P + 0.5, P / 2])
    codes = angle_codes(theta, P, bits=3)
    # Angles just below 2*pi (or below 0) are neighbours of 0: they map to level 0, not level 7.
    assert codes.tolist()[:4] == [0, 0, 0, 0]
    assert codes[4] == round(0.5 / P * 8) % 8 and codes[5] == 4
    assert angle_values(codes, P, 3).max() < P


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_circular_error_is_at_most_half_a_step(bits):
    P = 2 * math.pi
    theta = torch.linspace(-10, 10, 1001)
    back = angle_values(angle_codes(theta, P, bits), P, bits)
    assert circular_distance(back, theta, P).max() <= P / 2**bits / 2 + 1e-9


def test_angle_quant_replaces_angles_by_packed_codes():
    m = nn.Sequential(nn.Linear(6, 6), RotationStandIn())
    x = torch.randn(5, 6)
    res = compress(m, AngleQuant(bits=4))
    q = res.model[1]
    assert "weights" not in dict(q.named_parameters())
    sd = res.model.state_dict()
    assert sd["1.weights_codes.packed"].dtype == torch.uint8 and sd["1.weights_codes.packed"].numel() == 6  # 12 x 4 bits
    rec = res.report.layers[0]
    assert rec.name == "1.weights" and rec.bytes_before == 12 * 4
    assert rec.extra["max_circular_error"] <= math.pi / 16 + 1e-6
    # The module's own forward runs with the dequantized angles; outputs match a float model holding them.
    ref = RotationStandIn()
    ref.load_state_dict({"weights": q.weights_codes(), "head.weight": q.head.weight, "head.bias": q.head.bias})
    torch.testing.assert_close(res.model(x), ref(m[0](x)))
    # 8 bits keep the output close to the original.
    hi = compress(m, AngleQuant(bits=8)).model(x)
    assert (hi - m(x)).abs().max() < 0.05
    # The caller's module keeps its float parameter.
    assert isinstance(m[1].weights, nn.Parameter)


def test_angle_quant_needs_the_protocol():
    with pytest.raises(ValueError, match="no module declares periodic parameters"):
        compress(nn.Sequential(nn.Linear(3, 3)), AngleQuant(4))


def test_angle_quant_rejects_non_finite_angles():
    m = RotationStandIn()
    with torch.no_grad():
        m.weights[0, 0] = float("nan")
    with pytest.raises(ValueError, match="parameter 'weights' has non-finite values"):
        compress(m, AngleQuant(4))
