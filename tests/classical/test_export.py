"""Real-kernel export and the reference libraries, where they run on this machine."""

import pytest
import torch
from torch import nn

from qlite.classical import RTN, LLMInt8, SmoothQuant, compress
from qlite.classical.evaluation import kernel_label
from qlite.classical.export import probe_backends


def snr_db(ref, test):
    ref, test = ref.detach(), test.detach()
    return float(10 * torch.log10(ref.pow(2).sum() / (ref - test).pow(2).sum()))


@pytest.fixture(scope="module")
def backends():
    pytest.importorskip("torchao")
    pytest.importorskip("bitsandbytes")
    return probe_backends("cpu")


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 64))


def test_probe_reports_every_path(backends):
    assert set(backends) == {"torchao:int8_weight_only", "torchao:int8_dynamic", "torchao:int4_weight_only",
                             "bitsandbytes:int8", "bitsandbytes:nf4", "bitsandbytes:fp4"}
    assert all(v == "ok" or ":" in v for v in backends.values())  # ok, or the library's own reason


def test_torchao_int8_export_matches_our_w8(backends):
    if backends["torchao:int8_weight_only"] != "ok":
        pytest.skip(f"torchao int8 weight-only does not run here: {backends['torchao:int8_weight_only']}")
    from qlite.classical.export import export_torchao, torchao_configs

    net = _net()
    x = torch.randn(32, 128)
    ours = compress(net, RTN(8)).model
    real = export_torchao(ours, torchao_configs()["int8_weight_only"])
    assert kernel_label(real) == "real-kernel"
    from qlite.classical.transform import state_bytes

    # torchao's int8 tensors are counted by what they hold: about a quarter of float32.
    assert state_bytes(real) < 0.3 * state_bytes(net)
    # torchao re-derives its own int8 scales from our int8 weights (its rounding convention differs
    # slightly: about 48 dB apart here), far closer than a broken export (wrong layout: ~0 dB).
    with torch.no_grad():
        assert snr_db(ours(x), real(x)) > 40


def test_torchao_dynamic_export_keeps_smoothing(backends):
    if backends["torchao:int8_dynamic"] != "ok":
        pytest.skip(f"torchao int8 dynamic does not run here: {backends['torchao:int8_dynamic']}")
    from qlite.classical.export import export_torchao, torchao_configs

    net = _net()
    x = torch.randn(64, 128)
    x[:, 5] *= 40
    ours = compress(net, SmoothQuant(0.5), calib=[x]).model
    real = export_torchao(ours, torchao_configs()["int8_dynamic"])
    with torch.no_grad():
        y = net(x)
        assert snr_db(y, real(x)) > 30 and abs(snr_db(y, real(x)) - snr_db(y, ours(x))) < 6


def test_llm_int8_agrees_with_bitsandbytes(backends):
    if backends["bitsandbytes:int8"] != "ok":
        pytest.skip(f"bitsandbytes int8 does not run here: {backends['bitsandbytes:int8']}")
    from qlite.classical.crosscheck import bnb_llm_int8

    net = _net()
    x = torch.randn(32, 128)
    x[:, 3] += 12.0  # an outlier column
    with torch.no_grad():
        ours = compress(net, LLMInt8(6.0)).model(x)
        theirs = bnb_llm_int8(net)(x)
        ref = net(x)
    # Same int8 weight grid and outlier threshold. bitsandbytes' CPU path (0.50) behaves close to
    # weight-only int8 (about 54 dB from our RTN W8, 46 dB from our LLM.int8()), so we check agreement
    # at the 8-bit noise level, which a wrong layout or threshold would miss by tens of dB.
    assert snr_db(theirs, ours) > 38 and snr_db(ref, theirs) > 35


def test_bitsandbytes_export_of_a_model_with_buffers_only(backends):
    """A model of QuantizedLinear layers keeps everything in buffers: the export still finds its device."""
    if backends["bitsandbytes:int8"] != "ok":
        pytest.skip(f"bitsandbytes int8 does not run here: {backends['bitsandbytes:int8']}")
    from qlite.classical.export import export_bitsandbytes

    q = compress(_net(), RTN(8)).model
    assert not list(q.parameters())
    out = export_bitsandbytes(q, "int8")
    x = torch.randn(4, 128)
    with torch.no_grad():
        assert snr_db(q(x), out(x)) > 30


def test_export_torchao_takes_a_config_not_a_scheme_name():
    pytest.importorskip("torchao")
    from torchao.quantization import Int8WeightOnlyConfig

    from qlite.classical.export import export_torchao, torchao_configs

    with pytest.raises(TypeError, match=r"takes a torchao config .* use torchao_configs\(\)\['int8_weight_only'\]"):
        export_torchao(_net(), "int8_weight_only")
    assert isinstance(torchao_configs()["int8_weight_only"], Int8WeightOnlyConfig)
    assert torchao_configs(group_size=32)["int4_weight_only"].group_size == 32
