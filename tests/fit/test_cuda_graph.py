"""qlite.fit's CUDA-graph step (FitConfig.cuda_graph): validation, the CPU behaviour, what blocks a
capture, the checkpoint form of a capturable Adam, and (marked gpu) graph against eager on CUDA."""

import json
import logging
import math

import pytest
import torch
from torch import nn

from qlite import data
from qlite.layers import QuantumLayer
from qlite.models import MLP, ModelSpec
from qlite.training import FitConfig, fit, fit_many
from qlite.training.cuda_graph import WARMUP_STEPS, checkpoint_state, graph_blockers, make_capturable

CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def wave():
    return data.function(lambda x: torch.sin(3 * math.pi * x[:, 0]) * 0.8, 64)


def _mlp(seed=0, dtype=torch.float32):
    return MLP(1, 1, 16, generator=torch.Generator().manual_seed(seed)).to(dtype)


# -- validation and the CPU -------------------------------------------------------------------
@pytest.mark.parametrize("given, stored", [("auto", "auto"), (True, True), (False, False), ("on", True), ("off", False)])
def test_cuda_graph_values(given, stored):
    cfg = FitConfig(cuda_graph=given)
    assert cfg.cuda_graph is stored or cfg.cuda_graph == stored
    assert FitConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).cuda_graph == stored
    assert FitConfig().cuda_graph == "auto"


@pytest.mark.parametrize("bad", ["yes", "ON", 1, 0, None, 2.0])
def test_bad_cuda_graph_values_name_the_value_and_the_choices(bad):
    with pytest.raises(ValueError, match=rf"cuda_graph must be 'auto' .* True / 'on' .* False / 'off' .*got {bad!r}"):
        FitConfig(cuda_graph=bad)


def test_auto_on_the_cpu_trains_eagerly_and_equals_off(wave):
    auto = fit(_mlp(), wave, epochs=6, device="cpu", progress=False)
    off = fit(_mlp(), wave, epochs=6, device="cpu", progress=False, cuda_graph=False)
    assert auto.step_mode.startswith("eager (the model trains on cpu")
    assert off.step_mode == "eager (cuda_graph=False)"
    assert auto.history["loss"] == off.history["loss"] and auto.metrics == off.metrics
    assert auto.to_dict()["step_mode"] == auto.step_mode


def test_on_refuses_on_the_cpu_with_the_reason(wave):
    model = _mlp()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"cuda_graph=True, but .*trains on cpu.*cuda_graph='auto'"):
        fit(model, wave, epochs=3, device="cpu", progress=False, cuda_graph="on")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # refused before any step


def test_on_is_refused_where_nothing_graphs(wave):
    with pytest.raises(ValueError, match=r"cuda_graph=True applies to qlite.fit; fit_many"):
        fit_many([_mlp(0), _mlp(1)], wave, epochs=1, progress=False, cuda_graph=True)
    text = data.text("mem", seqlen=8, text_override="to be or not to be, that is the question. " * 20)
    with pytest.raises(ValueError, match=r"cuda_graph=True applies to signal fits; text runs train eagerly"):
        fit(nn.Linear(1, 1), text, batch_size=2, cuda_graph=True, progress=False)


# -- what blocks a capture (pure checks, no GPU needed) ------------------------------------------
def test_blockers_of_a_plain_cuda_fit_are_none():
    assert graph_blockers(nn.Tanh(), CUDA, None, 64, None) == []
    assert graph_blockers(nn.Tanh(), CUDA, None, 64, 16) == []
    assert graph_blockers(_mlp(), CUDA, None, 64, None) == ["some trainable parameters are not on the training device"]
    assert graph_blockers(nn.Tanh(), torch.device("cpu"), None, 64, None) == [
        "the model trains on cpu (CUDA graphs need a CUDA device)"]


def test_ragged_mini_batches_block_and_the_message_suggests_a_size():
    model = _mlp()
    reasons = graph_blockers(model, torch.device("cpu"), None, 1000, 300)
    ragged = [r for r in reasons if "batches" in r]
    assert len(ragged) == 1
    assert "1000 points split into 3 batches of 333 or 334 points" in ragged[0] and "(e.g. 250)" in ragged[0]
    assert not [r for r in graph_blockers(model, torch.device("cpu"), None, 1024, 256) if "batches" in r]
    assert not [r for r in graph_blockers(model, torch.device("cpu"), None, 1000, None) if "batches" in r]


def test_host_reads_and_torchrun_block():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm1d(2, momentum=None)
            self.q = QuantumLayer(2, check_finite=True)

    reasons = " | ".join(graph_blockers(Net(), torch.device("cpu"), object(), 8, None))
    assert "BatchNorm norm has momentum=None" in reasons
    assert "QuantumLayer q has check_finite=True" in reasons
    assert "torchrun" in reasons


def test_capturable_adam_checkpoints_in_the_eager_form():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(8, 1)).sum().backward()
    opt.step()
    make_capturable(opt, torch.device("cpu"))
    assert all(g["capturable"] and isinstance(g["lr"], torch.Tensor) for g in opt.param_groups)
    state = checkpoint_state(opt)
    assert all(g["capturable"] is False and g["lr"] == pytest.approx(0.01) for g in state["param_groups"])
    json.dumps(state["param_groups"])  # the checkpoint index is JSON
    fresh = torch.optim.Adam(_mlp().parameters(), lr=0.5)
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == pytest.approx(0.01) and not fresh.param_groups[0]["capturable"]


# -- on CUDA ------------------------------------------------------------------------------------
def _need_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")


def _close(a, b, rel):
    worst = max(abs(x / y - 1) for x, y in zip(a, b))
    assert len(a) == len(b) and worst <= rel, f"largest relative loss difference {worst:.3g} > {rel}"


@pytest.mark.gpu
def test_graph_matches_eager_in_float64(wave):
    """The same steps as eager, on a float64 MLP. The capturable Adam computes its step size from a
    float32 step count on the device (eager: in Python floats), a ~1e-7 relative difference per
    step; on a CPU a 1e-7 change of lr moves these 20-epoch losses by at most 3e-6 relative, while
    a wrong step (stale gradients, a skipped or doubled update) moves them by percents."""
    _need_cuda()
    for kw in ({}, {"schedule": "cosine", "min_lr": 1e-3}, {"batch_size": 16}):
        g = fit(_mlp(dtype=torch.float64), wave, epochs=20, device="cuda", progress=False, cuda_graph=True, **kw)
        e = fit(_mlp(dtype=torch.float64), wave, epochs=20, device="cuda", progress=False, cuda_graph=False, **kw)
        assert g.step_mode == "cuda-graph", (kw, g.step_mode)
        assert g.history["lr"] == e.history["lr"] and g.history["epoch"] == e.history["epoch"]
        assert g.history["loss"][0] == pytest.approx(e.history["loss"][0], rel=1e-12)  # before any step
        _close(g.history["loss"], e.history["loss"], 1e-4)
        assert g.metrics["mse"] == pytest.approx(e.metrics["mse"], rel=1e-4)


@pytest.mark.gpu
def test_qiren_graph_matches_eager_over_20_epochs():
    """The default CUDA path (fused kernels) with and without the graph. Adam amplifies rounding:
    on a CPU a 1e-7 relative change of lr moves these 20-epoch losses by up to 9e-5 relative."""
    _need_cuda()
    signal = data.image("camera", size=16)
    spec = ModelSpec("qiren")  # 8 qubits
    for kw in ({}, {"schedule": "cosine", "min_lr": 1e-3}):
        g = fit(spec.build(2, 1, seed=0), signal, epochs=20, device="cuda", progress=False, **kw)  # default: auto
        e = fit(spec.build(2, 1, seed=0), signal, epochs=20, device="cuda", progress=False, cuda_graph=False, **kw)
        assert g.step_mode == "cuda-graph", (kw, g.step_mode)
        assert g.history["lr"] == e.history["lr"]
        assert g.history["loss"][0] == pytest.approx(e.history["loss"][0], rel=1e-6)  # before any step
        _close(g.history["loss"], e.history["loss"], 1e-2)
        assert g.metrics["psnr"] == pytest.approx(e.metrics["psnr"], abs=0.1)


@pytest.mark.gpu
def test_ragged_batches_fall_back_and_on_refuses(wave, caplog):
    _need_cuda()
    with caplog.at_level(logging.INFO, logger="qlite.training.loop"):
        r = fit(_mlp(), wave, epochs=3, device="cuda", progress=False, batch_size=20)  # 64 points: 21, 21, 22
    assert r.step_mode.startswith("eager (the 64 points split into 3 batches")
    assert any("training eagerly" in m for m in caplog.messages)
    with pytest.raises(ValueError, match=r"cuda_graph=True, but .*3 batches of 21 or 22 points"):
        fit(_mlp(), wave, epochs=3, device="cuda", progress=False, batch_size=20, cuda_graph=True)


class _HostRead(nn.Module):
    """A model whose forward reads a value on the host (cannot be captured)."""

    def __init__(self):
        super().__init__()
        self.net = _mlp(dtype=torch.float64)

    def forward(self, x):
        scale = 1.0 if float(x.abs().max()) >= 0 else 0.0  # a host synchronisation every call
        return self.net(x) * scale


@pytest.mark.gpu
def test_a_failed_capture_falls_back_with_the_reason(wave, caplog):
    _need_cuda()
    with caplog.at_level(logging.WARNING, logger="qlite.training.cuda_graph"):
        r = fit(_HostRead(), wave, epochs=WARMUP_STEPS + 4, device="cuda", progress=False)
    assert r.step_mode.startswith("eager (the step could not be captured as a CUDA graph"), r.step_mode
    assert any("training continues eagerly" in m for m in caplog.messages)
    e = fit(_HostRead(), wave, epochs=WARMUP_STEPS + 4, device="cuda", progress=False, cuda_graph=False)
    _close(r.history["loss"], e.history["loss"], 1e-4)  # the same steps (the capturable Adam's rounding aside)
    with pytest.raises(ValueError, match=r"cuda_graph=True: the step could not be captured"):
        fit(_HostRead(), wave, epochs=WARMUP_STEPS + 4, device="cuda", progress=False, cuda_graph=True)
    after = fit(_mlp(), wave, epochs=6, device="cuda", progress=False)  # CUDA is still usable, graphs too
    assert after.step_mode == "cuda-graph"


@pytest.mark.gpu
def test_a_graphed_checkpoint_resumes_graphed_and_on_the_cpu(wave, tmp_path):
    _need_cuda()
    whole = fit(_mlp(dtype=torch.float64), wave, epochs=16, device="cuda", progress=False)
    part = fit(_mlp(dtype=torch.float64), wave, epochs=8, device="cuda", progress=False, checkpoint_dir=tmp_path / "a")
    assert part.step_mode == "cuda-graph"
    rest = fit(_mlp(dtype=torch.float64), wave, epochs=16, device="cuda", progress=False, checkpoint_dir=tmp_path / "a",
               resume=True)
    assert rest.step_mode == "cuda-graph"
    # both runs use the capturable Adam throughout (warm-up steps eager, the rest replayed), so
    # replayed and eager steps agree to float64 rounding wherever the warm-ups fall
    _close(rest.history["loss"], whole.history["loss"], 1e-9)
    fit(_mlp(dtype=torch.float64), wave, epochs=8, device="cuda", progress=False, checkpoint_dir=tmp_path / "b")
    cpu = fit(_mlp(dtype=torch.float64), wave, epochs=16, device="cpu", progress=False, checkpoint_dir=tmp_path / "b",
              resume=True)
    _close(cpu.history["loss"], whole.history["loss"], 1e-4)  # an eager Adam on the CPU from the graphed state
