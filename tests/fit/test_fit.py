"""qlite.fit: training, results, schedules, mini-batches, prediction and bad input."""

import math
import subprocess
import sys

import pytest
import torch

import qlite
from qlite import data
from qlite.training import FitConfig, fit, predict
from qlite.models import MLP, SIREN, ModelSpec


@pytest.fixture(scope="module")
def wave():
    return data.function(lambda x: torch.sin(3 * math.pi * x[:, 0]) * 0.8, 128)


def test_fit_learns_and_reports(wave):
    model = SIREN(1, 1, 16, first_omega_0=10, hidden_omega_0=10, generator=torch.Generator().manual_seed(0))
    result = fit(model, wave, epochs=200, lr=1e-3)
    assert result.model is model and result.params == sum(p.numel() for p in model.parameters())
    assert result.history["epoch"] == list(range(1, 201))
    assert result.history["loss"][-1] < result.history["loss"][0] / 100
    assert result.metrics["mse"] < 1e-3 and result.metrics["ssim"] is None
    assert result.metrics["psnr"] == pytest.approx(10 * math.log10(wave.data_range**2 / result.metrics["mse"]))
    assert result.device == "cpu" and result.world_size == 1 and result.seconds > 0
    assert result.seconds_per_epoch > 0
    d = result.to_dict()
    assert d["metrics"] == result.metrics and d["config"]["epochs"] == 200


def test_qiren_fits_an_image_and_the_loss_goes_down():
    signal = data.image("camera", size=12)
    model = ModelSpec("qiren", hidden_features=4).build(2, 1, seed=0)
    result = fit(model, signal, epochs=25, lr=0.03)
    assert result.history["loss"][-1] < 0.5 * result.history["loss"][0]
    assert set(result.metrics) == {"mse", "psnr", "ssim"} and result.metrics["ssim"] is not None
    # metrics use the model as fitted: close to the last training loss (one step later)
    assert result.metrics["mse"] == pytest.approx(result.history["loss"][-1], rel=0.3)


def test_cosine_schedule_and_mini_batches(wave):
    cfg = FitConfig(epochs=10, lr=0.01, schedule="cosine", min_lr=0.001, batch_size=40)
    model = MLP(1, 1, 8)
    sizes = []
    model.register_forward_hook(lambda m, args, out: sizes.append(args[0].shape[0]) if m.training else None)
    result = fit(model, wave, cfg)
    lrs = result.history["lr"]
    assert lrs[0] == pytest.approx(0.01) and lrs[-1] == pytest.approx(0.001)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert cfg.lr_at(5) == pytest.approx(0.001 + 0.009 * 0.5 * (1 + math.cos(math.pi * 5 / 9)))
    # 128 points in batches of about 40: 3 batches of 42-43 points per epoch, no tiny tail batch
    assert len(sizes) == 30 and set(sizes) <= {42, 43} and sum(sizes[:3]) == 128


def test_predict_restores_mode_and_accepts_signals(wave):
    model = MLP(1, 1, 8).train()
    a = predict(model, wave)
    assert model.training
    assert torch.allclose(a, predict(model, wave.coords, batch_size=7))
    assert a.shape == (128, 1)
    with pytest.raises(ValueError, match="no coordinates"):
        predict(model, torch.zeros(0, 1))


def test_zero_epochs_only_evaluates(wave):
    model = MLP(1, 1, 4)
    before = [p.clone() for p in model.parameters()]
    result = fit(model, wave, epochs=0)
    assert result.history["loss"] == [] and result.metrics["mse"] > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("kwargs,match", [
    ({"lr": 0}, "lr must be a positive"),
    ({"lr": -0.1}, "lr must be a positive"),
    ({"lr": math.nan}, "lr must be a positive"),
    ({"epochs": -1}, "epochs must be a non-negative"),
    ({"batch_size": 1}, "batch_size"),
    ({"schedule": "step"}, "schedule"),
    ({"min_lr": 1.0}, "min_lr"),
])
def test_bad_options_raise_value_errors(wave, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(MLP(1, 1, 4), wave, **kwargs)


def test_bad_types_and_shapes(wave):
    with pytest.raises(TypeError, match="unknown options"):
        fit(MLP(1, 1, 4), wave, learning_rate=0.1)
    with pytest.raises(TypeError, match="Signal"):
        fit(MLP(1, 1, 4), "camera")
    with pytest.raises(TypeError, match="nn.Module"):
        fit(lambda x: x, wave)
    with pytest.raises(ValueError, match="out_features=1"):
        fit(MLP(1, 3, 4), wave, epochs=1)
    if not torch.cuda.is_available():  # on a CUDA machine the device exists: the checks below still run
        with pytest.raises(ValueError, match="CUDA is not available"):
            fit(MLP(1, 1, 4), wave, device="cuda")
    with pytest.raises(ValueError, match="non-finite"):
        fit(MLP(1, 1, 4), (torch.zeros(3, 1), torch.tensor([0.0, math.inf, 1.0])))
    with pytest.raises(ValueError, match="eval_data has 2 coordinates"):
        fit(MLP(1, 1, 4), wave, eval_data=(torch.zeros(4, 2), torch.zeros(4, 1)), epochs=1)


def test_divergence_is_reported(wave):
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(MLP(1, 1, 8, batch_norm=False), wave, epochs=5, lr=1e30)


def test_a_growing_loss_stops_the_run_not_only_nan(wave):
    # lr 1e6 on a Tanh MLP: finite but huge losses (mse ~1e11 in the trial), which used to "succeed"
    with pytest.raises(FloatingPointError, match=r"training diverged: .* above 100x the first epoch's"):
        fit(MLP(1, 1, 8, activation="tanh"), wave, epochs=40, lr=1e6)
    with pytest.raises(FloatingPointError, match="for 2 epochs"):  # a short run: every epoch after the first
        fit(MLP(1, 1, 8, activation="tanh"), wave, epochs=3, lr=1e6)
    off = fit(MLP(1, 1, 8, activation="tanh"), wave, epochs=3, lr=1e6, divergence_factor=None)
    assert off.history["loss"][-1] > 100 * off.history["loss"][0]  # the check was what stopped it
    ok = fit(MLP(1, 1, 8, activation="tanh"), wave, epochs=40, lr=0.01)
    assert ok.history["loss"][-1] < ok.history["loss"][0]  # an ordinary run is untouched


def test_fit_changes_the_allocator_only_when_asked(wave, monkeypatch):
    import qlite.training.loop as loop

    calls = []
    monkeypatch.setattr(loop, "tune_cpu_allocator", lambda: calls.append(1) or True)
    fit(MLP(1, 1, 4), wave, epochs=1, device="cpu")
    assert calls == []
    fit(MLP(1, 1, 4), wave, epochs=1, device="cpu", tune_allocator=True)
    assert calls == [1]


def test_an_unwritable_checkpoint_dir_fails_before_training(tmp_path, wave, monkeypatch):
    import qlite.training.loop as loop

    (tmp_path / "file").write_text("not a directory")
    trained = []
    monkeypatch.setattr(loop, "_train", lambda *a, **k: trained.append(1))
    with pytest.raises(ValueError, match="cannot write checkpoints to"):
        fit(MLP(1, 1, 4), wave, epochs=1, checkpoint_dir=tmp_path / "file" / "run")
    assert trained == []


def test_qlite_fit_and_compare_are_plain_functions_after_submodule_imports():
    # no module-class swapping: importing the implementation packages leaves the functions in place
    code = ("import types, qlite, torch, qlite.training.metrics, qlite.comparison; from qlite.models import MLP; "
            "from qlite.data import function; s = function(lambda x: x[:, 0], 8); "
            "r = qlite.fit(MLP(1, 1, 2), s, epochs=1); print(type(r).__name__, "
            "isinstance(qlite.fit, types.FunctionType), isinstance(qlite.compare, types.FunctionType), "
            "type(qlite.training).__name__, qlite.FitConfig.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["FitResult", "True", "True", "module", "FitConfig"]
    import qlite.comparison
    import qlite.training

    assert qlite.fit is qlite.training.fit and qlite.compare is qlite.comparison.compare


def test_device_selection():
    from qlite.training import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu-please")
    with pytest.raises(TypeError, match="device"):
        resolve_device(3)


def test_progress_bar_switches_itself_off_when_output_is_not_a_terminal(capsys, wave):
    from qlite.training.device import Progress, progress_enabled

    assert progress_enabled(None) is False  # pytest captures stdout: not a terminal
    assert progress_enabled(True) is True
    fit(MLP(1, 1, 4), wave, epochs=3)
    assert capsys.readouterr().err == ""
    bar = Progress(3, 0, True)
    for _ in range(3):
        bar.update(0.5)
    bar.close()
    assert "3/3" in capsys.readouterr().err


@pytest.mark.gpu
def test_fit_on_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    signal = data.image("camera", size=16)
    spec = ModelSpec("qiren", hidden_features=4)
    cpu = fit(spec.build(2, 1, seed=0), signal, epochs=20, device="cpu")
    gpu = fit(spec.build(2, 1, seed=0), signal, epochs=20, device="cuda")
    assert gpu.device.startswith("cuda")
    assert gpu.history["loss"][-1] == pytest.approx(cpu.history["loss"][-1], rel=1e-2)
    assert predict(gpu.model, signal).device == signal.coords.device
