"""qlite.plots: functions draw the right data on the ax they are given and return it."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from qlite import data

plt = pytest.importorskip("matplotlib.pyplot")
from qlite import plots  # noqa: E402


def test_import_does_not_load_matplotlib():
    code = "import sys, qlite.plots; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_image_panels_show_prediction_truth_and_error():
    s = data.image("camera", size=16)
    pred = s.values * 0.5
    fig, axes = plt.subplots(1, 3)
    assert list(plots.plot_fit(s, pred, axes)) == list(axes)
    assert np.allclose(axes[0].images[0].get_array(), pred.reshape(16, 16).numpy())
    assert np.allclose(axes[1].images[0].get_array(), s.values.reshape(16, 16).numpy())
    assert np.allclose(axes[2].images[0].get_array(), (pred - s.values).abs().reshape(16, 16).numpy())
    plt.close(fig)


def test_one_dimensional_signal_and_loss_curve(tmp_path):
    s = data.function(lambda x: torch.sin(4 * x[:, 0]), 50)
    fig, ax = plt.subplots()
    assert plots.plot_signal(s, ax=ax, title="wave") is ax
    x, y = ax.lines[0].get_data()
    assert np.allclose(y, s.values[:, 0].numpy()) and ax.get_title() == "wave"
    ax2 = plots.plot_error(s, s.values + 0.1)
    assert np.allclose(ax2.lines[0].get_data()[1], 0.1, atol=1e-6)
    ax3 = plots.plot_loss({"epoch": [1, 2, 3], "loss": [1.0, 0.5, 0.25]})
    assert list(ax3.lines[0].get_data()[1]) == [1.0, 0.5, 0.25] and ax3.get_yscale() == "log"
    plots.save(ax3, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 0
    with pytest.raises(ValueError, match="shape"):
        plots.plot_signal(s, torch.zeros(3, 1))
    with pytest.raises(TypeError, match="history"):
        plots.plot_loss([1, 2])
    plt.close("all")
