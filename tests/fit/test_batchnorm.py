"""Exact BatchNorm statistics: eval mode reproduces the fitted (train-mode, full-batch) function."""

import pytest
import torch

from qlite import QIREN, data
from qlite.training import fit, predict, recompute_batchnorm
from qlite.models import MLP, ModelSpec


def _train_mode_output(model, x):
    model.train()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("make", [lambda: QIREN(2, 1, hidden_features=3), lambda: MLP(2, 2, 6, activation="tanh")])
def test_eval_mode_equals_full_batch_train_mode_after_recompute(make):
    torch.manual_seed(0)
    model = make()
    x = torch.rand(200, 2) * 2 - 1
    for m in model.modules():  # running statistics far from the data's
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.fill_(3.0)
            m.running_var.fill_(0.01)
    target = _train_mode_output(model, x)
    model.eval()
    assert recompute_batchnorm(model, x) == 3
    assert not model.training
    assert torch.allclose(predict(model, x), target, atol=2e-5)
    model.train()
    recompute_batchnorm(model, x, batch_size=37)  # chunked: the same statistics
    assert model.training
    assert torch.allclose(predict(model, x), target, atol=2e-5)
    assert torch.allclose(predict(model, x, batch_size=13), target, atol=2e-5)


def test_model_without_batchnorm_is_untouched():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh())
    before = [p.clone() for p in model.parameters()]
    assert recompute_batchnorm(model, torch.rand(5, 2)) == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_running_averages_spoil_evaluation_and_recompute_fixes_it():
    """The issue's observation on a cheap model: after a full-batch fit, momentum running averages
    lag the fitted statistics; recomputed statistics give the training-mode error back."""
    signal = data.image("camera", size=32)
    spec = ModelSpec("relu", budget=657)
    lagging = fit(spec.build(2, 1, seed=0), signal, epochs=150, lr=0.03, recompute_batchnorm=False)
    exact = fit(spec.build(2, 1, seed=0), signal, epochs=150, lr=0.03)
    fitted = ((_train_mode_output(exact.model, signal.coords) - signal.values) ** 2).mean().item()
    assert exact.metrics["mse"] == pytest.approx(fitted, rel=1e-3)
    assert lagging.metrics["mse"] > 3 * exact.metrics["mse"]  # measured here: about 9x
    assert exact.history["loss"] == lagging.history["loss"]  # training itself is unchanged


def test_the_fitted_model_leaves_in_eval_mode():
    """A plain forward after fit must not move the exact statistics (train mode would update them)."""
    signal = data.image("camera", size=8)
    res = fit(ModelSpec("relu", budget=200).build(2, 1, seed=0), signal, epochs=3, lr=0.01)
    assert not res.model.training
    before = predict(res.model, signal.coords)
    res.model(signal.coords)
    torch.testing.assert_close(predict(res.model, signal.coords), before)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        predict(res.model, signal.coords, batch_size=0)


def test_a_float64_signal_fits_a_float32_model():
    signal = data.image("camera", size=8).to(dtype=torch.float64)
    res = fit(ModelSpec("relu", budget=200).build(2, 1, seed=0), signal, epochs=2, lr=0.01)
    assert predict(res.model, signal.coords).dtype == torch.float32 and res.metrics["mse"] > 0
