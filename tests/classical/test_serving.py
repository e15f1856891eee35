"""Export to serving formats (issue 14, item 4): compressed-tensors round trips, refusals."""

import json

import pytest
import torch
from torch import nn

from qlite.classical import AWQ, GPTQ, RTN, PerGroup, PerTensor, SmoothQuant, compress

pytest.importorskip("compressed_tensors")
from qlite.classical.serving import export_compressed_tensors, load_compressed_tensors  # noqa: E402


def _net():
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 32, bias=False))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net, [torch.randn(16, 256, generator=g) for _ in range(4)]


@pytest.mark.parametrize("recipe", [
    RTN(4, group_size=64, symmetric=False), RTN(4, group_size=32), RTN(8), RTN(3, group_size=32, symmetric=False),
    RTN(4, granularity=PerTensor()), GPTQ(4, group_size=32, static_groups=True), GPTQ(4, group_size=64, act_order=False),
])
def test_round_trip_through_the_library_is_exact(tmp_path, recipe):
    net, calib = _net()
    m = compress(net, recipe, calib).model  # kernel layouts: the codes are read back from them
    export_compressed_tensors(m, tmp_path / "ct")
    cfg = json.loads((tmp_path / "ct" / "config.json").read_text())["quantization_config"]
    assert cfg["format"] == "pack-quantized" and cfg["quant_method"] == "compressed-tensors"
    sd = load_compressed_tensors(tmp_path / "ct")
    for i in (0, 2):
        assert torch.equal(sd[f"{i}.weight"].float(), m[i].dequantized_weight())
    plain = nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 32, bias=False))
    plain.load_state_dict(sd)
    sim = compress(net, recipe, calib, kernels=False).model
    x = calib[0]
    with torch.no_grad():
        torch.testing.assert_close(plain(x), sim(x), rtol=1e-5, atol=1e-6)


def test_transformers_reads_the_checkpoint(tmp_path, tiny_llm):
    transformers = pytest.importorskip("transformers")
    model, windows = tiny_llm
    m = compress(model, RTN(4, group_size=16), kernels=False).model
    export_compressed_tensors(m, tmp_path / "ct")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ct").eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(windows[0]).logits, m(windows[0]).logits, rtol=1e-5, atol=1e-5)


def test_formats_it_cannot_hold_are_refused_with_the_fix(tmp_path):
    net, calib = _net()
    cases = [
        (AWQ(4, group_size=64), "input scale"),
        (SmoothQuant(), "activations"),
        (RTN(8, act_bits=8), "activations"),
        (GPTQ(4, group_size=32), "static_groups=True"),  # act_order: non-contiguous groups
        (RTN(4, granularity=PerGroup(48, ragged=True)), "divisor of 256 such as 128"),
    ]
    for recipe, why in cases:
        m = compress(net, recipe, calib).model
        with pytest.raises(ValueError, match=why):
            export_compressed_tensors(m, tmp_path / "bad")
        assert not (tmp_path / "bad").exists()  # refused before anything is written
    with pytest.raises(ValueError, match="no quantized layer"):
        export_compressed_tensors(net, tmp_path / "bad")


def test_an_existing_directory_is_kept_unless_overwrite(tmp_path):
    net, _ = _net()
    m = compress(net, RTN(8)).model
    out = tmp_path / "ct"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_compressed_tensors(m, out)
    assert (out / "mine.txt").read_text() == "keep"
    export_compressed_tensors(m, out, overwrite=True)
    assert not (out / "mine.txt").exists() and (out / "model.safetensors").is_file()
